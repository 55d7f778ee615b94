"""The emulator's "device memory": guarded, NaN-poisoned host allocations made with mmap.

Every allocation gets pages of its own between two PROT_NONE pages, and sits against one of
them: it ends exactly where the page after it starts ("after") or starts right after the page
before it ("before"), drawn per allocation (CONVNET_EMU_GUARD=after|before|mixed, default mixed,
seeded by CONVNET_EMU_SEED, default 0). A read or write one byte past that end faults. New
memory holds float32 NaN (bytes 00 00 c0 7f). Live bytes per device are limited to
CONVNET_EMU_DEVICE_BYTES (default 2 GiB); CONVNET_EMU_DEVICES (default 2) devices exist.
CONVNET_EMU_ALIGN (default 0: none) rounds an "after" start down to that many bytes, leaving
under ALIGN bytes of slack before the guard (CuPy's pool aligns allocations to 256 bytes).

Nothing here imports the rest of the stand-in; the current device lives here too.
"""
import ctypes
import mmap
import os
import random
import threading
import weakref

import numpy as np

PAGE = mmap.PAGESIZE
PROT_NONE = 0  # the mmap module has PROT_READ and PROT_WRITE only
NAN_WORD = 0x7FC00000  # float32 NaN, little-endian bytes 00 00 c0 7f

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _env_int(name, default):
    text = os.environ.get(name, "").strip()
    try:
        return int(text, 0) if text else default
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected an integer") from None


GUARDS = ("after", "before", "mixed")
settings = {
    "guard": os.environ.get("CONVNET_EMU_GUARD", "mixed").strip() or "mixed",
    "seed": _env_int("CONVNET_EMU_SEED", 0),
    "device_bytes": _env_int("CONVNET_EMU_DEVICE_BYTES", 2 << 30),
    "devices": _env_int("CONVNET_EMU_DEVICES", 2),
    "align": _env_int("CONVNET_EMU_ALIGN", 0),
}
if settings["guard"] not in GUARDS:
    raise ValueError(f"CONVNET_EMU_GUARD={settings['guard']!r}: choose after, before or mixed")
if settings["devices"] < 1:
    raise ValueError("CONVNET_EMU_DEVICES must be >= 1")

_lock = threading.RLock()
_rng = random.Random(settings["seed"])
_used = {}          # device -> live bytes
_limits = {}        # device -> limit set through MemoryPool.set_limit (0: none)
_live = {}          # key -> (ptr, nbytes, device, guard) of every live allocation
_keys = iter(range(1, 1 << 62))


def configure(guard=None, seed=None, device_bytes=None, align=None):
    """Change the settings of later allocations (tests); seed restarts the guard draws."""
    global _rng
    with _lock:
        if guard is not None:
            if guard not in GUARDS:
                raise ValueError(f"guard must be one of {GUARDS}, got {guard!r}")
            settings["guard"] = guard
        if seed is not None:
            settings["seed"] = int(seed)
            _rng = random.Random(int(seed))
        if device_bytes is not None:
            settings["device_bytes"] = int(device_bytes)
        if align is not None:
            settings["align"] = int(align)
    return dict(settings)


# ---------------------------------------------------------------------------- current device

_thread = threading.local()


def current_device():
    return getattr(_thread, "device", 0)


def set_current_device(device):
    _thread.device = device


def valid_device(device):
    return isinstance(device, int) and 0 <= device < settings["devices"]


# ---------------------------------------------------------------------------- errors

class OutOfMemoryError(MemoryError):
    """Out-of-memory error (CuPy's message)."""

    def __init__(self, size, total, limit=0):
        msg = f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes"
        msg += f", limit set to: {limit:,} bytes)." if limit else ")."
        super().__init__(msg)


OutOfMemoryError.__module__ = "cupy.cuda.memory"


# ---------------------------------------------------------------------------- allocations

def used_bytes(device):
    return _used.get(device, 0)


def set_limit(device, size):
    _limits[device] = max(int(size or 0), 0)


def get_limit(device):
    return _limits.get(device, 0)


def live_allocations(device=None):
    """How many allocations are mapped (on `device`, or on all)."""
    return sum(1 for a in list(_live.values()) if device is None or a[2] == device)


def find(ptr, nbytes=1):
    """(ptr, nbytes, device, guard) of the live allocation holding [ptr, ptr + nbytes), or None."""
    for entry in list(_live.values()):
        start, size = entry[0], entry[1]
        if size and start <= ptr and ptr + nbytes <= start + size:
            return entry
    return None


def _release(key, base, length, device, nbytes):
    if length:
        _libc.munmap(base, length)
    with _lock:
        _used[device] = _used.get(device, 0) - nbytes
        _live.pop(key, None)


class Allocation:
    """nbytes of guarded memory on `device`; unmapped when the last NumPy view of it dies.

    NumPy sees it through __array_interface__ (one uint8 row), so the arrays made over it keep
    it alive as their base."""

    __slots__ = ("ptr", "nbytes", "device_id", "guard", "owner", "__weakref__")

    def __init__(self, nbytes, device=None):
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError(f"negative allocation size {nbytes}")
        device = current_device() if device is None else device
        with _lock:
            used = _used.get(device, 0)
            limit = _limits.get(device, 0)
            total = settings["device_bytes"]
            if limit and used + nbytes > limit and limit <= total:
                raise OutOfMemoryError(nbytes, used, limit)
            if used + nbytes > total:
                raise OutOfMemoryError(nbytes, used)
            guard = settings["guard"]
            if guard == "mixed":
                guard = "after" if _rng.random() < 0.5 else "before"
            _used[device] = used + nbytes
        try:
            base, length, ptr = self._map(nbytes, guard)
        except BaseException:
            with _lock:
                _used[device] -= nbytes
            raise
        key = next(_keys)
        self.ptr, self.nbytes, self.device_id, self.guard, self.owner = ptr, nbytes, device, \
            guard, None
        with _lock:
            _live[key] = (ptr, nbytes, device, guard)
        weakref.finalize(self, _release, key, base, length, device, nbytes).atexit = False

    @staticmethod
    def _map(nbytes, guard):
        if nbytes == 0:
            return 0, 0, 0  # CuPy: a zero-byte allocation has pointer 0
        body = -(-nbytes // PAGE) * PAGE
        length = body + 2 * PAGE
        base = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, _MAP_FAILED):
            raise OutOfMemoryError(nbytes, 0)
        if _libc.mprotect(base, PAGE, PROT_NONE) or \
                _libc.mprotect(base + PAGE + body, PAGE, PROT_NONE):
            _libc.munmap(base, length)
            raise OSError(ctypes.get_errno(), "mprotect failed")
        words = (ctypes.c_uint32 * (body // 4)).from_address(base + PAGE)
        np.frombuffer(words, dtype=np.uint32).fill(NAN_WORD)
        if guard == "before":
            ptr = base + PAGE
        else:
            ptr = base + PAGE + body - nbytes
            if settings["align"] > 0:
                ptr -= ptr % settings["align"]
                ptr = max(ptr, base + PAGE)
        return base, length, ptr

    @property
    def __array_interface__(self):
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (self.ptr, False),
                "version": 3}

    def __repr__(self):
        return (f"<emulated allocation of {self.nbytes} bytes at {self.ptr:#x} on device "
                f"{self.device_id}, guard {self.guard}>")


def allocation_of(array):
    """The Allocation a NumPy array's memory belongs to, or None (host memory)."""
    b = array
    while isinstance(b, np.ndarray):
        b = b.base
    return b if isinstance(b, Allocation) else None


def numpy_view(alloc, shape, dtype, strides=None, offset=0, order="C"):
    """A NumPy array over `alloc` (its base chain ends at alloc)."""
    raw = np.asarray(alloc)
    return np.ndarray(shape, dtype, buffer=raw, offset=offset, strides=strides, order=order)
