"""cupy.cuda of the emulator: devices, streams, events, memory and the runtime calls."""
from . import device, memory, runtime, stream  # noqa: F401
from .device import Device, get_device_id  # noqa: F401
from .memory import (MemoryPointer, MemoryPool, OutOfMemoryError, PinnedMemoryPool,  # noqa: F401
                     alloc, get_allocator, set_allocator, set_pinned_memory_allocator)
from .stream import (Event, ExternalStream, Stream, get_current_stream,  # noqa: F401
                     get_elapsed_time)


def is_available():
    return True


def get_local_runtime_version():
    return runtime.runtimeGetVersion()


class _NotEmulated:
    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        raise NotImplementedError(f"cupy.cuda.{self.name}: not provided by the convnet CPU "
                                  "emulator (kernels must live in csrc/ to be emulated)")


cublas, cudnn, cufft, curand, cusolver, cusparse, nccl, nvrtc, driver = (
    _NotEmulated(n) for n in ("cublas", "cudnn", "cufft", "curand", "cusolver", "cusparse",
                              "nccl", "nvrtc", "driver"))
