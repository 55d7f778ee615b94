// Response normalization (OPS.md): cross-map (lrn), same-map (rnorm) and contrast (cnorm),
// y = x * d^-beta. One thread per element; window sums add the window's offsets in ascending
// order with every product rounded (no fused multiply-add), as numpy_norm.py does, so the sums
// agree with the reference bit for bit and only powf differs in its last bits.
//
// Backward passes recompute d and keep per-element terms in a workspace (rows of N*C*H*W floats):
//   lrn, rnorm: g = -beta * dy * y / d               -> ws[0]
//               dx = dy * d^-beta + 2 alpha x T(g)   (T: the transposed window sum)
//   cnorm:      u = x - window mean                  -> ws[0]  (forward: the same)
//               g                                    -> ws[1]
//               du = 2 alpha u T(g)                  -> ws[2]
//               dx = dy * d^-beta + du - T(du / count)
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

// Where an element sits; neighbours are addressed by flat index.
template <class Index>
struct Pos {
    Index i;
    int c, h, w;
};

template <class Index>
__device__ __forceinline__ Pos<Index> locate(Index i, const NormShape& s) {
    Pos<Index> p;
    p.i = i;
    p.w = static_cast<int>(i % s.W);
    const Index rest = i / s.W;
    p.h = static_cast<int>(rest % s.H);
    p.c = static_cast<int>((rest / s.H) % s.C);
    return p;
}

// Sum of value(j, row, col) over the window offsets [lo, hi] around p, ascending. Cross-map
// windows run over channels; same-map windows sum each column's rows, then the columns.
template <bool CROSS, class Index, class F>
__device__ __forceinline__ float window_sum(const Pos<Index>& p, const NormShape& s, int lo,
                                            int hi, const F& value) {
    float total = 0.f;
    if (CROSS) {
        const Index plane = static_cast<Index>(s.H) * s.W;
        for (int off = lo; off <= hi; ++off) {
            const int c = p.c + off;
            if (c < 0 || c >= s.C) continue;
            total = __fadd_rn(total, value(p.i + off * static_cast<long long>(plane), p.h, p.w));
        }
    } else {
        for (int ow = lo; ow <= hi; ++ow) {
            const int col = p.w + ow;
            if (col < 0 || col >= s.W) continue;
            float column = 0.f;
            for (int oh = lo; oh <= hi; ++oh) {
                const int row = p.h + oh;
                if (row < 0 || row >= s.H) continue;
                column = __fadd_rn(column,
                                   value(p.i + static_cast<long long>(oh) * s.W + ow, row, col));
            }
            total = __fadd_rn(total, column);
        }
    }
    return total;
}

struct Offsets {
    int lo, hi;
};
// win(i) = [i - size//2, i - size//2 + size); the transposed window holds the outputs whose
// window contains i.
__host__ __device__ constexpr Offsets forward_offsets(int size) {
    return {-(size / 2), size - 1 - size / 2};
}
__host__ __device__ __forceinline__ Offsets transposed_offsets(int size) {
    const Offsets f = forward_offsets(size);
    return {-f.hi, -f.lo};
}

// Pixels in the clipped same-map window of (row, col).
__device__ __forceinline__ float window_count(int row, int col, const NormShape& s) {
    const Offsets f = forward_offsets(s.size);
    const int rows = min(row + f.hi, s.H - 1) - max(row + f.lo, 0) + 1;
    const int cols = min(col + f.hi, s.W - 1) - max(col + f.lo, 0) + 1;
    return static_cast<float>(rows * cols);
}

// d = k + alpha * sum over the window of src^2.
template <bool CROSS, class Index>
__device__ __forceinline__ float denom(const float* __restrict__ src, const Pos<Index>& p,
                                       const NormShape& s) {
    const Offsets f = forward_offsets(s.size);
    const float sum = window_sum<CROSS>(p, s, f.lo, f.hi, [&](long long j, int, int) {
        const float v = src[j];
        return __fmul_rn(v, v);
    });
    return __fadd_rn(s.k, __fmul_rn(s.alpha, sum));
}

// y = x * d^-beta, d from src (x itself, or cnorm's u).
template <bool CROSS, class Index>
__global__ void norm_forward_kernel(const float* __restrict__ x, const float* __restrict__ src,
                                    float* __restrict__ y, NormShape s, Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        y[i] = __fmul_rn(x[i], powf(denom<CROSS>(src, p, s), -s.beta));
    }
}

// g = -beta * dy * y / d.
template <bool CROSS, class Index>
__global__ void norm_g_kernel(const float* __restrict__ src, const float* __restrict__ y,
                              const float* __restrict__ dy, float* __restrict__ g, NormShape s,
                              Index total) {
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        const float d = denom<CROSS>(src, p, s);
        g[i] = __fdiv_rn(__fmul_rn(__fmul_rn(-s.beta, dy[i]), y[i]), d);
    }
}

// lrn / rnorm: dx = dy * d^-beta + (2 alpha x) * T(g).
template <bool CROSS, class Index>
__global__ void norm_dx_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                               const float* __restrict__ g, float* __restrict__ dx, NormShape s,
                               Index total) {
    const Offsets t = transposed_offsets(s.size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        const float d = denom<CROSS>(x, p, s);
        const float back = window_sum<CROSS>(p, s, t.lo, t.hi,
                                             [&](long long j, int, int) { return g[j]; });
        const float own = __fmul_rn(dy[i], powf(d, -s.beta));
        dx[i] = __fadd_rn(own, __fmul_rn(__fmul_rn(2.f * s.alpha, x[i]), back));
    }
}

// ------------------------------------------------------------------------------------------------
// Cross-map lrn in one pass each way: one thread per pixel (n, h, w) walks the channels with its
// window in registers (SIZE a template argument, 1..kMaxSlidingSize), reading each of x, y and dy
// once. The sums and the arithmetic are the per-element kernels' above, term for term.

constexpr int kMaxSlidingSize = 9;

// Push v into a window of registers, dropping its oldest element (w[0]).
template <int N>
__device__ __forceinline__ void push(float (&w)[N], float v) {
#pragma unroll
    for (int j = 0; j + 1 < N; ++j) w[j] = w[j + 1];
    w[N - 1] = v;
}

template <int N>
__device__ __forceinline__ float sum_of_squares(const float (&w)[N]) {
    float total = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) total = __fadd_rn(total, __fmul_rn(w[j], w[j]));
    return total;
}

template <int N>
__device__ __forceinline__ float sum_of(const float (&w)[N]) {
    float total = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) total = __fadd_rn(total, w[j]);
    return total;
}

// The pixel's channel c of a (N, C, H, W) array, or 0 outside the channels.
struct Column {
    const float* p;
    uint32_t plane;
    int C;
    __device__ __forceinline__ float at(int c) const {
        return c >= 0 && c < C ? p[static_cast<uint32_t>(c) * plane] : 0.f;
    }
};

__device__ __forceinline__ Column column(const float* a, const NormShape& s, uint32_t pixel) {
    const uint32_t plane = static_cast<uint32_t>(s.H) * s.W;
    const uint32_t n = pixel / plane;
    return {a + (n * s.C) * plane + (pixel - n * plane), plane, s.C};
}

// y(c) = x(c) * d(c)^-beta; the window holds x(c + lo) .. x(c + hi).
template <int SIZE>
__global__ void lrn_forward_sliding_kernel(const float* __restrict__ x, float* __restrict__ y,
                                           NormShape s, uint32_t pixels) {
    constexpr Offsets f = forward_offsets(SIZE);
    for (uint32_t q = global_thread(); q < pixels; q += grid_threads()) {
        const Column xc = column(x, s, q);
        float* yc = y + (xc.p - x);
        float win[SIZE];
#pragma unroll
        for (int j = 0; j < SIZE; ++j) win[j] = xc.at(f.lo + j);
        for (int c = 0; c < s.C; ++c) {
            const float d = __fadd_rn(s.k, __fmul_rn(s.alpha, sum_of_squares(win)));
            yc[static_cast<uint32_t>(c) * xc.plane] = __fmul_rn(win[-f.lo], powf(d, -s.beta));
            push(win, xc.at(c + 1 + f.hi));
        }
    }
}

// dx(c) = dy(c) d(c)^-beta + 2 alpha x(c) T(g)(c), g(e) = -beta dy(e) y(e) / d(e). The lead
// channel e runs L = SIZE / 2 ahead of the output channel c = e - L: T(g)(c) sums g over
// c - hi .. c + L, and d(e) needs x(e + lo) .. x(e + hi) = x(c) .. x(c + SIZE - 1).
template <int SIZE>
__global__ void lrn_backward_sliding_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                            const float* __restrict__ dy, float* __restrict__ dx,
                                            NormShape s, uint32_t pixels) {
    constexpr Offsets f = forward_offsets(SIZE);
    constexpr int L = -f.lo;
    for (uint32_t q = global_thread(); q < pixels; q += grid_threads()) {
        const Column xc = column(x, s, q), yc = column(y, s, q), dyc = column(dy, s, q);
        float* dxc = dx + (xc.p - x);
        float xw[SIZE], gw[SIZE], dw[L + 1], dyw[L + 1];
#pragma unroll
        for (int j = 0; j < SIZE; ++j) xw[j] = xc.at(-f.hi + f.lo + j), gw[j] = 0.f;
#pragma unroll
        for (int j = 0; j <= L; ++j) dw[j] = 1.f, dyw[j] = 0.f;
        for (int e = -f.hi; e < s.C + L; ++e) {
            float g = 0.f, d = 1.f, dye = 0.f;
            if (e >= 0 && e < s.C) {
                d = __fadd_rn(s.k, __fmul_rn(s.alpha, sum_of_squares(xw)));
                dye = dyc.at(e);
                g = __fdiv_rn(__fmul_rn(__fmul_rn(-s.beta, dye), yc.at(e)), d);
            }
            push(gw, g), push(dw, d), push(dyw, dye);
            const int c = e - L;
            if (c >= 0) {
                const float own = __fmul_rn(dyw[0], powf(dw[0], -s.beta));
                dxc[static_cast<uint32_t>(c) * xc.plane] =
                    __fadd_rn(own, __fmul_rn(__fmul_rn(2.f * s.alpha, xw[0]), sum_of(gw)));
            }
            push(xw, xc.at(e + 1 + f.hi));
        }
    }
}

// Whether the one-pass kernels take shape s: a window of at most kMaxSlidingSize channels and
// 32-bit offsets.
bool sliding(const NormShape& s) {
    return s.size >= 1 && s.size <= kMaxSlidingSize &&
           static_cast<size_t>(s.N) * s.C * s.H * s.W < (size_t(1) << 31);
}

template <int SIZE = 1>
void launch_sliding(bool forward, const float* x, const float* y, const float* dy, float* out,
                    const NormShape& s, cudaStream_t stream) {
    if constexpr (SIZE <= kMaxSlidingSize) {
        if (s.size != SIZE)
            return launch_sliding<SIZE + 1>(forward, x, y, dy, out, s, stream);
        const uint32_t pixels = static_cast<uint32_t>(s.N) * s.H * s.W;
        if (forward)
            lrn_forward_sliding_kernel<SIZE><<<grid_for(pixels), kThreads, 0, stream>>>(
                x, out, s, pixels);
        else
            lrn_backward_sliding_kernel<SIZE><<<grid_for(pixels), kThreads, 0, stream>>>(
                x, y, dy, out, s, pixels);
        check_launch(forward ? "lrn_forward" : "lrn_backward");
    }
}

// cnorm: u = x - (window sum of x) / count.
template <class Index>
__global__ void cnorm_u_kernel(const float* __restrict__ x, float* __restrict__ u, NormShape s,
                               Index total) {
    const Offsets f = forward_offsets(s.size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        const float sum = window_sum<false>(p, s, f.lo, f.hi,
                                            [&](long long j, int, int) { return x[j]; });
        u[i] = __fsub_rn(x[i], __fdiv_rn(sum, window_count(p.h, p.w, s)));
    }
}

// cnorm: du = (2 alpha u) * T(g).
template <class Index>
__global__ void cnorm_du_kernel(const float* __restrict__ u, const float* __restrict__ g,
                                float* __restrict__ du, NormShape s, Index total) {
    const Offsets t = transposed_offsets(s.size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        const float back = window_sum<false>(p, s, t.lo, t.hi,
                                             [&](long long j, int, int) { return g[j]; });
        du[i] = __fmul_rn(__fmul_rn(2.f * s.alpha, u[i]), back);
    }
}

// cnorm: dx = dy * d^-beta + du - T(du / count).
template <class Index>
__global__ void cnorm_dx_kernel(const float* __restrict__ u, const float* __restrict__ dy,
                                const float* __restrict__ du, float* __restrict__ dx,
                                NormShape s, Index total) {
    const Offsets t = transposed_offsets(s.size);
    for (Index i = global_thread(); i < total; i += grid_threads()) {
        const Pos<Index> p = locate(i, s);
        const float d = denom<false>(u, p, s);
        const float back = window_sum<false>(p, s, t.lo, t.hi, [&](long long j, int r, int c) {
            return __fdiv_rn(du[j], window_count(r, c, s));
        });
        const float own = __fmul_rn(dy[i], powf(d, -s.beta));
        dx[i] = __fsub_rn(__fadd_rn(own, du[i]), back);
    }
}

size_t count(const NormShape& s) { return size_t(s.N) * s.C * s.H * s.W; }

}  // namespace

// Launch kernel<Index> (and its CROSS variant when given) over every element, with 32-bit index
// arithmetic when the array allows.
#define CONVNET_NORM_LAUNCH(op, kernel, s, stream, ...)                                            \
    do {                                                                                           \
        const size_t total_ = count(s);                                                            \
        if (total_ < (size_t(1) << 31))                                                            \
            kernel<uint32_t><<<grid_for(total_), kThreads, 0, stream>>>(__VA_ARGS__, s,            \
                                                                        uint32_t(total_));         \
        else                                                                                       \
            kernel<size_t><<<grid_for(total_), kThreads, 0, stream>>>(__VA_ARGS__, s, total_);     \
        check_launch(op);                                                                          \
    } while (0)

#define CONVNET_NORM_LAUNCH_X(op, kernel, cross, s, stream, ...)                                   \
    do {                                                                                           \
        const size_t total_ = count(s);                                                            \
        if (total_ < (size_t(1) << 31))                                                            \
            kernel<cross, uint32_t><<<grid_for(total_), kThreads, 0, stream>>>(                    \
                __VA_ARGS__, s, uint32_t(total_));                                                 \
        else                                                                                       \
            kernel<cross, size_t><<<grid_for(total_), kThreads, 0, stream>>>(__VA_ARGS__, s,       \
                                                                             total_);              \
        check_launch(op);                                                                          \
    } while (0)

size_t norm_workspace_floats(const char* op, const NormShape& s) {
    const std::string name(op);
    size_t rows = 0;
    if ((name == "lrn_backward" && !sliding(s)) || name == "rnorm_backward" ||
        name == "cnorm_forward")
        rows = 1;
    if (name == "cnorm_backward") rows = 3;
    return rows * count(s);
}

void lrn_forward(const float* x, float* y, const NormShape& s, cudaStream_t stream) {
    if (count(s) == 0) return;
    if (sliding(s)) return launch_sliding(true, x, nullptr, nullptr, y, s, stream);
    CONVNET_NORM_LAUNCH_X("lrn_forward", norm_forward_kernel, true, s, stream, x, x, y);
}

void lrn_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                  const NormShape& s, cudaStream_t stream) {
    if (count(s) == 0) return;
    if (sliding(s)) return launch_sliding(false, x, y, dy, dx, s, stream);
    float* g = workspace;
    CONVNET_NORM_LAUNCH_X("lrn_backward", norm_g_kernel, true, s, stream, x, y, dy, g);
    CONVNET_NORM_LAUNCH_X("lrn_backward", norm_dx_kernel, true, s, stream, x, dy, g, dx);
}

void rnorm_forward(const float* x, float* y, const NormShape& s, cudaStream_t stream) {
    if (count(s) == 0) return;
    CONVNET_NORM_LAUNCH_X("rnorm_forward", norm_forward_kernel, false, s, stream, x, x, y);
}

void rnorm_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                    const NormShape& s, cudaStream_t stream) {
    if (count(s) == 0) return;
    float* g = workspace;
    CONVNET_NORM_LAUNCH_X("rnorm_backward", norm_g_kernel, false, s, stream, x, y, dy, g);
    CONVNET_NORM_LAUNCH_X("rnorm_backward", norm_dx_kernel, false, s, stream, x, dy, g, dx);
}

void cnorm_forward(const float* x, float* y, float* workspace, const NormShape& s,
                   cudaStream_t stream) {
    if (count(s) == 0) return;
    float* u = workspace;
    CONVNET_NORM_LAUNCH("cnorm_forward", cnorm_u_kernel, s, stream, x, u);
    CONVNET_NORM_LAUNCH_X("cnorm_forward", norm_forward_kernel, false, s, stream, x, u, y);
}

void cnorm_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                    const NormShape& s, cudaStream_t stream) {
    const size_t n = count(s);
    if (n == 0) return;
    float* u = workspace;
    float* g = workspace + n;
    float* du = workspace + 2 * n;
    CONVNET_NORM_LAUNCH("cnorm_backward", cnorm_u_kernel, s, stream, x, u);
    CONVNET_NORM_LAUNCH_X("cnorm_backward", norm_g_kernel, false, s, stream, u, y, dy, g);
    CONVNET_NORM_LAUNCH("cnorm_backward", cnorm_du_kernel, s, stream, u, g, du);
    CONVNET_NORM_LAUNCH("cnorm_backward", cnorm_dx_kernel, s, stream, u, dy, du, dx);
}
