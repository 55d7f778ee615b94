"""What the cuda backend's ops check of their CuPy arguments and how they make their outputs
(the kernels take raw pointers: everything is checked before a launch). Shapes and numbers are
checked by contract.py, the same for both backends."""
import cupy
import numpy as np

F32 = np.dtype(np.float32)


def stream():
    """The current CuPy stream, as the kernels take it."""
    return cupy.cuda.get_current_stream().ptr


def array(op, name, a, dtype=F32, ndim=None):
    """a, checked: a C-contiguous CuPy array of `dtype` on the current device."""
    if not isinstance(a, cupy.ndarray):
        raise ValueError(f"{op}: {name} must be a cupy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{op}: {name} must be {np.dtype(dtype).name}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (strides {a.strides} for shape "
                         f"{a.shape})")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {a.shape}")
    device = cupy.cuda.runtime.getDevice()
    if a.device.id != device:
        raise ValueError(f"{op}: {name} is on GPU {a.device.id} but GPU {device} is current")
    return a


def output(op, out, shape, inputs=(), dtype=F32, name="out"):
    """`out` checked against the result's shape and dtype and for overlap with the inputs, or a
    new cupy.empty."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return cupy.empty(shape, dtype=dtype)
    array(op, name, out, dtype)
    if out.shape != shape:
        raise ValueError(f"{op}: {name} has shape {out.shape}, the result has {shape}")
    for a in inputs:
        if out.nbytes and a.nbytes and (out.data.ptr < a.data.ptr + a.nbytes
                                        and a.data.ptr < out.data.ptr + out.nbytes):
            raise ValueError(f"{op}: {name} overlaps an input")
    return out


def workspace(floats):
    """A scratch float32 buffer of `floats` elements for a kernel's partial sums."""
    return cupy.empty(int(floats), dtype=F32)
