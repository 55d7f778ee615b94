"""NumPy reference for dropout (OPS.md "random numbers"): inverted dropout with a given mask.

The mask comes from philox.dropout_mask (uint8, 1 = kept). Kept units are scaled by 1 / keep
while training, so the test-time net uses every unit unscaled:

    dropout_forward(x, mask, keep)   = x * mask / keep
    dropout_backward(dy, mask, keep) = dy * mask / keep

keep is rounded to the array's dtype first; the result is (x * mask) / keep in that dtype (one
rounding: kept elements are x / keep, dropped ones 0).
"""
import numpy as np

from . import contract

__all__ = ["dropout_forward", "dropout_backward"]


def _apply(op, a, mask, keep):
    a = np.asarray(a)
    mask = np.asarray(mask)
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: the array must be float32 or float64, got {a.dtype}")
    contract.mask(op, "the array", a, mask)
    contract.keep(op, keep)
    return a * mask.astype(a.dtype) / a.dtype.type(keep)


def dropout_forward(x, mask, keep):
    """x * mask / keep."""
    return _apply("dropout_forward", x, mask, keep)


def dropout_backward(dy, mask, keep):
    """dy * mask / keep."""
    return _apply("dropout_backward", dy, mask, keep)
