// Max and average pooling with cuda-convnet's edges (OPS.md "pooling"): output o covers input
// [start + o*stride, start + o*stride + size) clipped to the image. Forward passes run one
// thread per output; backward passes gather, one thread per input, over the windows that cover
// it, adding in the reference's order (numpy_pool.py), so sums agree with it bit for bit.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

__device__ __forceinline__ int floor_div(int a, int b) {  // b > 0
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The windows o in [lo, hi] (clipped to [0, out)) whose span covers pixel p.
struct Cover {
    int lo, hi;
};
__device__ __forceinline__ Cover covering(int p, int start, int size, int stride, int out) {
    Cover c;
    c.lo = max(0, floor_div(p - start - size, stride) + 1);
    c.hi = min(out - 1, floor_div(p - start, stride));
    return c;
}

// A window's span, clipped to [0, img).
struct Span {
    int lo, hi;  // [lo, hi)
};
__device__ __forceinline__ Span span(int o, int start, int size, int stride, int img) {
    const int first = start + o * stride;
    return {max(first, 0), min(first + size, img)};
}

template <class Index>
__device__ __forceinline__ void split_nchw(Index i, int H, int W, Index& plane, int& h, int& w) {
    w = static_cast<int>(i % W);
    const Index rest = i / W;
    h = static_cast<int>(rest % H);
    plane = rest / H;
}

template <class Index>
__global__ void maxpool_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       PoolShape s, Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        Index plane; int oy, ox;
        split_nchw(i, s.OH, s.OW, plane, oy, ox);
        const Span ry = span(oy, s.start, s.size, s.stride, s.H);
        const Span rx = span(ox, s.start, s.size, s.stride, s.W);
        const float* img = x + plane * s.H * s.W;
        float m = -INFINITY;
        for (int r = ry.lo; r < ry.hi; ++r)
            for (int c = rx.lo; c < rx.hi; ++c) m = fmaxf(m, img[r * s.W + c]);
        y[i] = m;
    }
}

template <class Index>
__global__ void avgpool_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       PoolShape s, Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        Index plane; int oy, ox;
        split_nchw(i, s.OH, s.OW, plane, oy, ox);
        const Span ry = span(oy, s.start, s.size, s.stride, s.H);
        const Span rx = span(ox, s.start, s.size, s.stride, s.W);
        const float* img = x + plane * s.H * s.W;
        float sum = 0.f;
        for (int r = ry.lo; r < ry.hi; ++r)
            for (int c = rx.lo; c < rx.hi; ++c) sum += img[r * s.W + c];
        y[i] = sum / static_cast<float>((ry.hi - ry.lo) * (rx.hi - rx.lo));
    }
}

// The backward passes' inner window loops are kept rolled (#pragma unroll 1). Unrolled, ptxas of
// CUDA 13.0 (V13.0.88, sm_90) miscompiles them: the unrolled loop's trip count
// max(~lo, -OW, ~hi) becomes one VIMNMX3 that reads OW where -OW was meant, so the trip count
// comes out about OW too large and the loop runs on below cx.lo into ox = -1, -2, ...
// (maxpool_backward read y[(unsigned)-1] on the H100 under compute-sanitizer). The windows covering a pixel are few (ceil(size / stride) per axis), so
// nothing is lost by not unrolling.

// dx[p] = sum of dy over the windows covering p whose max equals x[p]; the reference adds the
// windows in descending (oy, ox) order (its loop runs over ascending window offsets).
template <class Index>
__global__ void maxpool_backward_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                        const float* __restrict__ dy, float* __restrict__ dx,
                                        PoolShape s, Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        Index plane; int h, w;
        split_nchw(i, s.H, s.W, plane, h, w);
        const Cover cy = covering(h, s.start, s.size, s.stride, s.OH);
        const Cover cx = covering(w, s.start, s.size, s.stride, s.OW);
        const float v = x[i];
        const Index base = plane * s.OH * s.OW;
        float acc = 0.f;
        for (int oy = cy.hi; oy >= cy.lo; --oy)
#pragma unroll 1
            for (int ox = cx.hi; ox >= cx.lo; --ox) {
                const Index o = base + oy * s.OW + ox;
                acc += v == y[o] ? dy[o] : 0.f;
            }
        dx[i] = acc;
    }
}

template <class Index>
__global__ void avgpool_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx,
                                        PoolShape s, Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        Index plane; int h, w;
        split_nchw(i, s.H, s.W, plane, h, w);
        const Cover cy = covering(h, s.start, s.size, s.stride, s.OH);
        const Cover cx = covering(w, s.start, s.size, s.stride, s.OW);
        const Index base = plane * s.OH * s.OW;
        float acc = 0.f;
        for (int oy = cy.hi; oy >= cy.lo; --oy) {
            const Span ry = span(oy, s.start, s.size, s.stride, s.H);
#pragma unroll 1
            for (int ox = cx.hi; ox >= cx.lo; --ox) {
                const Span rx = span(ox, s.start, s.size, s.stride, s.W);
                const float count = static_cast<float>((ry.hi - ry.lo) * (rx.hi - rx.lo));
                acc += dy[base + oy * s.OW + ox] / count;
            }
        }
        dx[i] = acc;
    }
}

size_t out_count(const PoolShape& s) { return size_t(s.N) * s.C * s.OH * s.OW; }
size_t in_count(const PoolShape& s) { return size_t(s.N) * s.C * s.H * s.W; }
bool fits32(const PoolShape& s) {
    const size_t big = in_count(s) > out_count(s) ? in_count(s) : out_count(s);
    return big < (size_t(1) << 31);
}

}  // namespace

// Launch kernel<Index> over `total` items, with 32-bit index arithmetic when the arrays allow.
#define CONVNET_LAUNCH_INDEXED(op, kernel, total, s, stream, ...)                                  \
    do {                                                                                           \
        if ((total) == 0) return;                                                                  \
        if (fits32(s))                                                                             \
            kernel<uint32_t><<<grid_for(total), kThreads, 0, stream>>>(__VA_ARGS__, s,             \
                                                                       uint32_t(total));           \
        else                                                                                       \
            kernel<size_t><<<grid_for(total), kThreads, 0, stream>>>(__VA_ARGS__, s, total);       \
        check_launch(op);                                                                          \
    } while (0)

void maxpool_forward(const float* x, float* y, const PoolShape& s, cudaStream_t stream) {
    CONVNET_LAUNCH_INDEXED("maxpool_forward", maxpool_forward_kernel, out_count(s), s, stream, x,
                           y);
}

void maxpool_backward(const float* x, const float* y, const float* dy, float* dx,
                      const PoolShape& s, cudaStream_t stream) {
    CONVNET_LAUNCH_INDEXED("maxpool_backward", maxpool_backward_kernel, in_count(s), s, stream,
                           x, y, dy, dx);
}

void avgpool_forward(const float* x, float* y, const PoolShape& s, cudaStream_t stream) {
    CONVNET_LAUNCH_INDEXED("avgpool_forward", avgpool_forward_kernel, out_count(s), s, stream, x,
                           y);
}

void avgpool_backward(const float* dy, float* dx, const PoolShape& s, cudaStream_t stream) {
    CONVNET_LAUNCH_INDEXED("avgpool_backward", avgpool_backward_kernel, in_count(s), s, stream,
                           dy, dx);
}
