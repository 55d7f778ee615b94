"""The CUDA backend's ops (all of OPS.md but conv/local, which live in cuda_conv.py).

Each function has its NumPy reference's name, arguments and layout, takes and returns CuPy
arrays (float32, C-contiguous, on the current device; a ValueError names the op otherwise),
allocates its outputs with cupy.empty and runs convnet._C's kernels on CuPy's current stream.
Ops that return arrays take an optional `out=` (an array of the result's shape and dtype, which
must not overlap the inputs; logreg_forward takes a tuple of three) that is written in full and
returned; the tests pass NaN-filled ones to catch unwritten elements.

Deviations from the reference, both to keep the GPU free of host round trips:
  - labels outside [0, K) are not checked (that would read them back to the host); every output
    of such a case is NaN instead.
  - the fc ops are cupy.matmul (cuBLAS through CuPy), not hand-written kernels.
"""
import math

import cupy
import numpy as np

from convnet import _C

from .numpy_neuron import NEURON_KINDS, NEURON_PARAMS
from .numpy_pool import pool_output_size

if _C is None or not _C.built_with_cuda:
    raise ImportError("convnet.backend.cuda_ops needs convnet._C built with CUDA "
                      "(pip install with nvcc on PATH)")
if tuple(_C.neuron_kinds) != tuple(NEURON_KINDS):
    raise ImportError(f"convnet._C's neuron kinds {_C.neuron_kinds} differ from the "
                      f"reference's {NEURON_KINDS}: rebuild the extension")

__all__ = [
    "NEURON_KINDS", "NEURON_PARAMS", "neuron_forward", "neuron_backward",
    "bias_forward", "bias_backward",
    "fc_forward", "fc_backward_data", "fc_backward_filter",
    "pool_output_size", "maxpool_forward", "maxpool_backward", "avgpool_forward",
    "avgpool_backward",
    "lrn_forward", "lrn_backward", "rnorm_forward", "rnorm_backward", "cnorm_forward",
    "cnorm_backward",
    "dropout_mask", "random_normal", "dropout_forward", "dropout_backward",
    "softmax_forward", "softmax_backward", "logreg_forward", "logreg_backward",
    "softmax_logreg_backward", "sum2_forward", "sum2_backward",
    "sgd_update", "maxnorm", "crops_to_float",
]

_F32 = np.dtype(np.float32)
_KIND_INDEX = {kind: i for i, kind in enumerate(NEURON_KINDS)}


# ----------------------------------------------------------------------------------------------
# argument checks and outputs


def _stream():
    return cupy.cuda.get_current_stream().ptr


def _array(op, name, a, dtype=_F32, ndim=None):
    """a, checked: a C-contiguous CuPy array of `dtype` on the current device."""
    if not isinstance(a, cupy.ndarray):
        raise ValueError(f"{op}: {name} must be a cupy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{op}: {name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (strides {a.strides} for shape "
                         f"{a.shape})")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {a.shape}")
    device = cupy.cuda.runtime.getDevice()
    if a.device.id != device:
        raise ValueError(f"{op}: {name} is on GPU {a.device.id} but GPU {device} is current")
    return a


def _same_shape(op, ref_name, ref, **others):
    for name, a in others.items():
        if a.shape != ref.shape:
            raise ValueError(f"{op}: {name} shape {a.shape} differs from {ref_name} shape "
                             f"{ref.shape}")


def _output(op, out, shape, inputs=(), dtype=_F32, name="out"):
    """`out` checked against the result's shape and dtype and for overlap with the inputs, or a
    new cupy.empty."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return cupy.empty(shape, dtype=dtype)
    _array(op, name, out, dtype)
    if out.shape != shape:
        raise ValueError(f"{op}: {name} has shape {out.shape}, the result has {shape}")
    for a in inputs:
        if out.nbytes and a.nbytes and (out.data.ptr < a.data.ptr + a.nbytes
                                        and a.data.ptr < out.data.ptr + out.nbytes):
            raise ValueError(f"{op}: {name} overlaps an input")
    return out


def _workspace(floats):
    return cupy.empty(int(floats), dtype=_F32)


def _int(op, name, value, least=None):
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{op}: {name} must be an integer, got {value!r}")
    value = int(value)
    if least is not None and value < least:
        raise ValueError(f"{op}: {name} must be >= {least}, got {value}")
    return value


def _prod(shape):
    return math.prod(int(s) for s in shape)


# ----------------------------------------------------------------------------------------------
# neurons


def _neuron_kind(op, kind, a):
    if kind not in _KIND_INDEX:
        raise ValueError(f"{op}: unknown neuron kind {kind!r}; known kinds: "
                         f"{', '.join(NEURON_KINDS)}")
    if kind == "drelu" and not a > 0:
        raise ValueError(f"{op}: drelu needs a > 0, got a={a!r}")
    return _KIND_INDEX[kind]


def neuron_forward(x, kind, a=0.0, b=0.0, out=None):
    """y = f(x) for the neuron `kind`."""
    op = "neuron_forward"
    index = _neuron_kind(op, kind, a)
    _array(op, "x", x)
    y = _output(op, out, x.shape, (x,))
    _C.neuron_forward(x.data.ptr, y.data.ptr, x.size, index, float(a), float(b), _stream())
    return y


def neuron_backward(x, y, dy, kind, a=0.0, b=0.0, out=None):
    """dx = dy * f'(x) for the neuron `kind`; y = neuron_forward(x, kind, a, b)."""
    op = "neuron_backward"
    index = _neuron_kind(op, kind, a)
    for name, arr in (("x", x), ("y", y), ("dy", dy)):
        _array(op, name, arr)
    _same_shape(op, "x", x, y=y, dy=dy)
    dx = _output(op, out, x.shape, (x, y, dy))
    _C.neuron_backward(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, x.size, index,
                       float(a), float(b), _stream())
    return dx


# ----------------------------------------------------------------------------------------------
# bias and fc


def bias_forward(y, b, out=None):
    """y + b, b indexing the leading non-batch axes of y: (F,), (F, OH, OW) or (M,) for fc."""
    op = "bias_forward"
    _array(op, "y", y)
    _array(op, "b", b)
    if b.ndim < 1 or y.ndim < 1 + b.ndim or y.shape[1:1 + b.ndim] != b.shape:
        raise ValueError(f"{op}: b has shape {b.shape}, which must equal y.shape[1:1 + b.ndim] "
                         f"for y of shape {y.shape}")
    result = _output(op, out, y.shape, (y, b))
    inner = _prod(y.shape[1 + b.ndim:])
    _C.bias_forward(y.data.ptr, b.data.ptr, result.data.ptr, y.shape[0], b.size, inner,
                    _stream())
    return result


def bias_backward(dy, bias_ndim, out=None):
    """db: dy summed over the batch and over the axes the bias is shared across."""
    op = "bias_backward"
    _array(op, "dy", dy)
    if isinstance(bias_ndim, bool) or int(bias_ndim) != bias_ndim or \
            not 1 <= bias_ndim <= dy.ndim - 1:
        raise ValueError(f"{op}: bias_ndim must be in 1..{dy.ndim - 1} for dy of shape "
                         f"{dy.shape}, got {bias_ndim!r}")
    bias_ndim = int(bias_ndim)
    shape = dy.shape[1:1 + bias_ndim]
    outer, nb, inner = dy.shape[0], _prod(shape), _prod(dy.shape[1 + bias_ndim:])
    db = _output(op, out, shape, (dy,))
    ws = _workspace(_C.reduce_workspace_floats(outer, nb, inner))
    _C.bias_backward(dy.data.ptr, db.data.ptr, ws.data.ptr, outer, nb, inner, _stream())
    return db


def _fc_pair(op, a, a_name, b, b_name, a_axis, b_axis):
    _array(op, a_name, a, ndim=2)
    _array(op, b_name, b, ndim=2)
    if a.shape[a_axis] != b.shape[b_axis]:
        raise ValueError(f"{op}: {a_name} of shape {a.shape} does not match {b_name} of shape "
                         f"{b.shape}")


def fc_forward(x, w, out=None):
    """y = x @ w, x (N, K), w (K, M)."""
    _fc_pair("fc_forward", x, "x", w, "w", 1, 0)
    y = _output("fc_forward", out, (x.shape[0], w.shape[1]), (x, w))
    return cupy.matmul(x, w, out=y)


def fc_backward_data(dy, w, out=None):
    """dx = dy @ w.T."""
    _fc_pair("fc_backward_data", dy, "dy", w, "w", 1, 1)
    dx = _output("fc_backward_data", out, (dy.shape[0], w.shape[0]), (dy, w))
    return cupy.matmul(dy, w.T, out=dx)


def fc_backward_filter(x, dy, out=None):
    """dw = x.T @ dy (summed over the batch)."""
    _fc_pair("fc_backward_filter", x, "x", dy, "dy", 0, 0)
    dw = _output("fc_backward_filter", out, (x.shape[1], dy.shape[1]), (x, dy))
    return cupy.matmul(x.T, dy, out=dw)


# ----------------------------------------------------------------------------------------------
# pooling


def _pool_args(op, img_size, size, stride, start, out_size):
    """Every window must have a positive size and overlap the image (as numpy_pool.py)."""
    size = _int(op, "size", size, 1)
    stride = _int(op, "stride", stride, 1)
    start = _int(op, "start", start)
    if len(out_size) != 2:
        raise ValueError(f"{op}: out_size must be two integers >= 1, got {out_size!r}")
    out_size = tuple(_int(op, "out_size", o, 1) for o in out_size)
    for img, out in zip(img_size, out_size):
        if start + size <= 0 or start + (out - 1) * stride >= img:
            raise ValueError(f"{op}: with start={start}, size={size}, stride={stride}, {out} "
                             f"outputs do not all overlap an image of {img} pixels")
    return size, stride, start, out_size


def maxpool_forward(x, size, stride, start, out_size, out=None):
    """y[n, c, oy, ox] = max of x over window (oy, ox) clipped to the image."""
    op = "maxpool_forward"
    _array(op, "x", x, ndim=4)
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = _pool_args(op, (H, W), size, stride, start, out_size)
    y = _output(op, out, (N, C, OH, OW), (x,))
    _C.maxpool_forward(x.data.ptr, y.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                       _stream())
    return y


def maxpool_backward(x, y, dy, size, stride, start, out=None):
    """dx: every input equal to its window's max receives that window's gradient."""
    op = "maxpool_backward"
    _array(op, "x", x, ndim=4)
    _array(op, "y", y, ndim=4)
    _array(op, "dy", dy, ndim=4)
    if dy.shape != y.shape or y.shape[:2] != x.shape[:2]:
        raise ValueError(f"{op}: x {x.shape}, y {y.shape} and dy {dy.shape} disagree")
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = _pool_args(op, (H, W), size, stride, start, y.shape[2:])
    dx = _output(op, out, x.shape, (x, y, dy))
    _C.maxpool_backward(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, N, C, H, W, OH, OW,
                        size, stride, start, _stream())
    return dx


def avgpool_forward(x, size, stride, start, out_size, out=None):
    """y[n, c, oy, ox] = mean of x over window (oy, ox) clipped to the image."""
    op = "avgpool_forward"
    _array(op, "x", x, ndim=4)
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = _pool_args(op, (H, W), size, stride, start, out_size)
    y = _output(op, out, (N, C, OH, OW), (x,))
    _C.avgpool_forward(x.data.ptr, y.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                       _stream())
    return y


def avgpool_backward(dy, img_size, size, stride, start, out=None):
    """dx: each window's gradient divided by its clipped count, spread over its pixels."""
    op = "avgpool_backward"
    _array(op, "dy", dy, ndim=4)
    if len(img_size) != 2:
        raise ValueError(f"{op}: img_size must be (H, W), got {img_size!r}")
    H, W = (_int(op, "img_size", s, 1) for s in img_size)
    N, C, OH, OW = dy.shape
    size, stride, start, _ = _pool_args(op, (H, W), size, stride, start, (OH, OW))
    dx = _output(op, out, (N, C, H, W), (dy,))
    _C.avgpool_backward(dy.data.ptr, dx.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                        _stream())
    return dx


# ----------------------------------------------------------------------------------------------
# response normalization


def _norm_args(op, x, size, alpha, beta, k, **others):
    _array(op, "x", x, ndim=4)
    for name, a in others.items():
        _array(op, name, a)
    _same_shape(op, "x", x, **others)
    size = _int(op, "size", size, 1)
    if not alpha >= 0:
        raise ValueError(f"{op}: alpha must be >= 0, got {alpha!r}")
    if not k > 0:
        raise ValueError(f"{op}: k (minDiv) must be > 0, got {k!r}")
    return (*x.shape, size, float(alpha), float(beta), float(k))


def _norm_forward(op, x, size, alpha, beta, k, out, needs_workspace):
    args = _norm_args(op, x, size, alpha, beta, k)
    y = _output(op, out, x.shape, (x,))
    launch = getattr(_C, op)
    if needs_workspace:
        ws = _workspace(_C.norm_workspace_floats(op, *args[:5]))
        launch(x.data.ptr, y.data.ptr, ws.data.ptr, *args, _stream())
    else:
        launch(x.data.ptr, y.data.ptr, *args, _stream())
    return y


def _norm_backward(op, x, y, dy, size, alpha, beta, k, out):
    args = _norm_args(op, x, size, alpha, beta, k, y=y, dy=dy)
    dx = _output(op, out, x.shape, (x, y, dy))
    ws = _workspace(_C.norm_workspace_floats(op, *args[:5]))
    getattr(_C, op)(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, ws.data.ptr, *args,
                    _stream())
    return dx


def lrn_forward(x, size, alpha, beta, k, out=None):
    """Cross-map: y = x * (k + alpha * sum_{c' in win(c)} x_c'^2)^-beta."""
    return _norm_forward("lrn_forward", x, size, alpha, beta, k, out, needs_workspace=False)


def lrn_backward(x, y, dy, size, alpha, beta, k, out=None):
    """dx of lrn_forward."""
    return _norm_backward("lrn_backward", x, y, dy, size, alpha, beta, k, out)


def rnorm_forward(x, size, alpha, beta, k, out=None):
    """Same-map response normalization over a size x size window of each map."""
    return _norm_forward("rnorm_forward", x, size, alpha, beta, k, out, needs_workspace=False)


def rnorm_backward(x, y, dy, size, alpha, beta, k, out=None):
    """dx of rnorm_forward."""
    return _norm_backward("rnorm_backward", x, y, dy, size, alpha, beta, k, out)


def cnorm_forward(x, size, alpha, beta, k, out=None):
    """Contrast normalization: rnorm with x^2 replaced by (x - window mean)^2."""
    return _norm_forward("cnorm_forward", x, size, alpha, beta, k, out, needs_workspace=True)


def cnorm_backward(x, y, dy, size, alpha, beta, k, out=None):
    """Exact dx of cnorm_forward (including the path through the window means)."""
    return _norm_backward("cnorm_backward", x, y, dy, size, alpha, beta, k, out)


# ----------------------------------------------------------------------------------------------
# random numbers and dropout


def _stream_args(op, shape, seed, layer, step):
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    shape = tuple(_int(op, "shape", s, 0) for s in shape)
    size = _prod(shape)
    if size > 2**34:
        raise ValueError(f"{op}: arrays are limited to 2^34 elements, got {size}")
    for name, value, limit in (("seed", seed, 2**64), ("layer", layer, 2**32),
                               ("step", step, 2**32)):
        if not 0 <= _int(op, name, value) < limit:
            raise ValueError(f"{op}: {name} must be an integer in [0, {limit}), got {value!r}")
    return shape, size, int(seed), int(layer), int(step)


def dropout_mask(shape, keep, seed, layer, step, out=None):
    """uint8 mask of `shape`: 1 where the Philox word < floor(keep * 2^32) (philox.py)."""
    op = "dropout_mask"
    shape, size, seed, layer, step = _stream_args(op, shape, seed, layer, step)
    if not 0 < keep <= 1:
        raise ValueError(f"{op}: keep must be in (0, 1], got {keep!r}")
    mask = _output(op, out, shape, dtype=np.uint8)
    _C.dropout_mask(mask.data.ptr, size, float(keep), seed, layer, step, _stream())
    return mask


def random_normal(shape, seed, layer, step, out=None):
    """float32 N(0, 1) draws of `shape`, Box-Muller on Philox word pairs (philox.py)."""
    op = "random_normal"
    shape, size, seed, layer, step = _stream_args(op, shape, seed, layer, step)
    result = _output(op, out, shape)
    _C.random_normal(result.data.ptr, size, seed, layer, step, _stream())
    return result


def _dropout(op, name, a, mask, keep, out):
    _array(op, name, a)
    _array(op, "mask", mask, dtype=np.uint8)
    if mask.shape != a.shape:
        raise ValueError(f"{op}: mask shape {mask.shape} differs from {name} shape {a.shape}")
    if not 0 < keep <= 1:
        raise ValueError(f"{op}: keep must be in (0, 1], got {keep!r}")
    result = _output(op, out, a.shape, (a, mask))
    getattr(_C, op)(a.data.ptr, mask.data.ptr, result.data.ptr, a.size, float(keep), _stream())
    return result


def dropout_forward(x, mask, keep, out=None):
    """x * mask / keep."""
    return _dropout("dropout_forward", "x", x, mask, keep, out)


def dropout_backward(dy, mask, keep, out=None):
    """dy * mask / keep."""
    return _dropout("dropout_backward", "dy", dy, mask, keep, out)


# ----------------------------------------------------------------------------------------------
# softmax and costs


def _labels(op, labels, p):
    """labels as int32 (N,) on the device (converted when given another integer dtype)."""
    if not isinstance(labels, cupy.ndarray):
        raise ValueError(f"{op}: labels must be a cupy.ndarray, got {type(labels).__name__}")
    if labels.shape != (p.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{op}: labels must be integers of shape ({p.shape[0]},), got "
                         f"{labels.shape} {labels.dtype}")
    return cupy.ascontiguousarray(labels, dtype=np.int32)


def softmax_forward(x, out=None):
    """Row softmax of x (N, K), the row max subtracted first."""
    op = "softmax_forward"
    _array(op, "x", x, ndim=2)
    p = _output(op, out, x.shape, (x,))
    _C.softmax_forward(x.data.ptr, p.data.ptr, *x.shape, _stream())
    return p


def softmax_backward(p, dp, out=None):
    """dx = p * (dp - sum_row(dp * p))."""
    op = "softmax_backward"
    _array(op, "p", p, ndim=2)
    _array(op, "dp", dp)
    _same_shape(op, "p", p, dp=dp)
    dx = _output(op, out, p.shape, (p, dp))
    _C.softmax_backward(p.data.ptr, dp.data.ptr, dx.data.ptr, *p.shape, _stream())
    return dx


def logreg_forward(p, labels, topk=5, out=None):
    """Per case: (-log p[label], top-1 wrong, top-k wrong), each float32 (N,)."""
    op = "logreg_forward"
    _array(op, "p", p, ndim=2)
    labels = _labels(op, labels, p)
    topk = _int(op, "topk", topk, 1)
    outs = (None, None, None) if out is None else tuple(out)
    if len(outs) != 3:
        raise ValueError(f"{op}: out must be a tuple (nll, wrong1, wrongk), got {len(outs)} items")
    n = p.shape[0]
    nll, wrong1, wrongk = (_output(op, o, (n,), (p,), name=name)
                           for o, name in zip(outs, ("out[0]", "out[1]", "out[2]")))
    _C.logreg_forward(p.data.ptr, labels.data.ptr, nll.data.ptr, wrong1.data.ptr,
                      wrongk.data.ptr, *p.shape, topk, _stream())
    return nll, wrong1, wrongk


def logreg_backward(p, labels, scale, out=None):
    """dp = -scale / p[label] at each case's label, 0 elsewhere."""
    op = "logreg_backward"
    _array(op, "p", p, ndim=2)
    labels = _labels(op, labels, p)
    dp = _output(op, out, p.shape, (p,))
    _C.logreg_backward(p.data.ptr, labels.data.ptr, dp.data.ptr, *p.shape, float(scale),
                       _stream())
    return dp


def softmax_logreg_backward(p, labels, scale, out=None):
    """dx = scale * (p - onehot(label)), softmax and logreg backward fused."""
    op = "softmax_logreg_backward"
    _array(op, "p", p, ndim=2)
    labels = _labels(op, labels, p)
    dx = _output(op, out, p.shape, (p,))
    _C.softmax_logreg_backward(p.data.ptr, labels.data.ptr, dx.data.ptr, *p.shape, float(scale),
                               _stream())
    return dx


def _cases(op, x):
    _array(op, "x", x)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a batch axis, got shape {x.shape}")
    return x.shape[0], (x.size // x.shape[0] if x.shape[0] else 0)


def sum2_forward(x, out=None):
    """Per case 0.5 * sum(x^2) over every axis but the first."""
    op = "sum2_forward"
    n, d = _cases(op, x)
    result = _output(op, out, (n,), (x,))
    ws = _workspace(_C.reduce_workspace_floats(1, n, d))
    _C.sum2_forward(x.data.ptr, result.data.ptr, ws.data.ptr, n, d, _stream())
    return result


def sum2_backward(x, scale, out=None):
    """scale * x."""
    op = "sum2_backward"
    _cases(op, x)
    result = _output(op, out, x.shape, (x,))
    _C.sum2_backward(x.data.ptr, result.data.ptr, x.size, float(scale), _stream())
    return result


# ----------------------------------------------------------------------------------------------
# update, in place


def sgd_update(w, v, g, eps, mom, wc):
    """In place: v <- mom*v - wc*eps*w - eps*g; w <- w + v (numpy_update.py's rounding)."""
    op = "sgd_update"
    for name, a in (("w", w), ("v", v), ("g", g)):
        _array(op, name, a)
    _same_shape(op, "w", w, v=v, g=g)
    _C.sgd_update(w.data.ptr, v.data.ptr, g.data.ptr, w.size, float(eps), float(mom),
                  float(wc) * float(eps), _stream())


def maxnorm(w, wball, axis):
    """In place: scale every unit's weights (the slices along `axis`) to L2 norm <= wball."""
    op = "maxnorm"
    _array(op, "w", w)
    if not wball >= 0:
        raise ValueError(f"{op}: wball must be >= 0, got {wball!r}")
    if isinstance(axis, bool) or int(axis) != axis or not -w.ndim <= axis < w.ndim:
        raise ValueError(f"{op}: axis {axis!r} is out of range for a {w.ndim}-d array")
    if wball == 0:
        return
    axis = int(axis) % w.ndim
    outer, units, inner = _prod(w.shape[:axis]), w.shape[axis], _prod(w.shape[axis + 1:])
    ws = _workspace(_C.maxnorm_workspace_floats(outer, units, inner))
    _C.maxnorm(w.data.ptr, ws.data.ptr, outer, units, inner, float(wball), _stream())


# ----------------------------------------------------------------------------------------------
# image staging


def crops_to_float(crops, mean, shift, out=None):
    """float32 (N, 3, h, w) = RGB of crops (uint8 RGBX (N, h, w, 4)) - mean (3, h, w) + shift
    (N, 3): the GPU twin of convnet.imagedata.to_float, equal to it bit for bit."""
    op = "crops_to_float"
    _array(op, "crops", crops, dtype=np.uint8, ndim=4)
    n, h, w, channels = crops.shape
    if channels != 4:
        raise ValueError(f"{op}: crops must be RGBX (N, h, w, 4), got shape {crops.shape}")
    _array(op, "mean", mean)
    _array(op, "shift", shift)
    if mean.shape != (3, h, w) or shift.shape != (n, 3):
        raise ValueError(f"{op}: mean {mean.shape} and shift {shift.shape} must be (3, {h}, {w}) "
                         f"and ({n}, 3) for crops of shape {crops.shape}")
    x = _output(op, out, (n, 3, h, w), (crops, mean, shift))
    _C.crops_to_float(crops.data.ptr, mean.data.ptr, shift.data.ptr, x.data.ptr, n, h, w,
                      _stream())
    return x
