"""What every Bench family shares: the Context a worker hands each case, the calls, the checks
against the NumPy reference and the Bench base class (bench_cases.py runs them).

The Context takes its array module (`cupy`) and both backends as arguments, so the families run
unchanged with NumPy standing in for CuPy and the NumPy backend for the cuda one:
tests/test_bench_cases.py runs every family's make_set / ours / validate that way on the CPU.
"""
import inspect
import math

import numpy as np

from gpu_timing import cupy_flusher, torch_flusher

TOL = 1e-4             # float32 kernels against a float64 reference: far under this
TOL_REDUCTION = 2e-4   # conv bwd_filter sums 128 images x every position in float32
TOL_ELEMENTWISE = 1e-5
TILE_PERIOD = 3        # a batch reduction's set 0: images 0, 1, 2 repeated over the batch
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
        try:
            a = self.rng.standard_normal(tuple(shape), dtype=self.cupy.float32)
        except TypeError:  # the kernel emulator's CuPy stand-in draws float64 only
            a = self.rng.standard_normal(tuple(shape)).astype(self.cupy.float32)
        return a * np.float32(scale)

    def empty(self, shape, dtype=None):
        return self.cupy.empty(tuple(shape), dtype=dtype or self.cupy.float32)

    def labels(self, n, k):
        return self.rng.randint(0, k, size=n).astype(self.cupy.int32)

    def tiled(self, shape, period=TILE_PERIOD):
        """Random data of `shape` whose first axis repeats `period` distinct rows: a batch
        reduction's reference then needs only those rows."""
        p = min(period, shape[0])
        order = self.cupy.arange(shape[0]) % p
        return self.cupy.ascontiguousarray(self.rand((p,) + tuple(shape[1:]))[order])

    def host64(self, a):
        return self.cupy.asnumpy(a).astype(np.float64)

    def to_torch(self, a):
        try:
            return self.torch.from_dlpack(a)
        except Exception:
            return self.torch.as_tensor(a, device="cuda")


# ---- helpers ---------------------------------------------------------------------------------

_SIGNATURES = {}
NO_OUT = set()  # the functions called with out= that did not take it (cleared per case)


def _takes(fn, name):
    if fn not in _SIGNATURES:
        try:
            params = inspect.signature(fn).parameters.values()
            _SIGNATURES[fn] = ({p.name for p in params},
                               any(p.kind == p.VAR_KEYWORD for p in params))
        except (TypeError, ValueError):
            _SIGNATURES[fn] = (set(), False)
    names, var_keyword = _SIGNATURES[fn]
    return name in names or var_keyword


def call(fn, *args, out=None, **options):
    """fn(*args, out=out, **options) where fn takes out=, else fn(*args, **options); options
    that are None are left out (the NumPy backend has no algo=). Returns the result array."""
    options = {k: v for k, v in options.items() if v is not None}
    if out is not None:
        if _takes(fn, "out"):
            result = fn(*args, out=out, **options)
            return out if result is None else result
        NO_OUT.add(getattr(fn, "__name__", repr(fn)))
    return fn(*args, **options)


def flat(a):
    """One float64 vector of an array or of a list of arrays (ops with several outputs)."""
    if isinstance(a, (list, tuple)):
        return np.concatenate([flat(x) for x in a]) if a else np.zeros(0)
    return np.asarray(a, dtype=np.float64).ravel()


def rel_err(ours, ref):
    """||ours - ref|| / ||ref|| in float64 (host arrays or lists of them); inf when NaN."""
    if isinstance(ours, (list, tuple)) != isinstance(ref, (list, tuple)) or (
            isinstance(ours, (list, tuple)) and len(ours) != len(ref)):
        raise ValidationFailed("ours and the reference differ in their number of outputs")
    shapes = [np.shape(a) for a in (ours if isinstance(ours, (list, tuple)) else [ours])]
    want = [np.shape(a) for a in (ref if isinstance(ref, (list, tuple)) else [ref])]
    if shapes != want:
        raise ValidationFailed(f"shape {shapes}, reference {want}")
    ours, ref = flat(ours), flat(ref)
    den = np.linalg.norm(ref)
    err = float(np.linalg.norm(ours - ref) / (den if den > 0 else 1.0))
    return err if math.isfinite(err) else math.inf


def check_close(name, ours, ref, tol):
    err = rel_err(ours, ref)
    if not err <= tol:
        raise ValidationFailed(f"{name}: rel_err {err:.3g} > tol {tol:g}")
    return err


def require_finite(cupy, a, name="output"):
    for i, x in enumerate(a if isinstance(a, (list, tuple)) else [a]):
        bad = int(x.size - int(cupy.isfinite(x).sum()))
        if bad:
            which = f"{name}[{i}]" if isinstance(a, (list, tuple)) else name
            raise ValidationFailed(f"{which}: {bad} of {x.size} elements not finite "
                                   f"(poisoned with NaN before the run: unwritten?)")


def sample_images(n):
    return sorted({0, min(1, n - 1), n - 1})


def gpu_rel_err(cupy, ours, twin):
    """||ours - twin|| / ||ours|| on the GPU (twin: a torch tensor of ours' shape, or a list of
    them for an op with several outputs)."""
    ours = list(ours) if isinstance(ours, (list, tuple)) else [ours]
    twin = list(twin) if isinstance(twin, (list, tuple)) else [twin]
    if len(ours) != len(twin):
        raise RuntimeError(f"twin gave {len(twin)} outputs, ours {len(ours)}")
    num = den = 0.0
    for a, t in zip(ours, twin):
        t = t.detach().contiguous()
        if str(t.dtype) == "torch.bfloat16":  # a BF16 twin (tensor-core rows); DLPack wants FP32
            t = t.float()
        t = cupy.from_dlpack(t)
        if t.shape != a.shape:
            raise RuntimeError(f"twin output {tuple(t.shape)} != ours {tuple(a.shape)}")
        a, t = a.astype(cupy.float64), t.astype(cupy.float64)
        num += float(cupy.linalg.norm(a - t)) ** 2
        den += float(cupy.linalg.norm(a)) ** 2
    return math.sqrt(num) / (math.sqrt(den) if den > 0 else 1.0)


def tiled_reference(fn, n, x, dy, *args, period=TILE_PERIOD):
    """A batch reduction's reference on inputs made by Context.tiled: fn on each distinct image,
    weighted by how often it repeats in a batch of n (x, dy: host float64 arrays)."""
    p = min(period, n)
    return sum((n - j + p - 1) // p * fn(x[j:j + 1], dy[j:j + 1], *args) for j in range(p))


# ---- the base class --------------------------------------------------------------------------

class Bench:
    """One case's inputs and calls. A family lists the contract ops it times in `ops`, sets
    set_bytes (one input set's footprint) and defines make_set(i), ours(s) and validate(s);
    twin_name / twin_setup / twin (optional) describe its PyTorch twin. validate returns the
    relative error against the NumPy reference and leaves our output in self.validated."""
    ops = ()
    twin_name = None
    twin_comparable = True  # the twin computes the same numbers as ours (not random draws)
    tol = TOL

    def __init__(self, case, ctx):
        self.case, self.ctx, self.p = case, ctx, case.params
        self.cp, self.cb, self.ref = ctx.cupy, ctx.cb, ctx.ref
        self.op = case.contract_op

    def poisoned_run(self, s, *outputs):
        """Our op once on set s, its outputs filled with NaN first; the result, synchronised
        and required finite (every element written)."""
        for a in outputs:
            a.fill(np.nan)
        res = self.validated = self.ours(s)
        self.cp.cuda.runtime.deviceSynchronize()
        require_finite(self.cp, res)
        return res

    def check_images(self, res, want, name=None):
        """ours (device, full batch) against the reference on sample_images: `want(idx)`."""
        idx = sample_images(res.shape[0])
        got = self.cp.asnumpy(res[idx])
        return check_close(name or self.case.pass_, got, want(idx), self.tol)

    def out_of(self, s):
        """The array our validated run wrote (compared with the twin's)."""
        return self.validated

    def twin_setup(self, s):
        return None

    def twin(self, ts):
        raise NotImplementedError


def autograd_setup(ctx, forward, x, dy, out_shape):
    """The twin of a backward pass: forward(leaf) once, the graph kept for torch.autograd.grad."""
    leaf = ctx.to_torch(x).detach().requires_grad_(True)
    y = forward(leaf)
    if tuple(y.shape) != tuple(out_shape):
        raise RuntimeError(f"twin output {tuple(y.shape)} != ours {tuple(out_shape)}")
    return {"leaf": leaf, "y": y, "dy": ctx.to_torch(dy)}


def autograd_twin(torch, ts):
    return torch.autograd.grad(ts["y"], ts["leaf"], ts["dy"], retain_graph=True)[0]
