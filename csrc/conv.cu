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
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"
#include "conv_geometry.cuh"
#include "conv_winograd.cuh"

namespace {

using convgemm::ConvGeometry;
using convgemm::FastDiv;
using convgemm::inside;
using convgemm::kFarAway;

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
    struct Row { int base, iy0, ix0; };
    struct Col { int off, ky, kx; };
    __device__ Row row(const ForwardBlock& b, int m) const {
        if (m >= s.N * s.P) return {0, kFarAway, kFarAway};
        int n, oy;
        const int p = s.div_P.divmod(m, n);
        const int ox = s.div_OW.divmod(p, oy);
        const int iy0 = oy * s.stride - s.padding, ix0 = ox * s.stride - s.padding;
        return {(n * s.C + b.g * s.Cg) * s.HW + iy0 * s.W + ix0, iy0, ix0};
    }
    __device__ Col col(const ForwardBlock& b, int k) const {
        if (k >= b.k_end) return {0, kFarAway, kFarAway};
        int c, ky;
        const int t = s.div_taps.divmod(k, c);
        const int kx = s.div_fs.divmod(t, ky);
        return {c * s.HW + ky * s.W + kx, ky, kx};
    }
    __device__ float load(const Row& r, const Col& c) const {
        return inside(r.iy0 + c.ky, r.ix0 + c.kx, s.H, s.W) ? __ldg(x + r.base + c.off) : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        return (r.base >= 0 && c.k >= 0) ? __ldg(w + r.base + c.k) : 0.0f;
    }
};

// y[n, g*Fg + f, oy, ox] = C[m, f]
struct ForwardOutput {
    float* y;
    ConvGeometry s;
    struct Row { int base; };
    struct Col { int off; };
    __device__ Row row(const ForwardBlock& b, int m) const {
        if (m >= s.N * s.P) return {-1};
        int n;
        const int p = s.div_P.divmod(m, n);
        return {(n * s.F + b.g * s.Fg) * s.P + p};
    }
    __device__ Col col(const ForwardBlock&, int f) const { return {f < s.Fg ? f * s.P : -1}; }
    __device__ void store(const Row& r, const Col& c, float v) const {
        if (r.base >= 0 && c.off >= 0) y[r.base + c.off] = v;
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
    __device__ float load(const Row& r, const Col& c) const {
        const int oy = r.ty - c.ky, ox = r.tx - c.kx;
        return inside(oy, ox, s.OH, s.OW) ? __ldg(dy + r.base + c.off + oy * s.OW + ox) : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        return (r.base >= 0 && c.off >= 0) ? __ldg(w + r.base + c.off) : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        const int oy = r.qy - c.jy, ox = r.qx - c.jx;
        return inside(oy, ox, s.OH, s.OW) ? __ldg(dy + r.base + c.off + oy * s.OW + ox) : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        return c.off >= 0 ? __ldg(w + r.base + c.off) : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        return inside(c.iy0 + (r.kyx >> 16), c.ix0 + (r.kyx & 0xffff), s.H, s.W)
                   ? __ldg(x + r.base + c.off)
                   : 0.0f;
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
    __device__ float load(const Row& r, const Col& c) const {
        if (ALONG_R) return c.off >= 0 ? __ldg(dy + r.base + c.off) : 0.0f;
        return (r.base >= 0 && c.off >= 0) ? __ldg(dy + r.base + c.off) : 0.0f;
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
// backward filter: the variant, the tile, the split of the reduction

// CONVNET_CONV_BWDF picks the backward-filter kernel; read at every call, so that a benchmark can
// time both in one process (benchmarks/bench_kernels.py --ab):
//   new (default)  dy loaded along r (coalesced), splits by whole waves (split_by_waves)
//   old            dy loaded along f, splits for ~4 blocks per SM (split_by_fill): the kernel
//                  of the 2026-11-22 H100 report
//   waves          dy loaded along f, splits by whole waves (the two changes apart)
enum class FilterVariant { New, Old, Waves };

FilterVariant filter_variant(const char* op) {
    const char* v = std::getenv("CONVNET_CONV_BWDF");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "new") == 0) return FilterVariant::New;
    if (std::strcmp(v, "old") == 0) return FilterVariant::Old;
    if (std::strcmp(v, "waves") == 0) return FilterVariant::Waves;
    convnet::require(false, op,
                     std::string("CONVNET_CONV_BWDF must be new, old or waves, got '") + v + "'");
    return FilterVariant::New;
}

constexpr int kMinChunk = 512;    // reduction elements per split, at least
constexpr int kMaxSplits = 256;
constexpr size_t kMaxWorkspaceFloats = size_t(64) << 20;  // 256 MiB

// The tile of the backward-filter GEMM (M = K, N = F/groups): split-K fills the device, so the
// tile is chosen on padded work alone.
convgemm::Tile filter_tile(const ConvGeometry& s) {
    return convgemm::choose_tile(s.K, s.Fg, s.groups, convgemm::narrow_allowed<FilterOp<true>>(),
                                 false);
}

// The reduction [0, N*OH*OW) in `splits` slices of `chunk` elements (a multiple of BK; the last
// slice may be shorter).
struct FilterSplit {
    int splits, chunk;
};

FilterSplit split_of(int reduction, size_t splits) {
    const int bk = convgemm::TileLarge::BK;
    const int chunk = static_cast<int>(
        convnet::ceil_div(convnet::ceil_div(reduction, splits < 1 ? 1 : splits), bk) * bk);
    return {static_cast<int>(convnet::ceil_div(reduction, chunk)), chunk};
}

// The most splits allowed: none shorter than kMinChunk, the workspace (`out_floats` per split)
// within kMaxWorkspaceFloats.
size_t max_splits(int reduction, size_t out_floats) {
    size_t most = convnet::ceil_div(reduction, kMinChunk);
    const size_t by_memory = kMaxWorkspaceFloats / (out_floats > 0 ? out_floats : 1);
    if (most > by_memory) most = by_memory;
    if (most > static_cast<size_t>(kMaxSplits)) most = kMaxSplits;
    return most < 1 ? 1 : most;
}

size_t filter_tiles(const ConvGeometry& s, convgemm::Tile tile) {
    return convnet::ceil_div(s.K, convgemm::tile_rows(tile)) *
           convnet::ceil_div(s.Fg, convgemm::tile_cols(tile)) * s.groups;
}

// The old rule: enough splits that the grid holds about four blocks per SM.
FilterSplit split_by_fill(const ConvGeometry& s, int reduction) {
    const size_t target_blocks = 4 * static_cast<size_t>(convnet::sm_count());
    size_t splits = convnet::ceil_div(target_blocks, filter_tiles(s, filter_tile(s)));
    const size_t most = max_splits(reduction, static_cast<size_t>(s.F) * s.K);
    return split_of(reduction, splits < most ? splits : most);
}

// A split-K GEMM to size: `tiles` output tiles of `tile` (all grid z's together), a reduction of
// `reduction` elements, a result of `out_floats` floats per split, `resident` blocks at once.
struct SplitProblem {
    size_t tiles;
    int reduction;
    size_t out_floats;
    convgemm::Tile tile;
    int resident;
};

// Whole waves. Every block of the split-K grid does the same work (one BM x BN tile over one
// chunk of the reduction), so the grid runs in waves of `resident` blocks (SMs x the blocks that
// fit on one), and a wave that is only partly full takes nearly as long as a full one (its
// blocks run a little faster with an SM to themselves, far from proportionally). The old
// rule's ~4 blocks per SM gave AlexNet conv2 and conv3 540 blocks on an H100's 264 slots: 2.05
// waves of work in 3 waves of time. So among the allowed split counts s, take the one with the
// least estimated time, in units of one BK step of one block:
//
//     ceil(tiles * s / resident) * (chunk(s) / BK + kBlockOverheadSteps)  +  s * split_cost
//
// split_cost: the split sum's traffic (each split writes out_floats, the sum reads them back)
// as GEMM steps: 8*out_floats bytes at kFlopPerByte (the GEMM's FLOP rate over DRAM bandwidth,
// H100: ~30 TFLOP/s / ~2.5 TB/s), over the FLOPs of one step of the whole device,
// resident * 2*BM*BN*BK. On an H100 (264 slots of the 128x128 and 128x64 tiles) this picks
// 13 splits for conv2 (260 blocks, 1 wave), 19 for conv3 (1026 blocks, 3.9 waves), 3 for conv4
// (252 blocks), 9 for conv5 (252) and 37 for Fashion conv2 (259).
constexpr double kBlockOverheadSteps = 2.0;  // a block's prologue and epilogue, in BK steps
constexpr double kFlopPerByte = 12.0;

FilterSplit split_by_waves(const SplitProblem& p) {
    const int bk = convgemm::TileLarge::BK;
    const double step_flops = 2.0 * p.resident * convgemm::tile_rows(p.tile) *
                              convgemm::tile_cols(p.tile) * bk;
    const double split_cost = 8.0 * static_cast<double>(p.out_floats) * kFlopPerByte / step_flops;
    FilterSplit best = split_of(p.reduction, 1);
    double best_cost = -1;
    const size_t most = max_splits(p.reduction, p.out_floats);
    for (size_t n = 1; n <= most; ++n) {
        const FilterSplit split = split_of(p.reduction, n);
        if (static_cast<size_t>(split.splits) != n) continue;  // same chunk as a smaller count
        const size_t waves = convnet::ceil_div(p.tiles * n, static_cast<size_t>(p.resident));
        const double cost = static_cast<double>(waves) * (split.chunk / bk + kBlockOverheadSteps) +
                            (n > 1 ? static_cast<double>(n) * split_cost : 0.0);
        if (best_cost < 0 || cost < best_cost) best = split, best_cost = cost;
    }
    return best;
}

// A stream-ordered scratch buffer: cudaMallocAsync where the device has memory pools (the pool
// keeps up to kPoolKeepBytes cached across synchronizations, so repeated calls do not go back
// to the driver: enough for the largest split-K workspace and the Winograd planes, which are
// capped at 256 MiB and 1 GiB; only what was used is kept), else a plain cudaMalloc freed after
// the stream drains.
class Workspace {
public:
    Workspace(size_t bytes, cudaStream_t stream, const char* op) : stream_(stream) {
        int device = 0;
        convnet::check_cuda(cudaGetDevice(&device), op, "cudaGetDevice");
        async_ = pools_supported(device);
        if (async_) {
            convnet::check_cuda(cudaMallocAsync(&ptr_, bytes, stream), op, "cudaMallocAsync");
        } else {
            convnet::check_cuda(cudaMalloc(&ptr_, bytes), op, "cudaMalloc");
        }
    }
    ~Workspace() {
        if (async_) {
            cudaFreeAsync(ptr_, stream_);
        } else {
            cudaStreamSynchronize(stream_);
            cudaFree(ptr_);
        }
    }
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    float* get() const { return static_cast<float*>(ptr_); }

private:
    static constexpr uint64_t kPoolKeepBytes = uint64_t(1280) << 20;

    static bool pools_supported(int device) {
        static std::mutex mutex;
        static int known[64] = {};  // 0 unknown, 1 yes, 2 no
        std::lock_guard<std::mutex> lock(mutex);
        if (device < 0 || device >= 64) return false;
        if (known[device] == 0) {
            int supported = 0;
            cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device);
            known[device] = supported ? 1 : 2;
            cudaMemPool_t pool;
            if (supported && cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
                uint64_t keep = 0;
                cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
                if (keep < kPoolKeepBytes) {
                    keep = kPoolKeepBytes;
                    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
                }
            }
            cudaGetLastError();  // an unsupported attribute query must not poison later checks
        }
        return known[device] == 1;
    }

    void* ptr_ = nullptr;
    cudaStream_t stream_;
    bool async_ = false;
};

template <class Op>
Op make_op(int M, int N, typename Op::A a, typename Op::B b,
           typename Op::Out c) {
    Op op{};
    op.M = M, op.N = N, op.a = a, op.b = b, op.c = c;
    return op;
}

// ------------------------------------------------------------------------------------------------
// Winograd (conv_winograd.cuh)

// The transformed planes of one Winograd call, at most (1 GiB; more would cost more traffic than
// the multiplications it saves, e.g. AlexNet conv2's 5x5 at alpha 6: 1.3 GB).
constexpr size_t kMaxWinogradFloats = size_t(256) << 20;

// CONVNET_CONV_WINOGRAD, read at every call like CONVNET_CONV_BWDF: off (default) runs the direct
// kernels; 2 or 4 runs stride-1 forward and backward-filter passes as Winograd F(m x m, fs x fs)
// with m x m tiles, where alpha = m + fs - 1 <= 6 (3x3 filters: m = 2 or 4; 5x5: m = 2), the
// transformed planes fit 31-bit offsets and kMaxWinogradFloats; other convolutions stay direct.
// Returns m, or 0.
int winograd_tile(const ConvGeometry& s, const char* op) {
    const char* v = std::getenv("CONVNET_CONV_WINOGRAD");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "off") == 0 || std::strcmp(v, "0") == 0)
        return 0;
    int m = 0;
    if (std::strcmp(v, "2") == 0) m = 2;
    if (std::strcmp(v, "4") == 0) m = 4;
    convnet::require(m != 0, op,
                     std::string("CONVNET_CONV_WINOGRAD must be off, 2 or 4, got '") + v + "'");
    const int alpha = m + s.fs - 1;
    if (s.stride != 1 || s.fs < 2 || alpha > convwino::kMaxAlpha) return 0;
    const size_t tiles = static_cast<size_t>(s.N) * convnet::ceil_div(s.OH, m) *
                         convnet::ceil_div(s.OW, m);
    const size_t a2 = static_cast<size_t>(alpha) * alpha;
    const size_t widest = static_cast<size_t>(s.C > s.F ? s.C : s.F);
    if (a2 * widest * tiles >= (size_t(1) << 31)) return 0;
    const size_t planes = a2 * ((static_cast<size_t>(s.C) + s.F) * tiles +
                                static_cast<size_t>(s.F) * s.Cg);
    return planes <= kMaxWinogradFloats ? m : 0;
}

template <int ALPHA>
void winograd_forward(const float* x, const float* w, float* y, const ConvGeometry& s, int m,
                      cudaStream_t stream, const char* name) {
    using namespace convwino;
    const Tiling t = make_tiling(s, m);
    const Matrices mt = make_matrices(m, s.fs);
    const size_t a2 = ALPHA * ALPHA;
    const size_t v_size = a2 * s.C * t.NT, u_size = a2 * s.F * s.Cg, mo_size = a2 * s.F * t.NT;
    Workspace ws((v_size + u_size + mo_size) * sizeof(float), stream, name);
    float* planes = ws.get();
    float* u = planes + v_size;
    float* mo = u + u_size;
    const int threads = convnet::kThreads;
    const unsigned in_grid = convnet::grid_for(static_cast<size_t>(s.C) * t.NT);
    input_transform_kernel<ALPHA><<<in_grid, threads, 0, stream>>>(x, planes, t, mt);
    convnet::check_launch(name);
    const unsigned w_grid = convnet::grid_for(static_cast<size_t>(s.F) * s.Cg);
    filter_transform_kernel<ALPHA><<<w_grid, threads, 0, stream>>>(w, u, t, mt);
    convnet::check_launch(name);
    const FwdOp op = make_op<FwdOp>(t.NT, s.Fg, {planes, t}, {u, t}, {mo, t});
    convgemm::launch_gemm_auto(op, static_cast<int>(a2) * s.groups, stream, name);
    const unsigned out_grid = convnet::grid_for(static_cast<size_t>(s.F) * t.NT);
    output_transform_kernel<ALPHA><<<out_grid, threads, 0, stream>>>(mo, y, t, mt);
    convnet::check_launch(name);
}

template <int ALPHA>
void winograd_backward_filter(const float* x, const float* dy, float* dw, const ConvGeometry& s,
                              int m, cudaStream_t stream, const char* name) {
    using namespace convwino;
    const Tiling t = make_tiling(s, m);
    const Matrices mt = make_matrices(s.fs, m);
    const size_t a2 = ALPHA * ALPHA;
    const size_t x_size = a2 * s.C * t.NT, d_size = a2 * s.F * t.NT;
    const size_t out_floats = a2 * s.F * s.Cg;  // one split's partial M[xi][f][c]
    const convgemm::Tile tile =
        convgemm::choose_tile(s.Cg, s.Fg, static_cast<int>(a2) * s.groups, false, false);
    const size_t tiles = convnet::ceil_div(s.Cg, convgemm::tile_rows(tile)) *
                         convnet::ceil_div(s.Fg, convgemm::tile_cols(tile)) * s.groups * a2;
    const int resident =
        convnet::sm_count() * convgemm::resident_blocks_per_sm<convwino::FilterOp>(tile);
    const FilterSplit split = split_by_waves({tiles, t.NT, out_floats, tile, resident});
    const size_t p_size = static_cast<size_t>(split.splits) * out_floats;
    Workspace ws((x_size + d_size + p_size) * sizeof(float), stream, name);
    float* planes = ws.get();
    float* grads = planes + x_size;
    float* partial = grads + d_size;
    const int threads = convnet::kThreads;
    const unsigned in_grid = convnet::grid_for(static_cast<size_t>(s.C) * t.NT);
    input_transform_kernel<ALPHA><<<in_grid, threads, 0, stream>>>(x, planes, t, mt);
    convnet::check_launch(name);
    const unsigned dy_grid = convnet::grid_for(static_cast<size_t>(s.F) * t.NT);
    grad_transform_kernel<ALPHA><<<dy_grid, threads, 0, stream>>>(dy, grads, t, mt);
    convnet::check_launch(name);
    convwino::FilterOp op =
        make_op<convwino::FilterOp>(s.Cg, s.Fg, {planes, t}, {grads, t}, {partial, t});
    op.chunk = split.chunk;
    convgemm::launch_gemm_with(tile, op, split.splits * static_cast<int>(a2) * s.groups, stream,
                               name);
    const unsigned out_grid = convnet::grid_for(static_cast<size_t>(s.F) * s.Cg);
    filter_output_transform_kernel<ALPHA>
        <<<out_grid, threads, 0, stream>>>(partial, dw, split.splits, t, mt);
    convnet::check_launch(name);
}

// Runs the Winograd version of `pass` (forward or backward filter) when CONVNET_CONV_WINOGRAD
// asks for it and the convolution qualifies; false: the caller runs the direct kernels.
template <bool FORWARD>
bool run_winograd(const float* a, const float* b, float* out, const ConvGeometry& s,
                  cudaStream_t stream, const char* name) {
    const int m = winograd_tile(s, name);
    if (m == 0) return false;
    auto run = [&](auto alpha) {
        constexpr int ALPHA = decltype(alpha)::value;
        if constexpr (FORWARD)
            winograd_forward<ALPHA>(a, b, out, s, m, stream, name);
        else
            winograd_backward_filter<ALPHA>(a, b, out, s, m, stream, name);
    };
    switch (m + s.fs - 1) {
        case 3: run(std::integral_constant<int, 3>()); break;
        case 4: run(std::integral_constant<int, 4>()); break;
        case 5: run(std::integral_constant<int, 5>()); break;
        default: run(std::integral_constant<int, 6>()); break;
    }
    return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// launchers (conv.h)

void conv_forward(const float* x, const float* w, float* y, const ConvShape& shape,
                  cudaStream_t stream) {
    const char* name = "conv_forward";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    if (run_winograd<true>(x, w, y, s, stream, name)) return;
    const ForwardOp op = make_op<ForwardOp>(s.N * s.P, s.Fg, {x, s}, {w, s}, {y, s});
    convgemm::launch_gemm_auto(op, s.groups, stream, name);
}

void conv_backward_data(const float* dy, const float* w, float* dx, const ConvShape& shape,
                        cudaStream_t stream) {
    const char* name = "conv_backward_data";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    if (s.stride == 1) {
        const DataOp op = make_op<DataOp>(s.N * s.HW, s.Cg, {dy, s}, {w, s}, {dx, s});
        convgemm::launch_gemm_auto(op, s.groups, stream, name);
    } else {
        convnet::require(static_cast<size_t>(s.groups) * s.stride * s.stride < (size_t(1) << 31),
                         name, "groups * stride^2 too large");
        // the largest residue class has ceil(H / stride) x ceil(W / stride) pixels per image
        const int rows = static_cast<int>(convnet::ceil_div(s.H, s.stride));
        const int cols = static_cast<int>(convnet::ceil_div(s.W, s.stride));
        const ResidueOp op = make_op<ResidueOp>(s.N * rows * cols, s.Cg, {dy, s}, {w, s}, {dx, s});
        convgemm::launch_gemm_auto(op, s.groups * s.stride * s.stride, stream, name);
    }
}

void conv_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& shape,
                          cudaStream_t stream) {
    const char* name = "conv_backward_filter";
    const ConvGeometry s = convgemm::make_geometry(shape, name, false);
    if (run_winograd<false>(x, dy, dw, s, stream, name)) return;
    const FilterVariant variant = filter_variant(name);
    const int reduction = s.N * s.P;
    const convgemm::Tile tile = filter_tile(s);
    FilterSplit split;
    if (variant == FilterVariant::Old) {
        split = split_by_fill(s, reduction);
    } else {
        const int per_sm = variant == FilterVariant::New
                               ? convgemm::resident_blocks_per_sm<FilterOp<true>>(tile)
                               : convgemm::resident_blocks_per_sm<FilterOp<false>>(tile);
        split = split_by_waves({filter_tiles(s, tile), reduction, static_cast<size_t>(s.F) * s.K,
                                tile, convnet::sm_count() * per_sm});
    }
    const int dw_size = s.F * s.K;

    auto run = [&](float* target) {
        auto launch = [&](auto op) {
            op.splits = split.splits;
            op.chunk = split.chunk;
            convgemm::launch_gemm_with(tile, op, s.groups * split.splits, stream, name);
        };
        if (variant == FilterVariant::New)
            launch(make_op<FilterOp<true>>(s.K, s.Fg, {x, s}, {dy, s}, {target, s}));
        else
            launch(make_op<FilterOp<false>>(s.K, s.Fg, {x, s}, {dy, s}, {target, s}));
    };
    if (split.splits == 1) {
        run(dw);
        return;
    }
    Workspace partial(static_cast<size_t>(split.splits) * dw_size * sizeof(float), stream, name);
    run(partial.get());
    const int threads = 256;
    const int blocks = static_cast<int>(convnet::ceil_div(dw_size, threads));
    sum_splits_kernel<<<blocks, threads, 0, stream>>>(partial.get(), dw, dw_size, split.splits);
    convnet::check_launch(name);
}
