"""Element-wise combination of several inputs (OPS.md "element-wise combination").

One implementation for both backends: the array module is taken from the inputs (CuPy for CuPy
arrays, NumPy otherwise), so the CUDA backend imports this file unchanged.

    eltsum_forward(xs, coeffs)   sum_i coeffs[i] * xs[i]
    eltsum_backward(dy, coeffs)  [coeffs[i] * dy]
    eltmax_forward(xs)           the element-wise maximum
    eltmax_backward(xs, y, dy)   [dx_i]: each element's dy goes to the first input (lowest i)
                                 equal to y there, zeros elsewhere; the others get 0
    concat_forward(xs)           concatenation along axis 1 (channels or features)
    concat_backward(dy, sizes)   [dy[:, s_i : s_i + sizes[i]]] as new arrays
    channel_gather_forward(x, conns)               x[:, conns]: cuda-convnet's random sparse
                                                   connectivity (randSparse), conns being
                                                   permutations of the C channels, end to end
    channel_gather_backward(dy, conns, channels)   dx: each channel's share of dy summed

eltsum_backward is not in OPS.md's list; it is the gradient the eltsum layer needs.
Coefficients are rounded to the inputs' dtype, so float32 stays float32.
"""
import numpy as np

from . import contract

__all__ = ["array_module", "eltsum_forward", "eltsum_backward", "eltmax_forward",
           "eltmax_backward", "concat_forward", "concat_backward", "channel_gather_forward",
           "channel_gather_backward"]


def array_module(*arrays):
    """cupy when any argument is a CuPy array, numpy otherwise (CuPy is never imported for
    NumPy inputs)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def _check_inputs(op, xs, same_shape=True):
    xs = list(xs)
    if not xs:
        raise ValueError(f"{op}: needs at least one input")
    first = xs[0]
    for i, x in enumerate(xs):
        if x.dtype != first.dtype or x.dtype not in (np.float32, np.float64):
            raise ValueError(f"{op}: input {i} is {x.dtype}; all inputs must share float32 or "
                             f"float64 (input 0 is {first.dtype})")
        if same_shape and x.shape != first.shape:
            raise ValueError(f"{op}: input {i} has shape {x.shape}, input 0 has {first.shape}")
    return xs


def eltsum_forward(xs, coeffs):
    """sum_i coeffs[i] * xs[i]."""
    xs = _check_inputs("eltsum_forward", xs)
    coeffs = list(coeffs)
    if len(coeffs) != len(xs):
        raise ValueError(f"eltsum_forward: {len(coeffs)} coeffs for {len(xs)} inputs")
    scalar = xs[0].dtype.type
    y = scalar(coeffs[0]) * xs[0]
    for c, x in zip(coeffs[1:], xs[1:]):
        y += scalar(c) * x
    return y


def eltsum_backward(dy, coeffs):
    """[coeffs[i] * dy] for each input i."""
    scalar = dy.dtype.type
    return [scalar(c) * dy for c in coeffs]


def eltmax_forward(xs):
    """The element-wise maximum of the inputs."""
    xs = _check_inputs("eltmax_forward", xs)
    xp = array_module(*xs)
    y = xs[0].copy()
    for x in xs[1:]:
        xp.maximum(y, x, out=y)
    return y


def eltmax_backward(xs, y, dy):
    """Route each element of dy to the first input equal to the maximum y there."""
    xs = _check_inputs("eltmax_backward", xs)
    xp = array_module(y, dy, *xs)
    if y.shape != xs[0].shape or dy.shape != xs[0].shape:
        raise ValueError(f"eltmax_backward: y {y.shape} and dy {dy.shape} must match the inputs' "
                         f"shape {xs[0].shape}")
    unclaimed = xp.ones(y.shape, dtype=bool)
    dxs = []
    for x in xs:
        winner = unclaimed & (x == y)
        dxs.append(xp.where(winner, dy, dy.dtype.type(0)))
        unclaimed &= ~winner
    return dxs


def concat_forward(xs):
    """Concatenate along axis 1."""
    xs = _check_inputs("concat_forward", xs, same_shape=False)
    rest = [x.shape[:1] + x.shape[2:] for x in xs]
    if xs[0].ndim < 2 or any(r != rest[0] for r in rest):
        raise ValueError(f"concat_forward: inputs must agree on every axis but 1, got "
                         f"{[x.shape for x in xs]}")
    return array_module(*xs).concatenate(xs, axis=1)


def concat_backward(dy, sizes):
    """Split dy along axis 1 into pieces of `sizes` (new contiguous arrays)."""
    sizes = [int(s) for s in sizes]
    if dy.ndim < 2 or sum(sizes) != dy.shape[1] or min(sizes, default=0) < 0:
        raise ValueError(f"concat_backward: sizes {sizes} do not split axis 1 of {dy.shape}")
    xp = array_module(dy)
    pieces, start = [], 0
    for s in sizes:
        pieces.append(xp.ascontiguousarray(dy[:, start:start + s]))
        start += s
    return pieces


def channel_gather_forward(x, conns):
    """x[:, conns]: the channels each filter group of a randSparse layer sees."""
    if x.ndim < 2:
        raise ValueError(f"channel_gather_forward: x must be (N, C, ...), got {x.shape}")
    contract.channel_table("channel_gather_forward", conns, x.shape[1])
    xp = array_module(x)
    return x[:, xp.asarray(np.asarray(conns, dtype=np.int64))]


def channel_gather_backward(dy, conns, channels):
    """The gradient of channel_gather_forward: each block of conns is a permutation, so each
    block scatters dy's slice back with one indexed assignment, and the blocks add up."""
    blocks = contract.channel_table("channel_gather_backward", conns, channels)
    if dy.ndim < 2 or dy.shape[1] != blocks.size:
        raise ValueError(f"channel_gather_backward: dy {dy.shape} must have {blocks.size} "
                         "channels on axis 1, one per conn")
    xp = array_module(dy)
    dx = xp.zeros((dy.shape[0], channels) + dy.shape[2:], dtype=dy.dtype)
    part = xp.empty_like(dx)
    for o, block in enumerate(blocks):
        part[:, xp.asarray(block)] = dy[:, o * channels:(o + 1) * channels]
        dx += part
    return dx
