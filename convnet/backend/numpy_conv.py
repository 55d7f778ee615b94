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

Inside the ops the padded image is laid out (C, H, W, N), batch innermost (cuda-convnet's own
layout): every strided slice then moves long contiguous runs, which keeps NumPy's per-row
overhead out of the copies. Arguments and results stay NCHW.
"""
import numpy as np

__all__ = [
    "conv_output_size", "conv_forward", "conv_backward_data", "conv_backward_filter",
    "local_forward", "local_backward_data", "local_backward_filter",
    "bias_forward", "bias_backward",
    "fc_forward", "fc_backward_data", "fc_backward_filter",
]


# ----------------------------------------------------------------------------------------------
# windows on a canvas (shared with pooling)


def conv_output_size(img, filter_size, stride, padding):
    """1 + ceil((2*padding + img - filter_size) / stride), as cuda-convnet."""
    return 1 + -(-(2 * padding + img - filter_size) // stride)


def pad_to_windows(x, first, out_size, stride, size, fill=0, axes=(1, 2)):
    """Copy x onto a canvas whose pixel r along each of the two spatial `axes` is image pixel
    first + r, just large enough for out_size windows of `size` at `stride`: window o covers
    canvas pixels o*stride ... o*stride + size - 1. Canvas pixels off the image hold `fill`.
    When every window lies inside the image the canvas is a read-only view of x, not a copy."""
    shape = list(x.shape)
    for axis, out in zip(axes, out_size):
        shape[axis] = (out - 1) * stride + size
    on_canvas, on_image = _shared_pixels(first, shape, x.shape, axes)
    inside = x[on_image]
    if first >= 0 and all(inside.shape[axis] == shape[axis] for axis in axes):
        inside.flags.writeable = False
        return inside
    canvas = np.full(shape, fill, dtype=x.dtype)
    canvas[on_canvas] = inside
    return canvas


def crop_from_windows(canvas, first, img_size, axes=(1, 2)):
    """The adjoint of pad_to_windows (for gradients): the image part of the canvas, with zeros at
    image pixels the canvas does not reach (no window reads them)."""
    shape = list(canvas.shape)
    for axis, length in zip(axes, img_size):
        shape[axis] = length
    image = np.zeros(shape, dtype=canvas.dtype)
    on_canvas, on_image = _shared_pixels(first, canvas.shape, shape, axes)
    image[on_image] = canvas[on_canvas]
    return image


def _shared_pixels(first, canvas_shape, image_shape, axes):
    """Index tuples of the pixels a canvas starting at image pixel `first` shares with the image:
    (into the canvas, into the image)."""
    on_canvas, on_image = [slice(None)] * len(canvas_shape), [slice(None)] * len(image_shape)
    for axis in axes:
        lo = max(first, 0)
        hi = max(lo, min(first + canvas_shape[axis], image_shape[axis]))
        on_canvas[axis], on_image[axis] = slice(lo - first, hi - first), slice(lo, hi)
    return tuple(on_canvas), tuple(on_image)


def window_offsets(size, stride, out_size, axes=(1, 2)):
    """For each offset (i, j) inside a window: (i, j, index) where canvas[index] holds pixel
    (i, j) of every window (oy, ox), a strided slice along the two spatial axes."""
    for i in range(size):
        for j in range(size):
            index = [slice(None)] * (max(axes) + 1)
            index[axes[0]] = slice(i, i + (out_size[0] - 1) * stride + 1, stride)
            index[axes[1]] = slice(j, j + (out_size[1] - 1) * stride + 1, stride)
            yield i, j, tuple(index)


# ----------------------------------------------------------------------------------------------
# im2col / col2im, batch innermost


def _im2col(x, filter_size, stride, padding, out_size):
    """cols[c, i, j, oy, ox, n] = x_padded[n, c, oy*stride + i, ox*stride + j], x (N, C, H, W)."""
    canvas = pad_to_windows(x.transpose(1, 2, 3, 0), -padding, out_size, stride, filter_size)
    n, channels = x.shape[:2]
    cols = np.empty((channels, filter_size, filter_size, *out_size, n), dtype=x.dtype)
    for i, j, window in window_offsets(filter_size, stride, out_size):
        cols[:, i, j] = canvas[window]
    return cols


def _col2im(dcols, img_size, stride, padding):
    """The adjoint of _im2col: dcols (C, fs, fs, OH, OW, N) summed back onto dx (N, C, H, W)."""
    channels, filter_size, _, out_h, out_w, n = dcols.shape
    span = ((out_h - 1) * stride + filter_size, (out_w - 1) * stride + filter_size)
    canvas = np.zeros((channels, *span, n), dtype=dcols.dtype)
    for i, j, window in window_offsets(filter_size, stride, (out_h, out_w)):
        canvas[window] += dcols[:, i, j]
    return crop_from_windows(canvas, -padding, img_size).transpose(3, 0, 1, 2)


# The batch is processed in slices whose working set (im2col columns plus output rows) stays
# about this size, so that it is still in cache when the next step reads it (measured ~1.3x
# faster than a whole batch of 128 at once), and a big net's im2col never needs gigabytes.
WORKING_SET_BYTES = 4 << 20


def _batch_slices(n, rows, filters, out_size, itemsize):
    """Slices of the batch: per image, (rows + filters) x OH*OW values are in flight."""
    per_image = (rows + filters) * out_size[0] * out_size[1] * itemsize
    step = max(1, WORKING_SET_BYTES // per_image)
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _group_slices(total, groups):
    """The rows (filters, or im2col rows) of each group, in order."""
    size = total // groups
    return [slice(g * size, (g + 1) * size) for g in range(groups)]


# ----------------------------------------------------------------------------------------------
# argument checks


def _check_ndim(op, name, array, ndim):
    if np.ndim(array) != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {np.shape(array)}")


def _check_geometry(op, channels, filters, img_size, filter_size, stride, padding, groups):
    """Validate a conv/local configuration; return its output size (OH, OW)."""
    for name, value, least in (("stride", stride, 1), ("padding", padding, 0),
                               ("groups", groups, 1), ("filter_size", filter_size, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"{op}: {name} must be an integer >= {least}, got {value!r}")
    if channels % groups:
        raise ValueError(f"{op}: {channels} input channels are not divisible by groups={groups}")
    if filters % groups:
        raise ValueError(f"{op}: {filters} filters are not divisible by groups={groups}")
    height, width = img_size
    if min(height, width) < 1:
        raise ValueError(f"{op}: image size must be positive, got {tuple(img_size)}")
    if filter_size > min(height, width) + 2 * padding:
        raise ValueError(f"{op}: filter_size {filter_size} is larger than the padded image "
                         f"{height + 2 * padding}x{width + 2 * padding}")
    return (conv_output_size(height, filter_size, stride, padding),
            conv_output_size(width, filter_size, stride, padding))


def _check_out(op, dy, n, filters, out_size):
    expected = (n, filters, *out_size)
    if dy.shape != expected:
        raise ValueError(f"{op}: dy has shape {dy.shape}, expected {expected}")


# ----------------------------------------------------------------------------------------------
# conv (filterActs, imgActs, weightActs)


def _conv_check_weights(op, w, channels, groups):
    expected = (w.shape[0], channels // groups, w.shape[2], w.shape[2])
    if w.shape != expected:
        raise ValueError(f"{op}: w has shape {w.shape}, expected (F, C // groups, fs, fs) = "
                         f"{expected}")


def conv_forward(x, w, stride, padding, groups):
    """y[n, f] = sum over the group's channels of the correlation of x with filter w[f]."""
    _check_ndim("conv_forward", "x", x, 4)
    _check_ndim("conv_forward", "w", w, 4)
    n, channels, height, width = x.shape
    filters, _, filter_size, _ = w.shape
    out_size = _check_geometry("conv_forward", channels, filters, (height, width), filter_size,
                               stride, padding, groups)
    _conv_check_weights("conv_forward", w, channels, groups)
    rows = channels * filter_size ** 2
    w_rows = w.reshape(filters, rows // groups)
    y = np.empty((n, filters, *out_size), dtype=np.result_type(x, w))
    for batch in _batch_slices(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(x[batch], filter_size, stride, padding, out_size).reshape(rows, -1)
        y_rows = np.empty((filters, cols.shape[1]), dtype=y.dtype)        # (F, OH*OW*N)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            np.matmul(w_rows[f], cols[k], out=y_rows[f])
        y[batch] = y_rows.reshape(filters, *out_size, -1).transpose(3, 0, 1, 2)
    return y


def conv_backward_data(dy, w, img_size, stride, padding, groups):
    """dx: the column gradients w^T dy summed back onto the image (cuda-convnet's imgActs)."""
    _check_ndim("conv_backward_data", "dy", dy, 4)
    _check_ndim("conv_backward_data", "w", w, 4)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[1] * groups, w.shape[2]
    out_size = _check_geometry("conv_backward_data", channels, filters, tuple(img_size),
                               filter_size, stride, padding, groups)
    _conv_check_weights("conv_backward_data", w, channels, groups)
    _check_out("conv_backward_data", dy, n, w.shape[0], out_size)
    rows = channels * filter_size ** 2
    w_rows = w.reshape(filters, rows // groups)
    dx = np.empty((n, channels, *img_size), dtype=np.result_type(dy, w))
    for batch in _batch_slices(n, rows, filters, out_size, dx.itemsize):
        dy_rows = dy[batch].transpose(1, 2, 3, 0).reshape(filters, -1)  # (F, OH*OW*N)
        dcols = np.empty((rows, dy_rows.shape[1]), dtype=dx.dtype)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            np.matmul(w_rows[f].T, dy_rows[f], out=dcols[k])
        dcols = dcols.reshape(channels, filter_size, filter_size, *out_size, -1)
        dx[batch] = _col2im(dcols, tuple(img_size), stride, padding)
    return dx


def conv_backward_filter(x, dy, filter_size, stride, padding, groups):
    """dw[f] = sum over the batch and positions of dy[n, f, oy, ox] * patch (weightActs)."""
    _check_ndim("conv_backward_filter", "x", x, 4)
    _check_ndim("conv_backward_filter", "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = _check_geometry("conv_backward_filter", channels, filters, (height, width),
                               filter_size, stride, padding, groups)
    _check_out("conv_backward_filter", dy, n, filters, out_size)
    rows = channels * filter_size ** 2
    dw = np.zeros((filters, rows // groups), dtype=np.result_type(x, dy))
    for batch in _batch_slices(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(x[batch], filter_size, stride, padding, out_size).reshape(rows, -1)
        dy_rows = dy[batch].transpose(1, 2, 3, 0).reshape(filters, -1)  # (F, OH*OW*N)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dw[f] += dy_rows[f] @ cols[k].T
    return dw.reshape(filters, channels // groups, filter_size, filter_size)


# ----------------------------------------------------------------------------------------------
# local: an unshared filter bank per output position, w (OH, OW, F, C/groups, fs, fs).
# The same im2col, read as cols[p, (c, i, j), n] with p = (oy, ox): one matrix product per
# position (a batched matmul), w[p] (F, C/groups*fs*fs) against the position's columns.


def _local_check_weights(op, w, filters, channels, groups, out_size):
    expected = (*out_size, filters, channels // groups, w.shape[4], w.shape[4])
    if w.shape != expected:
        raise ValueError(f"{op}: w has shape {w.shape}, expected (OH, OW, F, C // groups, fs, fs) "
                         f"= {expected}")


def local_forward(x, w, stride, padding, groups):
    """y[n, f, oy, ox] = sum over the group's (c, i, j) of w[oy, ox, f, c, i, j] * patch values."""
    _check_ndim("local_forward", "x", x, 4)
    _check_ndim("local_forward", "w", w, 6)
    n, channels, height, width = x.shape
    filters, filter_size = w.shape[2], w.shape[4]
    out_size = _check_geometry("local_forward", channels, filters, (height, width), filter_size,
                               stride, padding, groups)
    _local_check_weights("local_forward", w, filters, channels, groups, out_size)
    positions, rows = out_size[0] * out_size[1], channels * filter_size ** 2
    w_pos = w.reshape(positions, filters, rows // groups)
    y = np.empty((n, filters, *out_size), dtype=np.result_type(x, w))
    for batch in _batch_slices(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(x[batch], filter_size, stride, padding, out_size)
        cols_pos = cols.reshape(rows, positions, -1).transpose(1, 0, 2)   # (P, rows, N)
        y_pos = np.empty((positions, filters, cols_pos.shape[2]), dtype=y.dtype)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            y_pos[:, f] = w_pos[:, f] @ cols_pos[:, k]
        y[batch] = y_pos.reshape(*out_size, filters, -1).transpose(3, 2, 0, 1)
    return y


def local_backward_data(dy, w, img_size, stride, padding, groups):
    """dx: each position's column gradient w[oy, ox]^T dy[:, :, oy, ox], summed back (col2im)."""
    _check_ndim("local_backward_data", "dy", dy, 4)
    _check_ndim("local_backward_data", "w", w, 6)
    n, filters = dy.shape[:2]
    channels, filter_size = w.shape[3] * groups, w.shape[4]
    out_size = _check_geometry("local_backward_data", channels, filters, tuple(img_size),
                               filter_size, stride, padding, groups)
    _local_check_weights("local_backward_data", w, filters, channels, groups, out_size)
    _check_out("local_backward_data", dy, n, filters, out_size)
    positions, rows = out_size[0] * out_size[1], channels * filter_size ** 2
    w_pos = w.reshape(positions, filters, rows // groups)
    dx = np.empty((n, channels, *img_size), dtype=np.result_type(dy, w))
    for batch in _batch_slices(n, rows, filters, out_size, dx.itemsize):
        dy_pos = np.ascontiguousarray(                                         # (P, F, N)
            dy[batch].reshape(-1, filters, positions).transpose(2, 1, 0))
        dcols = np.empty((rows, positions, dy_pos.shape[2]), dtype=dx.dtype)
        dcols_pos = dcols.transpose(1, 0, 2)                                    # (P, rows, N)
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dcols_pos[:, k] = w_pos[:, f].transpose(0, 2, 1) @ dy_pos[:, f]
        dcols = dcols.reshape(channels, filter_size, filter_size, *out_size, -1)
        dx[batch] = _col2im(dcols, tuple(img_size), stride, padding)
    return dx


def local_backward_filter(x, dy, filter_size, stride, padding, groups):
    """dw[oy, ox, f] = sum over the batch of dy[n, f, oy, ox] * patch[n, group(f), oy, ox]."""
    _check_ndim("local_backward_filter", "x", x, 4)
    _check_ndim("local_backward_filter", "dy", dy, 4)
    n, channels, height, width = x.shape
    filters = dy.shape[1]
    out_size = _check_geometry("local_backward_filter", channels, filters, (height, width),
                               filter_size, stride, padding, groups)
    _check_out("local_backward_filter", dy, n, filters, out_size)
    positions, rows = out_size[0] * out_size[1], channels * filter_size ** 2
    dw = np.zeros((positions, filters, rows // groups), dtype=np.result_type(x, dy))
    for batch in _batch_slices(n, rows, filters, out_size, x.itemsize):
        cols = _im2col(x[batch], filter_size, stride, padding, out_size)
        cols_pos = cols.reshape(rows, positions, -1).transpose(1, 0, 2)         # (P, rows, N)
        dy_pos = np.ascontiguousarray(                                         # (P, F, N)
            dy[batch].reshape(-1, filters, positions).transpose(2, 1, 0))
        for f, k in zip(_group_slices(filters, groups), _group_slices(rows, groups)):
            dw[:, f] += dy_pos[:, f] @ cols_pos[:, k].transpose(0, 2, 1)
    return dw.reshape(*out_size, filters, channels // groups, filter_size, filter_size)


# ----------------------------------------------------------------------------------------------
# bias


def bias_forward(y, b):
    """y + b, b indexing the leading non-batch axes of y: (F,), (F, OH, OW) or (M,) for fc."""
    if b.ndim < 1 or y.ndim < 1 + b.ndim or y.shape[1:1 + b.ndim] != b.shape:
        raise ValueError(f"bias_forward: b has shape {b.shape}, which must equal "
                         f"y.shape[1:1 + b.ndim] for y of shape {y.shape}")
    return y + b.reshape(b.shape + (1,) * (y.ndim - 1 - b.ndim))


def bias_backward(dy, bias_ndim):
    """db: dy summed over the batch and over the axes the bias is shared across."""
    if int(bias_ndim) != bias_ndim or not 1 <= bias_ndim <= dy.ndim - 1:
        raise ValueError(f"bias_backward: bias_ndim must be in 1..{dy.ndim - 1} for dy of shape "
                         f"{dy.shape}, got {bias_ndim!r}")
    return dy.sum(axis=(0, *range(1 + bias_ndim, dy.ndim)))


# ----------------------------------------------------------------------------------------------
# fc: weights (K, M), x (N, K)


def _check_fc(op, a, a_name, b, b_name, a_axis, b_axis):
    _check_ndim(op, a_name, a, 2)
    _check_ndim(op, b_name, b, 2)
    if a.shape[a_axis] != b.shape[b_axis]:
        raise ValueError(f"{op}: {a_name} of shape {a.shape} does not match "
                         f"{b_name} of shape {b.shape}")


def fc_forward(x, w):
    """y = x @ w."""
    _check_fc("fc_forward", x, "x", w, "w", 1, 0)
    return x @ w


def fc_backward_data(dy, w):
    """dx = dy @ w.T."""
    _check_fc("fc_backward_data", dy, "dy", w, "w", 1, 1)
    return dy @ w.T


def fc_backward_filter(x, dy):
    """dw = x.T @ dy (summed over the batch)."""
    _check_fc("fc_backward_filter", x, "x", dy, "dy", 0, 0)
    return x.T @ dy
