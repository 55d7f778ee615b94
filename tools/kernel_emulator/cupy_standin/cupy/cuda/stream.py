"""Streams and events of the emulator: ordered no-ops.

Every kernel and copy runs at once, synchronously, so every stream is always done and waiting
orders nothing: a missing wait_event or synchronize cannot show here. What is checked is what
CUDA and CuPy check on the host: a stream made current on another device than its own is a
RuntimeError, and an event recorded on a stream of another device than the event's is
cudaErrorInvalidResourceHandle.
"""
import itertools
import threading

from .. import _emu
from . import runtime

_handles = itertools.count(0x7E1000, 0x10)  # distinct nonzero "handles"
_thread = threading.local()


def _stacks():
    """Per thread: device -> stack of current streams (the bottom one set by use())."""
    stacks = getattr(_thread, "stacks", None)
    if stacks is None:
        stacks = _thread.stacks = {}
    return stacks


def _stack(device):
    return _stacks().setdefault(device, [Stream.null])


def get_current_stream(device_id=-1):
    device = _emu.current_device() if device_id == -1 else device_id
    return _stack(device)[-1]


def _check_stream_device(stream):
    current = _emu.current_device()
    device = current if stream.device_id == -1 else stream.device_id
    if device != current:
        raise RuntimeError(f"The device that the stream is created on ({device}) does not "
                           f"match with the current device ({current})")
    return device


class _Finished:
    """Streams and events: everything queued has already run (the emulator runs it at once)."""

    @property
    def done(self):
        return True

    def query(self):
        return True

    def synchronize(self):
        pass


class _BaseStream(_Finished):
    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = ptr, device_id

    def __enter__(self):
        stack = _stack(_check_stream_device(self))
        stack.append(self)
        self._entered = getattr(self, "_entered", []) + [stack]
        return self

    def __exit__(self, *exc):
        self._entered.pop().pop()

    def use(self):
        _stack(_check_stream_device(self))[-1] = self
        return self

    def record(self, event=None):
        if event is None:
            event = Event()
        event.record(self)
        return event

    def wait_event(self, event):
        if not isinstance(event, Event):
            raise TypeError(f"wait_event needs a cupy.cuda.Event, got {type(event).__name__}")

    def add_callback(self, callback, arg):
        callback(self, 0, arg)

    def launch_host_func(self, callback, arg):
        callback(arg)

    def __eq__(self, other):
        return isinstance(other, _BaseStream) and other.ptr == self.ptr

    def __hash__(self):
        return self.ptr

    def __repr__(self):
        return f"<{type(self).__name__} {self.ptr} (device {self.device_id})>"


class Stream(_BaseStream):
    """Stream(null=False, non_blocking=False, ptds=False, priority=None)."""

    null = None  # set below
    ptds = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null:
            super().__init__(0, -1)
        elif ptds:
            super().__init__(2, -1)
        else:
            super().__init__(next(_handles), _emu.current_device())
        self.non_blocking = bool(non_blocking)

    @property
    def is_non_blocking(self):
        return self.non_blocking


class ExternalStream(_BaseStream):
    def __init__(self, ptr, device_id=-1):
        super().__init__(int(ptr), device_id)


Stream.null = Stream(null=True)
Stream.ptds = Stream(ptds=True)


class Event(_Finished):
    """Event(block=False, disable_timing=False, interprocess=False), of the current device."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        if interprocess and not disable_timing:
            raise ValueError("Timing must be disabled for interprocess events")
        self.ptr = next(_handles)
        self.device_id = _emu.current_device()
        self.disable_timing = bool(disable_timing)
        self.recorded = False

    def record(self, stream=None):
        stream = get_current_stream() if stream is None else stream
        device = _emu.current_device() if stream.device_id == -1 else stream.device_id
        if device != self.device_id:
            raise runtime.CUDARuntimeError(
                runtime.errorInvalidResourceHandle,
                f"event of device {self.device_id} recorded on a stream of device {device}")
        self.recorded = True

    def __repr__(self):
        return f"<Event {self.ptr} (device {self.device_id})>"


def get_elapsed_time(start_event, end_event):
    raise NotImplementedError("cupy.cuda.get_elapsed_time: the convnet CPU emulator runs every "
                              "kernel at once and cannot measure GPU time")
