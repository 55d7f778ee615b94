"""CUDA conv and local ops (OPS.md): CuPy arrays in and out, kernels in csrc/conv.cu and local.cu.

Same names, arguments and layouts as convnet.backend.numpy_conv, plus `out=`: a float32
C-contiguous CuPy array of the result's shape to write into (every element is overwritten;
without it the result is a new array), and `algo=`: the kernel algorithm by name (one of
convnet._C.conv_algorithms that can run the shape, else ValueError; None: the one
convnet.backend.algos chooses). Kernels run on CuPy's current stream and device.
"""
import cupy

from convnet import _C
from convnet.backend import algos
from convnet.backend.numpy_conv import _check_geometry, conv_output_size  # one set of checks

__all__ = [
    "conv_output_size", "conv_forward", "conv_backward_data", "conv_backward_filter",
    "local_forward", "local_backward_data", "local_backward_filter",
]


# ----------------------------------------------------------------------------------------------
# argument checks (the kernels take raw pointers: everything is checked here)


def _check_array(op, name, a, ndim):
    if not isinstance(a, cupy.ndarray):
        raise ValueError(f"{op}: {name} must be a CuPy array, got {type(a).__name__}")
    if a.dtype != cupy.float32:
        raise ValueError(f"{op}: {name} must be float32, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous")
    if a.device.id != cupy.cuda.Device().id:
        raise ValueError(f"{op}: {name} is on device {a.device.id}, the current device is "
                         f"{cupy.cuda.Device().id}")


def _check_shape(op, name, a, expected):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {tuple(expected)}")


def _output(op, out, shape, inputs):
    """`out` checked (shape, dtype, layout, no overlap with the inputs), or a new array."""
    if out is None:
        return cupy.empty(shape, dtype=cupy.float32)
    _check_array(op, "out", out, len(shape))
    _check_shape(op, "out", out, shape)
    for a in inputs:
        if out.size and a.size and (out.data.ptr < a.data.ptr + a.nbytes
                                    and a.data.ptr < out.data.ptr + out.nbytes):
            raise ValueError(f"{op}: out overlaps an input")
    return out


def _launch(op, kernel, a, b, out, n, channels, img_size, filters, filter_size, out_size,
            stride, padding, groups, algo):
    """Queue `kernel` on the current stream (nothing to do for an empty batch, once `algo` is
    known to be one `op` can run)."""
    shape = (n, channels, img_size[0], img_size[1], filters, filter_size, out_size[0],
             out_size[1], int(stride), int(padding), int(groups))
    algo_index = algos.index(op, algo, shape)
    if n == 0:
        return
    kernel(a.data.ptr, b.data.ptr, out.data.ptr, *shape, algo_index,
           cupy.cuda.get_current_stream().ptr)


def _zero_for_empty_batch(out, n):
    """Weight gradients of an empty batch are zero sums: the kernels are never called."""
    if n == 0:
        out.fill(0)
    return out


# ----------------------------------------------------------------------------------------------
# conv: w (F, C // groups, fs, fs)


def conv_forward(x, w, stride, padding, groups, out=None, algo=None):
    op = "conv_forward"
    _check_array(op, "x", x, 4)
    _check_array(op, "w", w, 4)
    n, channels, height, width = x.shape
    filters, _, filter_size, _ = w.shape
    out_size = _check_geometry(op, channels, filters, (height, width), filter_size, stride,
                               padding, groups)
    _check_shape(op, "w", w, (filters, channels // groups, filter_size, filter_size))
    y = _output(op, out, (n, filters, *out_size), (x, w))
    _launch(op, _C.conv_forward, x, w, y, n, channels, (height, width), filters, filter_size,
            out_size, stride, padding, groups, algo)
    return y


def conv_backward_data(dy, w, img_size, stride, padding, groups, out=None, algo=None):
    op = "conv_backward_data"
    _check_array(op, "dy", dy, 4)
    _check_array(op, "w", w, 4)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[1] * groups, w.shape[2]
    img_size = tuple(int(v) for v in img_size)
    out_size = _check_geometry(op, channels, filters, img_size, filter_size, stride, padding,
                               groups)
    _check_shape(op, "w", w, (filters, channels // groups, filter_size, filter_size))
    _check_shape(op, "dy", dy, (n, filters, *out_size))
    dx = _output(op, out, (n, channels, *img_size), (dy, w))
    _launch(op, _C.conv_backward_data, dy, w, dx, n, channels, img_size, filters, filter_size,
            out_size, stride, padding, groups, algo)
    return dx


def conv_backward_filter(x, dy, filter_size, stride, padding, groups, out=None, algo=None):
    op = "conv_backward_filter"
    _check_array(op, "x", x, 4)
    _check_array(op, "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = _check_geometry(op, channels, filters, (height, width), filter_size, stride,
                               padding, groups)
    filter_size = int(filter_size)
    _check_shape(op, "dy", dy, (n, filters, *out_size))
    dw = _output(op, out, (filters, channels // groups, filter_size, filter_size), (x, dy))
    _launch(op, _C.conv_backward_filter, x, dy, dw, n, channels, (height, width), filters,
            filter_size, out_size, stride, padding, groups, algo)
    return _zero_for_empty_batch(dw, n)


# ----------------------------------------------------------------------------------------------
# local: w (OH, OW, F, C // groups, fs, fs)


def local_forward(x, w, stride, padding, groups, out=None, algo=None):
    op = "local_forward"
    _check_array(op, "x", x, 4)
    _check_array(op, "w", w, 6)
    n, channels, height, width = x.shape
    filters, filter_size = w.shape[2], w.shape[4]
    out_size = _check_geometry(op, channels, filters, (height, width), filter_size, stride,
                               padding, groups)
    _check_shape(op, "w", w, (*out_size, filters, channels // groups, filter_size, filter_size))
    y = _output(op, out, (n, filters, *out_size), (x, w))
    _launch(op, _C.local_forward, x, w, y, n, channels, (height, width), filters, filter_size,
            out_size, stride, padding, groups, algo)
    return y


def local_backward_data(dy, w, img_size, stride, padding, groups, out=None, algo=None):
    op = "local_backward_data"
    _check_array(op, "dy", dy, 4)
    _check_array(op, "w", w, 6)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[3] * groups, w.shape[4]
    img_size = tuple(int(v) for v in img_size)
    out_size = _check_geometry(op, channels, filters, img_size, filter_size, stride, padding,
                               groups)
    _check_shape(op, "w", w, (*out_size, filters, channels // groups, filter_size, filter_size))
    _check_shape(op, "dy", dy, (n, filters, *out_size))
    dx = _output(op, out, (n, channels, *img_size), (dy, w))
    _launch(op, _C.local_backward_data, dy, w, dx, n, channels, img_size, filters, filter_size,
            out_size, stride, padding, groups, algo)
    return dx


def local_backward_filter(x, dy, filter_size, stride, padding, groups, out=None, algo=None):
    op = "local_backward_filter"
    _check_array(op, "x", x, 4)
    _check_array(op, "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = _check_geometry(op, channels, filters, (height, width), filter_size, stride,
                               padding, groups)
    filter_size = int(filter_size)
    _check_shape(op, "dy", dy, (n, filters, *out_size))
    dw = _output(op, out, (*out_size, filters, channels // groups, filter_size, filter_size),
                 (x, dy))
    _launch(op, _C.local_backward_filter, x, dy, dw, n, channels, (height, width), filters,
            filter_size, out_size, stride, padding, groups, algo)
    return _zero_for_empty_batch(dw, n)
