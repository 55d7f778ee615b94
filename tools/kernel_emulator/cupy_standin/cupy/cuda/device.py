"""cupy.cuda.Device of the emulator: a logical device id, made current by `with` or use()."""
from .. import _emu
from . import runtime


def get_device_id():
    return _emu.current_device()


class Device:
    """A device of CONVNET_EMU_DEVICES; Device() is the current one."""

    def __init__(self, device=None):
        if isinstance(device, Device):
            device = device.id
        self.id = _emu.current_device() if device is None else int(device)
        self._previous = []

    def use(self):
        runtime.setDevice(self.id)
        return self

    def __enter__(self):
        previous = _emu.current_device()
        runtime.setDevice(self.id)
        self._previous.append(previous)
        return self

    def __exit__(self, *exc):
        _emu.set_current_device(self._previous.pop())

    def synchronize(self):
        runtime._check_device(self.id)

    @property
    def compute_capability(self):
        return "90"

    @property
    def mem_info(self):
        total = _emu.settings["device_bytes"]
        return max(total - _emu.used_bytes(self.id), 0), total

    def __int__(self):
        return self.id

    __index__ = __int__

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("cupy.cuda.Device", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id}>"
