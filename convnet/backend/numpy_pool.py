"""NumPy reference for max and average pooling with cuda-convnet's edges (OPS.md), float32/64.

Output o covers input [start + o*stride, start + o*stride + size) clipped to [0, img). The image
is laid on a canvas that starts at `start` and reaches the end of the last window, the pixels
off the image holding -inf (max) or 0 (avg); each op then loops over the size*size offsets of a
window, one strided slice of the canvas per offset, never over pixels.
"""
import numpy as np

from .numpy_conv import crop_from_windows, pad_to_windows, window_offsets

__all__ = [
    "pool_output_size",
    "maxpool_forward", "maxpool_backward",
    "avgpool_forward", "avgpool_backward",
]

SPATIAL = (2, 3)  # the H and W axes of NCHW


def pool_output_size(img, size, stride, start):
    """1 + ceil((img - start - size) / stride), as cuda-convnet."""
    return 1 + -(-(img - start - size) // stride)


def _check_4d(op, name, a):
    if np.ndim(a) != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {np.shape(a)}")


def _check_windows(op, img_size, size, stride, start, out_size):
    """Integer arguments, and every window overlapping the image."""
    for name, value, least in (("size", size, 1), ("stride", stride, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"{op}: {name} must be an integer >= {least}, got {value!r}")
    if int(start) != start:
        raise ValueError(f"{op}: start must be an integer, got {start!r}")
    if len(out_size) != 2 or any(int(o) != o or o < 1 for o in out_size):
        raise ValueError(f"{op}: out_size must be two integers >= 1, got {out_size!r}")
    for img, out in zip(img_size, out_size):
        if start + size <= 0 or start + (out - 1) * stride >= img:
            raise ValueError(f"{op}: with start={start}, size={size}, stride={stride}, "
                             f"{out} outputs do not all overlap an image of {img} pixels")


def _clipped_counts(img_size, size, stride, start, out_size):
    """counts[oy, ox]: how many image pixels window (oy, ox) covers."""
    lengths = []
    for img, out in zip(img_size, out_size):
        first = start + stride * np.arange(out)
        lengths.append(np.minimum(first + size, img) - np.maximum(first, 0))
    return np.outer(*lengths)


def maxpool_forward(x, size, stride, start, out_size):
    """y[n, c, oy, ox] = max of x over window (oy, ox) clipped to the image."""
    _check_4d("maxpool_forward", "x", x)
    out_size = tuple(out_size)
    _check_windows("maxpool_forward", x.shape[2:], size, stride, start, out_size)
    canvas = pad_to_windows(x, start, out_size, stride, size, fill=-np.inf, axes=SPATIAL)
    y = np.full((*x.shape[:2], *out_size), -np.inf, dtype=x.dtype)
    for _, _, window in window_offsets(size, stride, out_size, SPATIAL):
        np.maximum(y, canvas[window], out=y)
    return y


def maxpool_backward(x, y, dy, size, stride, start):
    """dx: every input equal to its window's max receives that window's gradient (ties share)."""
    for name, a in (("x", x), ("y", y), ("dy", dy)):
        _check_4d("maxpool_backward", name, a)
    if dy.shape != y.shape or y.shape[:2] != x.shape[:2]:
        raise ValueError(f"maxpool_backward: x {x.shape}, y {y.shape} and dy {dy.shape} disagree")
    out_size = y.shape[2:]
    _check_windows("maxpool_backward", x.shape[2:], size, stride, start, out_size)
    canvas = pad_to_windows(x, start, out_size, stride, size, fill=-np.inf, axes=SPATIAL)
    dcanvas = np.zeros(canvas.shape, dtype=np.result_type(x, dy))
    for _, _, window in window_offsets(size, stride, out_size, SPATIAL):
        dcanvas[window] += dy * (canvas[window] == y)
    return crop_from_windows(dcanvas, start, x.shape[2:], axes=SPATIAL)


def avgpool_forward(x, size, stride, start, out_size):
    """y[n, c, oy, ox] = mean of x over window (oy, ox) clipped to the image."""
    _check_4d("avgpool_forward", "x", x)
    out_size = tuple(out_size)
    _check_windows("avgpool_forward", x.shape[2:], size, stride, start, out_size)
    canvas = pad_to_windows(x, start, out_size, stride, size, fill=0, axes=SPATIAL)
    total = np.zeros((*x.shape[:2], *out_size), dtype=x.dtype)
    for _, _, window in window_offsets(size, stride, out_size, SPATIAL):
        total += canvas[window]
    return total / _clipped_counts(x.shape[2:], size, stride, start, out_size).astype(x.dtype)


def avgpool_backward(dy, img_size, size, stride, start):
    """dx: each window's gradient divided by its clipped count, spread over its pixels."""
    _check_4d("avgpool_backward", "dy", dy)
    img_size, out_size = tuple(img_size), dy.shape[2:]
    _check_windows("avgpool_backward", img_size, size, stride, start, out_size)
    share = dy / _clipped_counts(img_size, size, stride, start, out_size).astype(dy.dtype)
    span = [(o - 1) * stride + size for o in out_size]
    dcanvas = np.zeros((*dy.shape[:2], *span), dtype=dy.dtype)
    for _, _, window in window_offsets(size, stride, out_size, SPATIAL):
        dcanvas[window] += share
    return crop_from_windows(dcanvas, start, img_size, axes=SPATIAL)
