"""cupy.cuda.memory of the emulator: pointers, the (pass-through) memory pools, OOM.

There is no caching: every array owns an allocation of its own (see cupy/_emu.py), unmapped
when its last view dies, so the pools only count and limit.
"""
import ctypes

from .. import _emu
from .device import Device
from .runtime import CUDARuntimeError, errorInvalidValue

OutOfMemoryError = _emu.OutOfMemoryError


class MemoryPointer:
    """`mem` (an emulated allocation) at byte `offset`: `ptr` is its address."""

    __slots__ = ("mem", "ptr")

    def __init__(self, mem, offset):
        self.mem = mem
        self.ptr = (mem.ptr + int(offset)) if mem.nbytes else 0

    @property
    def device_id(self):
        return self.mem.device_id

    @property
    def device(self):
        return Device(self.mem.device_id)

    def __int__(self):
        return self.ptr

    def __add__(self, offset):
        return MemoryPointer(self.mem, self.ptr - self.mem.ptr + int(offset))

    def __sub__(self, offset):
        return self + (-int(offset))

    def __repr__(self):
        return f"<MemoryPointer {self.ptr:#x} (device {self.device_id})>"

    def _check(self, size):
        if size < 0 or self.ptr - self.mem.ptr + size > self.mem.nbytes or self.ptr < \
                self.mem.ptr:
            raise CUDARuntimeError(errorInvalidValue, f"{size} bytes at {self.ptr:#x} leave "
                                   f"the allocation of {self.mem.nbytes} bytes")

    def copy_from_device(self, src, size, stream=None):
        self._check(size)
        src._check(size)
        if size:
            ctypes.memmove(self.ptr, src.ptr, size)

    copy_from_device_async = copy_from_device

    def copy_from_host(self, mem, size, stream=None):
        self._check(size)
        if size:
            ctypes.memmove(self.ptr, int(getattr(mem, "value", mem)), size)

    copy_from_host_async = copy_from_host

    def copy_to_host(self, mem, size, stream=None):
        self._check(size)
        if size:
            ctypes.memmove(int(getattr(mem, "value", mem)), self.ptr, size)

    copy_to_host_async = copy_to_host

    def memset(self, value, size, stream=None):
        self._check(size)
        if size:
            ctypes.memset(self.ptr, int(value), size)

    memset_async = memset


def alloc(size):
    """A MemoryPointer to `size` fresh (NaN-poisoned, guarded) bytes on the current device."""
    return MemoryPointer(_emu.Allocation(size), 0)


class MemoryPool:
    """Counts the live allocations of each device; set_limit limits them (the current device)."""

    def malloc(self, size):
        return alloc(size)

    def used_bytes(self):
        return _emu.used_bytes(_emu.current_device())

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        if fraction is not None:
            if size is not None:
                raise ValueError("size and fraction cannot be specified at one time")
            size = int(_emu.settings["device_bytes"] * float(fraction))
        _emu.set_limit(_emu.current_device(), size or 0)

    def get_limit(self):
        return _emu.get_limit(_emu.current_device())


class PinnedMemoryPool:
    """cupyx.empty_pinned's arrays are ordinary NumPy arrays: nothing to pool."""

    def malloc(self, size):
        raise NotImplementedError("the convnet CPU emulator has no pinned allocator: use "
                                  "cupyx.empty_pinned (a NumPy array)")

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self):
        pass

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


_default_pool = MemoryPool()
_default_pinned_pool = PinnedMemoryPool()


def _check_allocator(allocator, pool_type):
    if allocator is not None and not isinstance(getattr(allocator, "__self__", None), pool_type):
        raise NotImplementedError("the convnet CPU emulator always uses its guarded allocator; "
                                  "set_allocator accepts None or a MemoryPool's malloc")


def set_allocator(allocator=None):
    _check_allocator(allocator, MemoryPool)


def set_pinned_memory_allocator(allocator=None):
    _check_allocator(allocator, PinnedMemoryPool)


def get_allocator():
    return _default_pool.malloc
