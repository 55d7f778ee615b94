"""NumPy reference for conv, local, bias and fc (OPS.md), float32 and float64.

Convolution is im2col + one matrix product per group:

    cols[(c, i, j), (oy, ox, n)] = x_padded[n, c, oy*stride + i, ox*stride + j]
    y[n, f, oy, ox] = sum_{(c, i, j) in group(f)} w[f, c, i, j] * cols[(c, i, j), (oy, ox, n)]

The padded image starts `padding` pixels above / left of the image and reaches as far as the
last window does; everything outside the image reads as zero, so the last window may run past the
bottom / right edge (cuda-convnet's ceil in the output size). The backward passes are the
transposed products; backward-data scatters the column gradients back onto the image (col2im).
im2col and col2im loop over the fs*fs filter offsets, each moving one strided slice of the
padded image, never over pixels.

Inside the ops everything is laid out (C, H, W, N), batch innermost (cuda-convnet's own layout):
every strided slice then moves long contiguous runs, which keeps NumPy's per-row overhead out of
the copies. Arguments are NCHW of any strides, read without a copy when they already have that
memory order. The NCHW results of conv and local (y, dx) are views of (C, H, W, N) memory,
`a.transpose(3, 0, 1, 2)` of a C-contiguous `a`, an order that bias, the neurons and pooling keep:
the next op reads them without a transposing copy too.
"""
import numpy as np

from . import contract, precision as precisions
from .contract import conv_output_size

__all__ = [
    "conv_output_size", "conv_forward", "conv_forward_bias_relu", "conv_backward_data",
    "conv_backward_filter",
    "local_forward", "local_backward_data", "local_backward_filter",
    "bias_forward", "bias_backward",
    "fc_forward", "fc_backward_data", "fc_backward_filter",
]


# ----------------------------------------------------------------------------------------------
# the padded image, batch innermost; im2col / col2im


def batch_innermost(a):
    """a (N, C, H, W) as (C, H, W, N) with unit stride along the batch: a view when a already has
    that memory order (a conv's output), else a copy."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0))


def _span(out_size, stride, filter_size):
    """The padded image's (H, W): as far as the last window reaches (at least the image)."""
    return tuple((out - 1) * stride + filter_size for out in out_size)


def _canvas(x, filter_size, stride, padding, out_size):
    """The padded image (C, H', W', N) of x (N, C, H, W): image pixel (y, x) at (y + padding,
    x + padding), zeros around it. x itself (batch innermost) when no window leaves the image."""
    x = batch_innermost(x)
    span = _span(out_size, stride, filter_size)
    if span == x.shape[1:3]:
        return x
    canvas = np.zeros((x.shape[0], *span, x.shape[3]), dtype=x.dtype)
    canvas[:, padding:padding + x.shape[1], padding:padding + x.shape[2]] = x
    return canvas


def _image_grad(dcanvas, padding, img_size):
    """The adjoint of _canvas: dx (N, C, H, W), a view of (C, H, W, N) memory."""
    height, width = img_size
    image = dcanvas[:, padding:padding + height, padding:padding + width]
    return np.ascontiguousarray(image).transpose(3, 0, 1, 2)


def _window_offsets(filter_size, stride, out_size):
    """For each offset (i, j) inside a window: (i, j, index) where canvas[index] holds pixel
    (i, j) of every window (oy, ox), a strided slice along H and W of (C, H, W, N)."""
    for i in range(filter_size):
        for j in range(filter_size):
            yield i, j, (slice(None), slice(i, i + (out_size[0] - 1) * stride + 1, stride),
                         slice(j, j + (out_size[1] - 1) * stride + 1, stride))


def _rows_read(canvas, band, stride, filter_size):
    """The canvas rows that the output rows in `band` (a slice) read."""
    return canvas[:, band.start * stride:(band.stop - 1) * stride + filter_size]


def _im2col(canvas, filter_size, stride, band, out_w):
    """cols[c, i, j, oy, ox, n] = canvas[c, oy*stride + i, ox*stride + j, n], oy in `band`."""
    part = _rows_read(canvas, band, stride, filter_size)
    channels, n, height = canvas.shape[0], canvas.shape[3], band.stop - band.start
    cols = np.empty((channels, filter_size, filter_size, height, out_w, n), dtype=canvas.dtype)
    for i, j, window in _window_offsets(filter_size, stride, (height, out_w)):
        cols[:, i, j] = part[window]
    return cols


def _col2im(dcols, dcanvas, stride, band):
    """The adjoint of _im2col: dcols (C, fs, fs, rows of `band`, OW, N) added onto dcanvas."""
    _, filter_size, _, height, out_w, _ = dcols.shape
    part = _rows_read(dcanvas, band, stride, filter_size)
    for i, j, window in _window_offsets(filter_size, stride, (height, out_w)):
        part[window] += dcols[:, i, j]


# The ops work on bands of output rows (of the whole batch) whose working set (im2col columns
# plus output rows) stays about this size, so that it is still in cache when the next step reads
# it (measured 1.3-1.4x faster than all rows at once on the Fashion nets' 3x3 convs), and a big
# net's im2col never needs gigabytes. A band's output rows are contiguous in (F, OH, OW, N)
# memory: matmul writes them in place, and the gradients are read in place.
WORKING_SET_BYTES = 4 << 20


def _row_bands(n, rows, filters, out_size, itemsize):
    """Slices of the output rows: per output row, (rows + filters) x OW*N values are in flight."""
    per_row = (rows + filters) * out_size[1] * n * itemsize
    step = max(1, WORKING_SET_BYTES // per_row)
    return [slice(s, min(s + step, out_size[0])) for s in range(0, out_size[0], step)]


def _group_slices(total, groups):
    """The rows (filters, or im2col rows) of each group, in order."""
    size = total // groups
    return [slice(g * size, (g + 1) * size) for g in range(groups)]


# ----------------------------------------------------------------------------------------------
# conv (filterActs, imgActs, weightActs)


def conv_forward(x, w, stride, padding, groups, precision="fp32"):
    """y[n, f] = sum over the group's channels of the correlation of x with filter w[f]."""
    x, w = precisions.operands("conv_forward", precision, x, w)
    contract.ndim("conv_forward", "x", x, 4)
    contract.ndim("conv_forward", "w", w, 4)
    n, channels, height, width = x.shape
    filters, _, filter_size, _ = w.shape
    out_size = contract.conv_geometry("conv_forward", channels, filters, (height, width), filter_size,
                               stride, padding, groups)
    contract.conv_weights("conv_forward", w, channels, groups)
    rows = channels * filter_size ** 2
    w_rows = w.reshape(filters, rows // groups)
    canvas = _canvas(x, filter_size, stride, padding, out_size)
    y = np.empty((filters, *out_size, n), dtype=np.result_type(x, w))
    for band in _row_bands(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(canvas, filter_size, stride, band, out_size[1]).reshape(rows, -1)
        y_rows = y[:, band].reshape(filters, -1)                     # (F, band*OW*N), a view
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            np.matmul(w_rows[f], cols[k], out=y_rows[f])
    return y.transpose(3, 0, 1, 2)


def conv_forward_bias_relu(x, w, b, stride, padding, groups, precision="fp32"):
    """max(conv_forward(x, w) + b, 0), b (F,): the cuda backend fuses the bias and the ReLU into
    the conv's epilogue."""
    y = conv_forward(x, w, stride, padding, groups, precision)
    contract.shape_is("conv_forward_bias_relu", "b", b, (w.shape[0],))
    return np.maximum(bias_forward(y, b), 0)


def conv_backward_data(dy, w, img_size, stride, padding, groups, precision="fp32"):
    """dx: the column gradients w^T dy summed back onto the image (cuda-convnet's imgActs)."""
    dy, w = precisions.operands("conv_backward_data", precision, dy, w)
    contract.ndim("conv_backward_data", "dy", dy, 4)
    contract.ndim("conv_backward_data", "w", w, 4)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[1] * groups, w.shape[2]
    out_size = contract.conv_geometry("conv_backward_data", channels, filters, tuple(img_size),
                               filter_size, stride, padding, groups)
    contract.conv_weights("conv_backward_data", w, channels, groups)
    contract.shape_is("conv_backward_data", "dy", dy, (n, w.shape[0], *out_size))
    rows = channels * filter_size ** 2
    w_rows = w.reshape(filters, rows // groups)
    dyt = batch_innermost(dy)
    dtype = np.result_type(dy, w)
    dcanvas = np.zeros((channels, *_span(out_size, stride, filter_size), n), dtype=dtype)
    for band in _row_bands(n, rows, filters, out_size, dcanvas.itemsize):
        dy_rows = dyt[:, band].reshape(filters, -1)                  # (F, band*OW*N), a view
        dcols = np.empty((rows, dy_rows.shape[1]), dtype=dtype)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            np.matmul(w_rows[f].T, dy_rows[f], out=dcols[k])
        dcols = dcols.reshape(channels, filter_size, filter_size, -1, out_size[1], n)
        _col2im(dcols, dcanvas, stride, band)
    return _image_grad(dcanvas, padding, tuple(img_size))


def conv_backward_filter(x, dy, filter_size, stride, padding, groups, precision="fp32"):
    """dw[f] = sum over the batch and positions of dy[n, f, oy, ox] * patch (weightActs)."""
    x, dy = precisions.operands("conv_backward_filter", precision, x, dy)
    contract.ndim("conv_backward_filter", "x", x, 4)
    contract.ndim("conv_backward_filter", "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = contract.conv_geometry("conv_backward_filter", channels, filters, (height, width),
                               filter_size, stride, padding, groups)
    contract.shape_is("conv_backward_filter", "dy", dy, (n, filters, *out_size))
    rows = channels * filter_size ** 2
    canvas = _canvas(x, filter_size, stride, padding, out_size)
    dyt = batch_innermost(dy)
    dw = np.zeros((filters, rows // groups), dtype=np.result_type(x, dy))
    for band in _row_bands(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(canvas, filter_size, stride, band, out_size[1]).reshape(rows, -1)
        dy_rows = dyt[:, band].reshape(filters, -1)                  # (F, band*OW*N), a view
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dw[f] += dy_rows[f] @ cols[k].T
    return dw.reshape(filters, channels // groups, filter_size, filter_size)


# ----------------------------------------------------------------------------------------------
# local: an unshared filter bank per output position, w (OH, OW, F, C/groups, fs, fs).
# The same im2col, read as cols[p, (c, i, j), n] with p = (oy, ox): one matrix product per
# position (a batched matmul), w[p] (F, C/groups*fs*fs) against the position's columns.


def local_forward(x, w, stride, padding, groups, precision="fp32"):
    """y[n, f, oy, ox] = sum over the group's (c, i, j) of w[oy, ox, f, c, i, j] * patch values."""
    x, w = precisions.operands("local_forward", precision, x, w)
    contract.ndim("local_forward", "x", x, 4)
    contract.ndim("local_forward", "w", w, 6)
    n, channels, height, width = x.shape
    filters, filter_size = w.shape[2], w.shape[4]
    out_size = contract.conv_geometry("local_forward", channels, filters, (height, width), filter_size,
                               stride, padding, groups)
    contract.local_weights("local_forward", w, filters, channels, groups, out_size)
    rows = channels * filter_size ** 2
    w_pos = w.reshape(-1, out_size[1], filters, rows // groups)       # (OH, OW, F, rows/groups)
    canvas = _canvas(x, filter_size, stride, padding, out_size)
    y = np.empty((filters, *out_size, n), dtype=np.result_type(x, w))
    for band in _row_bands(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(canvas, filter_size, stride, band, out_size[1])
        cols_pos = cols.reshape(rows, -1, n).transpose(1, 0, 2)                 # (P, rows, N)
        w_band = w_pos[band].reshape(-1, filters, rows // groups)
        y_pos = np.empty((cols_pos.shape[0], filters, n), dtype=y.dtype)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            y_pos[:, f] = w_band[:, f] @ cols_pos[:, k]
        y[:, band] = y_pos.reshape(-1, out_size[1], filters, n).transpose(2, 0, 1, 3)
    return y.transpose(3, 0, 1, 2)


def local_backward_data(dy, w, img_size, stride, padding, groups, precision="fp32"):
    """dx: each position's column gradient w[oy, ox]^T dy[:, :, oy, ox], summed back (col2im)."""
    dy, w = precisions.operands("local_backward_data", precision, dy, w)
    contract.ndim("local_backward_data", "dy", dy, 4)
    contract.ndim("local_backward_data", "w", w, 6)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[3] * groups, w.shape[4]
    out_size = contract.conv_geometry("local_backward_data", channels, filters, tuple(img_size),
                               filter_size, stride, padding, groups)
    contract.local_weights("local_backward_data", w, filters, channels, groups, out_size)
    contract.shape_is("local_backward_data", "dy", dy, (n, filters, *out_size))
    rows = channels * filter_size ** 2
    w_pos = w.reshape(-1, out_size[1], filters, rows // groups)
    dyt = batch_innermost(dy)
    dtype = np.result_type(dy, w)
    dcanvas = np.zeros((channels, *_span(out_size, stride, filter_size), n), dtype=dtype)
    for band in _row_bands(n, rows, filters, out_size, dcanvas.itemsize):
        dy_pos = np.ascontiguousarray(dyt[:, band].reshape(filters, -1, n).transpose(1, 0, 2))
        w_band = w_pos[band].reshape(-1, filters, rows // groups)
        dcols = np.empty((rows, dy_pos.shape[0], n), dtype=dtype)
        dcols_pos = dcols.transpose(1, 0, 2)                                    # (P, rows, N)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dcols_pos[:, k] = w_band[:, f].transpose(0, 2, 1) @ dy_pos[:, f]
        dcols = dcols.reshape(channels, filter_size, filter_size, -1, out_size[1], n)
        _col2im(dcols, dcanvas, stride, band)
    return _image_grad(dcanvas, padding, tuple(img_size))


def local_backward_filter(x, dy, filter_size, stride, padding, groups, precision="fp32"):
    """dw[oy, ox, f] = sum over the batch of dy[n, f, oy, ox] * patch[n, group(f), oy, ox]."""
    x, dy = precisions.operands("local_backward_filter", precision, x, dy)
    contract.ndim("local_backward_filter", "x", x, 4)
    contract.ndim("local_backward_filter", "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = contract.conv_geometry("local_backward_filter", channels, filters, (height, width),
                               filter_size, stride, padding, groups)
    contract.shape_is("local_backward_filter", "dy", dy, (n, filters, *out_size))
    rows = channels * filter_size ** 2
    canvas = _canvas(x, filter_size, stride, padding, out_size)
    dyt = batch_innermost(dy)
    dw = np.empty((*out_size, filters, rows // groups), dtype=np.result_type(x, dy))
    for band in _row_bands(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(canvas, filter_size, stride, band, out_size[1])
        cols_pos = cols.reshape(rows, -1, n).transpose(1, 0, 2)                 # (P, rows, N)
        dy_pos = np.ascontiguousarray(dyt[:, band].reshape(filters, -1, n).transpose(1, 0, 2))
        dw_band = dw[band].reshape(-1, filters, rows // groups)                 # (P, F, rows/g)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dw_band[:, f] = dy_pos[:, f] @ cols_pos[:, k].transpose(0, 2, 1)
    return dw.reshape(*out_size, filters, channels // groups, filter_size, filter_size)


# ----------------------------------------------------------------------------------------------
# bias


def bias_forward(y, b):
    """y + b, b indexing the leading non-batch axes of y: (F,), (F, OH, OW) or (M,) for fc."""
    contract.bias("bias_forward", y, b)
    return y + b.reshape(b.shape + (1,) * (y.ndim - 1 - b.ndim))


def bias_backward(dy, bias_ndim):
    """db: dy summed over the batch and over the axes the bias is shared across."""
    bias_ndim = contract.bias_ndim("bias_backward", dy, bias_ndim)
    return dy.sum(axis=(0, *range(1 + bias_ndim, dy.ndim)))


# ----------------------------------------------------------------------------------------------
# fc: weights (K, M), x (N, K)


def fc_forward(x, w):
    """y = x @ w."""
    contract.fc_pair("fc_forward", x, "x", w, "w", 1, 0)
    return x @ w


def fc_backward_data(dy, w):
    """dx = dy @ w.T."""
    contract.fc_pair("fc_backward_data", dy, "dy", w, "w", 1, 1)
    return dy @ w.T


def fc_backward_filter(x, dy):
    """dw = x.T @ dy (summed over the batch)."""
    contract.fc_pair("fc_backward_filter", x, "x", dy, "dy", 0, 0)
    return x.T @ dy
