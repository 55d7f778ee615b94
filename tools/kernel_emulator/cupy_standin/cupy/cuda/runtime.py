"""cupy.cuda.runtime of the emulator: devices, peer access, copies and host registration.

Copies run at once (ctypes.memmove) whatever stream they name. Pointers said to be device
memory must lie inside one live emulated allocation (of the named device, for peer copies),
and host pointers outside all of them, or CUDARuntimeError(cudaErrorInvalidValue) is raised.
"""
import ctypes

from .. import _emu

is_hip = False

memcpyHostToHost, memcpyHostToDevice, memcpyDeviceToHost, memcpyDeviceToDevice, \
    memcpyDefault = range(5)
hostRegisterDefault, hostRegisterPortable, hostRegisterMapped = 0, 1, 2
streamDefault, streamNonBlocking = 0, 1
eventDefault, eventBlockingSync, eventDisableTiming, eventInterprocess = 0, 1, 2, 4

errorInvalidValue = 1
errorMemoryAllocation = 2
errorInvalidDevice = 101
errorInvalidResourceHandle = 400
errorPeerAccessAlreadyEnabled = 704
errorPeerAccessNotEnabled = 705
errorHostMemoryAlreadyRegistered = 712
errorHostMemoryNotRegistered = 713
_ERRORS = {
    errorInvalidValue: ("cudaErrorInvalidValue", "invalid argument"),
    errorMemoryAllocation: ("cudaErrorMemoryAllocation", "out of memory"),
    errorInvalidDevice: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    errorInvalidResourceHandle: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    errorPeerAccessAlreadyEnabled: ("cudaErrorPeerAccessAlreadyEnabled",
                                    "peer access is already enabled"),
    errorPeerAccessNotEnabled: ("cudaErrorPeerAccessNotEnabled",
                                "peer access has not been enabled"),
    errorHostMemoryAlreadyRegistered: ("cudaErrorHostMemoryAlreadyRegistered",
                                       "part or all of the requested memory range is already "
                                       "mapped"),
    errorHostMemoryNotRegistered: ("cudaErrorHostMemoryNotRegistered",
                                   "pointer does not correspond to a registered memory region"),
}


class CUDARuntimeError(RuntimeError):
    """A CUDA runtime error: `status` is the cudaError_t code."""

    def __init__(self, status, detail=None):
        self.status = status
        name, text = _ERRORS.get(status, (f"cudaError {status}", "unknown error"))
        super().__init__(f"{name}: {text}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (type(self), (self.status,))


# ---------------------------------------------------------------------------- devices

def _check_device(device):
    if not _emu.valid_device(device):
        raise CUDARuntimeError(errorInvalidDevice, f"device {device!r} of "
                               f"{_emu.settings['devices']} (CONVNET_EMU_DEVICES)")
    return device


def getDeviceCount():
    return _emu.settings["devices"]


def getDevice():
    return _emu.current_device()


def setDevice(device):
    _emu.set_current_device(_check_device(device))


def deviceSynchronize():
    pass


def streamSynchronize(stream):
    pass


def runtimeGetVersion():
    return 12080


def driverGetVersion():
    return 12080


def memGetInfo():
    device = getDevice()
    total = _emu.settings["device_bytes"]
    return max(total - _emu.used_bytes(device), 0), total


def getDeviceProperties(device):
    _check_device(device)
    return {"name": b"convnet CPU emulator", "totalGlobalMem": _emu.settings["device_bytes"],
            "multiProcessorCount": 4, "major": 9, "minor": 0, "warpSize": 32,
            "maxThreadsPerBlock": 1024, "sharedMemPerBlock": 48 << 10}


_peer = set()  # (device, peer) pairs with access enabled


def deviceCanAccessPeer(device, peer):
    _check_device(device)
    _check_device(peer)
    return int(device != peer)


def deviceEnablePeerAccess(peer, flags=0):
    device = getDevice()
    _check_device(peer)
    if peer == device:
        raise CUDARuntimeError(errorInvalidDevice, "a device cannot be its own peer")
    if (device, peer) in _peer:
        raise CUDARuntimeError(errorPeerAccessAlreadyEnabled)
    _peer.add((device, peer))


def deviceDisablePeerAccess(peer):
    pair = (getDevice(), peer)
    if pair not in _peer:
        raise CUDARuntimeError(errorPeerAccessNotEnabled)
    _peer.discard(pair)


# ---------------------------------------------------------------------------- copies

def _device_range(what, ptr, size, device=None):
    entry = _emu.find(int(ptr), int(size))
    if entry is None:
        raise CUDARuntimeError(errorInvalidValue, f"{what} [{int(ptr):#x}, +{int(size)}) is not "
                               "inside one emulated device allocation")
    if device is not None and entry[2] != device:
        raise CUDARuntimeError(errorInvalidValue, f"{what} is on device {entry[2]}, not "
                               f"{device}")


def _host_range(what, ptr):
    entry = _emu.find(int(ptr))
    if entry is not None:
        raise CUDARuntimeError(errorInvalidValue, f"{what} {int(ptr):#x} is device memory "
                               f"(device {entry[2]}), not host memory")


def memcpy(dst, src, size, kind):
    if size:
        if kind in (memcpyHostToDevice, memcpyDeviceToDevice):
            _device_range("dst", dst, size)
        if kind in (memcpyDeviceToHost, memcpyDeviceToDevice):
            _device_range("src", src, size)
        if kind in (memcpyHostToHost, memcpyDeviceToHost):
            _host_range("dst", dst)
        if kind in (memcpyHostToHost, memcpyHostToDevice):
            _host_range("src", src)
        if kind not in range(5):
            raise CUDARuntimeError(errorInvalidValue, f"memcpy kind {kind!r}")
        ctypes.memmove(int(dst), int(src), int(size))


def memcpyAsync(dst, src, size, kind, stream):
    memcpy(dst, src, size, kind)


def memcpyPeer(dst, dstDevice, src, srcDevice, size):
    _check_device(dstDevice)
    _check_device(srcDevice)
    if size:
        _device_range("dst", dst, size, dstDevice)
        _device_range("src", src, size, srcDevice)
        ctypes.memmove(int(dst), int(src), int(size))


def memcpyPeerAsync(dst, dstDevice, src, srcDevice, size, stream):
    memcpyPeer(dst, dstDevice, src, srcDevice, size)


def memset(ptr, value, size):
    if size:
        _device_range("ptr", ptr, size)
        ctypes.memset(int(ptr), int(value), int(size))


def memsetAsync(ptr, value, size, stream):
    memset(ptr, value, size)


# ---------------------------------------------------------------------------- pinned host memory

_registered = {}  # ptr -> size


def hostRegister(ptr, size, flags):
    ptr, size = int(ptr), int(size)
    if not ptr or size <= 0:
        raise CUDARuntimeError(errorInvalidValue, "hostRegister of a null or empty range")
    _host_range("ptr", ptr)
    for start, length in _registered.items():
        if start < ptr + size and ptr < start + length:
            raise CUDARuntimeError(errorHostMemoryAlreadyRegistered)
    _registered[ptr] = size


def hostUnregister(ptr):
    if _registered.pop(int(ptr), None) is None:
        raise CUDARuntimeError(errorHostMemoryNotRegistered)


def registered_host_memory():
    """{ptr: size} of the ranges registered now (the emulator's, for tests)."""
    return dict(_registered)
