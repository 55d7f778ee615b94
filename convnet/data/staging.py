"""The image provider's GPU side (cuda backend): uint8 crops staged through pinned buffers and a
copy stream of their own, then turned into float32 NCHW on the GPU. CuPy and the cuda backend's
ops are imported when a CudaStager is made (``ImageProvider.set_backend("cuda")``).
"""
import numpy as np


class CudaStager:
    """uint8 RGBX crops -> float32 NCHW on the GPU: pinned host buffers, an asynchronous copy on
    a stream of its own, then HWC -> CHW, mean and lighting in one kernel on the current stream
    (cuda_ops.crops_to_float, csrc/stage.cu).

    ``run`` keeps one batch ahead: while the consumer trains on batch n (current stream), the
    copy of batch n+1 runs on the copy stream. Two device slots alternate; a slot is written
    again only after the kernel that read it has run (an event on the current stream).
    """

    def __init__(self, mean):
        import cupy as cp

        from ..backend import cuda_backend

        self.cp = cp
        self.to_float = cuda_backend.crops_to_float
        self.mean = cp.asarray(mean, dtype=cp.float32)

    def host_buffer(self, shape):
        import cupyx

        return cupyx.empty_pinned(shape, np.uint8)

    def run(self, staged):
        """(x CuPy float32 (rows, 3, h, w), job) for each (HostBuffer, job) of `staged`."""
        cp = self.cp
        copy_stream = cp.cuda.Stream(non_blocking=True)
        slots = [None, None]  # device uint8 buffers
        free = [None, None]   # events: the kernel that last read each slot has run
        ahead = None          # the batch whose copy is in flight
        index = 0
        try:
            for buffer, job in staged:
                nxt = self._upload(copy_stream, slots, free, index % 2, buffer, job)
                index += 1
                if ahead is not None:
                    yield self._convert(ahead, free)
                ahead = nxt
            if ahead is not None:
                yield self._convert(ahead, free)
                ahead = None
        finally:
            staged.close()
            copy_stream.synchronize()
            if ahead is not None:
                ahead[2].release()

    def _upload(self, copy_stream, slots, free, slot, buffer, job):
        """Start copying `buffer` into device slot `slot` on the copy stream."""
        cp = self.cp
        host = buffer.array
        rows = host.shape[0]
        if slots[slot] is None or slots[slot].shape[0] < rows \
                or slots[slot].shape[1:] != host.shape[1:]:
            # allocated on the current stream: the copy waits for what that stream has queued,
            # so memory the pool hands back is not written while an earlier kernel reads it
            slots[slot] = cp.empty(host.shape, cp.uint8)
            free[slot] = cp.cuda.get_current_stream().record()
        copy_stream.wait_event(free[slot])
        device = slots[slot][:rows]
        device.set(host, stream=copy_stream)
        return slot, device, buffer, job, copy_stream.record()

    def _convert(self, ahead, free):
        """The float batch of an uploaded slot, computed on the current stream."""
        cp = self.cp
        slot, device, buffer, job, copied = ahead
        current = cp.cuda.get_current_stream()
        current.wait_event(copied)
        rows = device.shape[0]
        shift = np.zeros((rows, 3), np.float32) if job.shift is None else job.shift
        shift = cp.asarray(np.ascontiguousarray(shift, dtype=np.float32))
        x = self.to_float(device, self.mean, shift)
        free[slot] = current.record()
        copied.synchronize()  # the host buffer may be reused once its copy is done
        buffer.release()
        return x, job
