"""The Bench families of the memory-bound per-element and per-window ops: neurons, the three
response normalizations, the three poolings (max, avg, cuda-convnet2's cross-map), sum and crop,
dropout and random_normal, and the element-wise combinations (eltsum, eltmax, concat).

Twins: relu, local_response_norm, max_pool2d / avg_pool2d with ceil_mode (cuda-convnet's edges
when start is 0: the last window may run past the image and is clipped, an average divides by
the clipped count; PyTorch's ceil_mode without padding does the same), max_pool3d over windows
of maps for cmpool (the same rule along the maps), a view's sum for sum, a slice's contiguous
copy for crop, each backward by autograd; dropout and native_dropout_backward, normal_, maximum,
cat, split_with_sizes_copy, add. None for rnorm and cnorm (same-map windows: no PyTorch op),
eltmax's backward, or eltsum with a first coefficient other than 1 (no one-op PyTorch twin; a
composite would time PyTorch's glue).
"""
import math

import numpy as np

from bench_base import (NO_OUT, SEED, TOL_ELEMENTWISE, Bench, ValidationFailed, autograd_setup,
                        autograd_twin, call, check_close, require_finite)
from workloads import numel

NORMS = ("lrn", "rnorm", "cnorm")
# the parameters each family's forward and backward take after their arrays, from case.params
# (img_size: the input's (H, W)); backward takes (x, y, dy) but for DY_ONLY families (dy)
FWD = {"neuron": ("kind",), **{n: ("size", "alpha", "beta", "k") for n in NORMS},
       "maxpool": ("size", "stride", "start", "out_size"),
       "avgpool": ("size", "stride", "start", "out_size"),
       "cmpool": ("size", "stride", "start", "outputs"), "sum": ("stride",),
       "crop": ("start", "size")}
BWD = {"neuron": ("kind",), **{n: ("size", "alpha", "beta", "k") for n in NORMS},
       "maxpool": ("size", "stride", "start"), "cmpool": ("size", "stride", "start"),
       "avgpool": ("img_size", "size", "stride", "start"), "sum": ("stride",),
       "crop": ("img_size", "start")}
DY_ONLY = ("avgpool", "sum", "crop")


class ActivationBench(Bench):
    """Per-image ops with one input and one output, fwd and bwd, each checked on sample
    images of the full-batch run; the twin of a bwd is the fwd twin's autograd."""
    ops = tuple(f"{family}_{suffix}" for family in FWD for suffix in ("forward", "backward"))
    TWINS = {"neuron": "torch.relu", "lrn": "torch.nn.functional.local_response_norm",
             "maxpool": "torch.nn.functional.max_pool2d(ceil_mode=True)",
             "avgpool": "torch.nn.functional.avg_pool2d(ceil_mode=True)",
             "cmpool": "torch.nn.functional.max_pool3d over (maps, 1, 1) windows (ceil_mode)",
             "sum": "torch.sum over a view of the stride groups",
             "crop": "a slice's torch.Tensor.contiguous"}

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.family, self.bwd_pass = case.op, case.pass_ == "bwd"
        self.shape, self.out_shape = tuple(self.p["shape"]), tuple(self.p["out_shape"])
        self.args = {**self.p, "img_size": self.shape[2:]}
        n_in, n_out = numel(self.shape), numel(self.out_shape)
        self.set_bytes = 4 * (2 * (n_in + n_out) if self.bwd_pass else n_in + n_out)
        if self.family in ("neuron", "sum", "crop"):
            self.tol = TOL_ELEMENTWISE
        self.twin_name = self.TWINS.get(self.family)
        if self.family in ("maxpool", "avgpool", "cmpool") and self.p["start"] != 0:
            self.twin_name = None  # PyTorch's windows start at 0
        if self.twin_name and self.bwd_pass:
            self.twin_name += " + autograd"

    # the forward and backward op, ours and the reference's, with this case's parameters
    def fwd(self, backend, x, out=None):
        fn = getattr(backend, f"{self.family}_forward")
        return call(fn, x, *(self.args[k] for k in FWD[self.family]), out=out)

    def bwd(self, backend, x, y, dy, out=None):
        fn = getattr(backend, f"{self.family}_backward")
        arrays = (dy,) if self.family in DY_ONLY else (x, y, dy)
        return call(fn, *arrays, *(self.args[k] for k in BWD[self.family]), out=out)

    def make_set(self, i):
        c = self.ctx
        x = c.rand(self.shape, 4.0 if self.family in NORMS else 1.0)
        if not self.bwd_pass:
            return {"x": x, "y": c.empty(self.out_shape)}
        if self.family == "neuron":
            y = self.cp.maximum(x, 0)  # relu
        else:
            y = self.cp.ascontiguousarray(self.fwd(self.cb, x))
        return {"x": x, "y": y, "dy": c.rand(self.out_shape), "dx": c.empty(self.shape)}

    def ours(self, s):
        if not self.bwd_pass:
            return self.fwd(self.cb, s["x"], out=s["y"])
        return self.bwd(self.cb, s["x"], s["y"], s["dy"], out=s["dx"])

    def validate(self, s):
        c = self.ctx
        res = self.poisoned_run(s, s["dx"] if self.bwd_pass else s["y"])

        def want(idx):
            x = c.host64(s["x"][idx])
            if not self.bwd_pass:
                return self.fwd(self.ref, x)
            return self.bwd(self.ref, x, self.fwd(self.ref, x), c.host64(s["dy"][idx]))

        return self.check_images(res, want)

    def twin_forward(self, tx):
        torch, p = self.ctx.torch, self.p
        F = torch.nn.functional
        if self.family == "neuron":
            return torch.relu(tx)
        if self.family == "lrn":  # torch divides alpha by size; OPS.md's alpha is per square
            return F.local_response_norm(tx, p["size"], alpha=p["alpha"] * p["size"],
                                         beta=p["beta"], k=p["k"])
        if self.family == "avgpool":  # no padding: both divisor rules are the clipped count
            return F.avg_pool2d(tx, p["size"], p["stride"], 0, ceil_mode=True,
                                count_include_pad=False)
        if self.family == "maxpool":
            return F.max_pool2d(tx, p["size"], p["stride"], 0, ceil_mode=True)
        n, maps = tx.shape[:2]
        if self.family == "cmpool":
            y = F.max_pool3d(tx.reshape(n, 1, maps, -1, tx.shape[3]), (p["size"], 1, 1),
                             (p["stride"], 1, 1), 0, ceil_mode=True)
            return y.reshape(self.out_shape)
        if self.family == "sum":
            return tx.reshape(n, maps // p["stride"], p["stride"], *tx.shape[2:]).sum(2)
        (y0, x0), (h, w) = p["start"], p["size"]
        return tx[:, :, y0:y0 + h, x0:x0 + w].contiguous()

    def twin_setup(self, s):
        if not self.bwd_pass:
            return {"x": self.ctx.to_torch(s["x"])}
        return autograd_setup(self.ctx, self.twin_forward, s["x"], s["dy"], self.out_shape)

    def twin(self, ts):
        if not self.bwd_pass:
            return self.twin_forward(ts["x"])
        return autograd_twin(self.ctx.torch, ts)


class DropoutBench(Bench):
    """fwd: mask drawing plus apply (what a training step does), a new step's mask every call;
    bwd: dy * mask / keep with one mask."""
    ops = ("dropout_forward", "dropout_backward")
    tol = TOL_ELEMENTWISE
    VALIDATE_STEP = 7

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.keep = self.p["keep"]
        self.set_bytes = numel(self.shape) * 9
        self.step = 100
        self.fwd = case.pass_ == "fwd"
        self.twin_comparable = not self.fwd  # fwd: different random streams
        self.twin_name = ("torch.nn.functional.dropout (mask drawn too)" if self.fwd else
                          "torch.ops.aten.native_dropout_backward")

    def make_set(self, i):
        c = self.ctx
        if self.fwd:
            return {"x": c.rand(self.shape), "y": c.empty(self.shape),
                    "mask": c.empty(self.shape, self.cp.uint8)}
        mask = self.cb.dropout_mask(self.shape, self.keep, SEED, 0, self.VALIDATE_STEP + i)
        return {"dy": c.rand(self.shape), "mask": mask, "dx": c.empty(self.shape)}

    def ours(self, s, step=None):
        if not self.fwd:
            return call(self.cb.dropout_backward, s["dy"], s["mask"], self.keep, out=s["dx"])
        if step is None:
            self.step += 1
            step = self.step
        mask = call(self.cb.dropout_mask, self.shape, self.keep, SEED, 0, step, out=s["mask"])
        s["last_mask"] = mask
        return call(self.cb.dropout_forward, s["x"], mask, self.keep, out=s["y"])

    def validate(self, s):
        c, cp = self.ctx, self.cp
        row = numel(self.shape[1:])
        rows = min(self.shape[0], max(1, (1 << 18) // row))
        if not self.fwd:
            res = self.poisoned_run(s, s["dx"])
            want = self.ref.dropout_backward(c.host64(s["dy"][:rows]), cp.asnumpy(s["mask"][:rows]),
                                             self.keep)
            return check_close("dx", cp.asnumpy(res[:rows]), want, self.tol)
        s["mask"].fill(255)
        s["y"].fill(np.nan)
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
        if self.fwd:
            return {"x": self.ctx.to_torch(s["x"])}
        return {"dy": self.ctx.to_torch(s["dy"]), "mask": self.ctx.to_torch(s["mask"]).bool()}

    def twin(self, ts):
        torch = self.ctx.torch
        if self.fwd:
            return torch.nn.functional.dropout(ts["x"], p=1 - self.keep, training=True)
        return torch.ops.aten.native_dropout_backward(ts["dy"], ts["mask"], 1.0 / self.keep)


class RandomNormalBench(Bench):
    """N(0, 1) draws of an activation's shape (nrelu's noise), a new step every call."""
    ops = ("random_normal",)
    twin_name = "torch.Tensor.normal_ (its own Philox stream)"
    twin_comparable = False
    tol = TOL_ELEMENTWISE
    VALIDATE_STEP = 7

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.set_bytes = 4 * numel(self.shape)
        self.step = 100

    def make_set(self, i):
        return {"out": self.ctx.empty(self.shape)}

    def ours(self, s, step=None):
        if step is None:
            self.step += 1
            step = self.step
        return call(self.cb.random_normal, self.shape, SEED, 0, step, out=s["out"])

    def validate(self, s):
        s["out"].fill(np.nan)
        res = self.validated = self.ours(s, step=self.VALIDATE_STEP)
        self.cp.cuda.runtime.deviceSynchronize()
        require_finite(self.cp, res)
        mean, std = float(res.mean()), float(res.std())
        if abs(mean) > 6 / math.sqrt(res.size) + 1e-6 or abs(std - 1) > 0.01:
            raise ValidationFailed(f"draws: mean {mean:.4g}, std {std:.4g}, not N(0, 1)")
        rows = min(self.shape[0], max(1, (1 << 18) // numel(self.shape[1:])))
        want = self.ref.random_normal((rows,) + self.shape[1:], SEED, 0, self.VALIDATE_STEP)
        return check_close("draws", self.cp.asnumpy(res[:rows]), want, self.tol)

    def twin_setup(self, s):
        return {"out": self.ctx.to_torch(s["out"])}

    def twin(self, ts):
        return ts["out"].normal_()


class CombineBench(Bench):
    """eltsum, eltmax (fwd, bwd) and concat (fwd, bwd) of the case's inputs, along axis 1."""
    ops = ("eltsum_forward", "eltmax_forward", "eltmax_backward", "concat_forward",
           "concat_backward")
    tol = TOL_ELEMENTWISE

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape, self.inputs = tuple(self.p["shape"]), self.p["inputs"]
        self.coeffs = tuple(self.p["coeffs"])[:self.inputs]
        self.set_bytes = 4 * numel(self.shape) * (3 * self.inputs + 1)
        torch = ctx.torch
        self.twin_name = {
            "eltsum_forward": ("torch.add(alpha=)" if self.inputs == 2 and self.coeffs[0] == 1
                               else None),
            "eltmax_forward": "torch.maximum" if self.inputs == 2 else None,
            "concat_forward": "torch.cat",
            "concat_backward": ("torch.split_with_sizes_copy" if torch is None
                                or hasattr(torch, "split_with_sizes_copy") else None),
        }.get(self.op)

    def make_set(self, i):
        c = self.ctx
        if self.op == "concat_backward":
            wide = (self.shape[0], self.shape[1] * self.inputs) + self.shape[2:]
            return {"dy": c.rand(wide)}
        xs = [c.rand(self.shape) for _ in range(self.inputs)]
        s = {"xs": xs}
        if self.op == "eltmax_backward":
            s["y"] = self.cb.eltmax_forward(xs)
            s["dy"] = c.rand(self.shape)
        return s

    def call_with(self, backend, s):
        fn = getattr(backend, self.op)
        if self.op == "eltsum_forward":
            return fn(s["xs"], self.coeffs)
        if self.op == "eltmax_backward":
            return fn(s["xs"], s["y"], s["dy"])
        if self.op == "concat_backward":
            return fn(s["dy"], [self.shape[1]] * self.inputs)
        return fn(s["xs"])

    def ours(self, s):
        NO_OUT.add(self.op)  # elementwise.py's ops take no out=
        return self.call_with(self.cb, s)

    def validate(self, s):
        res = self.poisoned_run(s)  # these ops allocate their outputs: nothing to poison
        host = {k: ([self.ctx.host64(x) for x in v] if isinstance(v, list) else
                    self.ctx.host64(v)) for k, v in s.items()}
        got = ([self.cp.asnumpy(r) for r in res] if isinstance(res, list) else
               self.cp.asnumpy(res))
        return check_close(self.op, got, self.call_with(self.ref, host), self.tol)

    def twin_setup(self, s):
        to = self.ctx.to_torch
        return {k: [to(x) for x in v] if isinstance(v, list) else to(v) for k, v in s.items()}

    def twin(self, ts):
        torch = self.ctx.torch
        if self.op == "eltsum_forward":
            return torch.add(ts["xs"][0], ts["xs"][1], alpha=self.coeffs[1])
        if self.op == "eltmax_forward":
            return torch.maximum(*ts["xs"])
        if self.op == "concat_forward":
            return torch.cat(ts["xs"], dim=1)
        return torch.split_with_sizes_copy(ts["dy"], [self.shape[1]] * self.inputs, dim=1)
