"""NumPy reference for the neurons (OPS.md "neurons"), cuda-convnet's neurons.cuh semantics.

    kind      forward                 backward (dx = dy * f'(x))
    ident     x                       dy
    relu      max(0, x)               dy * (x > 0)
    logistic  1 / (1 + e^-x)          dy * y * (1 - y)
    tanh      a * tanh(b * x)         dy * a * b * (1 - tanh(b * x)^2)
    abs       |x|                     dy * (+1 if x > 0 else -1)
    softrelu  log(1 + e^x)            dy * logistic(x)
    brelu     min(a, max(0, x))       dy * (0 < x < a)
    drelu     x - a * tanh(x / a)     dy * tanh(x / a)^2          (a > 0)
    linear    a * x + b               dy * a
    square    x^2                     dy * 2 * x
    sqrt      sqrt(x)                 dy / (2 * y)
    log       log(a + x)              dy / (a + x)

logistic and softrelu are computed without overflow for any x (softrelu = max(x, 0) +
log1p(e^-|x|)). The noisy ReLU (nrelu) is not a kind here: its layer adds the noise drawn with
random_normal and then applies relu.

NEURON_KINDS lists the kinds; NEURON_PARAMS says which take parameters, in cfg order
(cuda-convnet writes them as tanh[a,b], brelu[a], drelu[a], linear[a,b], log[a]).
"""
import numpy as np

from .contract import NEURON_KINDS, NEURON_PARAMS

__all__ = ["NEURON_KINDS", "NEURON_PARAMS", "neuron_forward", "neuron_backward"]



def _logistic(x):
    """1 / (1 + e^-x) without overflow: e^-|x| is at most 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _check(op, x, kind, a, b, *others):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: x must be float32 or float64, got {x.dtype}")
    if kind not in NEURON_KINDS:
        raise ValueError(f"{op}: unknown neuron kind {kind!r}; known kinds: {', '.join(NEURON_KINDS)}")
    if kind == "drelu" and not a > 0:
        raise ValueError(f"{op}: drelu needs a > 0, got a={a!r}")
    arrays = []
    for name, arr in others:
        arr = np.asarray(arr, dtype=x.dtype)
        if arr.shape != x.shape:
            raise ValueError(f"{op}: {name} shape {arr.shape} differs from x shape {x.shape}")
        arrays.append(arr)
    return (x, *arrays, float(a), float(b))


def neuron_forward(x, kind, a=0.0, b=0.0):
    """y = f(x) for the neuron `kind` (see the module table)."""
    x, a, b = _check("neuron_forward", x, kind, a, b)
    if kind == "ident":
        return x.copy()
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "logistic":
        return _logistic(x)
    if kind == "tanh":
        return a * np.tanh(b * x)
    if kind == "abs":
        return np.abs(x)
    if kind == "softrelu":
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if kind == "brelu":
        return np.minimum(np.maximum(x, 0), a)
    if kind == "drelu":
        return x - a * np.tanh(x / a)
    if kind == "linear":
        return a * x + b
    if kind == "square":
        return x * x
    if kind == "sqrt":
        return np.sqrt(x)
    if kind == "log":
        return np.log(a + x)
    raise AssertionError(kind)  # every kind of NEURON_KINDS is handled above


def neuron_backward(x, y, dy, kind, a=0.0, b=0.0):
    """dx = dy * f'(x) for the neuron `kind`; y = neuron_forward(x, kind, a, b)."""
    x, y, dy, a, b = _check("neuron_backward", x, kind, a, b, ("y", y), ("dy", dy))
    one = x.dtype.type(1)
    if kind == "ident":
        return dy.copy()
    if kind == "relu":
        return dy * (x > 0)
    if kind == "logistic":
        return dy * y * (1 - y)
    if kind == "tanh":
        t = np.tanh(b * x)
        return dy * (a * b) * (1 - t * t)
    if kind == "abs":
        return dy * np.where(x > 0, one, -one)
    if kind == "softrelu":
        return dy * _logistic(x)
    if kind == "brelu":
        return dy * ((x > 0) & (x < a))
    if kind == "drelu":
        t = np.tanh(x / a)
        return dy * (t * t)
    if kind == "linear":
        return dy * a
    if kind == "square":
        return dy * 2 * x
    if kind == "sqrt":
        return dy / (2 * y)
    if kind == "log":
        return dy / (a + x)
    raise AssertionError(kind)
