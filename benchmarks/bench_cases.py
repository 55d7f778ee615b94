"""What each benchmark case runs: its inputs, our op, the check against the NumPy reference, and
its PyTorch twin. Used by bench_kernels.py inside a worker process that owns the GPU.

run_case(case, ctx) -> raw row (see report.finalize_row). Order, for every case:
  1. allocate the input sets (one, plus a flush, for small inputs; else enough to cover the
     L2 several times) from a CuPy generator: random data, never zeros;
  2. validate: poison our output with NaN, run our op once on set 0, require every element
     finite, compare with the float64 NumPy reference by ||ours - ref|| / ||ref|| on images
     {0, 1, N-1} (per-image ops: the kernel still processed the whole batch) or on the whole
     result (batch reductions, with set 0 built from 3 images repeated so the reference needs
     only those 3); a failed check ends the case as "failed: ..." and nothing is timed;
  3. time our op (gpu_timing.measure);
  4. the twin through PyTorch, if present: run once and compare with our validated output
     (twin_rel_err: a conv twin far above 1e-5 would mean it ran in TF32), then time it.
"""
import inspect
import math
import traceback

import numpy as np

from gpu_timing import CupyClock, TorchClock, cupy_flusher, measure, torch_flusher
from workloads import numel

TOL = 1e-4             # float32 kernels against a float64 reference: far under this
TOL_REDUCTION = 2e-4   # conv bwd_filter sums 128 images x every position in float32
TOL_ELEMENTWISE = 1e-5
TILE_PERIOD = 3        # bwd_filter's set 0: images 0, 1, 2 repeated over the batch
SEED = 1234


class ValidationFailed(Exception):
    pass


class Context:
    """What a worker shares between cases: modules, device facts, timing settings."""

    def __init__(self, cupy, cb, ref, torch=None, l2_bytes=50 << 20, quick=False):
        self.cupy, self.cb, self.ref, self.torch = cupy, cb, ref, torch
        self.l2_bytes = l2_bytes
        self.quick = quick
        self.timing = (dict(warmup=1, min_iters=5, min_ms=20.0, max_ms=150.0) if quick else
                       dict(warmup=3, min_iters=20, min_ms=200.0, max_ms=1500.0))
        self.rng = cupy.random.RandomState(SEED)
        self._cupy_flush = self._torch_flush = None

    def cupy_flush(self):
        if self._cupy_flush is None:
            self._cupy_flush = cupy_flusher(self.cupy, self.l2_bytes)
        return self._cupy_flush

    def torch_flush(self):
        if self._torch_flush is None:
            self._torch_flush = torch_flusher(self.torch, self.l2_bytes)
        return self._torch_flush

    # ---- arrays
    def rand(self, shape, scale=1.0):
        return self.rng.standard_normal(tuple(shape), dtype=self.cupy.float32) * np.float32(scale)

    def empty(self, shape, dtype=None):
        return self.cupy.empty(tuple(shape), dtype=dtype or self.cupy.float32)

    def host64(self, a):
        return self.cupy.asnumpy(a).astype(np.float64)

    def to_torch(self, a):
        try:
            return self.torch.from_dlpack(a)
        except Exception:
            return self.torch.as_tensor(a, device="cuda")


# ---- helpers ---------------------------------------------------------------------------------

_OUT_SUPPORT = {}
NO_OUT = set()  # the functions called with out= that did not take it (cleared per case)


def accepts_out(fn):
    if fn not in _OUT_SUPPORT:
        try:
            params = inspect.signature(fn).parameters.values()
            _OUT_SUPPORT[fn] = any(p.name == "out" or p.kind == p.VAR_KEYWORD for p in params)
        except (TypeError, ValueError):
            _OUT_SUPPORT[fn] = False
    return _OUT_SUPPORT[fn]


def call(fn, *args, out=None):
    """fn(*args, out=out) where fn takes out=, else fn(*args); returns the result array."""
    if out is not None:
        if accepts_out(fn):
            result = fn(*args, out=out)
            return out if result is None else result
        NO_OUT.add(getattr(fn, "__name__", repr(fn)))
    return fn(*args)


def rel_err(ours, ref):
    """||ours - ref|| / ||ref|| in float64 (host arrays); inf when shapes differ or NaN."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        raise ValidationFailed(f"shape {ours.shape}, reference {ref.shape}")
    den = np.linalg.norm(ref)
    err = float(np.linalg.norm(ours - ref) / (den if den > 0 else 1.0))
    return err if math.isfinite(err) else math.inf


def check_close(name, ours, ref, tol):
    err = rel_err(ours, ref)
    if not err <= tol:
        raise ValidationFailed(f"{name}: rel_err {err:.3g} > tol {tol:g}")
    return err


def require_finite(cupy, a, name="output"):
    bad = int(a.size - int(cupy.isfinite(a).sum()))
    if bad:
        raise ValidationFailed(f"{name}: {bad} of {a.size} elements not finite "
                               f"(poisoned with NaN before the run: unwritten?)")


def sample_images(n):
    return sorted({0, min(1, n - 1), n - 1})


def gpu_rel_err(cupy, ours, twin_tensor):
    """||ours - twin|| / ||ours|| on the GPU (twin: a torch tensor of the same shape)."""
    t = cupy.from_dlpack(twin_tensor.detach().contiguous())
    if t.shape != ours.shape:
        raise RuntimeError(f"twin output {tuple(t.shape)} != ours {tuple(ours.shape)}")
    a, b = ours.astype(cupy.float64), t.astype(cupy.float64)
    den = float(cupy.linalg.norm(a))
    return float(cupy.linalg.norm(a - b)) / (den if den > 0 else 1.0)


# ---- the op families -------------------------------------------------------------------------

class Bench:
    """One case's inputs and calls. Subclasses set set_bytes and define make_set, ours,
    validate; twin_name/twin_setup/twin (optional) describe the PyTorch twin."""
    twin_name = None
    twin_comparable = True  # the twin computes the same numbers as ours (not random draws)
    tol = TOL

    def __init__(self, case, ctx):
        self.case, self.ctx, self.p = case, ctx, case.params
        self.cp, self.cb, self.ref = ctx.cupy, ctx.cb, ctx.ref

    def out_of(self, s):
        """The array our validated run wrote (compared with the twin's)."""
        return self.validated

    def twin_setup(self, s):
        return None

    def twin(self, ts):
        raise NotImplementedError


class ConvBench(Bench):
    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        L = self.L = self.p["layer"]
        self.pass_ = case.pass_
        self.set_bytes = 4 * (numel(L.x_shape) + numel(L.w_shape) + numel(L.y_shape))
        self.args = (L.stride, L.padding, L.groups)
        self.algo = self.p.get("algo")  # None: the one convnet.backend.algos chooses
        if case.pass_ == "bwd_filter":
            self.tol = TOL_REDUCTION
        self.twin_name = {"fwd": "torch.nn.functional.conv2d (cuDNN)",
                          "bwd_data": "torch.ops.aten.convolution_backward, input grad (cuDNN)",
                          "bwd_filter": "torch.ops.aten.convolution_backward, weight grad (cuDNN)",
                          }[case.pass_]

    def make_set(self, i):
        L, c = self.L, self.ctx
        if self.pass_ == "fwd":
            return {"x": c.rand(L.x_shape), "w": c.rand(L.w_shape, 0.1), "y": c.empty(L.y_shape)}
        if self.pass_ == "bwd_data":
            return {"dy": c.rand(L.y_shape), "w": c.rand(L.w_shape, 0.1),
                    "dx": c.empty(L.x_shape)}
        if i == 0:  # a few distinct images repeated: the reference needs only those
            p = min(TILE_PERIOD, L.N)
            order = self.cp.arange(L.N) % p
            x = c.rand((p,) + L.x_shape[1:])[order]
            dy = c.rand((p,) + L.y_shape[1:])[order]
        else:
            x, dy = c.rand(L.x_shape), c.rand(L.y_shape)
        return {"x": self.cp.ascontiguousarray(x), "dy": self.cp.ascontiguousarray(dy),
                "dw": c.empty(L.w_shape)}

    def ours(self, s):
        L, cb = self.L, self.cb
        if self.pass_ == "fwd":
            return call(cb.conv_forward, s["x"], s["w"], *self.args, out=s["y"], algo=self.algo)
        if self.pass_ == "bwd_data":
            return call(cb.conv_backward_data, s["dy"], s["w"], (L.H, L.W), *self.args,
                        out=s["dx"], algo=self.algo)
        return call(cb.conv_backward_filter, s["x"], s["dy"], L.fs, *self.args, out=s["dw"],
                    algo=self.algo)

    def validate(self, s):
        L, c, ref = self.L, self.ctx, self.ref
        out = s[{"fwd": "y", "bwd_data": "dx", "bwd_filter": "dw"}[self.pass_]]
        out.fill(np.nan)
        res = self.validated = self.ours(s)
        self.cp.cuda.runtime.deviceSynchronize()
        require_finite(self.cp, res)
        if self.pass_ == "bwd_filter":
            p = min(TILE_PERIOD, L.N)
            x, dy = c.host64(s["x"][:p]), c.host64(s["dy"][:p])
            want = sum((L.N - j + p - 1) // p
                       * ref.conv_backward_filter(x[j:j + 1], dy[j:j + 1], L.fs, *self.args)
                       for j in range(p))
            return check_close("dw", c.cupy.asnumpy(res), want, self.tol)
        idx = sample_images(L.N)
        if self.pass_ == "fwd":
            want = ref.conv_forward(c.host64(s["x"][idx]), c.host64(s["w"]), *self.args)
        else:
            want = ref.conv_backward_data(c.host64(s["dy"][idx]), c.host64(s["w"]), (L.H, L.W),
                                          *self.args)
        return check_close(self.pass_, c.cupy.asnumpy(res[idx]), want, self.tol)

    def twin_setup(self, s):
        c, torch, L = self.ctx, self.ctx.torch, self.L
        ts = {k: c.to_torch(v) for k, v in s.items()}
        if self.pass_ == "bwd_data":
            ts["x"] = torch.empty(L.x_shape, device="cuda")
        if self.pass_ == "bwd_filter":
            ts["w"] = torch.empty(L.w_shape, device="cuda")
        return ts

    def twin(self, ts):
        L, torch = self.L, self.ctx.torch
        if self.pass_ == "fwd":
            return torch.nn.functional.conv2d(ts["x"], ts["w"], None, L.stride, L.padding, 1,
                                              L.groups)
        mask = [self.pass_ == "bwd_data", self.pass_ == "bwd_filter", False]
        grads = torch.ops.aten.convolution_backward(
            ts["dy"], ts["x"], ts["w"], None, [L.stride] * 2, [L.padding] * 2, [1, 1], False,
            [0, 0], L.groups, mask)
        return grads[0] if self.pass_ == "bwd_data" else grads[1]


class ActivationBench(Bench):
    """neuron (relu), lrn and maxpool on AlexNet's conv1 output: per-image ops, fwd and bwd."""

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.out_shape = self.shape
        if case.op == "maxpool":
            self.out_shape = self.shape[:2] + tuple(self.p["out_size"])
        n_in, n_out = numel(self.shape), numel(self.out_shape)
        self.set_bytes = 4 * ((n_in + n_out) if case.pass_ == "fwd" else 2 * (n_in + n_out))
        if case.op == "neuron":
            self.tol = TOL_ELEMENTWISE
        names = {"neuron": "torch.relu", "lrn": "torch.nn.functional.local_response_norm",
                 "maxpool": "torch.nn.functional.max_pool2d(ceil_mode=True)"}
        self.twin_name = names[case.op] + (" + autograd" if case.pass_ == "bwd" else "")
        if case.op == "maxpool" and self.p["start"] != 0:
            self.twin_name = None

    # the forward op, ours and the reference's, with this case's parameters
    def fwd(self, backend, x, out=None):
        p = self.p
        if self.case.op == "neuron":
            return call(backend.neuron_forward, x, p["kind"], out=out)
        if self.case.op == "lrn":
            return call(backend.lrn_forward, x, p["size"], p["alpha"], p["beta"], p["k"], out=out)
        return call(backend.maxpool_forward, x, p["size"], p["stride"], p["start"],
                    tuple(p["out_size"]), out=out)

    def bwd(self, backend, x, y, dy, out=None):
        p = self.p
        if self.case.op == "neuron":
            return call(backend.neuron_backward, x, y, dy, p["kind"], out=out)
        if self.case.op == "lrn":
            return call(backend.lrn_backward, x, y, dy, p["size"], p["alpha"], p["beta"],
                        p["k"], out=out)
        return call(backend.maxpool_backward, x, y, dy, p["size"], p["stride"], p["start"],
                    out=out)

    def make_set(self, i):
        c = self.ctx
        scale = 4.0 if self.case.op == "lrn" else 1.0
        x = c.rand(self.shape, scale)
        if self.case.pass_ == "fwd":
            return {"x": x, "y": c.empty(self.out_shape)}
        if self.case.op == "neuron":
            y = self.cp.maximum(x, 0)  # relu
        else:
            y = self.cp.ascontiguousarray(self.fwd(self.cb, x))
        return {"x": x, "y": y, "dy": c.rand(self.out_shape), "dx": c.empty(self.shape)}

    def ours(self, s):
        if self.case.pass_ == "fwd":
            return self.fwd(self.cb, s["x"], out=s["y"])
        return self.bwd(self.cb, s["x"], s["y"], s["dy"], out=s["dx"])

    def validate(self, s):
        c = self.ctx
        out = s["y"] if self.case.pass_ == "fwd" else s["dx"]
        out.fill(np.nan)
        res = self.validated = self.ours(s)
        self.cp.cuda.runtime.deviceSynchronize()
        require_finite(self.cp, res)
        idx = sample_images(self.shape[0])
        x = c.host64(s["x"][idx])
        if self.case.pass_ == "fwd":
            want = self.fwd(self.ref, x)
        else:
            want = self.bwd(self.ref, x, self.fwd(self.ref, x), c.host64(s["dy"][idx]))
        return check_close(self.case.pass_, c.cupy.asnumpy(res[idx]), want, self.tol)

    def twin_forward(self, tx):
        torch, p = self.ctx.torch, self.p
        F = torch.nn.functional
        if self.case.op == "neuron":
            return torch.relu(tx)
        if self.case.op == "lrn":  # torch divides alpha by size; OPS.md's alpha is per square
            return F.local_response_norm(tx, p["size"], alpha=p["alpha"] * p["size"],
                                         beta=p["beta"], k=p["k"])
        return F.max_pool2d(tx, p["size"], p["stride"], 0, ceil_mode=True)

    def twin_setup(self, s):
        c = self.ctx
        tx = c.to_torch(s["x"])
        if self.case.pass_ == "fwd":
            return {"x": tx}
        leaf = tx.detach().requires_grad_(True)
        y = self.twin_forward(leaf)
        if tuple(y.shape) != self.out_shape:
            raise RuntimeError(f"twin output {tuple(y.shape)} != ours {self.out_shape}")
        return {"leaf": leaf, "y": y, "dy": c.to_torch(s["dy"])}

    def twin(self, ts):
        if self.case.pass_ == "fwd":
            return self.twin_forward(ts["x"])
        return self.ctx.torch.autograd.grad(ts["y"], ts["leaf"], ts["dy"], retain_graph=True)[0]


class DropoutBench(Bench):
    """Mask drawing plus apply (what a training step does), a new step's mask every call."""
    twin_name = "torch.nn.functional.dropout (mask drawn too)"
    twin_comparable = False  # different random streams
    tol = TOL_ELEMENTWISE
    VALIDATE_STEP = 7

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.keep = self.p["keep"]
        self.set_bytes = numel(self.shape) * 9
        self.step = 100

    def make_set(self, i):
        c = self.ctx
        return {"x": c.rand(self.shape), "y": c.empty(self.shape),
                "mask": c.empty(self.shape, self.cp.uint8)}

    def ours(self, s, step=None):
        if step is None:
            self.step += 1
            step = self.step
        mask = call(self.cb.dropout_mask, self.shape, self.keep, SEED, 0, step, out=s["mask"])
        s["last_mask"] = mask
        return call(self.cb.dropout_forward, s["x"], mask, self.keep, out=s["y"])

    def validate(self, s):
        c, cp = self.ctx, self.cp
        s["y"].fill(np.nan)
        s["mask"].fill(255)
        res = self.validated = self.ours(s, step=self.VALIDATE_STEP)
        cp.cuda.runtime.deviceSynchronize()
        require_finite(cp, res)
        mask = s["last_mask"]
        n = mask.size
        kept = float(mask.astype(cp.float64).mean())
        bound = 6 * math.sqrt(self.keep * (1 - self.keep) / n) + 1e-6
        if int((mask > 1).sum()):
            raise ValidationFailed("mask: values other than 0 and 1 (unwritten?)")
        if abs(kept - self.keep) > bound:
            raise ValidationFailed(f"mask: kept fraction {kept:.5f}, keep {self.keep}")
        row = numel(self.shape[1:])
        rows = min(self.shape[0], max(1, (1 << 18) // row))
        want_mask = self.ref.dropout_mask((rows,) + self.shape[1:], self.keep, SEED, 0,
                                          self.VALIDATE_STEP)
        got_mask = cp.asnumpy(mask[:rows])
        wrong = int((got_mask != want_mask).sum())
        if wrong:
            raise ValidationFailed(f"mask: {wrong} of {got_mask.size} differ from the "
                                   f"reference Philox stream")
        want = self.ref.dropout_forward(c.host64(s["x"][:rows]), want_mask, self.keep)
        return check_close("y", cp.asnumpy(res[:rows]), want, self.tol)

    def twin_setup(self, s):
        return {"x": self.ctx.to_torch(s["x"])}

    def twin(self, ts):
        return self.ctx.torch.nn.functional.dropout(ts["x"], p=1 - self.keep, training=True)


class SoftmaxCostBench(Bench):
    """fwd: softmax_forward + logreg_forward (top-5); bwd: the fused softmax_logreg_backward."""

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.N, self.K = self.p["shape"]
        self.topk = self.p["topk"]
        self.scale = 1.0 / self.N
        self.set_bytes = 4 * (3 * self.N * self.K + 4 * self.N)
        self.twin_name = ("torch log_softmax + nll_loss" if case.pass_ == "fwd" else
                          "torch cross_entropy + autograd")

    def make_set(self, i):
        c, cp = self.ctx, self.cp
        x = c.rand((self.N, self.K), 3.0)
        labels = c.rng.randint(0, self.K, size=self.N).astype(cp.int32)
        s = {"x": x, "labels": labels}
        if self.case.pass_ == "fwd":
            s["p"] = c.empty((self.N, self.K))
            s["cost_out"] = tuple(c.empty((self.N,)) for _ in range(3))  # nll, wrong1, wrongk
        else:
            e = cp.exp(x - x.max(axis=1, keepdims=True))
            s["p"] = cp.ascontiguousarray(e / e.sum(axis=1, keepdims=True))
            s["dx"] = c.empty((self.N, self.K))
        return s

    def ours(self, s):
        cb = self.cb
        if self.case.pass_ == "fwd":
            p = call(cb.softmax_forward, s["x"], out=s["p"])
            s["cost"] = call(cb.logreg_forward, p, s["labels"], self.topk, out=s["cost_out"])
            return p
        return call(cb.softmax_logreg_backward, s["p"], s["labels"], self.scale, out=s["dx"])

    def validate(self, s):
        c, cp, ref = self.ctx, self.cp, self.ref
        for a in ((s["p"], *s["cost_out"]) if self.case.pass_ == "fwd" else (s["dx"],)):
            a.fill(np.nan)
        res = self.validated = self.ours(s)
        cp.cuda.runtime.deviceSynchronize()
        require_finite(cp, res)
        labels = cp.asnumpy(s["labels"])
        if self.case.pass_ == "bwd":
            want = ref.softmax_logreg_backward(c.host64(s["p"]), labels, self.scale)
            return check_close("dx", cp.asnumpy(res), want, TOL_ELEMENTWISE)
        err = check_close("p", cp.asnumpy(res), ref.softmax_forward(c.host64(s["x"])), TOL)
        # the cost on our own p (cast exactly to float64): the same comparisons decide top-k
        for name, a in zip(("nll", "wrong1", "wrongk"), s["cost"]):
            require_finite(cp, a, name)
        nll, wrong1, wrongk = (cp.asnumpy(a) for a in s["cost"])
        want_nll, want1, wantk = ref.logreg_forward(c.host64(res), labels, self.topk)
        err = max(err, check_close("nll", nll, want_nll, TOL))
        for name, got, want in (("wrong1", wrong1, want1), (f"wrong{self.topk}", wrongk, wantk)):
            if got.shape != want.shape or (got != want).any():
                raise ValidationFailed(f"{name}: differs from the reference")
        return err

    def out_of(self, s):
        return s["cost"][0] if self.case.pass_ == "fwd" else self.validated

    def twin_setup(self, s):
        c, torch = self.ctx, self.ctx.torch
        ts = {"x": c.to_torch(s["x"]), "labels": c.to_torch(s["labels"]).long()}
        if self.case.pass_ == "bwd":
            leaf = ts["x"].detach().requires_grad_(True)
            ts["leaf"] = leaf
            ts["loss"] = torch.nn.functional.cross_entropy(leaf, ts["labels"], reduction="sum")
            ts["g"] = torch.tensor(self.scale, device="cuda")
        return ts

    def twin(self, ts):
        torch = self.ctx.torch
        F = torch.nn.functional
        if self.case.pass_ == "fwd":
            return F.nll_loss(F.log_softmax(ts["x"], 1), ts["labels"], reduction="none")
        return torch.autograd.grad(ts["loss"], ts["leaf"], ts["g"], retain_graph=True)[0]


class SgdBench(Bench):
    """In place: v <- mom v - wc eps w - eps g; w <- w + v. No cuDNN twin."""
    tol = TOL_ELEMENTWISE

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.set_bytes = 3 * 4 * numel(self.shape)

    def make_set(self, i):
        c = self.ctx
        return {"w": c.rand(self.shape, 0.01), "v": c.rand(self.shape, 0.001),
                "g": c.rand(self.shape, 0.01)}

    def ours(self, s):
        p = self.p
        self.cb.sgd_update(s["w"], s["v"], s["g"], p["eps"], p["mom"], p["wc"])
        return s["w"]

    def validate(self, s):
        cp, p = self.cp, self.p
        w, v, g = (cp.asnumpy(s[k]) for k in ("w", "v", "g"))
        self.ours(s)
        cp.cuda.runtime.deviceSynchronize()
        self.ref.sgd_update(w, v, g, p["eps"], p["mom"], p["wc"])  # float32, in place
        err = check_close("v", cp.asnumpy(s["v"]), v, self.tol)
        return max(err, check_close("w", cp.asnumpy(s["w"]), w, self.tol))


BENCHES = {"conv": ConvBench, "neuron": ActivationBench, "lrn": ActivationBench,
           "maxpool": ActivationBench, "dropout": DropoutBench,
           "softmax_logreg": SoftmaxCostBench, "sgd_update": SgdBench}


def plan_sets(set_bytes, l2_bytes, max_total=16 << 30):
    """(number of input sets, flush?): sets enough to cover 3x the L2 (2..16), or one set and
    an L2 flush before every call when even 16 sets would stay under 2x the L2."""
    if 16 * set_bytes < 2 * l2_bytes:
        return 1, True
    n = max(2, min(16, math.ceil(3 * l2_bytes / max(set_bytes, 1))))
    while n > 1 and n * set_bytes > max_total:
        n -= 1
    return n, False


def run_case(case, ctx):
    """The raw row of one case (status "ok", "failed: ...", or "error: ..." from the caller)."""
    raw = {"op": case.op, "pass": case.pass_, "layer": case.layer, "shape": case.shape,
           "work_kind": case.work_kind, "work": case.work}
    NO_OUT.clear()
    stage = "setup"
    try:
        bench = BENCHES[case.op](case, ctx)
        nsets, flush = plan_sets(bench.set_bytes, ctx.l2_bytes)
        sets = [bench.make_set(i) for i in range(nsets)]
        stage = "validate"
        try:
            raw["rel_err"] = float(f"{bench.validate(sets[0]):.3g}")
            raw["tol"] = bench.tol
        except ValidationFailed as e:
            raw["status"] = f"failed: validation: {e}"
            return raw
        stage = "time"
        t = measure(lambda i: bench.ours(sets[i]), nsets, CupyClock(ctx.cupy),
                    flush=ctx.cupy_flush() if flush else None, **ctx.timing)
        raw.update(t.as_dict())
        raw["status"] = "ok"
        if ctx.torch is not None and bench.twin_name:
            stage = "twin"
            try:
                twin_sets = [bench.twin_setup(s) for s in sets]
                first = bench.twin(twin_sets[0])
                if bench.twin_comparable:
                    raw["twin_rel_err"] = _round(gpu_rel_err(ctx.cupy, bench.out_of(sets[0]),
                                                             first))
                del first
                tt = measure(lambda i: bench.twin(twin_sets[i]), nsets, TorchClock(ctx.torch),
                             flush=ctx.torch_flush() if flush else None, **ctx.timing)
                raw["twin"] = bench.twin_name
                raw["twin_ms"] = tt.ms
            except Exception as e:  # the twin failing never costs our row
                traceback.print_exc()
                raw["twin_error"] = f"{type(e).__name__}: {e}"[:300]
            finally:
                twin_sets = None
        if NO_OUT:
            raw["notes"] = f"no out= on {', '.join(sorted(NO_OUT))}: allocates per call"
        return raw
    except ValidationFailed as e:
        raw["status"] = f"failed: {stage}: {e}"
        return raw
    except Exception as e:
        traceback.print_exc()  # into the worker's log
        raw["status"] = f"error: {stage}: {type(e).__name__}: {e}"[:400]
        return raw


def _round(x):
    return float(f"{x:.3g}") if isinstance(x, float) else x
