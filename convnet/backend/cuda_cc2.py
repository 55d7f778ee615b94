"""The CUDA backend's cuda-convnet2 ops: numpy_cc2.py's names, arguments and layout on CuPy
arrays (float32, C-contiguous, on the current device), run by convnet._C's kernels
(csrc/cc2_layers.cu, csrc/cc2_cost.cu) on CuPy's current stream. Every op takes an optional
`out=` (a tuple for the forward costs), written in full and returned, as cuda_ops.py's.
Labels are float32 arrays of the probabilities' shape."""
import math

from convnet import _C

from . import contract
from .contract import cmpool_output_size
from .cuda_arrays import array, output, stream

if _C is None or not _C.built_with_cuda:
    raise ImportError("convnet.backend.cuda_cc2 needs convnet._C built with CUDA "
                      "(pip install with nvcc on PATH)")

__all__ = [
    "cmpool_output_size", "cmpool_forward", "cmpool_backward", "sum_forward", "sum_backward",
    "crop_forward", "crop_backward", "crossent_forward", "crossent_backward",
    "softmax_crossent_backward", "bce_forward", "bce_backward", "logistic_bce_backward",
    "dce_forward", "dce_backward",
]


def _channels(op, name, a):
    array(op, name, a)
    contract.channels_first(op, name, a)
    return a.shape[0], a.shape[1], math.prod(a.shape[2:])


# ----------------------------------------------------------------------------------------------
# cross-map max pooling, sum, crop


def cmpool_forward(x, size, stride, start, outputs, out=None):
    """y[:, o] = max of x[:, c] over window o's channels (numpy_cc2.py)."""
    op = "cmpool_forward"
    n, channels, inner = _channels(op, "x", x)
    size, stride, start, outputs = contract.cmpool_windows(op, channels, size, stride, start,
                                                               outputs)
    y = output(op, out, (n, outputs, *x.shape[2:]), (x,))
    _C.cmpool_forward(x.data.ptr, y.data.ptr, n, channels, outputs, inner, size, stride, start,
                      stream())
    return y


def cmpool_backward(x, y, dy, size, stride, start, out=None):
    """dx: every channel equal to its window's max receives that window's gradient."""
    op = "cmpool_backward"
    n, channels, inner = _channels(op, "x", x)
    array(op, "y", y)
    array(op, "dy", dy)
    contract.cmpool_grads(op, x, y, dy)
    size, stride, start, outputs = contract.cmpool_windows(op, channels, size, stride, start,
                                                               y.shape[1])
    dx = output(op, out, x.shape, (x, y, dy))
    _C.cmpool_backward(x.data.ptr, y.data.ptr, dy.data.ptr, dx.data.ptr, n, channels, outputs,
                       inner, size, stride, start, stream())
    return dx


def sum_forward(x, stride, out=None):
    """y[:, j] = sum of x[:, j*stride : (j+1)*stride]."""
    op = "sum_forward"
    array(op, "x", x)
    stride = contract.sum_stride(op, x.shape, stride)
    groups = x.shape[1] // stride
    y = output(op, out, (x.shape[0], groups, *x.shape[2:]), (x,))
    _C.sum_forward(x.data.ptr, y.data.ptr, x.shape[0], groups, stride, math.prod(x.shape[2:]),
                   stream())
    return y


def sum_backward(dy, stride, out=None):
    """dx[:, j*stride + i] = dy[:, j]."""
    op = "sum_backward"
    n, groups, inner = _channels(op, "dy", dy)
    stride = contract.integer(op, "stride", stride, 1)
    dx = output(op, out, (n, groups * stride, *dy.shape[2:]), (dy,))
    _C.sum_backward(dy.data.ptr, dx.data.ptr, n, groups, stride, inner, stream())
    return dx


def crop_forward(x, start, size, out=None):
    """The window of size (h, w) at start (y0, x0) of each map of x (N, C, H, W)."""
    op = "crop_forward"
    array(op, "x", x, ndim=4)
    n, channels, height, width = x.shape
    (y0, x0), (h, w) = contract.crop_window(op, (height, width), start, size)
    y = output(op, out, (n, channels, h, w), (x,))
    _C.crop_forward(x.data.ptr, y.data.ptr, n * channels, height, width, h, w, y0, x0, stream())
    return y


def crop_backward(dy, img_size, start, out=None):
    """dx (N, C, H, W): dy in the window at start (y0, x0), zero elsewhere."""
    op = "crop_backward"
    array(op, "dy", dy, ndim=4)
    height, width = contract.image_size(op, img_size)
    n, channels, h, w = dy.shape
    (y0, x0), _ = contract.crop_window(op, (height, width), start, (h, w))
    dx = output(op, out, (n, channels, height, width), (dy,))
    _C.crop_backward(dy.data.ptr, dx.data.ptr, n * channels, height, width, h, w, y0, x0,
                     stream())
    return dx


# ----------------------------------------------------------------------------------------------
# costs


def _cost_args(op, p, labels, p_name="p"):
    array(op, p_name, p)
    contract.rows(op, p_name, p)
    array(op, "labels", labels)
    contract.dense_labels(op, labels, p)
    return p.shape


def _outputs(op, out, shapes, inputs):
    """One output per shape: `out` None or a tuple of as many arrays, checked as `output`."""
    outs = (None,) * len(shapes) if out is None else tuple(out)
    if len(outs) != len(shapes):
        raise ValueError(f"{op}: out must be a tuple of {len(shapes)} arrays, got {len(outs)}")
    return tuple(output(op, o, shape, inputs, name=f"out[{i}]")
                 for i, (o, shape) in enumerate(zip(outs, shapes)))


def crossent_forward(p, labels, out=None):
    """Per case: (-sum_k t_k safelog(p_k), 1 - the chance that a maximal class is labelled)."""
    op = "crossent_forward"
    n, k = _cost_args(op, p, labels)
    cost, wrong = _outputs(op, out, ((n,), (n,)), (p, labels))
    _C.crossent_forward(p.data.ptr, labels.data.ptr, cost.data.ptr, wrong.data.ptr, n, k,
                        stream())
    return cost, wrong


def crossent_backward(p, labels, scale, out=None):
    """dp = -scale * t / p, 0 where t = 0."""
    op = "crossent_backward"
    _cost_args(op, p, labels)
    dp = output(op, out, p.shape, (p, labels))
    _C.crossent_backward(p.data.ptr, labels.data.ptr, dp.data.ptr, p.size, float(scale), stream())
    return dp


def softmax_crossent_backward(p, labels, scale, out=None):
    """dx = scale * (p * sum_k t_k - t): crossent_backward through p = softmax(x)."""
    op = "softmax_crossent_backward"
    n, k = _cost_args(op, p, labels)
    dx = output(op, out, p.shape, (p, labels))
    _C.softmax_crossent_backward(p.data.ptr, labels.data.ptr, dx.data.ptr, n, k, float(scale),
                                 stream())
    return dx


def bce_forward(y, labels, pos_weight=1.0, out=None):
    """Per case: (binomial cross-entropy, fraction wrong at 0.5, top-1 wrong read as softmax)."""
    op = "bce_forward"
    n, k = _cost_args(op, y, labels, "y")
    w = contract.pos_weight(op, pos_weight)
    cost, wrong, top1 = _outputs(op, out, ((n,), (n,), (n,)), (y, labels))
    _C.bce_forward(y.data.ptr, labels.data.ptr, cost.data.ptr, wrong.data.ptr, top1.data.ptr, n,
                   k, w, stream())
    return cost, wrong, top1


def _bce_grad(op, y, labels, scale, pos_weight, out):
    _cost_args(op, y, labels, "y")
    w = contract.pos_weight(op, pos_weight)
    result = output(op, out, y.shape, (y, labels))
    getattr(_C, op)(y.data.ptr, labels.data.ptr, result.data.ptr, y.size, float(scale), w,
                    stream())
    return result


def bce_backward(y, labels, scale, pos_weight=1.0, out=None):
    """dy = -scale * (w t / y - (1 - t) / (1 - y)), each term 0 where its label weight is."""
    return _bce_grad("bce_backward", y, labels, scale, pos_weight, out)


def logistic_bce_backward(y, labels, scale, pos_weight=1.0, out=None):
    """dx = -scale * (w t (1 - y) - (1 - t) y): bce_backward through y = logistic(x)."""
    return _bce_grad("logistic_bce_backward", y, labels, scale, pos_weight, out)


def dce_forward(y, labels, pos_weight=1.0, out=None):
    """Per case: (bce cost, fraction wrong at 0.5); counts (K, 3) per class over the batch:
    (declared positive, positive, true positive)."""
    op = "dce_forward"
    n, k = _cost_args(op, y, labels, "y")
    w = contract.pos_weight(op, pos_weight)
    cost, wrong, counts = _outputs(op, out, ((n,), (n,), (k, 3)), (y, labels))
    _C.dce_forward(y.data.ptr, labels.data.ptr, cost.data.ptr, wrong.data.ptr, counts.data.ptr,
                   n, k, w, stream())
    return cost, wrong, counts


def dce_backward(y, labels, scale, pos_weight=1.0, out=None):
    """bce_backward's gradient."""
    return _bce_grad("dce_backward", y, labels, scale, pos_weight, out)
