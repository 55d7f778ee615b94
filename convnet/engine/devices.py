"""Where layers run: each layer's logical device (its gpu= key) on a physical GPU (`--gpu`), one
stream per logical device, and the explicit copies on the edges of the graph that cross devices.

The Net drives a placement through four calls: `on(d)` (the context a layer of logical device d
runs in), `fenced()` (around a pass: the streams start after what the caller queued and the
caller's streams wait for them at the end, so results are safe to read and nothing is
synchronised on the host), `record(d)` (an event after what d's stream has queued), and
`copy(a, src, dst, ready)` (a's copy on dst, ordered after the event `ready`).

The NumPy backend has logical devices only (`Logical`): nothing moves, a copy is the array itself.
"""
import contextlib
import warnings


def parse_gpus(text):
    """`--gpu 0,1` -> (0, 1): logical device i runs on the i-th GPU of the list."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() for p in parts):
        raise ValueError(f"--gpu {text!r}: expected one physical GPU number per logical device, "
                         "comma-separated, e.g. --gpu 0,1 (or --gpu 0,0: both on GPU 0)")
    return tuple(int(p) for p in parts)


class Logical:
    """The NumPy backend: one address space, so copies are the arrays themselves."""

    def on(self, device):
        return contextlib.nullcontext()

    def fenced(self):
        return contextlib.nullcontext()

    def record(self, device):
        return None

    def copy(self, a, src, dst, ready):
        return a


class Gpus:
    """The cuda backend: logical device d on GPU phys[d], with a non-blocking stream of its own
    when the net uses more than one logical device (a one-device net keeps the caller's stream)."""

    def __init__(self, layers, gpus=None):
        import cupy

        self.cupy = cupy
        count = cupy.cuda.runtime.getDeviceCount()
        top = max(layers, key=lambda layer: layer.gpu)
        where = (f"--gpu {','.join(map(str, gpus))} maps only {len(gpus)} logical device(s)"
                 if gpus is not None else f"this machine has {count} GPU(s)")
        if top.gpu >= (len(gpus) if gpus is not None else count):
            raise ValueError(f"layer '{top.name}' has gpu={top.gpu} but {where}: give one GPU "
                             f"per logical device, e.g. --gpu {','.join(['0'] * (top.gpu + 1))}")
        gpus = gpus if gpus is not None else range(count)
        if max(gpus) >= count:
            raise ValueError(f"--gpu names GPU {max(gpus)} but this machine has {count} GPU(s)")
        self.phys = {d: gpus[d] for d in sorted({layer.gpu for layer in layers})}
        self.streams = {}
        if len(self.phys) > 1:
            for d, g in self.phys.items():
                with cupy.cuda.Device(g):
                    self.streams[d] = cupy.cuda.Stream(non_blocking=True)
        self.in_flight = []  # sources of queued copies: kept until the pass's end, so the pool
        #                      cannot hand their memory to their own stream while a copy reads it
        self.enable_peer_access()

    def enable_peer_access(self):
        runtime = self.cupy.cuda.runtime
        used = sorted(set(self.phys.values()))
        for a in used:
            for b in used:
                if a == b:
                    continue
                if not runtime.deviceCanAccessPeer(a, b):
                    warnings.warn(f"GPU {a} cannot access GPU {b} directly: the copies between "
                                  "them are staged through host memory (slower)")
                    continue
                with self.cupy.cuda.Device(a):
                    try:
                        runtime.deviceEnablePeerAccess(b)
                    except runtime.CUDARuntimeError:  # already enabled (by CuPy or another Net)
                        pass

    @contextlib.contextmanager
    def on(self, device):
        with self.cupy.cuda.Device(self.phys[device]), \
                self.streams.get(device, contextlib.nullcontext()):
            yield

    @contextlib.contextmanager
    def fenced(self):
        cuda = self.cupy.cuda
        for d, stream in self.streams.items():
            with cuda.Device(self.phys[d]):
                stream.wait_event(self.event(cuda.get_current_stream()))
        try:
            yield
        finally:
            done = [self.record(d) for d in self.streams]
            for g in {self.phys[d] for d in self.streams}:
                with cuda.Device(g):
                    for event in done:
                        cuda.get_current_stream().wait_event(event)
            self.in_flight.clear()

    def record(self, device):
        if not self.streams:
            return None  # one device: nothing to order
        with self.on(device):
            return self.event(self.cupy.cuda.get_current_stream())

    def event(self, stream):
        """An event after what `stream` (of the current GPU) has queued; no timing: cheaper."""
        return stream.record(self.cupy.cuda.Event(disable_timing=True))

    def copy(self, a, src, dst, ready):
        """`a` from logical device src to dst, on dst's stream after the event `ready` (None: no
        wait). cudaMemcpyPeerAsync: a device-to-device copy when both are one GPU; a peer copy
        otherwise, which the driver stages through host memory where peer access is impossible."""
        if not a.flags.c_contiguous:
            raise ValueError(f"copy between devices needs a C-contiguous array (shape {a.shape}, "
                             f"strides {a.strides})")
        with self.on(dst):
            stream = self.cupy.cuda.get_current_stream()
            if ready is not None:
                stream.wait_event(ready)
            out = self.cupy.empty(a.shape, a.dtype)
            self.cupy.cuda.runtime.memcpyPeerAsync(out.data.ptr, self.phys[dst], a.data.ptr,
                                                   self.phys[src], a.nbytes, stream.ptr)
        self.in_flight.append(a)
        return out


def placement(backend, layers, gpus=None):
    """The placement of `layers` for `backend` (a module of convnet.backend)."""
    return Gpus(layers, gpus) if backend.name == "cuda" else Logical()
