"""NumPy reference for the weight update (OPS.md "update"), both in place.

sgd_update(w, v, g, eps, mom, wc), the paper's rule with momentum and weight decay:
    v <- mom * v - wc * eps * w - eps * g
    w <- w + v
evaluated in w's dtype in this order, each operation rounded to the dtype:
    v = mom * v;  v = v - (wc * eps) * w;  v = v - eps * g;  w = w + v
with the scalars mom, wc * eps (a float64 product) and eps rounded to the dtype.

maxnorm(w, wball, axis): the slices w[..., i, ...] along `axis` are the units' weight vectors
(fc weights (K, M): axis=1, unit i owns column i; conv filters (F, C, fs, fs): axis=0). A slice
whose L2 norm exceeds wball is multiplied by wball / norm; the others are left alone.
wball = 0 means no constraint (cuda-convnet's default) and changes nothing.
"""
import numpy as np

from . import contract

__all__ = ["sgd_update", "maxnorm"]


def _check_float(op, name, a):
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: {name} must be a float32 or float64 numpy array, got "
                         f"{type(a).__name__} {getattr(a, 'dtype', '')}")


def sgd_update(w, v, g, eps, mom, wc):
    """In place: v <- mom*v - wc*eps*w - eps*g; w <- w + v."""
    for name, a in (("w", w), ("v", v), ("g", g)):
        _check_float("sgd_update", name, a)
        if a.shape != w.shape or a.dtype != w.dtype:
            raise ValueError(f"sgd_update: {name} is {a.shape} {a.dtype}, w is {w.shape} {w.dtype}")
    dtype = w.dtype.type
    v *= dtype(mom)
    v -= dtype(float(wc) * float(eps)) * w
    v -= dtype(eps) * g
    w += v


def maxnorm(w, wball, axis):
    """In place: scale every unit's weights (the slices along `axis`) to L2 norm <= wball."""
    _check_float("maxnorm", "w", w)
    axis = contract.maxnorm_args("maxnorm", w, wball, axis)
    if wball == 0:
        return
    axis = int(axis) % w.ndim
    others = tuple(i for i in range(w.ndim) if i != axis)
    norms = np.sqrt(np.sum(w * w, axis=others, keepdims=True))
    wball = w.dtype.type(wball)
    w *= np.where(norms > wball, wball / np.where(norms > 0, norms, 1), w.dtype.type(1))
