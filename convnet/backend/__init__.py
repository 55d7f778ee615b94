"""Backends: `numpy` (the reference, CPU) and `cuda` (CuPy arrays -> convnet._C).

Both expose the ops of OPS.md under the same names, plus `name`, `xp` (the array module),
`asarray(a, dtype)` and `to_numpy(a)`. PRECISIONS: the conv and local ops' `precision=`
(precision.py).
"""
import importlib
import os

from .precision import PRECISIONS
from .precision import check as check_precision

BACKENDS = ("auto", "numpy", "cuda")
__all__ = ["BACKENDS", "PRECISIONS", "check_precision", "get_backend", "resolve_backend_name"]


def resolve_backend_name(name=None):
    """`name`, else $CONVNET_BACKEND, else auto; auto means cuda when a GPU is usable."""
    name = (name or os.environ.get("CONVNET_BACKEND") or "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        from convnet import cuda_available

        return "cuda" if cuda_available() else "numpy"
    return name


def get_backend(name=None):
    name = resolve_backend_name(name)
    if name == "cuda":
        from convnet import built_with_cuda, cuda_available

        if not cuda_available():
            why = ("convnet was built without CUDA" if not built_with_cuda()
                   else "no usable GPU or CuPy was found")
            raise RuntimeError(f"backend 'cuda' is not available: {why}")
    return importlib.import_module(f"convnet.backend.{name}_backend")
