"""The image pipeline's plumbing: uint8 batch buffers (plain, pinned, or in shared memory for
decode processes), the decode workers (threads, or spawned processes that open the prepared
folder themselves) and ``prefetch``, the background thread that keeps batches decoding ahead of
the consumer. The image provider (image_provider.py) drives it; CuPy is imported only to pin
shared buffers for the cuda backend.
"""
import multiprocessing
import os
import queue
import signal
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from .decode import DECODERS, decode_crops
from .prepared import BatchFiles


def default_workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ----------------------------------------------------------------------------- host buffers

class HostBuffer:
    """A uint8 batch buffer: `array` (rows, h, w, 4); `name` of its shared memory (processes
    write into it) or None; `release()` gives it back for reuse."""

    def __init__(self, array, name=None, release=None):
        self.array, self.name, self._release = array, name, release

    def release(self):
        if self._release is not None:
            release, self._release = self._release, None
            release(self)


class SharedRing:
    """`count` buffers of one shape in shared memory, reused in turn (registered as pinned
    memory for asynchronous copies when `pin`). Closed (unlinked) by close() or at exit."""

    def __init__(self, shape, count, pin=False):
        self.shape, self.free = tuple(shape), queue.Queue()
        nbytes = int(np.prod(shape))
        self.blocks, self.arrays, self.pinned = [], [], []
        try:
            for _ in range(count):
                block = shared_memory.SharedMemory(create=True, size=nbytes)
                self.blocks.append(block)
                array = np.ndarray(self.shape, np.uint8, buffer=block.buf)
                self.arrays.append(array)
                if pin:
                    import cupy

                    cupy.cuda.runtime.hostRegister(array.ctypes.data, nbytes, 0)
                    self.pinned.append(array.ctypes.data)
                self.free.put(len(self.arrays) - 1)
        except BaseException:
            self.close()
            raise
        self._finalizer = weakref.finalize(self, SharedRing._cleanup, self.blocks, self.pinned)

    def acquire(self, rows, timeout=600):
        try:
            index = self.free.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("image pipeline: no free shared buffer (a consumer holds them "
                               "all)") from None
        return HostBuffer(self.arrays[index][:rows], self.blocks[index].name,
                          lambda buf, i=index: self.free.put(i))

    @staticmethod
    def _cleanup(blocks, pinned):
        if pinned:
            import cupy

            for pointer in pinned:
                cupy.cuda.runtime.hostUnregister(pointer)
            pinned.clear()
        for block in blocks:
            try:
                block.close()
            except BufferError:  # a consumer still holds an array on it: unmapped when dropped
                pass
            try:
                block.unlink()
            except OSError:
                pass
        blocks.clear()

    def close(self):
        self.arrays = []
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        else:
            SharedRing._cleanup(self.blocks, self.pinned)


# ----------------------------------------------------------------------------- decode workers

class ThreadDecoders:
    """Decode tasks on a thread pool, into any host buffer."""

    def __init__(self, provider, workers):
        self.provider = provider
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="convnet-decode")

    def submit(self, spec, buffer, first, last):
        p = self.provider
        image_set = p.train_set if spec.split == "train" else p.test_set
        return self.pool.submit(decode_crops, p._decode, image_set, spec, buffer.array, first,
                                last, p.stored_shape[1])

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class ProcessDecoders:
    """Decode tasks on processes (spawned), into shared-memory buffers."""

    def __init__(self, provider, workers):
        numbers = {"train": provider.train_numbers, "test": provider.test_numbers}
        self.pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init,
            initargs=(provider.path, numbers, provider.decoder_name, provider.stored_shape[1]))

    def submit(self, spec, buffer, first, last):
        return self.pool.submit(_process_decode, spec, buffer.name, buffer.array.shape,
                                first, last)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


_WORKER = {}  # in a decode process: its image sets, decoder and attached shared buffers


def _process_init(path, numbers, decoder, size):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    # the parent owns (and unlinks) the shared buffers: attaching must not register them with
    # the resource tracker, which this process shares with the parent
    register = resource_tracker.register
    resource_tracker.register = lambda name, rtype: (
        None if rtype == "shared_memory" else register(name, rtype))
    files = BatchFiles(path)
    _WORKER.update(sets={split: files.load(n) for split, n in numbers.items()},
                   decode=DECODERS[decoder], size=size, blocks=OrderedDict())


def _attach(name):
    """The shared memory block `name`, attached once per process (the last 64 kept)."""
    blocks = _WORKER["blocks"]
    if name in blocks:
        blocks.move_to_end(name)
        return blocks[name]
    block = blocks[name] = shared_memory.SharedMemory(name=name)
    while len(blocks) > 64:
        blocks.popitem(last=False)[1].close()
    return block


def _process_decode(spec, name, shape, first, last):
    block = _attach(name)
    rows_max = block.size // int(np.prod(shape[1:]))
    out = np.ndarray((rows_max,) + tuple(shape[1:]), np.uint8, buffer=block.buf)[:shape[0]]
    decode_crops(_WORKER["decode"], _WORKER["sets"][spec.split], spec, out, first, last,
                 _WORKER["size"])


# ----------------------------------------------------------------------------- the pipeline

class _Decoding:
    """The futures of one job's decode tasks and the buffer they fill."""

    def __init__(self, job, buffer, futures):
        self.job, self.buffer, self.futures = job, buffer, futures

    def result(self):
        for future in self.futures:
            future.result()  # re-raises a decode error
        return self.buffer

    def abandon(self):
        for future in self.futures:
            future.cancel()
        wait(self.futures)  # running tasks still write into the buffer: let them finish
        self.buffer.release()


def _put(out, item, stop):
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(jobs, start, finish, depth, discard=None):
    """Yield ``finish(job, buffer)`` for each job in order. A background thread keeps `depth`
    jobs decoding (``start(job)`` -> _Decoding) and runs `finish` on the oldest one while the
    consumer works on the previous item. Items never consumed go to `discard`."""
    out = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce():
        pending = deque()
        try:
            for job in jobs:
                if stop.is_set():
                    return
                pending.append(start(job))
                if len(pending) >= depth:
                    decoding = pending.popleft()
                    if not _put(out, ("item", finish(decoding.job, decoding.result())), stop):
                        return
            while pending:
                decoding = pending.popleft()
                if not _put(out, ("item", finish(decoding.job, decoding.result())), stop):
                    return
            _put(out, ("end", None), stop)
        except BaseException as exc:  # handed to the consumer, raised there
            _put(out, ("error", exc), stop)
        finally:
            for decoding in pending:
                decoding.abandon()

    thread = threading.Thread(target=produce, name="convnet-image-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                kind, value = out.get(timeout=0.05)
                if kind == "item" and discard is not None:
                    discard(value)
            except queue.Empty:
                pass
        thread.join()
        while not out.empty():
            kind, value = out.get_nowait()
            if kind == "item" and discard is not None:
                discard(value)
