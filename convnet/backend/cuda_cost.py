"""The CUDA backend's softmax and costs (OPS.md "softmax and costs"), with cuda_ops.py's
conventions: CuPy arrays in and out, an optional `out=` written in full, convnet._C's kernels on
CuPy's current stream. Labels outside [0, K) are not checked (that would read them back to the
host); every output of such a case is NaN instead.
"""
import cupy
import numpy as np

from convnet import _C

from . import contract
from .cuda_arrays import array, output, stream, workspace

__all__ = ["softmax_forward", "softmax_backward", "logreg_forward", "logreg_backward",
           "softmax_logreg_backward", "sum2_forward", "sum2_backward"]


# ----------------------------------------------------------------------------------------------
# softmax and costs


def _labels(op, labels, p):
    """labels as int32 (N,) on the device (converted when given another integer dtype)."""
    if not isinstance(labels, cupy.ndarray):
        raise ValueError(f"{op}: labels must be a cupy.ndarray, got {type(labels).__name__}")
    contract.labels(op, labels, p)
    return cupy.ascontiguousarray(labels, dtype=np.int32)


def softmax_forward(x, out=None):
    """Row softmax of x (N, K), the row max subtracted first."""
    op = "softmax_forward"
    array(op, "x", x, ndim=2)
    p = output(op, out, x.shape, (x,))
    _C.softmax_forward(x.data.ptr, p.data.ptr, *x.shape, stream())
    return p


def softmax_backward(p, dp, out=None):
    """dx = p * (dp - sum_row(dp * p))."""
    op = "softmax_backward"
    array(op, "p", p, ndim=2)
    array(op, "dp", dp)
    contract.same_shape(op, "p", p, dp=dp)
    dx = output(op, out, p.shape, (p, dp))
    _C.softmax_backward(p.data.ptr, dp.data.ptr, dx.data.ptr, *p.shape, stream())
    return dx


def logreg_forward(p, labels, topk=5, out=None):
    """Per case: (-log p[label], top-1 wrong, top-k wrong), each float32 (N,)."""
    op = "logreg_forward"
    array(op, "p", p, ndim=2)
    labels = _labels(op, labels, p)
    topk = contract.integer(op, "topk", topk, 1)
    outs = (None, None, None) if out is None else tuple(out)
    if len(outs) != 3:
        raise ValueError(f"{op}: out must be a tuple (nll, wrong1, wrongk), got {len(outs)} items")
    n = p.shape[0]
    nll, wrong1, wrongk = (output(op, o, (n,), (p,), name=name)
                           for o, name in zip(outs, ("out[0]", "out[1]", "out[2]")))
    _C.logreg_forward(p.data.ptr, labels.data.ptr, nll.data.ptr, wrong1.data.ptr,
                      wrongk.data.ptr, *p.shape, topk, stream())
    return nll, wrong1, wrongk


def _label_gradient(op, p, labels, scale, out):
    array(op, "p", p, ndim=2)
    labels = _labels(op, labels, p)
    grad = output(op, out, p.shape, (p,))
    getattr(_C, op)(p.data.ptr, labels.data.ptr, grad.data.ptr, *p.shape, float(scale), stream())
    return grad


def logreg_backward(p, labels, scale, out=None):
    """dp = -scale / p[label] at each case's label, 0 elsewhere."""
    return _label_gradient("logreg_backward", p, labels, scale, out)


def softmax_logreg_backward(p, labels, scale, out=None):
    """dx = scale * (p - onehot(label)), softmax and logreg backward fused."""
    return _label_gradient("softmax_logreg_backward", p, labels, scale, out)


def _cases(op, x):
    array(op, "x", x)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a batch axis, got shape {x.shape}")
    return x.shape[0], (x.size // x.shape[0] if x.shape[0] else 0)


def sum2_forward(x, out=None):
    """Per case 0.5 * sum(x^2) over every axis but the first."""
    op = "sum2_forward"
    n, d = _cases(op, x)
    result = output(op, out, (n,), (x,))
    ws = workspace(_C.reduce_workspace_floats(1, n, d))
    _C.sum2_forward(x.data.ptr, result.data.ptr, ws.data.ptr, n, d, stream())
    return result


def sum2_backward(x, scale, out=None):
    """scale * x."""
    op = "sum2_backward"
    _cases(op, x)
    result = output(op, out, x.shape, (x,))
    _C.sum2_backward(x.data.ptr, result.data.ptr, x.size, float(scale), stream())
    return result
