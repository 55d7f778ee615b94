// Locally connected layers (an unshared filter bank per output position) on the implicit-GEMM
// engine of conv_gemm.cuh. NCHW float32, w (OH, OW, F, C/groups, fs, fs). Every position has
// its own small GEMM (grid z = position x group); each weight is used only N times, so these
// passes are bound by memory traffic, not arithmetic.
//
//   forward          C[n, f] = sum_k x_window[n, k] * w[pos, f, k]            k = (c, ky, kx)
//   backward data    C[n, c] = sum_k dy[n, f, oy, ox] * w[oy, ox, f, c, ky, kx] per input pixel,
//                    k = (window covering the pixel, f): a gather, every dx element written
//   backward filter  C[k, f] = sum_n x_window[n, k] * dy[n, f, pos]            per position
#include <cuda_runtime.h>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"
#include "conv_geometry.cuh"
#include "conv_mma.cuh"

namespace {

using convgemm::ConvGeometry;
using convgemm::inside;
using convgemm::kFarAway;

// The grid z index of the forward and backward-filter passes: group fastest, then position.
struct PositionBlock {
    int g, pos, iy0, ix0;  // window (oy, ox) starts at image row iy0, column ix0
    int k_begin, k_end;
};

__device__ inline PositionBlock position_block(const ConvGeometry& s, int z, int reduction) {
    const int pos = z / s.groups, g = z - pos * s.groups;
    int oy;
    const int ox = s.div_OW.divmod(pos, oy);
    return {g, pos, oy * s.stride - s.padding, ox * s.stride - s.padding, 0, reduction};
}

// ------------------------------------------------------------------------------------------------
// forward: M = N, N = F/groups, K = C/groups * fs * fs, one GEMM per (position, group)

// A[n, k] = x[n, g*Cg + c, iy0 + ky, ix0 + kx]; rows past N are clamped (their C rows are dropped)
struct ForwardWindow {
    static constexpr bool K_CONTIGUOUS = true;
    const float* x;
    ConvGeometry s;
    using Row = convgemm::PatchRow;
    using Col = convgemm::PatchTap;
    __device__ Row row(const PositionBlock& b, int n) const {
        n = n < s.N ? n : s.N - 1;
        return {(n * s.C + b.g * s.Cg) * s.HW + b.iy0 * s.W + b.ix0, b.iy0, b.ix0};
    }
    __device__ Col col(const PositionBlock& b, int k) const {
        return convgemm::patch_tap(s, k, b.k_end);
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return convgemm::patch_address(x, s, r, c);
    }
};

// B[f, k] = w[pos, g*Fg + f, k]
struct ForwardFilters {
    static constexpr bool K_CONTIGUOUS = true;
    const float* w;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int k; };  // -1: past the reduction
    __device__ Row row(const PositionBlock& b, int f) const {
        f = f < s.Fg ? f : s.Fg - 1;
        return {(b.pos * s.F + b.g * s.Fg + f) * s.K};
    }
    __device__ Col col(const PositionBlock& b, int k) const { return {k < b.k_end ? k : -1}; }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.k >= 0 ? w + r.base + c.k : nullptr;
    }
};

// y[n, g*Fg + f, pos] = C[n, f]
struct ForwardOutput {
    float* y;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const PositionBlock& b, int n) const {
        return {n < s.N ? n * s.F * s.P + b.pos : -1};
    }
    __device__ Col col(const PositionBlock& b, int f) const {
        return {f < s.Fg ? (b.g * s.Fg + f) * s.P : -1};
    }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0) y[r.base + c.off] = v;
    }
};

struct ForwardOp {
    using Block = PositionBlock;
    using A = ForwardWindow;
    using B = ForwardFilters;
    using Out = ForwardOutput;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const { return position_block(a.s, z, a.s.K); }
};

// ------------------------------------------------------------------------------------------------
// backward data: M = N, N = C/groups, one GEMM per (input pixel, group) over the windows that
// cover the pixel: oy in [oy_lo, oy_lo + ny), ox in [ox_lo, ox_lo + nx), k = (oy, ox, f)

struct PixelBlock {
    int g, pix;
    int ty, tx;          // iy + padding, ix + padding
    int oy_lo, ox_lo, nx;
    int k_begin, k_end;  // k_end = ny * nx * Fg
};

// First and count of the output positions o (0 <= o < out) whose window [o*stride, +fs)
// contains t = pixel + padding.
__device__ inline void covering(int t, int fs, int stride, int out, int& first, int& count) {
    const int lowest = t - fs + 1;  // o*stride >= lowest
    first = lowest <= 0 ? 0 : (lowest + stride - 1) / stride;
    int last = t / stride;  // o*stride <= t
    last = last < out - 1 ? last : out - 1;
    count = last >= first ? last - first + 1 : 0;
}

// Window q = (qy, qx) and filter f of reduction index k.
struct DataTap {
    int oy, ox, f;
};

__device__ inline DataTap data_tap(const ConvGeometry& s, const PixelBlock& b, int k) {
    int q, qy;
    const int f = s.div_Fg.divmod(k, q);
    qy = q / b.nx;
    return {b.oy_lo + qy, b.ox_lo + (q - qy * b.nx), f};
}

// A[n, k] = dy[n, g*Fg + f, oy, ox]; rows past N are clamped
struct DataGrads {
    static constexpr bool K_CONTIGUOUS = true;
    const float* dy;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };  // -1: past the reduction
    __device__ Row row(const PixelBlock&, int n) const {
        return {(n < s.N ? n : s.N - 1) * s.F * s.P};
    }
    __device__ Col col(const PixelBlock& b, int k) const {
        if (k >= b.k_end) return {-1};
        const DataTap t = data_tap(s, b, k);
        return {(b.g * s.Fg + t.f) * s.P + t.oy * s.OW + t.ox};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.off >= 0 ? dy + r.base + c.off : nullptr;
    }
};

// B[c, k] = w[oy, ox, g*Fg + f, c, ty - oy*stride, tx - ox*stride]; rows past Cg are clamped
struct DataFilters {
    static constexpr bool K_CONTIGUOUS = true;
    const float* w;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };  // -1: past the reduction
    __device__ Row row(const PixelBlock&, int c) const {
        return {(c < s.Cg ? c : s.Cg - 1) * s.taps};
    }
    __device__ Col col(const PixelBlock& b, int k) const {
        if (k >= b.k_end) return {-1};
        const DataTap t = data_tap(s, b, k);
        const int ky = b.ty - t.oy * s.stride, kx = b.tx - t.ox * s.stride;
        return {((t.oy * s.OW + t.ox) * s.F + b.g * s.Fg + t.f) * s.K + ky * s.fs + kx};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.off >= 0 ? w + r.base + c.off : nullptr;
    }
};

// dx[n, g*Cg + c, pix] = C[n, c]
struct DataOutput {
    float* dx;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const PixelBlock& b, int n) const {
        return {n < s.N ? n * s.C * s.HW + b.pix : -1};
    }
    __device__ Col col(const PixelBlock& b, int c) const {
        return {c < s.Cg ? (b.g * s.Cg + c) * s.HW : -1};
    }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0) dx[r.base + c.off] = v;
    }
};

struct DataOp {
    using Block = PixelBlock;
    using A = DataGrads;
    using B = DataFilters;
    using Out = DataOutput;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const {
        const ConvGeometry& s = a.s;
        const int pix = z / s.groups, g = z - pix * s.groups;
        int iy;
        const int ix = s.div_W.divmod(pix, iy);
        PixelBlock blk;
        blk.g = g, blk.pix = pix;
        blk.ty = iy + s.padding, blk.tx = ix + s.padding;
        int ny, nx;
        covering(blk.ty, s.fs, s.stride, s.OH, blk.oy_lo, ny);
        covering(blk.tx, s.fs, s.stride, s.OW, blk.ox_lo, nx);
        blk.nx = nx > 0 ? nx : 1;
        blk.k_begin = 0;
        blk.k_end = ny * nx * s.Fg;
        return blk;
    }
};

// ------------------------------------------------------------------------------------------------
// backward filter: M = C/groups * fs * fs, N = F/groups, reduction over the batch, one GEMM per
// (position, group)

// A[k, n] = x[n, g*Cg + c, iy0 + ky, ix0 + kx]; rows outside the image (or past K) read zeros
struct FilterWindow {
    static constexpr bool K_CONTIGUOUS = false;  // a warp walks along the window
    const float* x;
    ConvGeometry s;
    struct Row { int base; };  // -1: outside the image or past K
    struct Col { int off; };   // -1: past the batch
    __device__ Row row(const PositionBlock& b, int k) const {
        if (k >= s.K) return {-1};
        int c, ky;
        const int t = s.div_taps.divmod(k, c);
        const int kx = s.div_fs.divmod(t, ky);
        const int iy = b.iy0 + ky, ix = b.ix0 + kx;
        return {inside(iy, ix, s.H, s.W) ? (b.g * s.Cg + c) * s.HW + iy * s.W + ix : -1};
    }
    __device__ Col col(const PositionBlock& b, int n) const {
        return {n < b.k_end ? n * s.C * s.HW : -1};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return (r.base >= 0 && c.off >= 0) ? x + r.base + c.off : nullptr;
    }
};

// B[f, n] = dy[n, g*Fg + f, pos]; rows past Fg are clamped
struct FilterGrads {
    static constexpr bool K_CONTIGUOUS = false;
    const float* dy;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };  // -1: past the batch
    __device__ Row row(const PositionBlock& b, int f) const {
        return {(b.g * s.Fg + (f < s.Fg ? f : s.Fg - 1)) * s.P + b.pos};
    }
    __device__ Col col(const PositionBlock& b, int n) const {
        return {n < b.k_end ? n * s.F * s.P : -1};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.off >= 0 ? dy + r.base + c.off : nullptr;
    }
};

// dw[pos, g*Fg + f, k] = C[k, f]
struct FilterOutput {
    float* dw;
    ConvGeometry s;
    struct Row { int k; };
    struct Col { int off; };
    __device__ Row row(const PositionBlock&, int k) const { return {k < s.K ? k : -1}; }
    __device__ Col col(const PositionBlock& b, int f) const {
        return {f < s.Fg ? (b.pos * s.F + b.g * s.Fg + f) * s.K : -1};
    }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.k >= 0 && c.off >= 0) dw[r.k + c.off] = v;
    }
};

struct FilterOp {
    using Block = PositionBlock;
    using A = FilterWindow;
    using B = FilterGrads;
    using Out = FilterOutput;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const { return position_block(a.s, z, a.s.N); }
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// launchers (conv.h)

void local_forward(const float* x, const float* w, float* y, const ConvShape& shape,
                   int algo, cudaStream_t stream) {
    const char* name = "local_forward";
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    const ConvGeometry s = convgemm::make_geometry(shape, name, true);
    const ForwardOp op = convgemm::make_op<ForwardOp>(s.N, s.Fg, {x, s}, {w, s}, {y, s});
    convmma::launch_gemm_algo(a, op, s.P * s.groups, stream, name);
}

void local_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape,
                   int algo, cudaStream_t stream) {
    const char* name = "local_backward_data";
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    const ConvGeometry s = convgemm::make_geometry(shape, name, true);
    const DataOp op = convgemm::make_op<DataOp>(s.N, s.Cg, {dy, s}, {w, s}, {dx, s});
    convmma::launch_gemm_algo(a, op, s.HW * s.groups, stream, name);
}

void local_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& shape,
                   int algo, cudaStream_t stream) {
    const char* name = "local_backward_filter";
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    const ConvGeometry s = convgemm::make_geometry(shape, name, true);
    const FilterOp op = convgemm::make_op<FilterOp>(s.K, s.Fg, {x, s}, {dy, s}, {dw, s});
    convmma::launch_gemm_algo(a, op, s.P * s.groups, stream, name);
}
