"""convnet: cuda-convnet rebuilt for today's GPUs (NumPy reference backend + CUDA kernels)."""

__version__ = "0.1.0"

try:
    from . import _C
except ImportError:  # a source tree that was never built: the NumPy backend still works
    _C = None


def built_with_cuda():
    """True when the compiled extension carries the CUDA kernels."""
    return bool(_C is not None and _C.built_with_cuda)


def cuda_available():
    """True when the CUDA kernels are built, CuPy imports and a GPU answers. Never raises."""
    if not built_with_cuda():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
