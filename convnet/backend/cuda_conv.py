"""CUDA conv and local ops (OPS.md): CuPy arrays in and out, kernels in csrc/conv.cu and local.cu.

Same names, arguments and layouts as convnet.backend.numpy_conv, plus `out=`: a float32
C-contiguous CuPy array of the result's shape to write into (every element is overwritten;
without it the result is a new array), and `algo=`: the kernel algorithm by name (one of
convnet._C.conv_algorithms that can run the shape, else ValueError; None: the one
convnet.backend.algos chooses for the precision). Kernels run on CuPy's current stream and device.
"""
from convnet import _C
from convnet.backend import algos, contract, cuda_ops
from convnet.backend.contract import conv_output_size
from convnet.backend.cuda_arrays import array, output, stream

__all__ = [
    "conv_output_size", "conv_forward", "conv_forward_bias_relu", "conv_backward_data",
    "conv_backward_filter",
    "local_forward", "local_backward_data", "local_backward_filter",
]

# The weights' layout per kind: (its ndim, the axes of F, C // groups and fs).
_WEIGHTS = {"conv": (4, 0, 1, 2), "local": (6, 2, 3, 4)}


def _weights(op, kind, w, channels, filters, groups, out_size):
    """w checked against the layout of `kind`."""
    if kind == "conv":
        contract.conv_weights(op, w, channels, groups)
    else:
        contract.local_weights(op, w, filters, channels, groups, out_size)


def _launch(op, a, b, out, n, channels, img_size, filters, filter_size, out_size, stride,
            padding, groups, algo, precision):
    """Queue `op`'s kernel on the current stream (nothing to do for an empty batch, once `algo`
    is known to be one `op` can run)."""
    shape = (n, channels, img_size[0], img_size[1], filters, filter_size, out_size[0],
             out_size[1], int(stride), int(padding), int(groups))
    algo_index = algos.index(op, algo, shape, precision)
    if n:
        getattr(_C, op)(a.data.ptr, b.data.ptr, out.data.ptr, *shape, algo_index, stream())


def _forward(kind, x, w, stride, padding, groups, out, algo, precision):
    op = f"{kind}_forward"
    w_ndim, f_axis, _, fs_axis = _WEIGHTS[kind]
    array(op, "x", x, ndim=4)
    array(op, "w", w, ndim=w_ndim)
    n, channels, height, width = x.shape
    filters, filter_size = w.shape[f_axis], w.shape[fs_axis]
    out_size = contract.conv_geometry(op, channels, filters, (height, width), filter_size,
                                      stride, padding, groups)
    _weights(op, kind, w, channels, filters, groups, out_size)
    y = output(op, out, (n, filters, *out_size), (x, w))
    _launch(op, x, w, y, n, channels, (height, width), filters, filter_size, out_size, stride,
            padding, groups, algo, precision)
    return y


def _backward_data(kind, dy, w, img_size, stride, padding, groups, out, algo, precision):
    op = f"{kind}_backward_data"
    w_ndim, f_axis, c_axis, fs_axis = _WEIGHTS[kind]
    array(op, "dy", dy, ndim=4)
    array(op, "w", w, ndim=w_ndim)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[c_axis] * groups, w.shape[fs_axis]
    img_size = tuple(int(v) for v in img_size)
    out_size = contract.conv_geometry(op, channels, filters, img_size, filter_size, stride,
                                      padding, groups)
    _weights(op, kind, w, channels, filters, groups, out_size)
    contract.shape_is(op, "dy", dy, (n, filters, *out_size))
    dx = output(op, out, (n, channels, *img_size), (dy, w))
    _launch(op, dy, w, dx, n, channels, img_size, filters, filter_size, out_size, stride,
            padding, groups, algo, precision)
    return dx


def _backward_filter(kind, x, dy, filter_size, stride, padding, groups, out, algo, precision):
    op = f"{kind}_backward_filter"
    array(op, "x", x, ndim=4)
    array(op, "dy", dy, ndim=4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = contract.conv_geometry(op, channels, filters, (height, width), filter_size,
                                      stride, padding, groups)
    filter_size = int(filter_size)
    contract.shape_is(op, "dy", dy, (n, filters, *out_size))
    w_shape = (filters, channels // groups, filter_size, filter_size)
    dw = output(op, out, (*out_size, *w_shape) if kind == "local" else w_shape, (x, dy))
    _launch(op, x, dy, dw, n, channels, (height, width), filters, filter_size, out_size, stride,
            padding, groups, algo, precision)
    if n == 0:  # the weight gradients of an empty batch are zero sums: no kernel ran
        dw.fill(0)
    return dw


def conv_forward(x, w, stride, padding, groups, precision="fp32", out=None, algo=None):
    """w (F, C // groups, fs, fs)."""
    return _forward("conv", x, w, stride, padding, groups, out, algo, precision)


FUSED_EPILOGUE = ("gemm", "mma_tf32", "mma_bf16")  # conv.h: conv_forward_bias_relu's algorithms


def conv_forward_bias_relu(x, w, b, stride, padding, groups, precision="fp32", out=None,
                           algo=None):
    """max(conv_forward(x, w) + b, 0), b (F,): one launch, the bias and ReLU in the GEMM's
    epilogue, where conv_forward's algorithm (`algo`, else algos' choice) is gemm or mma_*;
    else conv_forward, bias_forward and the ReLU in turn."""
    op = "conv_forward_bias_relu"
    array(op, "x", x, ndim=4)
    array(op, "w", w, ndim=4)
    array(op, "b", b, ndim=1)
    n, channels, height, width = x.shape
    filters, filter_size = w.shape[0], w.shape[2]
    out_size = contract.conv_geometry(op, channels, filters, (height, width), filter_size,
                                      stride, padding, groups)
    _weights(op, "conv", w, channels, filters, groups, out_size)
    contract.shape_is(op, "b", b, (filters,))
    shape = (n, channels, height, width, filters, filter_size, *out_size, int(stride),
             int(padding), int(groups))
    index = algos.index("conv_forward", algo, shape, precision)
    if algos.names_of_algorithms()[index] not in FUSED_EPILOGUE:
        y = conv_forward(x, w, stride, padding, groups, precision, out=out, algo=algo)
        return cuda_ops.neuron_forward(cuda_ops.bias_forward(y, b), "relu", out=y)
    y = output(op, out, (n, filters, *out_size), (x, w, b))
    if n:
        _C.conv_forward_bias_relu(x.data.ptr, w.data.ptr, b.data.ptr, y.data.ptr, *shape, index,
                                  stream())
    return y


def conv_backward_data(dy, w, img_size, stride, padding, groups,
                       precision="fp32", out=None, algo=None):
    return _backward_data("conv", dy, w, img_size, stride, padding, groups,
                          out, algo, precision)


def conv_backward_filter(x, dy, filter_size, stride, padding, groups,
                         precision="fp32", out=None, algo=None):
    return _backward_filter("conv", x, dy, filter_size, stride, padding, groups,
                            out, algo, precision)


def local_forward(x, w, stride, padding, groups, precision="fp32", out=None, algo=None):
    """w (OH, OW, F, C // groups, fs, fs)."""
    return _forward("local", x, w, stride, padding, groups, out, algo, precision)


def local_backward_data(dy, w, img_size, stride, padding, groups,
                        precision="fp32", out=None, algo=None):
    return _backward_data("local", dy, w, img_size, stride, padding, groups,
                          out, algo, precision)


def local_backward_filter(x, dy, filter_size, stride, padding, groups,
                          precision="fp32", out=None, algo=None):
    return _backward_filter("local", x, dy, filter_size, stride, padding, groups,
                            out, algo, precision)
