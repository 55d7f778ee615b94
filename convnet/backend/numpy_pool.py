"""NumPy reference for max and average pooling with cuda-convnet's edges (OPS.md), float32/64.

Output o covers input [start + o*stride, start + o*stride + size) clipped to [0, img). Each op
loops over the size*size pixels (i, j) of a window, never over pixels of the image: pixel (i, j)
of every window that has it on the image is one strided slice of the image, and the windows that
have it are one rectangle of outputs.

The ops work on (C, H, W, N) memory, batch innermost, where every slice moves runs of N
contiguous values instead of short rows strided along W: arguments are NCHW of any strides, read
without a copy when they have that memory order (a conv's output, see numpy_conv), and results
are NCHW views of (C, H, W, N) memory.
"""
import itertools

import numpy as np

from . import contract
from .contract import pool_output_size
from .numpy_conv import batch_innermost

__all__ = [
    "pool_output_size",
    "maxpool_forward", "maxpool_backward",
    "avgpool_forward", "avgpool_backward",
]


def _with_spatial(shape, size):
    """(C, H, W, N) `shape` with (H, W) = size."""
    return (shape[0], *size, shape[3])


def _window_pixels(size, stride, start, img_size, out_size):
    """For each pixel (i, j) of a window that lies on the image for some windows: (outputs,
    pixels), (C, H, W, N) index tuples of those windows and of their pixel (i, j)."""
    per_axis = []
    for img, out in zip(img_size, out_size):
        ranges = []
        for i in range(size):
            first = start + i                                    # pixel i of window 0
            lo, hi = max(0, -(first // stride)), min(out, -((first - img) // stride))
            if lo < hi:
                ranges.append((slice(lo, hi),
                               slice(first + lo * stride, first + (hi - 1) * stride + 1, stride)))
        per_axis.append(ranges)
    for (out_rows, rows), (out_cols, cols) in itertools.product(*per_axis):
        yield (slice(None), out_rows, out_cols), (slice(None), rows, cols)


# maxpool_backward adds onto dx once per window pixel: it works on blocks of channels whose x and
# dx stay about this size, so that dx is still in cache for the next add (measured 1.5x faster on
# the Fashion net's pools than all channels at once).
BLOCK_BYTES = 4 << 20


def _clipped_counts(img_size, size, stride, start, out_size):
    """counts[oy, ox]: how many image pixels window (oy, ox) covers."""
    lengths = []
    for img, out in zip(img_size, out_size):
        first = start + stride * np.arange(out)
        lengths.append(np.minimum(first + size, img) - np.maximum(first, 0))
    return np.outer(*lengths)


def maxpool_forward(x, size, stride, start, out_size):
    """y[n, c, oy, ox] = max of x over window (oy, ox) clipped to the image."""
    contract.ndim("maxpool_forward", "x", x, 4)
    img_size, out_size = x.shape[2:], tuple(out_size)
    contract.pool_windows("maxpool_forward", img_size, size, stride, start, out_size)
    x = batch_innermost(x)
    y = np.full(_with_spatial(x.shape, out_size), -np.inf, dtype=x.dtype)
    for outputs, pixels in _window_pixels(size, stride, start, img_size, out_size):
        window_max = y[outputs]
        np.maximum(window_max, x[pixels], out=window_max)
    return y.transpose(3, 0, 1, 2)


def maxpool_backward(x, y, dy, size, stride, start):
    """dx: every input equal to its window's max receives that window's gradient (ties share)."""
    for name, a in (("x", x), ("y", y), ("dy", dy)):
        contract.ndim("maxpool_backward", name, a, 4)
    contract.maxpool_grads("maxpool_backward", x, y, dy)
    img_size, out_size = x.shape[2:], y.shape[2:]
    contract.pool_windows("maxpool_backward", img_size, size, stride, start, out_size)
    x, y, dy = batch_innermost(x), batch_innermost(y), batch_innermost(dy)
    dx = np.zeros(x.shape, dtype=np.result_type(x, dy))
    windows = list(_window_pixels(size, stride, start, img_size, out_size))
    step = max(1, BLOCK_BYTES // max(1, 2 * dx[:1].nbytes))     # channels per block
    for c in range(0, len(x), step):
        xc, yc, dyc, dxc = x[c:c + step], y[c:c + step], dy[c:c + step], dx[c:c + step]
        for outputs, pixels in windows:
            dxc[pixels] += dyc[outputs] * (xc[pixels] == yc[outputs])
    return dx.transpose(3, 0, 1, 2)


def avgpool_forward(x, size, stride, start, out_size):
    """y[n, c, oy, ox] = mean of x over window (oy, ox) clipped to the image."""
    contract.ndim("avgpool_forward", "x", x, 4)
    img_size, out_size = x.shape[2:], tuple(out_size)
    contract.pool_windows("avgpool_forward", img_size, size, stride, start, out_size)
    x = batch_innermost(x)
    total = np.zeros(_with_spatial(x.shape, out_size), dtype=x.dtype)
    for outputs, pixels in _window_pixels(size, stride, start, img_size, out_size):
        total[outputs] += x[pixels]
    counts = _clipped_counts(img_size, size, stride, start, out_size).astype(x.dtype)
    return total.transpose(3, 0, 1, 2) / counts


def avgpool_backward(dy, img_size, size, stride, start):
    """dx: each window's gradient divided by its clipped count, spread over its pixels."""
    contract.ndim("avgpool_backward", "dy", dy, 4)
    img_size, out_size = tuple(img_size), dy.shape[2:]
    contract.pool_windows("avgpool_backward", img_size, size, stride, start, out_size)
    counts = _clipped_counts(img_size, size, stride, start, out_size).astype(dy.dtype)
    share = batch_innermost(dy) / counts[:, :, None]
    dx = np.zeros(_with_spatial(share.shape, img_size), dtype=dy.dtype)
    for outputs, pixels in _window_pixels(size, stride, start, img_size, out_size):
        dx[pixels] += share[outputs]
    return dx.transpose(3, 0, 1, 2)
