"""A stand-in for CuPy that serves guarded, NaN-poisoned NumPy memory to the CPU-emulated
convnet._C (test equipment: see README.md; never for users).

Explicit here: the creation and transfer functions, the array-module queries and the memory
pools; any other name is NumPy's, wrapped (stand-in arguments -> NumPy views, results ->
stand-in arrays on the current device). Kernels written in Python (ElementwiseKernel,
RawKernel, ...) are not provided: kernels must live in csrc/ to be emulated.
"""
import builtins as _builtins
import functools
import sys
import types

import numpy as _np
from numpy import (bool_, complex64, complex128, dtype, e, finfo, float16, float32,  # noqa: F401
                   float64, iinfo, inf, int8, int16, int32, int64, intp, nan, newaxis, pi,
                   uint8, uint16, uint32, uint64, uintp)

from . import _emu, _util, cuda  # noqa: F401
from ._core import OVERRIDES as _OVERRIDES
from ._core import call as _call
from ._core import ndarray
from ._core import new as _new
from ._core import to_device as _to_device
from .cuda import memory as _memory

__version__ = "13.0.0+convnet-emulator"
_this = sys.modules[__name__]


# ---------------------------------------------------------------------------- creation

def empty(shape, dtype=float, order="C"):
    """Uninitialised: every byte of it is the NaN poison (00 00 c0 7f)."""
    return _new(shape, dtype, order)


def _filled(shape, value, dtype, order):
    a = _new(shape, dtype, order)
    a._a.fill(value.item() if isinstance(value, ndarray) else value)
    return a


def zeros(shape, dtype=float, order="C"):
    return _filled(shape, 0, dtype, order)


def ones(shape, dtype=float, order="C"):
    return _filled(shape, 1, dtype, order)


def full(shape, fill_value, dtype=None, order="C"):
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, ndarray) else \
            _np.array(fill_value).dtype
    return _filled(shape, fill_value, dtype, order)


def _like(a, dtype, order, shape):
    dtype = a.dtype if dtype is None else dtype
    shape = a.shape if shape is None else shape
    if order in ("K", "A"):
        flags = a.flags
        order = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
    return shape, dtype, order


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    return empty(*_like(prototype, dtype, order, shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return zeros(*_like(a, dtype, order, shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return ones(*_like(a, dtype, order, shape))


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    shape, dtype, order = _like(a, dtype, order, shape)
    return full(shape, fill_value, dtype, order)


def arange(start, stop=None, step=1, dtype=None):
    args = (start,) if stop is None else (start, stop, step)
    return _to_device(_np.arange(*args, dtype=dtype))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A device array: a copy of host data, or of a stand-in array unless copy is False and it
    is on the current device with the dtype asked for."""
    if isinstance(obj, ndarray):
        same = obj.device.id == _emu.current_device()
        a = obj.astype(obj.dtype if dtype is None else dtype, order=order or "K",
                       copy=bool(copy) or not same)
    else:
        if isinstance(obj, (list, tuple)) and _builtins.any(isinstance(x, ndarray) for x in obj):
            obj = [x.get() if isinstance(x, ndarray) else x for x in obj]
        a = _to_device(_np.asarray(obj, dtype=dtype), order=order or "K")
    if ndmin > a.ndim:
        a = a.reshape((1,) * (ndmin - a.ndim) + a.shape)
    return a


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return array(a, dtype, bool(copy), order or "K")


asanyarray = asarray


def _require(name, a):
    if not isinstance(a, ndarray):
        raise TypeError(f"{name}: argument 'a' has incorrect type (expected cupy.ndarray, got "
                        f"{type(a).__module__}.{type(a).__name__})")


def ascontiguousarray(a, dtype=None):
    """`a` itself when C-contiguous with that dtype, else a C-contiguous copy (CuPy arrays
    only, as CuPy's)."""
    _require("ascontiguousarray", a)
    dtype = a.dtype if dtype is None else _np.dtype(dtype)
    if a.flags.c_contiguous and dtype == a.dtype:
        return a
    return a.astype(dtype, order="C")


def asfortranarray(a, dtype=None):
    _require("asfortranarray", a)
    dtype = a.dtype if dtype is None else _np.dtype(dtype)
    if a.flags.f_contiguous and dtype == a.dtype:
        return a
    return a.astype(dtype, order="F")


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """A NumPy copy of a stand-in array; anything else through numpy.asarray."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    if out is None:
        return _np.asarray(a, order=order)
    out[...] = a
    return out


def get_array_module(*args):
    return _this if _builtins.any(isinstance(a, ndarray) for a in args) else _np


def array_equal(a1, a2, equal_nan=False):
    """A 0-d bool array, as CuPy's."""
    return _to_device(_np.bool_(_call(_np.array_equal, (a1, a2), {"equal_nan": equal_nan})))


def allclose(a, b, rtol=1.e-5, atol=1.e-8, equal_nan=False):
    """A 0-d bool array, as CuPy's."""
    return _to_device(_np.bool_(_call(_np.allclose, (a, b),
                                      {"rtol": rtol, "atol": atol, "equal_nan": equal_nan})))


def sort(a, axis=-1, kind=None):
    """Stable, as CuPy's radix sort (`kind` is ignored, as by CuPy)."""
    return _call(_np.sort, (a,), {"axis": axis, "kind": "stable"})


def argsort(a, axis=-1, kind=None):
    """Stable, as CuPy's radix sort (`kind` is ignored, as by CuPy)."""
    return _call(_np.argsort, (a,), {"axis": axis, "kind": "stable"})


def get_default_memory_pool():
    return _memory._default_pool


def get_default_pinned_memory_pool():
    return _memory._default_pinned_pool


_OVERRIDES.update(empty_like=empty_like, zeros_like=zeros_like, ones_like=ones_like,
                  full_like=full_like, array_equal=array_equal, allclose=allclose, sort=sort,
                  argsort=argsort)


# ---------------------------------------------------------------------------- not emulated

def _not_emulated(name):
    def refuse(*args, **kwargs):
        raise NotImplementedError(
            f"cupy.{name} is not provided by the convnet CPU emulator's CuPy stand-in: kernels "
            "must live in csrc/ (launched through convnet._C) to be emulated")
    refuse.__name__ = name
    return refuse


ElementwiseKernel, ReductionKernel, RawKernel, RawModule, fuse = (
    _not_emulated(n) for n in ("ElementwiseKernel", "ReductionKernel", "RawKernel",
                               "RawModule", "fuse"))


# ---------------------------------------------------------------------------- NumPy, wrapped

class _Ufunc:
    """A NumPy ufunc on stand-in arrays (numpy.ndarray arguments are a TypeError)."""

    def __init__(self, ufunc):
        self._ufunc, self.__name__ = ufunc, ufunc.__name__
        self.__doc__ = ufunc.__doc__

    def __call__(self, *args, **kwargs):
        return _call(self._ufunc, args, kwargs)

    def __getattr__(self, name):
        value = getattr(self._ufunc, name)
        if name in ("reduce", "accumulate", "reduceat", "outer", "at"):
            return functools.partial(_call_method, value)
        return value

    def __repr__(self):
        return f"<ufunc '{self.__name__}' (convnet emulator)>"


def _call_method(method, *args, **kwargs):
    return _call(method, args, kwargs)


def _function(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return _call(func, args, kwargs)
    return wrapper


class _Proxy:
    """An object of NumPy's (a random Generator) whose methods give stand-in arrays."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        return _wrap_numpy(getattr(self._obj, name), name)


def _wrap_numpy(obj, name):
    if isinstance(obj, _np.ufunc):
        return _Ufunc(obj)
    if isinstance(obj, type):
        if name in ("Generator", "RandomState"):
            return lambda *a, **k: _Proxy(obj(*a, **k))
        return obj
    if isinstance(obj, types.ModuleType):
        return _Submodule(obj)
    if callable(obj):
        if name == "default_rng":
            return lambda *a, **k: _Proxy(obj(*a, **k))
        return _function(obj)
    return obj


class _Submodule(types.ModuleType):
    """numpy.linalg, numpy.fft, numpy.random, numpy.testing, ... wrapped the same way."""

    def __init__(self, module):
        super().__init__(f"cupy.{module.__name__.split('.', 1)[-1]}")
        self._module = module

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _wrap_numpy(getattr(self._module, name), name)
        setattr(self, name, value)
        return value


for _name in ("concatenate", "stack", "vstack", "hstack", "where", "matmul", "dot", "isfinite",
              "isnan", "isinf", "abs", "absolute", "sqrt", "exp", "log", "maximum", "minimum",
              "partition", "take_along_axis", "cumsum", "nonzero",
              "broadcast_to", "sum", "mean", "max", "min", "amax", "amin", "any", "all",
              "argmax", "argmin", "clip", "copy", "reshape", "transpose", "squeeze", "split",
              "tanh", "square", "negative", "multiply", "add", "subtract", "divide", "power",
              "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
              "logical_and", "logical_or", "logical_not", "isclose", "einsum", "tensordot",
              "outer", "linspace", "eye", "identity", "tile", "repeat", "unique", "count_nonzero",
              "shares_memory", "may_share_memory", "ndim", "shape", "size", "result_type"):
    globals()[_name] = _wrap_numpy(getattr(_np, _name), _name)
del _name
linalg, fft, random, testing = (_Submodule(getattr(_np, n))
                                for n in ("linalg", "fft", "random", "testing"))


def __getattr__(name):
    """Any other NumPy name, wrapped (and kept)."""
    if name.startswith("__"):
        raise AttributeError(f"module 'cupy' has no attribute {name!r}")
    try:
        obj = getattr(_np, name)
    except AttributeError:
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (the convnet emulator's "
                             "stand-in wraps NumPy, which has none either)") from None
    value = _wrap_numpy(obj, name)
    globals()[name] = value
    return value
