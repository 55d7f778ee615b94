"""The CUDA backend: every op of OPS.md on CuPy arrays (float32, the current GPU and stream).

conv/local come from cuda_conv, softmax and the costs from cuda_cost, cuda-convnet2's ops from
cuda_cc2, the other ops from cuda_ops (all call convnet._C's kernels),
and the element-wise combinations from elementwise (shared with the NumPy backend).
"""
import cupy as xp

from .cuda_cc2 import *  # noqa: F401,F403
from .cuda_conv import *  # noqa: F401,F403
from .cuda_cost import *  # noqa: F401,F403
from .cuda_ops import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403

name = "cuda"


def asarray(a, dtype=None):
    """A C-contiguous CuPy array on the current GPU (copied from the host when given NumPy)."""
    return xp.ascontiguousarray(xp.asarray(a, dtype=dtype))


def to_numpy(a):
    return xp.asnumpy(a)
