"""The CUDA backend's ops (OPS.md but conv/local in cuda_conv.py, softmax and the costs in
cuda_cost.py, cuda-convnet2's ops in cuda_cc2.py).

Each function has its NumPy reference's name, arguments and layout, takes and returns CuPy
arrays (float32, C-contiguous, on the current device; a ValueError names the op otherwise),
allocates its outputs with cupy.empty and runs convnet._C's kernels on CuPy's current stream.
Ops that return arrays take an optional `out=` (an array of the result's shape and dtype, which
must not overlap the inputs; logreg_forward takes a tuple of three) that is written in full and
returned; the tests pass NaN-filled ones to catch unwritten elements.

The fc ops are cupy.matmul (cuBLAS through CuPy), not hand-written kernels.
"""
import math

import cupy
import numpy as np

from convnet import _C

from . import contract
from .contract import NEURON_KINDS, NEURON_PARAMS, pool_output_size
from .cuda_arrays import array, output, stream, workspace

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
    "sgd_update", "maxnorm", "crops_to_float",
]

_KIND_INDEX = {kind: i for i, kind in enumerate(NEURON_KINDS)}


# ----------------------------------------------------------------------------------------------
# argument checks and outputs


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
    array(op, "x", x)
    y = output(op, out, x.shape, (x,))
    _C.neuron_forward(x.data.ptr, y.data.ptr, x.size, index, float(a), float(b), stream())
    return y


def neuron_backward(x, y, dy, kind, a=0.0, b=0.0, out=None):
    """dx = dy * f'(x) for the neuron `kind`; y = neuron_forward(x, kind, a, b)."""
    op = "neuron_backward"
    index = _neuron_kind(op, kind, a)
    for name, arr in (("x", x), ("y", y), ("dy", dy)):
        array(op, name, arr)
    contract.same_shape(op, "x", x, y=y, dy=dy)
    dx = output(op, out, x.shape, (x, y, dy))
    _C.neuron_backward(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, x.size, index,
                       float(a), float(b), stream())
    return dx


# ----------------------------------------------------------------------------------------------
# bias and fc


def bias_forward(y, b, out=None):
    """y + b, b indexing the leading non-batch axes of y: (F,), (F, OH, OW) or (M,) for fc."""
    op = "bias_forward"
    array(op, "y", y)
    array(op, "b", b)
    contract.bias(op, y, b)
    result = output(op, out, y.shape, (y, b))
    inner = _prod(y.shape[1 + b.ndim:])
    _C.bias_forward(y.data.ptr, b.data.ptr, result.data.ptr, y.shape[0], b.size, inner,
                    stream())
    return result


def bias_backward(dy, bias_ndim, out=None):
    """db: dy summed over the batch and over the axes the bias is shared across."""
    op = "bias_backward"
    array(op, "dy", dy)
    bias_ndim = contract.bias_ndim(op, dy, bias_ndim)
    shape = dy.shape[1:1 + bias_ndim]
    outer, nb, inner = dy.shape[0], _prod(shape), _prod(dy.shape[1 + bias_ndim:])
    db = output(op, out, shape, (dy,))
    ws = workspace(_C.reduce_workspace_floats(outer, nb, inner))
    _C.bias_backward(dy.data.ptr, db.data.ptr, ws.data.ptr, outer, nb, inner, stream())
    return db


def _fc_pair(op, a, a_name, b, b_name, a_axis, b_axis):
    array(op, a_name, a)
    array(op, b_name, b)
    contract.fc_pair(op, a, a_name, b, b_name, a_axis, b_axis)


def fc_forward(x, w, out=None):
    """y = x @ w, x (N, K), w (K, M)."""
    _fc_pair("fc_forward", x, "x", w, "w", 1, 0)
    y = output("fc_forward", out, (x.shape[0], w.shape[1]), (x, w))
    return cupy.matmul(x, w, out=y)


def fc_backward_data(dy, w, out=None):
    """dx = dy @ w.T."""
    _fc_pair("fc_backward_data", dy, "dy", w, "w", 1, 1)
    dx = output("fc_backward_data", out, (dy.shape[0], w.shape[0]), (dy, w))
    return cupy.matmul(dy, w.T, out=dx)


def fc_backward_filter(x, dy, out=None):
    """dw = x.T @ dy (summed over the batch)."""
    _fc_pair("fc_backward_filter", x, "x", dy, "dy", 0, 0)
    dw = output("fc_backward_filter", out, (x.shape[1], dy.shape[1]), (x, dy))
    return cupy.matmul(x.T, dy, out=dw)


# ----------------------------------------------------------------------------------------------
# pooling


def maxpool_forward(x, size, stride, start, out_size, out=None):
    """y[n, c, oy, ox] = max of x over window (oy, ox) clipped to the image."""
    op = "maxpool_forward"
    array(op, "x", x, ndim=4)
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = contract.pool_windows(op, (H, W), size, stride, start, out_size)
    y = output(op, out, (N, C, OH, OW), (x,))
    _C.maxpool_forward(x.data.ptr, y.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                       stream())
    return y


def maxpool_backward(x, y, dy, size, stride, start, out=None):
    """dx: every input equal to its window's max receives that window's gradient."""
    op = "maxpool_backward"
    array(op, "x", x, ndim=4)
    array(op, "y", y, ndim=4)
    array(op, "dy", dy, ndim=4)
    contract.maxpool_grads(op, x, y, dy)
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = contract.pool_windows(op, (H, W), size, stride, start, y.shape[2:])
    dx = output(op, out, x.shape, (x, y, dy))
    _C.maxpool_backward(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, N, C, H, W, OH, OW,
                        size, stride, start, stream())
    return dx


def avgpool_forward(x, size, stride, start, out_size, out=None):
    """y[n, c, oy, ox] = mean of x over window (oy, ox) clipped to the image."""
    op = "avgpool_forward"
    array(op, "x", x, ndim=4)
    N, C, H, W = x.shape
    size, stride, start, (OH, OW) = contract.pool_windows(op, (H, W), size, stride, start, out_size)
    y = output(op, out, (N, C, OH, OW), (x,))
    _C.avgpool_forward(x.data.ptr, y.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                       stream())
    return y


def avgpool_backward(dy, img_size, size, stride, start, out=None):
    """dx: each window's gradient divided by its clipped count, spread over its pixels."""
    op = "avgpool_backward"
    array(op, "dy", dy, ndim=4)
    if len(img_size) != 2:
        raise ValueError(f"{op}: img_size must be (H, W), got {img_size!r}")
    H, W = (contract.integer(op, "img_size", s, 1) for s in img_size)
    N, C, OH, OW = dy.shape
    size, stride, start, _ = contract.pool_windows(op, (H, W), size, stride, start, (OH, OW))
    dx = output(op, out, (N, C, H, W), (dy,))
    _C.avgpool_backward(dy.data.ptr, dx.data.ptr, N, C, H, W, OH, OW, size, stride, start,
                        stream())
    return dx


# ----------------------------------------------------------------------------------------------
# response normalization


def _norm_args(op, x, size, alpha, beta, k, **others):
    array(op, "x", x, ndim=4)
    for name, a in others.items():
        array(op, name, a)
    contract.same_shape(op, "x", x, **others)
    size = contract.norm_params(op, size, alpha, k)
    return (*x.shape, size, float(alpha), float(beta), float(k))


def _norm_forward(op, x, size, alpha, beta, k, out, needs_workspace):
    args = _norm_args(op, x, size, alpha, beta, k)
    y = output(op, out, x.shape, (x,))
    launch = getattr(_C, op)
    if needs_workspace:
        ws = workspace(_C.norm_workspace_floats(op, *args[:5]))
        launch(x.data.ptr, y.data.ptr, ws.data.ptr, *args, stream())
    else:
        launch(x.data.ptr, y.data.ptr, *args, stream())
    return y


def _norm_backward(op, x, y, dy, size, alpha, beta, k, out):
    args = _norm_args(op, x, size, alpha, beta, k, y=y, dy=dy)
    dx = output(op, out, x.shape, (x, y, dy))
    ws = workspace(_C.norm_workspace_floats(op, *args[:5]))
    getattr(_C, op)(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, ws.data.ptr, *args,
                    stream())
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
    shape = tuple(contract.integer(op, "shape", s, 0) for s in shape)
    size = _prod(shape)
    if size > 2**34:
        raise ValueError(f"{op}: arrays are limited to 2^34 elements, got {size}")
    for name, value, limit in (("seed", seed, 2**64), ("layer", layer, 2**32),
                               ("step", step, 2**32)):
        if not 0 <= contract.integer(op, name, value) < limit:
            raise ValueError(f"{op}: {name} must be an integer in [0, {limit}), got {value!r}")
    return shape, size, int(seed), int(layer), int(step)


def _offset(op, offset, size):
    offset = contract.integer(op, "offset", offset, 0)
    if offset > 2**34 - size:
        raise ValueError(f"{op}: streams are limited to 2^34 elements, got offset {offset} + "
                         f"{size}")
    return offset


def dropout_mask(shape, keep, seed, layer, step, offset=0, out=None):
    """uint8 mask of `shape`: 1 where the Philox word < floor(keep * 2^32) (philox.py);
    elements offset.. of the stream."""
    op = "dropout_mask"
    shape, size, seed, layer, step = _stream_args(op, shape, seed, layer, step)
    keep, offset = contract.keep(op, keep), _offset(op, offset, size)
    mask = output(op, out, shape, dtype=np.uint8)
    _C.dropout_mask(mask.data.ptr, size, offset, float(keep), seed, layer, step, stream())
    return mask


def random_normal(shape, seed, layer, step, offset=0, out=None):
    """float32 N(0, 1) draws of `shape`, Box-Muller on Philox word pairs (philox.py);
    elements offset.. of the stream."""
    op = "random_normal"
    shape, size, seed, layer, step = _stream_args(op, shape, seed, layer, step)
    offset = _offset(op, offset, size)
    result = output(op, out, shape)
    _C.random_normal(result.data.ptr, size, offset, seed, layer, step, stream())
    return result


def _dropout(op, name, a, mask, keep, out):
    array(op, name, a)
    array(op, "mask", mask, dtype=np.uint8)
    contract.mask(op, name, a, mask)
    keep = contract.keep(op, keep)
    result = output(op, out, a.shape, (a, mask))
    getattr(_C, op)(a.data.ptr, mask.data.ptr, result.data.ptr, a.size, float(keep), stream())
    return result


def dropout_forward(x, mask, keep, out=None):
    """x * mask / keep."""
    return _dropout("dropout_forward", "x", x, mask, keep, out)


def dropout_backward(dy, mask, keep, out=None):
    """dy * mask / keep."""
    return _dropout("dropout_backward", "dy", dy, mask, keep, out)


# ----------------------------------------------------------------------------------------------
# update, in place


def sgd_update(w, v, g, eps, mom, wc):
    """In place: v <- mom*v - wc*eps*w - eps*g; w <- w + v (numpy_update.py's rounding)."""
    op = "sgd_update"
    for name, a in (("w", w), ("v", v), ("g", g)):
        array(op, name, a)
    contract.same_shape(op, "w", w, v=v, g=g)
    _C.sgd_update(w.data.ptr, v.data.ptr, g.data.ptr, w.size, float(eps), float(mom),
                  float(wc) * float(eps), stream())


def maxnorm(w, wball, axis):
    """In place: scale every unit's weights (the slices along `axis`) to L2 norm <= wball."""
    op = "maxnorm"
    array(op, "w", w)
    axis = contract.maxnorm_args(op, w, wball, axis)
    if wball == 0:
        return
    axis = int(axis) % w.ndim
    outer, units, inner = _prod(w.shape[:axis]), w.shape[axis], _prod(w.shape[axis + 1:])
    ws = workspace(_C.maxnorm_workspace_floats(outer, units, inner))
    _C.maxnorm(w.data.ptr, ws.data.ptr, outer, units, inner, float(wball), stream())


# ----------------------------------------------------------------------------------------------
# image staging


def crops_to_float(crops, mean, shift, out=None):
    """float32 (N, 3, h, w) = RGB of crops (uint8 RGBX (N, h, w, 4)) - mean (3, h, w) + shift
    (N, 3): the GPU twin of convnet.data.image_provider.to_float, equal to it bit for bit."""
    op = "crops_to_float"
    array(op, "crops", crops, dtype=np.uint8, ndim=4)
    n, h, w, channels = crops.shape
    if channels != 4:
        raise ValueError(f"{op}: crops must be RGBX (N, h, w, 4), got shape {crops.shape}")
    array(op, "mean", mean)
    array(op, "shift", shift)
    if mean.shape != (3, h, w) or shift.shape != (n, 3):
        raise ValueError(f"{op}: mean {mean.shape} and shift {shift.shape} must be (3, {h}, {w}) "
                         f"and ({n}, 3) for crops of shape {crops.shape}")
    x = output(op, out, (n, 3, h, w), (crops, mean, shift))
    _C.crops_to_float(crops.data.ptr, mean.data.ptr, shift.data.ptr, x.data.ptr, n, h, w,
                      stream())
    return x
