"""The plain reference: each forward op straight from its definition in OPS.md, one output at a
time, in float64. Slow (tiny shapes only) and obviously right; the fast NumPy ops (numpy_conv,
numpy_pool, numpy_norm: im2col, window-pixel slices, batch-innermost memory) are tested against
these, and every backward against finite differences of its forward.
"""
import numpy as np

from .contract import conv_output_size

__all__ = ["conv_forward_direct", "local_forward_direct", "maxpool_forward_direct",
           "avgpool_forward_direct", "lrn_forward_direct", "rnorm_forward_direct"]


def _window_taps(oy, ox, stride, padding, fs, height, width):
    """(i, j, row, col) for each filter tap of output (oy, ox) that lands on the image."""
    for i in range(fs):
        for j in range(fs):
            row, col = oy * stride - padding + i, ox * stride - padding + j
            if 0 <= row < height and 0 <= col < width:
                yield i, j, row, col


def conv_forward_direct(x, w, stride, padding, groups):
    """y[n, f, oy, ox] = sum over f's group of channels c and taps (i, j) of
    w[f, c, i, j] * x[n, first channel of the group + c, oy*stride - padding + i, ...]."""
    n, _, height, width = x.shape
    filters, group_channels, fs, _ = w.shape
    out_h = conv_output_size(height, fs, stride, padding)
    out_w = conv_output_size(width, fs, stride, padding)
    y = np.zeros((n, filters, out_h, out_w))
    for f in range(filters):
        first_channel = f // (filters // groups) * group_channels
        for oy in range(out_h):
            for ox in range(out_w):
                for i, j, row, col in _window_taps(oy, ox, stride, padding, fs, height, width):
                    y[:, f, oy, ox] += x[:, first_channel:first_channel + group_channels,
                                         row, col] @ w[f, :, i, j]
    return y


def local_forward_direct(x, w, stride, padding, groups):
    """As conv, with filter bank w[oy, ox] of its own for each output position."""
    n, _, height, width = x.shape
    out_h, out_w, filters, group_channels, fs, _ = w.shape
    y = np.zeros((n, filters, out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            for f in range(filters):
                first_channel = f // (filters // groups) * group_channels
                for i, j, row, col in _window_taps(oy, ox, stride, padding, fs, height, width):
                    y[:, f, oy, ox] += x[:, first_channel:first_channel + group_channels,
                                         row, col] @ w[oy, ox, f, :, i, j]
    return y


def _window(o, img, size, stride, start):
    """Output o covers [start + o*stride, start + o*stride + size) clipped to [0, img)."""
    first = start + o * stride
    return slice(max(first, 0), min(first + size, img))


def _pool(x, size, stride, start, out_size, reduce):
    _, _, height, width = x.shape
    y = np.zeros((*x.shape[:2], *out_size))
    for oy in range(out_size[0]):
        for ox in range(out_size[1]):
            window = x[:, :, _window(oy, height, size, stride, start),
                       _window(ox, width, size, stride, start)]
            y[:, :, oy, ox] = reduce(window, axis=(2, 3))
    return y


def maxpool_forward_direct(x, size, stride, start, out_size):
    """The max over each window clipped to the image."""
    return _pool(x, size, stride, start, out_size, np.max)


def avgpool_forward_direct(x, size, stride, start, out_size):
    """The mean over each window clipped to the image (divided by the clipped count)."""
    return _pool(x, size, stride, start, out_size, np.mean)


def lrn_forward_direct(x, size, alpha, beta, k):
    """x * (k + alpha * sum of x^2 over channels [c - size//2, c - size//2 + size))^-beta."""
    channels = x.shape[1]
    y = np.empty(x.shape)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels, c - size // 2 + size)
        y[:, c] = x[:, c] * (k + alpha * np.sum(x[:, lo:hi] ** 2, axis=1)) ** -beta
    return y


def rnorm_forward_direct(x, size, alpha, beta, k):
    """As lrn over a size x size window of pixels of the same map."""
    _, _, height, width = x.shape
    y = np.empty(x.shape)
    for h in range(height):
        for w in range(width):
            rows = slice(max(0, h - size // 2), min(height, h - size // 2 + size))
            cols = slice(max(0, w - size // 2), min(width, w - size // 2 + size))
            d = k + alpha * np.sum(x[:, :, rows, cols] ** 2, axis=(2, 3))
            y[:, :, h, w] = x[:, :, h, w] * d ** -beta
    return y
