"""The precisions of the conv and local ops (their `precision=`): fp32, or the operands rounded as
the tensor cores take them, products accumulated in FP32.

    fp32   the operands as they are (float32 or float64)
    tf32   each float32 operand rounded to 10 mantissa bits, to nearest with ties away from zero
           (PTX cvt.rna.tf32.f32; the low 13 bits of the result are zero)
    bf16   each float32 operand rounded to bfloat16, 7 mantissa bits, to nearest even
           (cvt.rn.bf16x2.f32), widened back to float32

Inf and NaN pass through (a NaN stays a NaN). The cuda backend runs tf32 and bf16 on its
mma.sync kernels (csrc/conv_mma.cuh); the NumPy reference rounds both array operands here and
runs its float32 op, so the two differ only by summation order. `tolerance` is the bound the
tests hold both to.
"""
import numpy as np

PRECISIONS = ("fp32", "tf32", "bf16")
MANTISSA_BITS = {"fp32": 23, "tf32": 10, "bf16": 7}


def check(op, precision):
    """`precision` checked: one of PRECISIONS, else ValueError naming op."""
    if precision not in PRECISIONS:
        raise ValueError(f"{op}: precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def round_tf32(a):
    """float32 array `a` rounded to TF32 (ties away from zero), as float32."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32)
    finite = (u & 0x7F800000) != 0x7F800000
    rounded = ((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).astype(np.uint32)
    return np.where(finite, rounded, u).view(np.float32)


def round_bf16(a):
    """float32 array `a` rounded to bfloat16 (to nearest even), widened back to float32."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16) & 0xFFFFFFFF
    quiet = (u >> 16 | 0x40) << 16
    return np.where(nan, quiet, rounded).astype(np.uint32).view(np.float32)


ROUND = {"tf32": round_tf32, "bf16": round_bf16}


def operands(op, precision, *arrays):
    """The array operands of `op` as its precision takes them: unchanged for fp32; rounded for
    tf32 and bf16, which take float32 arrays only (ValueError naming op otherwise)."""
    check(op, precision)
    if precision == "fp32":
        return arrays
    for a in arrays:
        if a.dtype != np.float32:
            raise ValueError(f"{op}: precision={precision} rounds float32 operands; got {a.dtype} "
                             "(use fp32 for float64, e.g. gradient checks)")
    return tuple(ROUND[precision](a) for a in arrays)


def tolerance(precision, reduction):
    """The relative error max|got - ref| / max|ref| allowed for an op of this precision whose
    outputs each sum `reduction` products: the operands' rounding (2^-(bits+1) each, two per
    product) grows like the square root of the reduction length for random signs, and the FP32
    sums' own error like its length; a factor 8 of headroom for the worst output of many."""
    unit = 2.0 ** -(MANTISSA_BITS[precision] + 1)
    fp32 = 2.0 ** -24
    return 8 * (2 * unit * np.sqrt(reduction) + fp32 * reduction) + 1e-6
