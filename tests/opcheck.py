"""What the op tests (tests/test_<op>.py) share: one case list runs on both backends.

    @on_backends(CASES)
    def test_maxpool(backend, case, rng): ...

runs every case that is not `big` on the NumPy backend (the reference, checked against
numpy_direct's definitions and float64 gradients) and every case on the cuda backend (checked
against the reference), as tinygrad's early TestOps / TestOpsGPU(TestOps) ran one list on the CPU
and again on the GPU. The cuda params carry the `cuda` mark and are skipped without a GPU, CuPy
and convnet._C built with CUDA; on the CPU emulator (tools/kernel_emulator/run.py -m pytest -m
cuda) they run, `big` cases skipped there.

What the emulator cannot show, so only a GPU run of the cuda cases can: timing; the GPU
compiler's own output (tools/sass_lint.py guards one known miscompile and spills); races between
blocks or warps running at once; stream and event ordering (streams are no-ops there); real peer
copies, pinned memory and the driver; the GPU's own rounding in expf, tanhf and the like.

Here too: random inputs, the cuda side's device copies (optionally off 16-byte alignment),
NaN-poisoned outputs (an element a kernel never writes fails the comparison) and the bounds
checks, float32 against a float64 reference.
"""
import numpy as np
import pytest

import convnet

CUDA = convnet.cuda_available()
if CUDA:
    import cupy
    from convnet import _C
    from convnet.backend import cuda_backend as cu
else:
    cupy = cu = _C = None

NO_CUDA = "needs a GPU, CuPy and convnet._C built with CUDA"


def cuda_test(f):
    """A test of the cuda backend only: selected by -m cuda, skipped where there is none."""
    return pytest.mark.cuda(pytest.mark.skipif(not CUDA, reason=NO_CUDA)(f))


def _parts(case):
    if isinstance(case, type(pytest.param(0))):
        return case.values, list(case.marks), case.id
    return (case,), [], None


def on_backends(cases, ids=None, argnames="backend,case"):
    """parametrize(argnames) over (backend, case): the NumPy backend with each case that is not
    `big`, the cuda backend with every case (marked `cuda`, skipped without one). A case given as
    pytest.param(value, marks=...) keeps its marks; ids: a function of the case, or None."""
    params = []
    for backend in ("numpy", "cuda"):
        for i, case in enumerate(cases):
            values, marks, case_id = _parts(case)
            value = values[0] if len(values) == 1 else values
            if case_id is None:
                case_id = ids(value) if callable(ids) else str(i)
            big = any(m.name == "big" for m in marks)
            if backend == "numpy" and big:
                continue  # the reference's own checks on AlexNet-sized shapes would take minutes
            if backend == "cuda":
                marks = [*marks, pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason=NO_CUDA)]
            params.append(pytest.param(backend, value, marks=marks, id=f"{backend}-{case_id}"))
    return pytest.mark.parametrize(argnames, params)


def reference_cases(cases):
    """The cases the NumPy backend's own checks run on: those that are not `big`."""
    return [c for c in cases if not any(m.name == "big" for m in _parts(c)[1])]


# ----------------------------------------------------------------------------------------------
# inputs


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def distinct_values(rng, shape):
    """A random permutation of well separated values: no ties in any window."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) - 0.5


def memory_orders(a):
    """The NCHW array `a` in each memory order a caller may pass: C-contiguous, an NCHW view of
    (C, H, W, N) memory (what conv and pooling return), and a strided slice of a larger array."""
    chwn = np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    larger = np.zeros((a.shape[0], 2 * a.shape[1], *a.shape[2:]), dtype=a.dtype)
    larger[:, 1::2] = a
    return {"nchw": np.ascontiguousarray(a), "chwn": chwn, "strided": larger[:, 1::2]}


# ----------------------------------------------------------------------------------------------
# the cuda side: device arrays, poisoned outputs, bounds


def _offset_view(base, size, misaligned):
    """A C-contiguous slice of `size` elements of `base` (which holds size + 2) that starts off a
    16-byte boundary when `misaligned` (whatever the alignment of base itself)."""
    start = 0
    if misaligned:
        start = 1 if (base.data.ptr + base.itemsize) % 16 else 2
    return base[start:start + size]


def to_device(a, misaligned=False):
    """A float32 (or the given dtype) C-contiguous device copy; misaligned puts its first element
    off a 16-byte boundary (a C-contiguous slice of a larger buffer)."""
    a = np.ascontiguousarray(a)
    if not misaligned:
        return cupy.asarray(a)
    view = _offset_view(cupy.empty(a.size + 2, dtype=a.dtype), a.size, True).reshape(a.shape)
    view[...] = cupy.asarray(a)
    assert view.data.ptr % 16 != 0 and view.flags.c_contiguous
    return view


def poisoned(shape, dtype=np.float32, misaligned=False):
    """An output buffer full of NaN (0xAB for integer dtypes)."""
    size = int(np.prod(shape))
    base = cupy.empty(size + 2, dtype=dtype)
    base.fill(np.nan if np.dtype(dtype).kind == "f" else 0xAB)
    return _offset_view(base, size, misaligned).reshape(shape)


def host(a):
    return cupy.asnumpy(a)


def relative_error(got, want):
    """max|got - want| / max|want|; an all-zero reference (every window in the padding) must be
    matched exactly."""
    scale = float(np.max(np.abs(want), initial=0.0)) or 1.0
    return float(np.max(np.abs(got - want), initial=0.0)) / scale


def assert_close(got, want, rtol, atol=0.0, what=""):
    """|got - want| <= rtol |want| + atol (atol a scalar or an array), no NaN anywhere."""
    got = host(got) if CUDA and isinstance(got, cupy.ndarray) else np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert not np.isnan(got).any(), f"{what}: NaN in the output (an unwritten element?)"
    err = np.abs(got.astype(np.float64) - want)
    bound = rtol * np.abs(want) + atol
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {err.size} elements out of bounds; worst at "
                             f"{i}: got {got[i]!r}, want {want[i]!r}")


def assert_equal(got, want, what=""):
    got = host(got) if CUDA and isinstance(got, cupy.ndarray) else np.asarray(got)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    mismatch = got != want
    if np.issubdtype(got.dtype, np.floating):
        mismatch &= ~(np.isnan(got) & np.isnan(want))
        assert not np.isnan(got).any() or np.isnan(want).any(), f"{what}: NaN in the output"
    assert not mismatch.any(), (f"{what}: {mismatch.sum()} of {got.size} elements differ, first at "
                                f"{np.argwhere(mismatch)[0]}")
