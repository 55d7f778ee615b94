// cuda-convnet2's cross-map max pooling, strided sum and crop (convnet/backend/numpy_cc2.py).
// One thread per output element forward, one per input element backward (gathers, no atomics),
// in grid-stride loops with 32-bit index arithmetic when the arrays allow. The backward passes
// add their windows in the reference's order (ascending), so float32 sums agree with it bit for
// bit.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

__device__ __forceinline__ int floor_div(int a, int b) {  // b > 0
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// ---- cmpool ------------------------------------------------------------------------------------

// The window loops stay rolled (#pragma unroll 1): pool.cu's note on ptxas's VIMNMX3 miscompile
// of unrolled loops with a min/max trip count applies to these too.

template <class Index>
__global__ void cmpool_forward_kernel(Index total, const float* __restrict__ x,
                                      float* __restrict__ y, CmpoolShape s) {
    const Index inner = static_cast<Index>(s.inner);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index rest = i / inner;
        const Index p = i - rest * inner;
        const int o = static_cast<int>(rest % s.outputs);
        const Index n = rest / s.outputs;
        const int first = s.start + o * s.stride;
        const int lo = max(first, 0), hi = min(first + s.size, s.C);
        const float* column = x + n * s.C * inner + p;
        float m = -INFINITY;
#pragma unroll 1
        for (int c = lo; c < hi; ++c) m = fmaxf(m, column[c * inner]);
        y[i] = m;
    }
}

// dx[c] = sum of dy[o] over the windows o covering channel c whose max equals x[c].
template <class Index>
__global__ void cmpool_backward_kernel(Index total, const float* __restrict__ x,
                                       const float* __restrict__ y, const float* __restrict__ dy,
                                       float* __restrict__ dx, CmpoolShape s) {
    const Index inner = static_cast<Index>(s.inner);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index rest = i / inner;
        const Index p = i - rest * inner;
        const int c = static_cast<int>(rest % s.C);
        const Index n = rest / s.C;
        const int lo = max(0, floor_div(c - s.start - s.size, s.stride) + 1);
        const int hi = min(s.outputs - 1, floor_div(c - s.start, s.stride));
        const Index base = n * s.outputs * inner + p;
        const float v = x[i];
        float acc = 0.f;
#pragma unroll 1
        for (int o = lo; o <= hi; ++o) {
            const Index at = base + o * inner;
            acc += v == y[at] ? dy[at] : 0.f;
        }
        dx[i] = acc;
    }
}

// ---- sum ---------------------------------------------------------------------------------------

template <class Index>
__global__ void sum_forward_kernel(Index total, const float* __restrict__ x,
                                   float* __restrict__ y, int stride, size_t inner_size) {
    const Index inner = static_cast<Index>(inner_size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index row = i / inner;  // (outer, groups) flattened
        const float* first = x + (row * stride) * inner + (i - row * inner);
        float acc = 0.f;
#pragma unroll 1
        for (int k = 0; k < stride; ++k) acc += first[k * inner];
        y[i] = acc;
    }
}

template <class Index>
__global__ void sum_backward_kernel(Index total, const float* __restrict__ dy,
                                    float* __restrict__ dx, int stride, size_t inner_size) {
    const Index inner = static_cast<Index>(inner_size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index row = i / inner;  // (outer, groups * stride) flattened
        dx[i] = dy[(row / stride) * inner + (i - row * inner)];
    }
}

// ---- crop --------------------------------------------------------------------------------------

template <class Index>
__global__ void crop_forward_kernel(Index total, const float* __restrict__ x,
                                    float* __restrict__ y, CropShape s) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index row = i / s.OW;
        const int ox = static_cast<int>(i - row * s.OW);
        const Index plane = row / s.OH;
        const int oy = static_cast<int>(row - plane * s.OH);
        y[i] = x[(plane * s.H + s.y0 + oy) * s.W + s.x0 + ox];
    }
}

template <class Index>
__global__ void crop_backward_kernel(Index total, const float* __restrict__ dy,
                                     float* __restrict__ dx, CropShape s) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Index row = i / s.W;
        const int ox = static_cast<int>(i - row * s.W) - s.x0;
        const Index plane = row / s.H;
        const int oy = static_cast<int>(row - plane * s.H) - s.y0;
        const bool inside = 0 <= oy && oy < s.OH && 0 <= ox && ox < s.OW;
        dx[i] = inside ? dy[(plane * s.OH + oy) * s.OW + ox] : 0.f;
    }
}

template <class T>
struct NoDeduce {
    using type = T;
};

// kernel<uint32_t> or kernel<size_t> over `total` items (the kernel's first argument), 32-bit
// when every index into the op's arrays (`largest` elements) fits.
template <class... Args>
void launch_indexed(const char* op, size_t total, size_t largest, cudaStream_t stream,
                    void (*narrow)(uint32_t, Args...), void (*wide)(size_t, Args...),
                    typename NoDeduce<Args>::type... args) {
    if (total == 0) return;
    if (largest < (size_t(1) << 31))
        narrow<<<grid_for(total), kThreads, 0, stream>>>(static_cast<uint32_t>(total), args...);
    else
        wide<<<grid_for(total), kThreads, 0, stream>>>(total, args...);
    check_launch(op);
}

size_t cmpool_size(const CmpoolShape& s, int channels) { return size_t(s.N) * channels * s.inner; }

void require_cmpool(const char* op, const CmpoolShape& s) {
    require(s.size >= 1 && s.stride >= 1 && s.outputs >= 1 && s.start + s.size > 0 &&
                s.start + (s.outputs - 1) * s.stride < s.C,
            op, "every window must overlap the channels");
}

void require_crop(const char* op, const CropShape& s) {
    require(s.OH >= 1 && s.OW >= 1 && s.y0 >= 0 && s.x0 >= 0 && s.y0 + s.OH <= s.H &&
                s.x0 + s.OW <= s.W,
            op, "the window must lie inside the image");
}

size_t larger(size_t a, size_t b) { return a > b ? a : b; }

}  // namespace

void cmpool_forward(const float* x, float* y, const CmpoolShape& s, cudaStream_t stream) {
    require_cmpool("cmpool_forward", s);
    const size_t total = cmpool_size(s, s.outputs);
    launch_indexed("cmpool_forward", total, larger(total, cmpool_size(s, s.C)), stream,
                   cmpool_forward_kernel<uint32_t>, cmpool_forward_kernel<size_t>, x, y, s);
}

void cmpool_backward(const float* x, const float* y, const float* dy, float* dx,
                     const CmpoolShape& s, cudaStream_t stream) {
    require_cmpool("cmpool_backward", s);
    const size_t total = cmpool_size(s, s.C);
    launch_indexed("cmpool_backward", total, larger(total, cmpool_size(s, s.outputs)), stream,
                   cmpool_backward_kernel<uint32_t>, cmpool_backward_kernel<size_t>, x, y, dy,
                   dx, s);
}

void sum_forward(const float* x, float* y, size_t outer, size_t groups, int stride, size_t inner,
                 cudaStream_t stream) {
    require(stride >= 1, "sum_forward", "stride must be >= 1");
    const size_t total = outer * groups * inner;
    launch_indexed("sum_forward", total, total * stride, stream, sum_forward_kernel<uint32_t>,
                   sum_forward_kernel<size_t>, x, y, stride, inner);
}

void sum_backward(const float* dy, float* dx, size_t outer, size_t groups, int stride,
                  size_t inner, cudaStream_t stream) {
    require(stride >= 1, "sum_backward", "stride must be >= 1");
    const size_t total = outer * groups * stride * inner;
    launch_indexed("sum_backward", total, total, stream, sum_backward_kernel<uint32_t>,
                   sum_backward_kernel<size_t>, dy, dx, stride, inner);
}

void crop_forward(const float* x, float* y, const CropShape& s, cudaStream_t stream) {
    require_crop("crop_forward", s);
    const size_t total = s.planes * s.OH * s.OW;
    launch_indexed("crop_forward", total, s.planes * s.H * s.W, stream,
                   crop_forward_kernel<uint32_t>, crop_forward_kernel<size_t>, x, y, s);
}

void crop_backward(const float* dy, float* dx, const CropShape& s, cudaStream_t stream) {
    require_crop("crop_backward", s);
    const size_t total = s.planes * s.H * s.W;
    launch_indexed("crop_backward", total, total, stream, crop_backward_kernel<uint32_t>,
                   crop_backward_kernel<size_t>, dy, dx, s);
}
