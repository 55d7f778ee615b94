// Convolution (cuda-convnet's filterActs, imgActs, weightActs) as implicit GEMMs on the engine
// in conv_gemm.cuh. NCHW float32, w (F, C/groups, fs, fs); one GEMM per group (grid z).
//
//   forward          C[m, f] = sum_k x_patch[m, k] * w[f, k]     m = (n, oy, ox), k = (c, ky, kx)
//   backward data    C[p, c] = sum_k dy_tap[p, k] * w[f, c, t]   p = (n, iy, ix), k = (f, ky, kx)
//                    (gather: tap (ky, kx) feeds pixel p from output (iy+pad-ky, ix+pad-kx)/stride
//                     when that is integral and inside the output; with stride > 1 the pixels
//                     are split by residue class so that only such taps are visited; every dx
//                     element is written)
//   backward filter  C[k, f] = sum_r x_patch[r, k] * dy[r, f]    r = (n, oy, ox)
//                    the reduction over r is split across blocks (split-K); each split writes
//                    its own partial sum to a workspace and a second kernel adds the splits in
//                    a fixed order: deterministic, no atomics.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"
#include "conv_geometry.cuh"
#include "conv_mma.cuh"
#include "conv_split.cuh"
#include "conv_winograd_run.cuh"
#include "conv_workspace.cuh"

namespace {

using convgemm::ConvGeometry;
using convgemm::FastDiv;
using convgemm::inside;
using convgemm::kFarAway;
using convgemm::make_op;

// ------------------------------------------------------------------------------------------------
// forward: M = N*OH*OW, N = F/groups, K = C/groups * fs * fs

struct ForwardBlock {
    int g, k_begin, k_end;
};

// A[m, k] = x[n, g*Cg + c, oy*stride - pad + ky, ox*stride - pad + kx]
struct ForwardPatches {
    static constexpr bool K_CONTIGUOUS = false;  // a warp walks along ox
    const float* x;
    ConvGeometry s;
    using Row = convgemm::PatchRow;
    using Col = convgemm::PatchTap;
    __device__ Row row(const ForwardBlock& b, int m) const {
        if (m >= s.N * s.P) return {0, kFarAway, kFarAway};
        int n, oy;
        const int p = s.div_P.divmod(m, n);
        const int ox = s.div_OW.divmod(p, oy);
        const int iy0 = oy * s.stride - s.padding, ix0 = ox * s.stride - s.padding;
        return {(n * s.C + b.g * s.Cg) * s.HW + iy0 * s.W + ix0, iy0, ix0};
    }
    __device__ Col col(const ForwardBlock& b, int k) const {
        return convgemm::patch_tap(s, k, b.k_end);
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return convgemm::patch_address(x, s, r, c);
    }
};

// B[f, k] = w[g*Fg + f, k]
struct ForwardFilters {
    static constexpr bool K_CONTIGUOUS = true;
    const float* w;
    ConvGeometry s;
    struct Row { int base; };  // -1: no such filter
    struct Col { int k; };     // -1: past the block's slice
    __device__ Row row(const ForwardBlock& b, int f) const {
        return {f < s.Fg ? (b.g * s.Fg + f) * s.K : -1};
    }
    __device__ Col col(const ForwardBlock& b, int k) const { return {k < b.k_end ? k : -1}; }
    __device__ const float* address(const Row& r, const Col& c) const {
        return (r.base >= 0 && c.k >= 0) ? w + r.base + c.k : nullptr;
    }
};

// y[n, g*Fg + f, oy, ox] = C[m, f], or with `bias` (conv_forward_bias_relu, the epilogue fused)
// max(C[m, f] + bias[g*Fg + f], 0)
struct ForwardOutput {
    float* y;
    ConvGeometry s;
    const float* bias = nullptr;
    struct Row { int base; };
    struct Col { int off; float bias; };
    __device__ Row row(const ForwardBlock& b, int m) const {
        if (m >= s.N * s.P) return {-1};
        int n;
        const int p = s.div_P.divmod(m, n);
        return {(n * s.F + b.g * s.Fg) * s.P + p};
    }
    __device__ Col col(const ForwardBlock& b, int f) const {
        if (f >= s.Fg) return {-1, 0.0f};
        return {f * s.P, bias != nullptr ? __ldg(bias + b.g * s.Fg + f) : 0.0f};
    }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0)
            y[r.base + c.off] = bias != nullptr ? fmaxf(v + c.bias, 0.0f) : v;
    }
};

struct ForwardOp {
    using Block = ForwardBlock;
    using A = ForwardPatches;
    using B = ForwardFilters;
    using Out = ForwardOutput;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const { return {z, 0, a.s.K}; }
};

// ------------------------------------------------------------------------------------------------
// backward data, stride 1: M = N*H*W, N = C/groups, K = F/groups * fs * fs

struct DataBlock {
    int g, k_begin, k_end;
};

// A[p, k] = dy[n, g*Fg + f, iy + pad - ky, ix + pad - kx] (0 outside the output)
struct DataTaps {
    static constexpr bool K_CONTIGUOUS = false;  // a warp walks along ix
    const float* dy;
    ConvGeometry s;
    struct Row { int base, ty, tx; };  // ty = iy + pad
    struct Col { int off, ky, kx; };
    __device__ Row row(const DataBlock& b, int m) const {
        if (m >= s.N * s.HW) return {0, kFarAway, kFarAway};
        int n, iy;
        const int pix = s.div_HW.divmod(m, n);
        const int ix = s.div_W.divmod(pix, iy);
        return {(n * s.F + b.g * s.Fg) * s.P, iy + s.padding, ix + s.padding};
    }
    __device__ Col col(const DataBlock& b, int k) const {
        if (k >= b.k_end) return {0, -kFarAway, -kFarAway};
        int f, ky;
        const int t = s.div_taps.divmod(k, f);
        const int kx = s.div_fs.divmod(t, ky);
        return {f * s.P, ky, kx};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        const int oy = r.ty - c.ky, ox = r.tx - c.kx;
        return inside(oy, ox, s.OH, s.OW) ? dy + r.base + c.off + oy * s.OW + ox : nullptr;
    }
};

// B[c, k] = w[g*Fg + f, c, t]
struct DataFilters {
    static constexpr bool K_CONTIGUOUS = true;  // t is the fastest index of w
    const float* w;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const DataBlock& b, int c) const {
        return {c < s.Cg ? b.g * s.Fg * s.K + c * s.taps : -1};
    }
    __device__ Col col(const DataBlock& b, int k) const {
        if (k >= b.k_end) return {-1};
        int f;
        const int t = s.div_taps.divmod(k, f);
        return {f * s.K + t};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return (r.base >= 0 && c.off >= 0) ? w + r.base + c.off : nullptr;
    }
};

// dx[n, g*Cg + c, iy, ix] = C[p, c]
struct DataOutput {
    float* dx;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const DataBlock& b, int m) const {
        if (m >= s.N * s.HW) return {-1};
        int n;
        const int pix = s.div_HW.divmod(m, n);
        return {(n * s.C + b.g * s.Cg) * s.HW + pix};
    }
    __device__ Col col(const DataBlock&, int c) const { return {c < s.Cg ? c * s.HW : -1}; }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0) dx[r.base + c.off] = v;
    }
};

struct DataOp {
    using Block = DataBlock;
    using A = DataTaps;
    using B = DataFilters;
    using Out = DataOutput;
    int M, N;
    A a;
    B b;
    Out c;
    __device__ Block block(int z) const { return {z, 0, a.s.Fg * a.s.taps}; }
};

// ------------------------------------------------------------------------------------------------
// backward data, stride > 1: one GEMM per group and residue class (ry, rx) of (iy + pad, ix + pad)
// modulo the stride. Within a class only the taps ky = ry + stride*jy, kx = rx + stride*jx reach
// an output position, (oy, ox) = (qy - jy, qx - jx) with qy = (iy + pad - ry) / stride: the
// gather skips the (stride^2 - 1) / stride^2 of the taps that read nothing.
//   M = N * (rows of the class) * (columns of the class), N = C/groups, K = F/groups * nty * ntx

struct ResidueBlock {
    int g, k_begin, k_end;
    int m_end;          // N * rows * cols of this class
    int iy0, ix0;       // the class's first image row / column
    int qy0, qx0;       // and its output-grid coordinates (iy0 + pad - ry) / stride
    int ntx;            // taps ky = ry + stride*jy (jy < nty), kx = rx + stride*jx (jx < ntx)
    int tap0;           // ry * fs + rx: the class's first tap
    FastDiv div_plane;  // rows * cols of the class
    FastDiv div_cols;   // cols of the class
    FastDiv div_taps;   // nty * ntx
    FastDiv div_ntx;
};

// Image rows t (0 <= t < size) with (t + pad) % stride == r: the first one and how many.
__device__ inline void residue_span(int r, int pad, int stride, int size, int& first, int& count) {
    first = ((r - pad) % stride + stride) % stride;
    count = first < size ? (size - first + stride - 1) / stride : 0;
}

// A[p, k] = dy[n, g*Fg + f, qy - jy, qx - jx];  p = (n, a, b): iy = iy0 + a*stride, ...
struct ResidueTaps {
    static constexpr bool K_CONTIGUOUS = false;  // a warp walks along the class's columns
    const float* dy;
    ConvGeometry s;
    struct Row { int base, qy, qx; };
    struct Col { int off, jy, jx; };
    __device__ Row row(const ResidueBlock& b, int m) const {
        if (m >= b.m_end) return {0, kFarAway, kFarAway};
        int n, a;
        const int rem = b.div_plane.divmod(m, n);
        const int col = b.div_cols.divmod(rem, a);
        return {(n * s.F + b.g * s.Fg) * s.P, b.qy0 + a, b.qx0 + col};
    }
    __device__ Col col(const ResidueBlock& b, int k) const {
        if (k >= b.k_end) return {0, -kFarAway, -kFarAway};
        int f, jy;
        const int t = b.div_taps.divmod(k, f);
        const int jx = b.div_ntx.divmod(t, jy);
        return {f * s.P, jy, jx};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        const int oy = r.qy - c.jy, ox = r.qx - c.jx;
        return inside(oy, ox, s.OH, s.OW) ? dy + r.base + c.off + oy * s.OW + ox : nullptr;
    }
};

// B[c, k] = w[g*Fg + f, c, ry + stride*jy, rx + stride*jx]
struct ResidueFilters {
    static constexpr bool K_CONTIGUOUS = true;
    const float* w;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const ResidueBlock& b, int c) const {
        return {b.g * s.Fg * s.K + (c < s.Cg ? c : s.Cg - 1) * s.taps};
    }
    __device__ Col col(const ResidueBlock& b, int k) const {
        if (k >= b.k_end) return {-1};
        int f, jy;
        const int t = b.div_taps.divmod(k, f);
        const int jx = b.div_ntx.divmod(t, jy);
        return {f * s.K + b.tap0 + s.stride * (jy * s.fs + jx)};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return c.off >= 0 ? w + r.base + c.off : nullptr;
    }
};

// dx[n, g*Cg + c, iy0 + a*stride, ix0 + b*stride] = C[p, c]
struct ResidueOutput {
    float* dx;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const ResidueBlock& b, int m) const {
        if (m >= b.m_end) return {-1};
        int n, a;
        const int rem = b.div_plane.divmod(m, n);
        const int col = b.div_cols.divmod(rem, a);
        return {(n * s.C + b.g * s.Cg) * s.HW + (b.iy0 + a * s.stride) * s.W + b.ix0 +
                col * s.stride};
    }
    __device__ Col col(const ResidueBlock&, int c) const { return {c < s.Cg ? c * s.HW : -1}; }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0) dx[r.base + c.off] = v;
    }
};

struct ResidueOp {
    static constexpr bool WIDE_GATHER = true;  // see convgemm::built_min_blocks
    using Block = ResidueBlock;
    using A = ResidueTaps;
    using B = ResidueFilters;
    using Out = ResidueOutput;
    int M, N;  // M: the largest class
    A a;
    B b;
    Out c;
    // z = class * groups + g, class = ry * stride + rx
    __device__ Block block(int z) const {
        const ConvGeometry& s = a.s;
        const int cls = z / s.groups;
        ResidueBlock blk;
        blk.g = z - cls * s.groups;
        const int ry = cls / s.stride, rx = cls - ry * s.stride;
        blk.tap0 = ry * s.fs + rx;
        int rows, cols;
        residue_span(ry, s.padding, s.stride, s.H, blk.iy0, rows);
        residue_span(rx, s.padding, s.stride, s.W, blk.ix0, cols);
        blk.qy0 = (blk.iy0 + s.padding - ry) / s.stride;
        blk.qx0 = (blk.ix0 + s.padding - rx) / s.stride;
        const int nty = ry < s.fs ? (s.fs - ry + s.stride - 1) / s.stride : 0;
        blk.ntx = rx < s.fs ? (s.fs - rx + s.stride - 1) / s.stride : 0;
        blk.m_end = s.N * rows * cols;
        blk.k_begin = 0;
        blk.k_end = s.Fg * nty * blk.ntx;
        blk.div_plane = FastDiv(rows * cols > 0 ? rows * cols : 1);
        blk.div_cols = FastDiv(cols > 0 ? cols : 1);
        blk.div_taps = FastDiv(nty * blk.ntx > 0 ? nty * blk.ntx : 1);
        blk.div_ntx = FastDiv(blk.ntx > 0 ? blk.ntx : 1);
        return blk;
    }
};

// ------------------------------------------------------------------------------------------------
// backward filter: M = C/groups * fs * fs, N = F/groups, reduction R = N*OH*OW split in chunks

struct FilterBlock {
    int g, k_begin, k_end;
    int out_base;  // where this split's partial dw starts (0 without a workspace)
};

// A[k, r] = x[n, g*Cg + c, oy*stride - pad + ky, ox*stride - pad + kx],  k = (c, ky, kx)
// Four rows per thread: the row keeps (ky, kx) packed in one register. Rows past K are clamped
// to K - 1: they only feed columns of C that are never stored.
struct FilterPatches {
    static constexpr bool K_CONTIGUOUS = true;  // the reduction runs along ox
    const float* x;
    ConvGeometry s;
    struct Row { int base, kyx; };  // kyx = ky << 16 | kx
    struct Col { int off, iy0, ix0; };
    __device__ Row row(const FilterBlock& b, int k) const {
        int c, ky;
        const int t = s.div_taps.divmod(k < s.K ? k : s.K - 1, c);
        const int kx = s.div_fs.divmod(t, ky);
        return {(b.g * s.Cg + c) * s.HW + ky * s.W + kx, (ky << 16) | kx};
    }
    __device__ Col col(const FilterBlock& b, int r) const {
        if (r >= b.k_end) return {0, kFarAway, kFarAway};
        int n, oy;
        const int p = s.div_P.divmod(r, n);
        const int ox = s.div_OW.divmod(p, oy);
        const int iy0 = oy * s.stride - s.padding, ix0 = ox * s.stride - s.padding;
        return {n * s.C * s.HW + iy0 * s.W + ix0, iy0, ix0};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        return inside(c.iy0 + (r.kyx >> 16), c.ix0 + (r.kyx & 0xffff), s.H, s.W)
                   ? x + r.base + c.off
                   : nullptr;
    }
};

// B[f, r] = dy[n, g*Fg + f, oy, ox]
// ALONG_R: a warp loads 4 filters x 8 consecutive r (32-byte runs of one dy plane, a few cache
// lines per load); else 32 filters at one r (addresses OH*OW floats apart: 32 cache lines per
// load, which the L1 serves one line at a time). Along r, rows past F/groups are clamped to the
// last filter (they feed only columns of C that are never stored): that keeps the 128x128 tile
// within its 128 registers.
template <bool ALONG_R>
struct FilterGrads {
    static constexpr bool K_CONTIGUOUS = ALONG_R;
    const float* dy;
    ConvGeometry s;
    struct Row { int base; };  // along f: -1 past F/groups
    struct Col { int off; };   // -1: past the block's slice
    __device__ Row row(const FilterBlock& b, int f) const {
        if (ALONG_R) return {(b.g * s.Fg + (f < s.Fg ? f : s.Fg - 1)) * s.P};
        return {f < s.Fg ? (b.g * s.Fg + f) * s.P : -1};
    }
    __device__ Col col(const FilterBlock& b, int r) const {
        if (r >= b.k_end) return {-1};
        int n;
        const int p = s.div_P.divmod(r, n);
        return {n * s.F * s.P + p};
    }
    __device__ const float* address(const Row& r, const Col& c) const {
        if (ALONG_R) return c.off >= 0 ? dy + r.base + c.off : nullptr;
        return (r.base >= 0 && c.off >= 0) ? dy + r.base + c.off : nullptr;
    }
};

// dw[g*Fg + f, k] (or the split's slice of the workspace) = C[k, f]
struct FilterOutput {
    float* dw;
    ConvGeometry s;
    struct Row { int k; };
    struct Col { int off; };
    __device__ Row row(const FilterBlock&, int k) const { return {k < s.K ? k : -1}; }
    __device__ Col col(const FilterBlock& b, int f) const {
        return {f < s.Fg ? b.out_base + (b.g * s.Fg + f) * s.K : -1};
    }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.k >= 0 && c.off >= 0) dw[r.k + c.off] = v;
    }
};

template <bool DY_ALONG_R>
struct FilterOp {
    using Block = FilterBlock;
    using A = FilterPatches;
    using B = FilterGrads<DY_ALONG_R>;
    using Out = FilterOutput;
    int M, N;
    A a;
    B b;
    Out c;
    int splits, chunk;  // the reduction [0, R) in `splits` slices of `chunk` (a multiple of BK)
    __device__ Block block(int z) const {
        const int split = z / a.s.groups, g = z - split * a.s.groups;
        const int reduction = a.s.N * a.s.P;
        const int begin = split * chunk;
        const int end = begin + chunk < reduction ? begin + chunk : reduction;
        return {g, begin, end, splits > 1 ? split * a.s.F * a.s.K : 0};
    }
};

// dw[i] = sum over splits of partial[split][i], in split order.
__global__ void sum_splits_kernel(const float* __restrict__ partial, float* __restrict__ dw,
                                  int size, int splits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < size; i += gridDim.x * blockDim.x) {
        float total = 0.0f;
        for (int sp = 0; sp < splits; ++sp) total += partial[static_cast<size_t>(sp) * size + i];
        dw[i] = total;
    }
}

// ------------------------------------------------------------------------------------------------
// backward filter: the tile and the split of the reduction

// The tile of the backward-filter GEMM (M = K, N = F/groups): split-K fills the device, so the
// tile is chosen on padded work alone.
convgemm::Tile filter_tile(const ConvGeometry& s) {
    return convgemm::choose_tile(s.K, s.Fg, s.groups, convgemm::narrow_allowed<FilterOp<true>>(),
                                 false);
}

convsplit::Split filter_split(const ConvGeometry& s, convgemm::Tile tile, ConvAlgo algo) {
    const int reduction = s.N * s.P;
    const size_t tiles = convnet::ceil_div(s.K, convgemm::tile_rows(tile)) *
                         convnet::ceil_div(s.Fg, convgemm::tile_cols(tile)) * s.groups;
    const size_t out_floats = static_cast<size_t>(s.F) * s.K;
    if (algo == ConvAlgo::GemmDyAlongFFill)
        return convsplit::split_by_fill(tiles, reduction, out_floats);
    const int per_sm = algo == ConvAlgo::Gemm
                           ? convgemm::resident_blocks_per_sm<FilterOp<true>>(tile)
                           : convgemm::resident_blocks_per_sm<FilterOp<false>>(tile);
    return convsplit::split_by_waves({tiles, reduction, out_floats, tile,
                                      convnet::sm_count() * per_sm});
}

// The tensor-core kernels' split: about four blocks per SM (split_by_fill) over their tiles.
convsplit::Split filter_split_mma(const ConvGeometry& s) {
    return convsplit::split_by_fill(convmma::mma_tiles(s.K, s.Fg, s.groups) * s.groups, s.N * s.P,
                                    static_cast<size_t>(s.F) * s.K);
}

int winograd_m(ConvAlgo algo) {
    return algo == ConvAlgo::Winograd2 ? 2 : algo == ConvAlgo::Winograd4 ? 4 : 0;
}

}  // namespace

const char* conv_algo_unsupported(const char* op, int algo, const ConvShape& s) {
    if (algo < 0 || algo >= kConvAlgos) return "no such algorithm (see conv_algorithms)";
    const ConvAlgo a = static_cast<ConvAlgo>(algo);
    if (a == ConvAlgo::Gemm) return nullptr;
    if (convmma::is_mma(a)) return nullptr;  // every pass of conv and local (sm_80+: launch_mma)
    const std::string name = op;
    if (name == "conv_forward_bias_relu") return "its epilogue is fused into gemm and mma only";
    if ((a == ConvAlgo::GemmDyAlongF || a == ConvAlgo::GemmDyAlongFFill))
        return name == "conv_backward_filter" ? nullptr : "only conv_backward_filter has it";
    if (name != "conv_forward" && name != "conv_backward_data" && name != "conv_backward_filter")
        return "only the conv passes have it";
    return convwino::winograd_unsupported(s, winograd_m(a), name == "conv_backward_data");
}

// ------------------------------------------------------------------------------------------------
// launchers (conv.h)

void conv_forward(const float* x, const float* w, float* y, const ConvShape& shape, int algo,
                  cudaStream_t stream) {
    const char* name = "conv_forward";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    if (winograd_m(a) != 0) {
        convwino::run_winograd<convwino::Pass::Forward>(x, w, y, s, winograd_m(a), stream,
                                                        name);
        return;
    }
    const ForwardOp op = make_op<ForwardOp>(s.N * s.P, s.Fg, {x, s}, {w, s}, {y, s});
    convmma::launch_gemm_algo(a, op, s.groups, stream, name);
}

void conv_forward_bias_relu(const float* x, const float* w, const float* b, float* y,
                            const ConvShape& shape, int algo, cudaStream_t stream) {
    const char* name = "conv_forward_bias_relu";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    ForwardOp op = make_op<ForwardOp>(s.N * s.P, s.Fg, {x, s}, {w, s}, {y, s});
    op.c.bias = b;
    convmma::launch_gemm_algo(a, op, s.groups, stream, name);
}

void conv_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape,
                        int algo, cudaStream_t stream) {
    const char* name = "conv_backward_data";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    if (winograd_m(a) != 0) {
        convwino::run_winograd<convwino::Pass::BackwardData>(dy, w, dx, s, winograd_m(a), stream,
                                                             name);
        return;
    }
    if (s.stride == 1) {
        const DataOp op = make_op<DataOp>(s.N * s.HW, s.Cg, {dy, s}, {w, s}, {dx, s});
        convmma::launch_gemm_algo(a, op, s.groups, stream, name);
    } else {
        convnet::require(static_cast<size_t>(s.groups) * s.stride * s.stride < (size_t(1) << 31),
                         name, "groups * stride^2 too large");
        // the largest residue class has ceil(H / stride) x ceil(W / stride) pixels per image
        const int rows = static_cast<int>(convnet::ceil_div(s.H, s.stride));
        const int cols = static_cast<int>(convnet::ceil_div(s.W, s.stride));
        const ResidueOp op = make_op<ResidueOp>(s.N * rows * cols, s.Cg, {dy, s}, {w, s}, {dx, s});
        convmma::launch_gemm_algo(a, op, s.groups * s.stride * s.stride, stream, name);
    }
}

void conv_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& shape,
                          int algo, cudaStream_t stream) {
    const char* name = "conv_backward_filter";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    const ConvAlgo a = convgemm::checked_algo(name, algo, shape);
    if (winograd_m(a) != 0) {
        convwino::run_winograd<convwino::Pass::BackwardFilter>(x, dy, dw, s, winograd_m(a),
                                                               stream, name);
        return;
    }
    const convgemm::Tile tile = filter_tile(s);
    const convsplit::Split split =
        convmma::is_mma(a) ? filter_split_mma(s) : filter_split(s, tile, a);
    const int dw_size = s.F * s.K;

    auto run = [&](float* target) {
        auto split_op = [&](auto op) {
            op.splits = split.splits;
            op.chunk = split.chunk;
            return op;
        };
        const int batches = s.groups * split.splits;
        if (convmma::is_mma(a))
            convmma::launch_gemm_algo(
                a, split_op(make_op<FilterOp<true>>(s.K, s.Fg, {x, s}, {dy, s}, {target, s})),
                batches, stream, name);
        else if (a == ConvAlgo::Gemm)
            convgemm::launch_gemm_with(
                tile, split_op(make_op<FilterOp<true>>(s.K, s.Fg, {x, s}, {dy, s}, {target, s})),
                batches, stream, name);
        else
            convgemm::launch_gemm_with(
                tile, split_op(make_op<FilterOp<false>>(s.K, s.Fg, {x, s}, {dy, s}, {target, s})),
                batches, stream, name);
    };
    if (split.splits == 1) {
        run(dw);
        return;
    }
    convnet::Workspace partial(static_cast<size_t>(split.splits) * dw_size * sizeof(float), stream,
                               name);
    run(partial.get());
    const int threads = 256;
    const int blocks = static_cast<int>(convnet::ceil_div(dw_size, threads));
    sum_splits_kernel<<<blocks, threads, 0, stream>>>(partial.get(), dw, dw_size, split.splits);
    convnet::check_launch(name);
}
