"""cupy.ndarray of the emulator: a NumPy view over guarded "device" memory (see _emu.py).

Not a numpy.ndarray subclass: NumPy refuses it (`__array__` raises CuPy's TypeError), a
numpy.ndarray operand in an operator or ufunc is a TypeError, and NumPy functions and ufuncs
applied to it return stand-in arrays (`__array_function__`, `__array_ufunc__`). Computations
run in NumPy on the views; their results are copied into fresh guarded allocations on the
current device, while views (slices, reshape, transpose, ...) share their parent's memory.
"""
import math
import warnings
import weakref

import numpy as np

from . import _emu
from ._util import PerformanceWarning
from .cuda.device import Device
from .cuda.memory import MemoryPointer

OVERRIDES = {}  # numpy name -> the cupy function __array_function__ calls (set by cupy/__init__)


# ---------------------------------------------------------------------------- to and from NumPy

def _unwrap(x, seen, device=None):
    """Stand-in arrays -> their NumPy views (recorded in `seen`); numpy.ndarray -> TypeError."""
    if isinstance(x, ndarray):
        seen[id(x._a)] = x
        if device is not None and x._alloc.device_id != device:
            warnings.warn(f"The device where the array resides ({x._alloc.device_id}) is "
                          f"different from the current device ({device}). Peer access has been "
                          "activated automatically.", PerformanceWarning, stacklevel=4)
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    if type(x) in (list, tuple):
        return type(x)(_unwrap(i, seen, device) for i in x)
    return x


def _wrap(r, seen):
    """NumPy results -> stand-ins: an input's own view -> that input, views of device memory ->
    views, anything else computed (arrays, NumPy scalars) -> a copy on the current device."""
    if isinstance(r, np.ndarray):
        hit = seen.get(id(r))
        if hit is not None and hit._a is r:
            return hit
        alloc = _emu.allocation_of(r)
        return ndarray._make(r, alloc) if alloc is not None else to_device(r)
    if isinstance(r, np.generic):
        return to_device(np.asarray(r))
    if isinstance(r, (list, tuple)):
        items = [_wrap(i, seen) for i in r]
        return type(r)(*items) if hasattr(r, "_fields") else type(r)(items)
    return r


def call(func, args, kwargs, check_device=True):
    """func (a NumPy callable) on the NumPy views of the arguments, the results wrapped."""
    seen = {}
    device = _emu.current_device() if check_device else None
    a = _unwrap(tuple(args), seen, device)
    k = {key: _unwrap(v, seen, device) for key, v in kwargs.items()}
    return _wrap(func(*a, **k), seen)


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "OUSVMm" or dtype.fields is not None:
        raise ValueError(f"Unsupported dtype {dtype}")
    return dtype


def new(shape, dtype=float, order="C"):
    """A fresh (NaN-poisoned) array on the current device."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    dtype = _check_dtype(dtype)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    alloc = _emu.Allocation(math.prod(shape) * dtype.itemsize)
    order = "F" if order == "F" else "C"
    return ndarray._make(_emu.numpy_view(alloc, shape, dtype, order=order), alloc)


def _layout(a, order):
    if order == "F" or (order in ("K", "A", None) and a.flags.f_contiguous
                        and not a.flags.c_contiguous):
        return "F"
    return "C"


def to_device(host, dtype=None, order="K"):
    """A copy of host data (a NumPy array, scalar or nested sequence) on the current device."""
    host = np.asarray(host, dtype=dtype)
    out = new(host.shape, host.dtype, _layout(host, order))
    np.copyto(out._a, host, casting="unsafe")
    return out


# ---------------------------------------------------------------------------- the array

class Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, c, f, own):
        self.c_contiguous, self.f_contiguous, self.owndata = c, f, own

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[key]

    def __repr__(self):
        return "\n".join(f"  {k.upper()} : {getattr(self, k)}" for k in self.__slots__)


def _method(name, check_device=True):
    np_method = getattr(np.ndarray, name)

    def method(self, *args, **kwargs):
        return call(np_method, (self, *args), kwargs, check_device)

    method.__name__ = name
    method.__doc__ = f"ndarray.{name}, as NumPy's (computed in NumPy on the host view)."
    return method


def _binary(ufunc, reflected=False, inplace=False):
    def op(self, other):
        if isinstance(other, (list, tuple)):
            raise TypeError(f"Unsupported type {type(other)}")
        if not isinstance(other, (ndarray, np.ndarray, int, float, complex, np.generic)):
            return NotImplemented
        if inplace:
            return call(ufunc, (self, other), {"out": self})
        return call(ufunc, (other, self) if reflected else (self, other), {})
    return op


def _unary(ufunc):
    return lambda self: call(ufunc, (self,), {})


class ndarray:
    """ndarray(shape, dtype=float, memptr=None, strides=None, order='C')."""

    __slots__ = ("_a", "_alloc", "_base", "__weakref__")
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is None:
            made = new(shape, dtype, order)
            self._a, self._alloc, self._base = made._a, made._alloc, None
            self._alloc.owner = weakref.ref(self)
            return
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        alloc = memptr.mem
        self._a = _emu.numpy_view(alloc, shape, _check_dtype(dtype), strides,
                                  memptr.ptr - alloc.ptr if alloc.nbytes else 0, order)
        self._alloc = alloc
        owner = alloc.owner() if alloc.owner is not None else None
        self._base = owner

    @classmethod
    def _make(cls, view, alloc):
        """The stand-in for `view` (a NumPy array over alloc): alloc's owner when it has none."""
        self = object.__new__(cls)
        self._a, self._alloc = view, alloc
        owner = alloc.owner() if alloc.owner is not None else None
        if owner is None:
            alloc.owner, self._base = weakref.ref(self), None
        else:
            self._base = owner
        return self

    # ------------------------------------------------------------------ attributes

    @property
    def shape(self):
        return self._a.shape

    @shape.setter
    def shape(self, shape):
        r = self._a.reshape(shape)
        if _emu.allocation_of(r) is not self._alloc:
            raise AttributeError("Incompatible shape for in-place modification. Use "
                                 "`.reshape()` to make a copy with the desired shape.")
        self._a = r

    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    base = property(lambda self: self._base)
    T = property(lambda self: call(np.transpose, (self,), {}, False))
    real = property(lambda self: call(lambda a: a.real, (self,), {}, False))
    imag = property(lambda self: call(lambda a: a.imag, (self,), {}, False))

    @property
    def flags(self):
        f = self._a.flags
        own = self._base is None and self._alloc.owner is not None and \
            self._alloc.owner() is self
        return Flags(f.c_contiguous, f.f_contiguous, own)

    @property
    def data(self):
        """MemoryPointer of the first element: `.ptr` is its (host) address."""
        return MemoryPointer(self._alloc, self._a.__array_interface__["data"][0] -
                             self._alloc.ptr)

    @property
    def device(self):
        return Device(self._alloc.device_id)

    # ------------------------------------------------------------------ host transfers

    def get(self, stream=None, order="C", out=None, blocking=True):
        """A NumPy copy (into `out` when given)."""
        if out is None:
            return np.array(self._a, order=order, copy=True)
        if not isinstance(out, np.ndarray):
            raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
        if out.dtype != self.dtype or out.shape != self.shape:
            raise ValueError(f"out {out.shape} {out.dtype} does not match the array "
                             f"{self.shape} {self.dtype}")
        np.copyto(out, self._a)
        return out

    def set(self, arr, stream=None):
        """Copy the NumPy array `arr` (same dtype and shape) in."""
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if not (self._a.flags.c_contiguous or self._a.flags.f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        np.copyto(self._a, arr)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __reduce__(self):
        return to_device, (self.get(),)

    # ------------------------------------------------------------------ copies and views

    def copy(self, order="C"):
        """A copy on the current device."""
        out = new(self.shape, self.dtype, _layout(self._a, order))
        np.copyto(out._a, self._a)
        return out

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = _check_dtype(dtype)
        layout = _layout(self._a, order)
        if not copy and dtype == self.dtype and (order == "K" or getattr(
                self._a.flags, "c_contiguous" if layout == "C" else "f_contiguous")):
            return self
        out = new(self.shape, dtype, layout)
        np.copyto(out._a, self._a, casting=casting or "unsafe")
        return out

    def sort(self, axis=-1, kind=None, order=None):
        """In place; stable, as CuPy's radix sort (`kind` is ignored, as by CuPy)."""
        call(np.ndarray.sort, (self,), {"axis": axis, "kind": "stable"})

    def argsort(self, axis=-1, kind=None, order=None):
        """Stable, as CuPy's (`kind` is ignored, as by CuPy)."""
        return call(np.ndarray.argsort, (self,), {"axis": axis, "kind": "stable"})

    def fill(self, value):
        self._a.fill(value.item() if isinstance(value, ndarray) else value)

    def view(self, dtype=None, type=None):
        if type is not None and type is not ndarray:
            raise TypeError("the emulator's ndarray.view takes no other array type")
        return call(np.ndarray.view, (self,) if dtype is None else (self, dtype), {}, False)

    for _name in ("reshape", "transpose", "swapaxes", "squeeze", "ravel", "diagonal", "item",
                  "tolist", "tobytes"):
        locals()[_name] = _method(_name, check_device=False)
    for _name in ("flatten", "sum", "mean", "max", "min", "any", "all", "argmax", "argmin",
                  "cumsum", "cumprod", "prod", "std", "var", "clip", "round", "conj",
                  "conjugate", "dot", "nonzero", "take", "repeat", "partition", "argpartition",
                  "trace", "put", "searchsorted"):
        locals()[_name] = _method(_name)
    del _name

    # ------------------------------------------------------------------ indexing

    @staticmethod
    def _index(key):
        if isinstance(key, ndarray):
            return key._a
        if isinstance(key, (tuple, list)):
            return type(key)(k._a if isinstance(k, ndarray) else k for k in key)
        return key

    def __getitem__(self, key):
        key = self._index(key)
        r = self._a[key]
        if isinstance(r, np.generic):  # CuPy: a 0-d view, not a scalar
            r = self._a[(*key, Ellipsis) if isinstance(key, tuple) else (key, Ellipsis)]
        return _wrap(r, {})

    def __setitem__(self, key, value):
        self._a[self._index(key)] = value._a if isinstance(value, ndarray) else value

    def __len__(self):
        if not self.ndim:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if not self.ndim:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    # ------------------------------------------------------------------ conversions

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    # ------------------------------------------------------------------ NumPy protocols

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        override = OVERRIDES.get(func.__name__) if getattr(func, "__module__", None) == "numpy" \
            else None
        if override is not None:
            return override(*args, **kwargs)
        return call(func, args, kwargs)

    # ------------------------------------------------------------------ operators

    for _name, _ufunc in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                          ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                          ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
                          ("and", np.bitwise_and), ("or", np.bitwise_or),
                          ("xor", np.bitwise_xor), ("lshift", np.left_shift),
                          ("rshift", np.right_shift)):
        locals()[f"__{_name}__"] = _binary(_ufunc)
        locals()[f"__r{_name}__"] = _binary(_ufunc, reflected=True)
        locals()[f"__i{_name}__"] = _binary(_ufunc, inplace=True)
    del _name, _ufunc
    __divmod__, __rdivmod__ = _binary(np.divmod), _binary(np.divmod, True)
    __eq__, __ne__ = _binary(np.equal), _binary(np.not_equal)
    __lt__, __le__ = _binary(np.less), _binary(np.less_equal)
    __gt__, __ge__ = _binary(np.greater), _binary(np.greater_equal)
    __neg__, __pos__ = _unary(np.negative), _unary(np.positive)
    __abs__, __invert__ = _unary(np.absolute), _unary(np.invert)


ndarray.__module__ = "cupy"
