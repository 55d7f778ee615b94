"""NumPy reference for response normalization (OPS.md "response normalization").

All three ops compute y = x * d^-beta with a denominator d built from a window sum:

    lrn   (cross-map, cmrnorm):  d[n,c,h,w] = k + alpha * sum_{c' in win(c)} x[n,c',h,w]^2
    rnorm (same-map):            d[n,c,h,w] = k + alpha * sum_{(h',w') in win(h) x win(w)} x[n,c,h',w']^2
    cnorm (contrast, same-map):  as rnorm with x^2 replaced by u^2, u = x - m,
                                 m[p] = mean of x over the clipped window of p

    win(i) = [i - size//2, i - size//2 + size) clipped to the axis (even sizes reach one further
    back than forward). alpha is the coefficient per square: the layers pass scale / size
    (cmrnorm) or scale / size^2 (rnorm, cnorm); k is cuda-convnet's minDiv.

cnorm follows cuda-convnet's ContrastNormLayer: u[q] = x[q] - m[q] with m[q] the mean over q's
own window (the clipped window, so divided by the clipped count), and d[p] sums u[q]^2 over the
q in p's window.

Backward passes recompute d (and u, m) from x; y is the forward output. With
g = -beta * dy * y / d (the gradient reaching d) and T the transposed window sum (the sum over
all outputs whose window contains the input: offsets [-(size - 1 - size//2), size//2]):

    lrn / rnorm:  dx = dy * d^-beta + 2 * alpha * x * T(g)
    cnorm:        du = 2 * alpha * u * T(g);  dx = dy * d^-beta + du - T(du / count)

cnorm's backward is the exact gradient, including the path through the window mean;
cuda-convnet's convContrastNormUndo dropped that path (it reused the rnorm formula with u in
place of x), which a gradient check rejects.

Window sums are loops over the `size` offsets of an axis (never over pixels), which keeps
float32 sums as accurate as the direct formula.
"""
import numpy as np

from . import contract

__all__ = [
    "lrn_forward", "lrn_backward",
    "rnorm_forward", "rnorm_backward",
    "cnorm_forward", "cnorm_backward",
]


# ----------------------------------------------------------------------------------------------
# window sums


def _window_sum(a, axis, lo, hi):
    """out[..., i, ...] = sum of a[..., j, ...] for j in [i + lo, i + hi] that lie in the axis."""
    n = a.shape[axis]
    out = np.zeros_like(a)
    for off in range(lo, hi + 1):
        start, stop = max(0, -off), min(n, n - off)  # outputs i whose i + off is inside
        if start >= stop:
            continue
        dst = [slice(None)] * a.ndim
        src = [slice(None)] * a.ndim
        dst[axis] = slice(start, stop)
        src[axis] = slice(start + off, stop + off)
        out[tuple(dst)] += a[tuple(src)]
    return out


def _forward_offsets(size):
    """Offsets of win(i) relative to i: [-(size//2), size - 1 - size//2]."""
    return -(size // 2), size - 1 - size // 2


def _transposed_offsets(size):
    """Offsets of the outputs whose window contains input i."""
    lo, hi = _forward_offsets(size)
    return -hi, -lo


def _cross_map_sum(a, size, transposed=False):
    lo, hi = _transposed_offsets(size) if transposed else _forward_offsets(size)
    return _window_sum(a, 1, lo, hi)


def _same_map_sum(a, size, transposed=False):
    lo, hi = _transposed_offsets(size) if transposed else _forward_offsets(size)
    return _window_sum(_window_sum(a, 2, lo, hi), 3, lo, hi)


# ----------------------------------------------------------------------------------------------
# argument checks


def _check(op, x, size, alpha, beta, k, *others):
    """Validate the arguments; return x, the named arrays cast to x's dtype, and the scalars as
    Python floats (so float32 stays float32)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be NCHW (4-d), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: x must be float32 or float64, got {x.dtype}")
    arrays = []
    for name, arr in others:
        arr = np.asarray(arr, dtype=x.dtype)
        contract.same_shape(op, "x", x, **{name: arr})
        arrays.append(arr)
    contract.norm_params(op, size, alpha, k)
    return (x, *arrays, int(size), float(alpha), float(beta), float(k))


# ----------------------------------------------------------------------------------------------
# cross-map (cmrnorm)


def _lrn_denoms(x, size, alpha, k):
    return k + alpha * _cross_map_sum(x * x, size)


def lrn_forward(x, size, alpha, beta, k):
    """Cross-map response normalization: y = x * (k + alpha * sum_{c' in win(c)} x_c'^2)^-beta."""
    x, size, alpha, beta, k = _check("lrn_forward", x, size, alpha, beta, k)
    return x * _lrn_denoms(x, size, alpha, k) ** -beta


def lrn_backward(x, y, dy, size, alpha, beta, k):
    """dx of lrn_forward; d is recomputed from x."""
    x, y, dy, size, alpha, beta, k = _check("lrn_backward", x, size, alpha, beta, k,
                                            ("y", y), ("dy", dy))
    d = _lrn_denoms(x, size, alpha, k)
    g = -beta * dy * y / d
    return dy * d ** -beta + 2 * alpha * x * _cross_map_sum(g, size, transposed=True)


# ----------------------------------------------------------------------------------------------
# same-map (rnorm)


def _rnorm_denoms(x, size, alpha, k):
    return k + alpha * _same_map_sum(x * x, size)


def rnorm_forward(x, size, alpha, beta, k):
    """Same-map response normalization over a size x size window of each map."""
    x, size, alpha, beta, k = _check("rnorm_forward", x, size, alpha, beta, k)
    return x * _rnorm_denoms(x, size, alpha, k) ** -beta


def rnorm_backward(x, y, dy, size, alpha, beta, k):
    """dx of rnorm_forward; d is recomputed from x."""
    x, y, dy, size, alpha, beta, k = _check("rnorm_backward", x, size, alpha, beta, k,
                                            ("y", y), ("dy", dy))
    d = _rnorm_denoms(x, size, alpha, k)
    g = -beta * dy * y / d
    return dy * d ** -beta + 2 * alpha * x * _same_map_sum(g, size, transposed=True)


# ----------------------------------------------------------------------------------------------
# contrast normalization (cnorm)


def _window_counts(x, size):
    """How many pixels each clipped same-map window holds, shaped (H, W)."""
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    return _same_map_sum(ones, size)[0, 0]


def _cnorm_parts(x, size, alpha, k):
    """(u, d, count): mean differences, denominators and window counts."""
    count = _window_counts(x, size)
    u = x - _same_map_sum(x, size) / count
    d = k + alpha * _same_map_sum(u * u, size)
    return u, d, count


def cnorm_forward(x, size, alpha, beta, k):
    """Contrast normalization: rnorm of x with x^2 replaced by (x - window mean)^2."""
    x, size, alpha, beta, k = _check("cnorm_forward", x, size, alpha, beta, k)
    _, d, _ = _cnorm_parts(x, size, alpha, k)
    return x * d ** -beta


def cnorm_backward(x, y, dy, size, alpha, beta, k):
    """Exact dx of cnorm_forward, including the path through the window means."""
    x, y, dy, size, alpha, beta, k = _check("cnorm_backward", x, size, alpha, beta, k,
                                            ("y", y), ("dy", dy))
    u, d, count = _cnorm_parts(x, size, alpha, k)
    g = -beta * dy * y / d
    du = 2 * alpha * u * _same_map_sum(g, size, transposed=True)
    return dy * d ** -beta + du - _same_map_sum(du / count, size, transposed=True)
