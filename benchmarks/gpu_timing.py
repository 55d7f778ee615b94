"""Timing on the GPU with device events, and the device's two ceilings measured in the same run.

measure(run, nsets, clock, ...) times `run(i)` (one launch of the op on input set i):
  - warm-up first (module loads, run-time compilation, cuDNN autotuning stay out);
  - rotate mode: calls cycle through `nsets` input sets whose bytes together exceed the L2
    several times, in batches of k calls between two events (k so a batch lasts >= ~1 ms,
    which amortises the event and launch overheads); the median of the per-call times;
  - flush mode (small inputs, which even 16 sets would not push out of L2): before every call
    a write of a buffer larger than the L2; one call between two events; the median.
  At least `min_iters` batches, and more up to `min_ms` of timed work, capped by `max_ms`.

Peaks: an FP32 FMA kernel (CuPy RawKernel: 8 independent fmaf chains per thread, unrolled, a
full-occupancy grid), torch.mm in fp32 with TF32 off (a second figure), and cudaMemcpyAsync
device to device (bytes read + bytes written).
"""
import math

FMA_CHAINS = 8
FMA_UNROLL = 16
FMA_SOURCE = r"""
extern "C" __global__ void fma_peak(float* out, float a, float b, int iters) {
    float x0 = threadIdx.x * 1e-7f, x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;
    float x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;
    for (int i = 0; i < iters; ++i) {
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            x0 = fmaf(x0, a, b); x1 = fmaf(x1, a, b); x2 = fmaf(x2, a, b); x3 = fmaf(x3, a, b);
            x4 = fmaf(x4, a, b); x5 = fmaf(x5, a, b); x6 = fmaf(x6, a, b); x7 = fmaf(x7, a, b);
        }
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
}
"""


class CupyClock:
    """Events and synchronisation on CuPy's current stream."""

    def __init__(self, cupy):
        self.cupy = cupy

    def event(self):
        e = self.cupy.cuda.Event()
        e.record()
        return e

    def elapsed(self, a, b):
        return self.cupy.cuda.get_elapsed_time(a, b)

    def sync(self):
        self.cupy.cuda.runtime.deviceSynchronize()


class TorchClock:
    """Events and synchronisation on PyTorch's current stream."""

    def __init__(self, torch):
        self.torch = torch

    def event(self):
        e = self.torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def elapsed(self, a, b):
        return a.elapsed_time(b)

    def sync(self):
        self.torch.cuda.synchronize()


class Timing:
    def __init__(self, ms, p10, p90, iters, batch, mode):
        self.ms, self.p10, self.p90 = ms, p10, p90
        self.iters, self.batch, self.mode = iters, batch, mode

    def as_dict(self, prefix=""):
        return {f"{prefix}ms": self.ms, f"{prefix}iters": self.iters,
                f"{prefix}spread": round((self.p90 - self.p10) / self.ms, 3) if self.ms else None,
                f"{prefix}timing": f"{self.mode}, batch {self.batch}"}


def percentile(sorted_values, q):
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def measure(run, nsets, clock, flush=None, warmup=3, min_iters=20, min_ms=200.0,
            max_ms=1500.0, batch_ms=1.0, max_batches=2000):
    """Median per-call milliseconds of run(i), i cycling over range(nsets)."""
    for i in range(warmup):
        run(i % nsets)
    clock.sync()
    estimates = []
    for i in range(3):
        if flush:
            flush()
        a = clock.event()
        run(i % nsets)
        b = clock.event()
        clock.sync()
        estimates.append(clock.elapsed(a, b))
    est = max(min(estimates), 1e-4)
    k = 1 if flush else max(1, min(1000, math.ceil(batch_ms / est)))
    per_batch = k * est
    n = max(min_iters, math.ceil(min_ms / per_batch))
    n = min(n, max_batches, max(5, math.floor(max_ms / per_batch)))
    pairs, j = [], 0
    for _ in range(n):
        if flush:
            flush()
        a = clock.event()
        for _ in range(k):
            run(j % nsets)
            j += 1
        b = clock.event()
        pairs.append((a, b))
    clock.sync()
    times = sorted(clock.elapsed(a, b) / k for a, b in pairs)
    return Timing(percentile(times, 0.5), percentile(times, 0.1), percentile(times, 0.9),
                  n * k, k, "flush" if flush else f"rotate {nsets} sets")


def cupy_flusher(cupy, l2_bytes):
    """A callable that overwrites a buffer of 4 x L2 (at least 256 MiB) on CuPy's stream."""
    nbytes = max(4 * l2_bytes, 256 << 20)
    buf = cupy.empty(nbytes, dtype=cupy.uint8)
    counter = [0]

    def flush():
        counter[0] = (counter[0] + 1) % 251
        cupy.cuda.runtime.memsetAsync(buf.data.ptr, counter[0], nbytes,
                                      cupy.cuda.get_current_stream().ptr)
    return flush


def torch_flusher(torch, l2_bytes):
    nbytes = max(4 * l2_bytes, 256 << 20)
    buf = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    counter = [0]

    def flush():
        counter[0] = (counter[0] + 1) % 251
        buf.fill_(counter[0])
    return flush


# ---- the device's ceilings ---------------------------------------------------------------------

def fma_peak_tflops(cupy, sm_count, quick=False):
    """FP32 TFLOP/s of the FMA kernel: 2 FLOPs per fmaf, full occupancy (2048 threads per SM)."""
    kernel = cupy.RawKernel(FMA_SOURCE, "fma_peak")
    threads, blocks = 256, sm_count * 8
    out = cupy.empty(threads * blocks, dtype=cupy.float32)
    a, b = cupy.float32(0.999999), cupy.float32(1e-6)

    def launch(iters):
        kernel((blocks,), (threads,), (out, a, b, cupy.int32(iters)))

    clock = CupyClock(cupy)
    probe = 256
    t = measure(lambda i: launch(probe), 1, clock, warmup=2, min_iters=3, min_ms=1, max_ms=50)
    iters = max(probe, int(probe * (10.0 if quick else 20.0) / max(t.ms, 1e-3)))
    t = measure(lambda i: launch(iters), 1, clock, warmup=1, min_iters=5 if quick else 10,
                min_ms=50 if quick else 150, max_ms=1000)
    flops = 2.0 * FMA_CHAINS * FMA_UNROLL * iters * threads * blocks
    if not bool(cupy.isfinite(out).all()):
        raise RuntimeError("fma_peak produced non-finite values")
    return flops / (t.ms * 1e-3) / 1e12, {"fma_iters": iters, "fma_ms": round(t.ms, 4),
                                          "fma_grid": f"{blocks}x{threads}"}


def torch_sgemm_tflops(torch, n=8192, quick=False):
    """TFLOP/s of an n x n x n fp32 torch.mm with the current (TF32-off) precision settings,
    and the relative error of a 1024^3 product against float64 (about 1e-6 without TF32,
    about 3e-4 with it)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(n, n, device="cuda", generator=g)
    b = torch.randn(n, n, device="cuda", generator=g)
    c = torch.empty(n, n, device="cuda")
    t = measure(lambda i: torch.mm(a, b, out=c), 1, TorchClock(torch), warmup=2,
                min_iters=3 if quick else 10, min_ms=50 if quick else 200, max_ms=2000)
    small_a, small_b = a[:1024, :1024], b[:1024, :1024]
    ref = small_a.double() @ small_b.double()
    err = float(torch.linalg.norm(small_a @ small_b - ref) / torch.linalg.norm(ref))
    del a, b, c
    return 2.0 * n ** 3 / (t.ms * 1e-3) / 1e12, err


def copy_gbps(cupy, nbytes=1 << 30, quick=False):
    """GB/s of a device-to-device cudaMemcpyAsync, counting bytes read plus bytes written."""
    src = cupy.empty(nbytes // 4, dtype=cupy.float32)
    src[...] = 1.5
    dst = cupy.empty_like(src)
    rt = cupy.cuda.runtime

    def run(i):
        rt.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, rt.memcpyDeviceToDevice,
                       cupy.cuda.get_current_stream().ptr)
    t = measure(run, 1, CupyClock(cupy), warmup=2, min_iters=5 if quick else 20,
                min_ms=50 if quick else 200, max_ms=2000)
    if float(dst[-1]) != 1.5:
        raise RuntimeError("device-to-device copy did not copy")
    return 2.0 * nbytes / (t.ms * 1e-3) / 1e9
