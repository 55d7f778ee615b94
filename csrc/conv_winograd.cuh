// Winograd convolution, non-fused (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), for stride-1 convolutions: conv.cu's algos winograd2 and winograd4 of the
// forward, backward-data and backward-filter passes (backward data runs as the forward conv of dy
// with the filters flipped, conv_winograd_run.cuh).
//
// 1-D minimal filtering F(o, t): the o outputs y[i] = sum_k d[i + k] g[k] (k < t) of a t-tap
// correlation over alpha = o + t - 1 inputs, with alpha multiplications instead of o * t:
//
//     y = AT [(G g) . (BT d)]          AT: o x alpha, G: alpha x t, BT: alpha x alpha
//
// and in 2-D, Y = AT [(G g G^T) . (BT d BT^T)] AT^T: o*o outputs from alpha^2 products instead of
// o^2 * t^2 (F(4x4, 3x3): 36 instead of 144). A convolution then becomes alpha^2 independent
// GEMMs, one per point xi of the transformed tile, summing over channels (forward) or over images
// and tiles (backward filter):
//
//   forward, F(m x m, fs x fs), tiles of m x m outputs (m = 2 or 4):
//     V[xi][c][nt]  = (BT d BT^T)[xi]       d: the alpha x alpha input patch of tile nt
//     U[xi][f][c]   = (G w G^T)[xi]         w: filter f's fs x fs taps for channel c
//     Mo[xi][f][nt] = sum_c U[xi][f][c] V[xi][c][nt]      (the GEMM engine, grid z = xi, group)
//     y tile        = AT Mo[.][f][nt] AT^T
//   backward filter, F(fs x fs, m x m), the roles swapped: dy tiles (m x m) are the "filters"
//     X[xi][c][nt]  = (BT d BT^T)[xi]       d: the same alpha x alpha patches of x
//     D[xi][f][nt]  = (G g G^T)[xi]         g: the m x m tile nt of dy (zero past its edge)
//     M[xi][f][c]   = sum_nt D[xi][f][nt] X[xi][c][nt]    (split over nt like the direct kernel)
//     dw[f][c]      = AT (sum of the splits, in order) AT^T
//
// The matrices come from Toom-Cook on the points 0, 1, -1, 2, -2 and infinity (alpha <= 6), with
// the interpolation denominators moved into G, so BT and AT hold small integers. Every transform
// is a thread per tile (or per filter), reading and writing the transformed planes [xi][*][nt]
// with consecutive threads on consecutive nt. Deterministic: no atomics, fixed summation order.
//
// The trade: alpha^2 / m^2 times the data through memory (the planes are written, then read by
// the GEMM) for o^2 t^2 / alpha^2 times fewer multiplications (1.94x for AlexNet conv3-5 at m = 2
// with 13x13 outputs in 14x14 tiles, 2.64x at m = 4 in 16x16). Float32 error, ||err|| / ||ref||
// against float64, on random data: ~5e-7 at alpha 4, ~3e-6 at alpha 6 (F(4x4, 3x3)), up to ~2e-5
// for F(5x5, 2x2) (5x5 backward filter); the direct kernels: ~1e-7.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <utility>

#include "common.cuh"
#include "conv_gemm.cuh"
#include "conv_geometry.cuh"

namespace convwino {

using convgemm::ConvGeometry;
using convgemm::FastDiv;

constexpr int kMaxAlpha = 6;

// F(o, t) in row-major float matrices (AT: o x alpha, G: alpha x t, BT: alpha x alpha).
struct Matrices {
    int alpha, o, t;
    float AT[kMaxAlpha * kMaxAlpha];
    float G[kMaxAlpha * kMaxAlpha];
    float BT[kMaxAlpha * kMaxAlpha];
};

// Toom-Cook: evaluate at the finite points p_j and at infinity, multiply, interpolate; the
// correlation is the transpose of that linear convolution. With V the alpha x alpha Vandermonde
// matrix of the points (row j: p_j^0 .. p_j^(alpha-1); infinity's row: 0 .. 0 1):
//     AT[i][j] = p_j^i (infinity: 1 in the last row), G[j][k] = p_j^k / s_j (infinity: 1 at the
//     last tap), BT = diag(s) V^-T, s_j = prod over the other finite points of (p_j - p_l).
inline Matrices make_matrices(int o, int t) {
    static const double points[kMaxAlpha - 1] = {0.0, 1.0, -1.0, 2.0, -2.0};
    Matrices mt{};
    const int a = o + t - 1, n = a - 1;
    mt.alpha = a, mt.o = o, mt.t = t;
    double s[kMaxAlpha], v[kMaxAlpha][2 * kMaxAlpha];
    for (int j = 0; j < a; ++j) {
        s[j] = 1.0;
        for (int l = 0; l < n; ++l)
            if (j < n && l != j) s[j] *= points[j] - points[l];
        for (int c = 0; c < a; ++c) {
            v[j][c] = j < n ? std::pow(points[j], c) : (c == a - 1 ? 1.0 : 0.0);
            v[j][a + c] = c == j ? 1.0 : 0.0;
        }
    }
    for (int c = 0; c < a; ++c) {  // Gauss-Jordan: [V | I] -> [I | V^-1]
        int pivot = c;
        for (int r = c + 1; r < a; ++r)
            if (std::fabs(v[r][c]) > std::fabs(v[pivot][c])) pivot = r;
        for (int k = 0; k < 2 * a; ++k) std::swap(v[c][k], v[pivot][k]);
        const double p = v[c][c];
        for (int k = 0; k < 2 * a; ++k) v[c][k] /= p;
        for (int r = 0; r < a; ++r) {
            if (r == c || v[r][c] == 0.0) continue;
            const double f = v[r][c];
            for (int k = 0; k < 2 * a; ++k) v[r][k] -= f * v[c][k];
        }
    }
    for (int i = 0; i < o; ++i)
        for (int j = 0; j < a; ++j)
            mt.AT[i * a + j] =
                static_cast<float>(j < n ? std::pow(points[j], i) : (i == o - 1 ? 1.0 : 0.0));
    for (int j = 0; j < a; ++j)
        for (int k = 0; k < t; ++k)
            mt.G[j * t + k] = static_cast<float>(j < n ? std::pow(points[j], k) / s[j]
                                                       : (k == t - 1 ? 1.0 : 0.0));
    for (int j = 0; j < a; ++j)
        for (int c = 0; c < a; ++c) mt.BT[j * a + c] = static_cast<float>(s[j] * v[c][a + j]);
    return mt;
}

// The tiling of the output plane (forward) or of dy's plane (backward filter) in m x m tiles.
struct Tiling {
    ConvGeometry s;
    int m, alpha;
    int TX, T, NT;  // tiles per row, per image, in the batch
    FastDiv div_T, div_TX, div_NT;
};

inline Tiling make_tiling(const ConvGeometry& s, int m) {
    Tiling w;
    w.s = s, w.m = m, w.alpha = m + s.fs - 1;
    w.TX = static_cast<int>(convnet::ceil_div(s.OW, m));
    w.T = static_cast<int>(convnet::ceil_div(s.OH, m)) * w.TX;
    w.NT = s.N * w.T;
    w.div_T = FastDiv(w.T), w.div_TX = FastDiv(w.TX), w.div_NT = FastDiv(w.NT);
    return w;
}

// nt -> image n and the tile's first output row and column
__device__ __forceinline__ void tile_origin(const Tiling& w, int nt, int& n, int& y0, int& x0) {
    int ty;
    const int t = w.div_T.divmod(nt, n);
    const int tx = w.div_TX.divmod(t, ty);
    y0 = ty * w.m, x0 = tx * w.m;
}

// out = L in L^T for L of rows x cols (both <= ALPHA, known at run time; the loops run to ALPHA
// so that they unroll and the tiles stay in registers).
template <int ALPHA>
__device__ __forceinline__ void sandwich(const float* L, int rows, int cols,
                                         const float (&in)[ALPHA][ALPHA],
                                         float (&out)[ALPHA][ALPHA]) {
    float tmp[ALPHA][ALPHA];  // in L^T: cols x rows
#pragma unroll
    for (int i = 0; i < ALPHA; ++i)
#pragma unroll
        for (int j = 0; j < ALPHA; ++j) {
            float acc = 0.0f;
#pragma unroll
            for (int k = 0; k < ALPHA; ++k)
                if (j < rows && k < cols) acc = fmaf(in[i][k], L[j * cols + k], acc);
            tmp[i][j] = acc;
        }
#pragma unroll
    for (int i = 0; i < ALPHA; ++i)
#pragma unroll
        for (int j = 0; j < ALPHA; ++j) {
            float acc = 0.0f;
#pragma unroll
            for (int k = 0; k < ALPHA; ++k)
                if (i < rows && k < cols) acc = fmaf(L[i * cols + k], tmp[k][j], acc);
            out[i][j] = acc;
        }
}

// t[a][b] = src[(y0 + a) * width + x0 + b] for a, b < size inside the height x width image; else 0.
template <int ALPHA>
__device__ __forceinline__ void load_tile(const float* __restrict__ src, int y0, int x0, int size,
                                          int height, int width, float (&t)[ALPHA][ALPHA]) {
#pragma unroll
    for (int a = 0; a < ALPHA; ++a)
#pragma unroll
        for (int b = 0; b < ALPHA; ++b)
            t[a][b] = a < size && b < size && convgemm::inside(y0 + a, x0 + b, height, width)
                          ? __ldg(src + (y0 + a) * width + x0 + b)
                          : 0.0f;
}

// dst[(a * ALPHA + b) * step] = v[a][b]: the ALPHA x ALPHA points of one tile, one per plane.
template <int ALPHA>
__device__ __forceinline__ void store_points(float* dst, size_t step,
                                             const float (&v)[ALPHA][ALPHA]) {
#pragma unroll
    for (int a = 0; a < ALPHA; ++a)
#pragma unroll
        for (int b = 0; b < ALPHA; ++b) dst[(a * ALPHA + b) * step] = v[a][b];
}

// ------------------------------------------------------------------------------------------------
// transforms

// plane[xi][c][nt] = (BT d BT^T)[xi], d = x[n, c, y0 - pad .. + alpha, x0 - pad .. + alpha] (0
// outside the image); one thread per (c, nt), over all C channels (the groups share the planes).
template <int ALPHA>
__global__ void input_transform_kernel(const float* __restrict__ x, float* __restrict__ plane,
                                       Tiling w, Matrices mt) {
    const ConvGeometry& s = w.s;
    const int total = s.C * w.NT;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int c, n, y0, x0;
        const int nt = w.div_NT.divmod(i, c);
        tile_origin(w, nt, n, y0, x0);
        y0 -= s.padding, x0 -= s.padding;
        const float* src = x + (static_cast<size_t>(n) * s.C + c) * s.HW;
        float d[ALPHA][ALPHA], v[ALPHA][ALPHA];
        load_tile<ALPHA>(src, y0, x0, ALPHA, s.H, s.W, d);
        sandwich<ALPHA>(mt.BT, ALPHA, ALPHA, d, v);
        store_points<ALPHA>(plane + static_cast<size_t>(c) * w.NT + nt,
                            static_cast<size_t>(s.C) * w.NT, v);
    }
}

// U[xi][f][c] = (G w G^T)[xi] for filter f, channel c of its group (w: F x Cg x fs x fs).
template <int ALPHA>
__global__ void filter_transform_kernel(const float* __restrict__ wt, float* __restrict__ u,
                                        Tiling w, Matrices mt) {
    const ConvGeometry& s = w.s;
    const int total = s.F * s.Cg;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const float* src = wt + static_cast<size_t>(i) * s.taps;
        float g[ALPHA][ALPHA], v[ALPHA][ALPHA];
        load_tile<ALPHA>(src, 0, 0, s.fs, s.fs, s.fs, g);
        sandwich<ALPHA>(mt.G, ALPHA, s.fs, g, v);
        store_points<ALPHA>(u + i, static_cast<size_t>(s.F) * s.Cg, v);
    }
}

// wt[c][f][a][b] = w[g*Fg + f][c - g*Cg][fs-1-a][fs-1-b] for channel c of group g: the filters
// of backward data as a forward conv (conv_winograd_run.cuh's transposed_shape), (C, Fg, fs, fs).
__global__ void flip_filters_kernel(const float* __restrict__ w, float* __restrict__ wt,
                                    ConvGeometry s) {
    const int total = s.C * s.Fg * s.taps;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int row, c;  // row = c * Fg + f
        const int tap = s.div_taps.divmod(i, row);
        const int f = s.div_Fg.divmod(row, c);
        const int g = c / s.Cg;
        const size_t src = (static_cast<size_t>(g * s.Fg + f) * s.Cg + (c - g * s.Cg)) * s.taps;
        wt[i] = __ldg(w + src + s.taps - 1 - tap);
    }
}

// D[xi][f][nt] = (G g G^T)[xi], g = the m x m tile nt of dy[n, f] (0 past the output's edge).
template <int ALPHA>
__global__ void grad_transform_kernel(const float* __restrict__ dy, float* __restrict__ plane,
                                      Tiling w, Matrices mt) {
    const ConvGeometry& s = w.s;
    const int total = s.F * w.NT;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int f, n, y0, x0;
        const int nt = w.div_NT.divmod(i, f);
        tile_origin(w, nt, n, y0, x0);
        const float* src = dy + (static_cast<size_t>(n) * s.F + f) * s.P;
        float g[ALPHA][ALPHA], v[ALPHA][ALPHA];
        load_tile<ALPHA>(src, y0, x0, w.m, s.OH, s.OW, g);
        sandwich<ALPHA>(mt.G, ALPHA, w.m, g, v);
        store_points<ALPHA>(plane + static_cast<size_t>(f) * w.NT + nt,
                            static_cast<size_t>(s.F) * w.NT, v);
    }
}

// y tile = AT Mo[.][f][nt] AT^T (m x m, clipped at the output's edge).
template <int ALPHA>
__global__ void output_transform_kernel(const float* __restrict__ mo, float* __restrict__ y,
                                        Tiling w, Matrices mt) {
    const ConvGeometry& s = w.s;
    const int total = s.F * w.NT;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int f, n, y0, x0;
        const int nt = w.div_NT.divmod(i, f);
        tile_origin(w, nt, n, y0, x0);
        const float* src = mo + static_cast<size_t>(f) * w.NT + nt;
        const size_t step = static_cast<size_t>(s.F) * w.NT;
        float m[ALPHA][ALPHA], v[ALPHA][ALPHA];
#pragma unroll
        for (int a = 0; a < ALPHA; ++a)
#pragma unroll
            for (int b = 0; b < ALPHA; ++b) m[a][b] = __ldg(src + (a * ALPHA + b) * step);
        sandwich<ALPHA>(mt.AT, w.m, ALPHA, m, v);
        float* dst = y + (static_cast<size_t>(n) * s.F + f) * s.P;
#pragma unroll
        for (int a = 0; a < ALPHA; ++a)
#pragma unroll
            for (int b = 0; b < ALPHA; ++b)
                if (a < w.m && b < w.m && y0 + a < s.OH && x0 + b < s.OW)
                    dst[(y0 + a) * s.OW + x0 + b] = v[a][b];
    }
}

// dw[f][c] = AT (sum over splits, in split order, of partial[split][xi][f][c]) AT^T (fs x fs).
template <int ALPHA>
__global__ void filter_output_transform_kernel(const float* __restrict__ partial,
                                               float* __restrict__ dw, int splits, Tiling w,
                                               Matrices mt) {
    const ConvGeometry& s = w.s;
    const int total = s.F * s.Cg;
    const size_t step = static_cast<size_t>(s.F) * s.Cg;  // between points xi
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        float m[ALPHA][ALPHA], v[ALPHA][ALPHA];
#pragma unroll
        for (int a = 0; a < ALPHA; ++a)
#pragma unroll
            for (int b = 0; b < ALPHA; ++b) {
                float total_ab = 0.0f;
                for (int sp = 0; sp < splits; ++sp)
                    total_ab += __ldg(partial + (static_cast<size_t>(sp) * ALPHA * ALPHA +
                                                 a * ALPHA + b) * step + i);
                m[a][b] = total_ab;
            }
        sandwich<ALPHA>(mt.AT, s.fs, ALPHA, m, v);
        float* dst = dw + static_cast<size_t>(i) * s.taps;
#pragma unroll
        for (int a = 0; a < ALPHA; ++a)
#pragma unroll
            for (int b = 0; b < ALPHA; ++b)
                if (a < s.fs && b < s.fs) dst[a * s.fs + b] = v[a][b];
    }
}

// ------------------------------------------------------------------------------------------------
// the GEMMs (operands for conv_gemm.cuh's engine)

// forward, grid z = xi * groups + g: C[nt, f] = sum_c V[xi][g*Cg + c][nt] * U[xi][g*Fg + f][c]
struct FwdBlock {
    int xi, g, k_begin, k_end;
};

struct FwdData {  // A[nt, c] = V[xi][g*Cg + c][nt]
    static constexpr bool K_CONTIGUOUS = false;  // a warp walks along nt
    const float* v;
    Tiling w;
    struct Row { int nt; };   // clamped to the last tile (feeds only rows never stored)
    struct Col { int off; };  // -1 past the channels
    __device__ Row row(const FwdBlock&, int m) const { return {m < w.NT ? m : w.NT - 1}; }
    __device__ Col col(const FwdBlock& b, int c) const {
        return {c < b.k_end ? (b.xi * w.s.C + b.g * w.s.Cg + c) * w.NT : -1};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.off >= 0 ? v + c.off + r.nt : nullptr;
    }
};

struct FwdFilters {  // B[f, c] = U[xi][g*Fg + f][c]
    static constexpr bool K_CONTIGUOUS = true;
    const float* u;
    Tiling w;
    struct Row { int base; };
    struct Col { int c; };
    __device__ Row row(const FwdBlock& b, int f) const {
        return {(b.xi * w.s.F + b.g * w.s.Fg + (f < w.s.Fg ? f : w.s.Fg - 1)) * w.s.Cg};
    }
    __device__ Col col(const FwdBlock& b, int c) const { return {c < b.k_end ? c : -1}; }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.c >= 0 ? u + r.base + c.c : nullptr;
    }
};

struct FwdOut {  // Mo[xi][g*Fg + f][nt] = C[nt, f]
    float* mo;
    Tiling w;
    struct Row { int nt; };
    struct Col { int off; };
    __device__ Row row(const FwdBlock&, int m) const { return {m < w.NT ? m : -1}; }
    __device__ Col col(const FwdBlock& b, int f) const {
        return {f < w.s.Fg ? (b.xi * w.s.F + b.g * w.s.Fg + f) * w.NT : -1};
    }
    __device__ void store(const Row& r, const Col& c, float value) const {
        if (r.nt >= 0 && c.off >= 0) mo[c.off + r.nt] = value;
    }
};

struct FwdOp {
    using Block = FwdBlock;
    using A = FwdData;
    using B = FwdFilters;
    using Out = FwdOut;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const {
        const int xi = z / a.w.s.groups;
        return {xi, z - xi * a.w.s.groups, 0, a.w.s.Cg};
    }
};

// backward filter, grid z = (split * alpha^2 + xi) * groups + g:
// C[c, f] = sum over the split's nt of X[xi][g*Cg + c][nt] * D[xi][g*Fg + f][nt]
struct FilterBlock {
    int xi, g, k_begin, k_end;
    int out_base;  // partial[split][xi]
};

// A[c, nt] = X[xi][g*Cg + c][nt] (rows = channels) or B[f, nt] = D[xi][g*Fg + f][nt]
// (rows = filters): both run along nt.
template <bool FILTERS>
struct FilterPlane {
    static constexpr bool K_CONTIGUOUS = true;
    const float* plane;
    Tiling w;
    struct Row { int base; };  // rows past the group clamped to its last
    struct Col { int nt; };    // -1 past the block's slice
    __device__ Row row(const FilterBlock& b, int i) const {
        const int per_group = FILTERS ? w.s.Fg : w.s.Cg;
        const int all = FILTERS ? w.s.F : w.s.C;
        return {(b.xi * all + b.g * per_group + (i < per_group ? i : per_group - 1)) * w.NT};
    }
    __device__ Col col(const FilterBlock& b, int nt) const { return {nt < b.k_end ? nt : -1}; }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.nt >= 0 ? plane + r.base + c.nt : nullptr;
    }
};

struct FilterPartial {  // partial[split][xi][g*Fg + f][c] = C[c, f]
    float* partial;
    Tiling w;
    struct Row { int c; };
    struct Col { int off; };
    __device__ Row row(const FilterBlock&, int c) const { return {c < w.s.Cg ? c : -1}; }
    __device__ Col col(const FilterBlock& b, int f) const {
        return {f < w.s.Fg ? b.out_base + (b.g * w.s.Fg + f) * w.s.Cg : -1};
    }
    __device__ void store(const Row& r, const Col& c, float value) const {
        if (r.c >= 0 && c.off >= 0) partial[c.off + r.c] = value;
    }
};

struct FilterOp {
    using Block = FilterBlock;
    using A = FilterPlane<false>;
    using B = FilterPlane<true>;
    using Out = FilterPartial;
    int M, N;
    A a;
    B b;
    Out c;
    int chunk;  // nt per split (a multiple of BK)
    __device__ Block block(int z) const {
        const ConvGeometry& s = a.w.s;
        const int a2 = a.w.alpha * a.w.alpha;
        const int plane = z / s.groups, g = z - plane * s.groups;  // plane = split * a2 + xi
        const int split = plane / a2, xi = plane - split * a2;
        const int begin = split * chunk;
        const int end = begin + chunk < a.w.NT ? begin + chunk : a.w.NT;
        return {xi, g, begin, end, plane * s.F * s.Cg};
    }
};

}  // namespace convwino
