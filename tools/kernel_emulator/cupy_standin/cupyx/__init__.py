"""cupyx of the convnet emulator's CuPy stand-in: pinned host buffers only.

Pinned memory is ordinary NumPy memory here (nothing is page-locked and copies from it are not
asynchronous); like the stand-in's device memory it starts out as float32 NaN (00 00 c0 7f).
"""
import math

import numpy as np

import cupy  # noqa: F401  (the stand-in: cupyx goes with it)

_NAN_WORD = 0x7FC00000


def empty_pinned(shape, dtype=float, order="C"):
    """A NumPy array standing for pinned host memory, NaN-poisoned."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    words = np.full(-(-nbytes // 4), _NAN_WORD, dtype=np.uint32)
    raw = words.view(np.uint8)[:nbytes]
    return np.ndarray(shape, dtype, buffer=raw, order=order)


def empty_like_pinned(a, dtype=None):
    return empty_pinned(a.shape, a.dtype if dtype is None else dtype)


def zeros_pinned(shape, dtype=float, order="C"):
    out = empty_pinned(shape, dtype, order)
    out[...] = 0
    return out


def zeros_like_pinned(a, dtype=None):
    return zeros_pinned(a.shape, a.dtype if dtype is None else dtype)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"cupyx.{name} is not provided by the convnet CPU emulator's CuPy "
                         "stand-in")
