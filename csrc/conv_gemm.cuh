// The implicit-GEMM engine behind the conv and local kernels (conv.cu, local.cu).
//
// Every pass of conv and local is a matrix product C[m, n] = sum_k A[m, k] * B[n, k] whose
// operands are gathered straight from the NCHW tensors (no im2col buffer in global memory):
//
//     block (BM x BN outputs of C, THREADS threads, TM x TN outputs per thread)
//       loop over the block's slice of k, BK at a time:
//         global -> shared      the BK-slices of A and B two ahead, by cp.async (sm_80 and
//                               newer: 3 buffers, no registers held for them); on sm_75 through
//                               registers, one slice ahead (2 buffers)
//         shared                As[k][m], Bs[k][n]: each thread reads float4 fragments
//         registers             acc[TM][TN] += a[TM] (x) b[TN]
//       epilogue: each element goes to wherever the op says (with a validity check)
//
// An op (see conv.cu / local.cu) is a plain struct passed by value to the kernel with
//   int M, N;                         the GEMM sizes (M: the largest over the grid's z-index)
//   Block block(int z) const;         per-block context for grid z-index z: at least
//                                     k_begin, k_end (this block's slice of the reduction)
//   A a; B b;                         the operands: each has
//       K_CONTIGUOUS                  true when consecutive k are close in memory (the threads
//                                     of a warp then walk along k when loading, else along rows)
//       Row row(const Block&, int i)  per-row state, computed once per block (i may be >= rows)
//       Col col(const Block&, int k)  per-k state, computed once per BK slice (k may be >= k_end)
//       const float* address(const Row&, const Col&)   the element's address, nullptr where it
//                                     reads 0: outside the tensor and for k past k_end (rows past
//                                     the operand's end may name any element instead: they only
//                                     feed elements that are not stored)
//   Out c;                            the result: Row row(const Block&, int m),
//                                     Col col(const Block&, int n), void store(Row, Col, float)
//                                     (store ignores invalid rows/columns)
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "common.cuh"
#include "mma.cuh"

namespace convgemm {

// ------------------------------------------------------------------------------------------------
// n / d for a divisor fixed at launch: a multiply-high and a shift instead of an integer division
// (which GPUs emulate in many instructions). Valid for 0 <= n < 2^31, d >= 1 (Granlund and
// Montgomery's round-up method).
struct FastDiv {
    int d;
    unsigned mul, shift;

    FastDiv() = default;
    __host__ __device__ explicit FastDiv(int divisor) : d(divisor) {
        shift = 0;
        while ((1u << shift) < static_cast<unsigned>(divisor)) ++shift;
        const uint64_t one = 1;  // (a 64-bit division: build these once per launch or block)
        mul = static_cast<unsigned>(((one << 32) * ((one << shift) - divisor)) / divisor + 1);
    }
    __device__ __forceinline__ int div(int n) const {
        const unsigned hi = __umulhi(static_cast<unsigned>(n), mul);
        return static_cast<int>((hi + static_cast<unsigned>(n)) >> shift);
    }
    // q = n / d, returns n % d
    __device__ __forceinline__ int divmod(int n, int& q) const {
        q = div(n);
        return n - q * d;
    }
};

// "Far outside any image": coordinates set to this make every bounds check fail, so invalid
// rows/columns of a tile read zeros without a separate flag.
constexpr int kFarAway = -(1 << 28);

__device__ __forceinline__ bool inside(int y, int x, int height, int width) {
    return static_cast<unsigned>(y) < static_cast<unsigned>(height) &&
           static_cast<unsigned>(x) < static_cast<unsigned>(width);
}

// ------------------------------------------------------------------------------------------------
// Tile shapes: a BM x BN block tile, TM x TN per thread (TM, TN in {4, 8}), BK-slices of k.

template <int BM_, int BN_, int TM_, int TN_, int MIN_BLOCKS_>
struct TileConfig {
    static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_;
    static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // per SM: caps registers at 128 a thread
    static constexpr int BK = 8;
    static constexpr int PAD = 4;  // keeps float4 alignment; makes k-walking stores conflict-free
    static constexpr int THREADS = (BM / TM) * (BN / TN);
    static_assert(TM % 4 == 0 && TN % 4 == 0 && TM <= 8 && TN <= 8, "fragments are float4s");
    static_assert(BM % TM == 0 && BN % TN == 0, "tile must split evenly into threads");
};

using TileLarge = TileConfig<128, 128, 8, 8, 2>;  // 256 threads
using TileMedium = TileConfig<128, 64, 8, 4, 2>;  // 256 threads
using TileSmall = TileConfig<128, 32, 8, 4, 4>;   // 128 threads
using TileNarrow = TileConfig<256, 16, 8, 4, 4>;  // 128 threads; N of a few channels
using TileSquare64 = TileConfig<64, 64, 4, 4, 2>;  // 256 threads; more blocks for small problems
using TileSmall64 = TileConfig<64, 32, 4, 4, 6>;   // 128 threads; likewise

// Loads one operand's BK-slice (ROWS x BK) into registers, then into shared memory as S[k][row].
// Thread t owns NR rows and NK k-values of the slice; lanes walk along k (K_CONTIGUOUS) or
// along rows first, so that a warp's loads land on neighbouring addresses.
template <class Operand, class Block, int ROWS, int BK, int THREADS>
struct TileLoader {
    static constexpr bool ALONG_K = Operand::K_CONTIGUOUS;
    static constexpr int ROW_LANES = ALONG_K ? THREADS / BK : (THREADS < ROWS ? THREADS : ROWS);
    static constexpr int K_LANES = THREADS / ROW_LANES;
    static constexpr int NR = ROWS / ROW_LANES;
    static constexpr int NK = BK / K_LANES;
    static_assert(THREADS % BK == 0 && ROWS % ROW_LANES == 0 && BK % K_LANES == 0 &&
                      ROW_LANES * K_LANES == THREADS && NR * NK * THREADS == ROWS * BK,
                  "loader lanes must tile the slice exactly");

    typename Operand::Row rows[NR];
    float regs[NR][NK];
    int row_lane, k_lane;

    __device__ __forceinline__ void init(const Operand& op, const Block& blk, int row0) {
        const int t = threadIdx.x;
        row_lane = ALONG_K ? t / BK : t % ROW_LANES;
        k_lane = ALONG_K ? t % BK : t / ROW_LANES;
#pragma unroll
        for (int i = 0; i < NR; ++i) rows[i] = op.row(blk, row0 + row_lane + i * ROW_LANES);
    }

    __device__ __forceinline__ void fetch(const Operand& op, const Block& blk, int k0) {
#pragma unroll
        for (int j = 0; j < NK; ++j) {
            const typename Operand::Col col = op.col(blk, k0 + k_lane + j * K_LANES);
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                const float* p = op.address(rows[i], col);
                regs[i][j] = p != nullptr ? __ldg(p) : 0.0f;
            }
        }
    }

    // The slice at k0 straight into S[k][row] (BY_ROW: S[row][k]) by cp.async, 4 bytes each;
    // 0 where the operand names no element (a zero-filling copy of nothing, its source unread).
    template <bool BY_ROW = false, class T, int STRIDE>
    __device__ __forceinline__ void copy(const Operand& op, const Block& blk, int k0,
                                         T (*s)[STRIDE]) const {
        static_assert(sizeof(T) == 4, "4-byte elements");
#pragma unroll
        for (int j = 0; j < NK; ++j) {
            const typename Operand::Col col = op.col(blk, k0 + k_lane + j * K_LANES);
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                const int k = k_lane + j * K_LANES, row = row_lane + i * ROW_LANES;
                T* dst = BY_ROW ? &s[row][k] : &s[k][row];
                const float* p = op.address(rows[i], col);
                const void* src = p != nullptr ? static_cast<const void*>(p) : dst;
                convnet::mma::cp_async<4>(dst, src, p != nullptr ? 4 : 0);
            }
        }
    }

    // Back into registers, the elements this thread's copy<BY_ROW> put in s (once its own
    // cp.async groups completed: no barrier needed, no other thread's element read).
    template <bool BY_ROW, int STRIDE>
    __device__ __forceinline__ void reload(const float (*s)[STRIDE]) {
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                const int k = k_lane + j * K_LANES, row = row_lane + i * ROW_LANES;
                regs[i][j] = BY_ROW ? s[row][k] : s[k][row];
            }
    }

    template <int STRIDE>
    __device__ __forceinline__ void stash(float (*s)[STRIDE]) const {
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int i = 0; i < NR; ++i)
                s[k_lane + j * K_LANES][row_lane + i * ROW_LANES] = regs[i][j];
    }
};

// Blocks per SM the kernel is built for (__launch_bounds__ caps registers at
// 65536 / (THREADS x blocks)). Cfg::MIN_BLOCKS fits every op in sm_90's registers; where
// tools/sass_lint.py found ptxas spilling at that cap instead, the kernel gives up one block
// (the host asks the runtime how many fit, so tile choice follows):
//   sm_75-89  ops with Op::WIDE_GATHER (the stride > 1 backward data: three coordinates per row
//             of A) on the 128x128 and 256x16 tiles: 24-44 bytes spilled at 128 registers
//   sm_100+   (the compute_100 PTX every Blackwell GPU JITs) every op on the 128x128 tile: up to
//             36 bytes spilled (conv's forward, residue and filter ops, Winograd's on sm_120)
//   sm_80+    WIDE_GATHER ops on the 64x32 tile since the cp.async pipeline (3 slices in flight):
//             4 bytes spilled at 85 registers (sm_90)
template <class Op, class = void>
struct wide_gather { static constexpr bool value = false; };
template <class Op>
struct wide_gather<Op, decltype(void(Op::WIDE_GATHER))> {
    static constexpr bool value = Op::WIDE_GATHER;
};

template <class Cfg, class Op>
constexpr int built_min_blocks() {
    constexpr bool large = Cfg::BM == 128 && Cfg::BN == 128;
    constexpr bool narrow = Cfg::BM == 256 && Cfg::BN == 16;
    constexpr bool wide = wide_gather<Op>::value;
    constexpr bool small64 = Cfg::BM == 64 && Cfg::BN == 32;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (wide && small64) return Cfg::MIN_BLOCKS - 1;  // cp.async's pipeline: 4 bytes at 85 regs
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
    if (large) return Cfg::MIN_BLOCKS - 1;
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    if (wide && (large || narrow)) return Cfg::MIN_BLOCKS - 1;
#endif
    (void)large, (void)narrow, (void)wide, (void)small64;
    return Cfg::MIN_BLOCKS;
}

// acc += the products of one BK-slice in shared memory (As[k][m], Bs[k][n]).
template <class Cfg, int LDA, int LDB>
__device__ __forceinline__ void accumulate(float (&acc)[Cfg::TM][Cfg::TN], const float (*As)[LDA],
                                           const float (*Bs)[LDB], int lane_m, int lane_n) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, TM = Cfg::TM, TN = Cfg::TN;
#pragma unroll
    for (int kk = 0; kk < Cfg::BK; ++kk) {
        float a[TM], b[TN];
#pragma unroll
        for (int c = 0; c < TM / 4; ++c) {
            const float4 v = *reinterpret_cast<const float4*>(&As[kk][lane_m * 4 + c * (BM / 2)]);
            a[4 * c] = v.x, a[4 * c + 1] = v.y, a[4 * c + 2] = v.z, a[4 * c + 3] = v.w;
        }
#pragma unroll
        for (int c = 0; c < TN / 4; ++c) {
            const float4 v = *reinterpret_cast<const float4*>(&Bs[kk][lane_n * 4 + c * (BN / 2)]);
            b[4 * c] = v.x, b[4 * c + 1] = v.y, b[4 * c + 2] = v.z, b[4 * c + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

#if defined(CONVNET_EMULATOR) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define CONVNET_GEMM_ASYNC_COPY 1  // cp.async: sm_80 and newer, and the emulator
#else
#define CONVNET_GEMM_ASYNC_COPY 0
#endif

template <class Cfg, class Op>
__global__ void __launch_bounds__(Cfg::THREADS, (built_min_blocks<Cfg, Op>()))
    implicit_gemm_kernel(const Op op, int z_base) {
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
    constexpr int THREADS = Cfg::THREADS, LDA = BM + Cfg::PAD, LDB = BN + Cfg::PAD;
    using Block = typename Op::Block;

    const Block blk = op.block(z_base + static_cast<int>(blockIdx.z));
    const int m0 = static_cast<int>(blockIdx.x) * BM;
    const int n0 = static_cast<int>(blockIdx.y) * BN;

    TileLoader<typename Op::A, Block, BM, BK, THREADS> load_a;
    TileLoader<typename Op::B, Block, BN, BK, THREADS> load_b;
    load_a.init(op.a, blk, m0);
    load_b.init(op.b, blk, n0);

    const int lane_m = static_cast<int>(threadIdx.x) % (BM / TM);
    const int lane_n = static_cast<int>(threadIdx.x) / (BM / TM);

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

#if CONVNET_GEMM_ASYNC_COPY
    // STAGES buffers: slice i is computed while slices i + 1 and i + 2 are in flight. Group g
    // holds slice g's copies (empty past k_end), so before slice i at most STAGES - 2 groups
    // may still be pending.
    constexpr int STAGES = 3;
    __shared__ __align__(16) float As[STAGES][BK][LDA];
    __shared__ __align__(16) float Bs[STAGES][BK][LDB];
    int k_next = blk.k_begin;
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st, k_next += BK) {
        if (k_next < blk.k_end) {
            load_a.copy(op.a, blk, k_next, As[st]);
            load_b.copy(op.b, blk, k_next, Bs[st]);
        }
        convnet::mma::cp_async_commit();
    }
    int buf = 0;
    for (int k0 = blk.k_begin; k0 < blk.k_end; k0 += BK, k_next += BK) {
        convnet::mma::cp_async_wait<STAGES - 2>();
        __syncthreads();  // slice k0 landed for every thread; the previous slice's buffer is free
        const int free = buf == 0 ? STAGES - 1 : buf - 1;
        if (k_next < blk.k_end) {
            load_a.copy(op.a, blk, k_next, As[free]);
            load_b.copy(op.b, blk, k_next, Bs[free]);
        }
        convnet::mma::cp_async_commit();
        accumulate<Cfg>(acc, As[buf], Bs[buf], lane_m, lane_n);
        buf = buf + 1 == STAGES ? 0 : buf + 1;
    }
#else
    __shared__ __align__(16) float As[2][BK][LDA];
    __shared__ __align__(16) float Bs[2][BK][LDB];
    int k0 = blk.k_begin;
    if (k0 < blk.k_end) {
        load_a.fetch(op.a, blk, k0);
        load_b.fetch(op.b, blk, k0);
        load_a.stash(As[0]);
        load_b.stash(Bs[0]);
    }
    __syncthreads();

    int buf = 0;
    for (; k0 < blk.k_end; k0 += BK) {
        const bool more = k0 + BK < blk.k_end;
        if (more) {  // global loads of the next slice overlap the arithmetic below
            load_a.fetch(op.a, blk, k0 + BK);
            load_b.fetch(op.b, blk, k0 + BK);
        }
        accumulate<Cfg>(acc, As[buf], Bs[buf], lane_m, lane_n);
        if (more) {  // the other buffer was last read before the previous barrier
            load_a.stash(As[buf ^ 1]);
            load_b.stash(Bs[buf ^ 1]);
        }
        __syncthreads();
        buf ^= 1;
    }
#endif

    typename Op::Out::Col cols[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j)
        cols[j] = op.c.col(blk, n0 + lane_n * 4 + (j % 4) + (j / 4) * (BN / 2));
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const typename Op::Out::Row row =
            op.c.row(blk, m0 + lane_m * 4 + (i % 4) + (i / 4) * (BM / 2));
#pragma unroll
        for (int j = 0; j < TN; ++j) op.c.store(row, cols[j], acc[i][j]);
    }
}

// ------------------------------------------------------------------------------------------------
// Host side

// An op of the given GEMM sizes on its operands (the ops' remaining fields keep their defaults).
template <class Op>
Op make_op(int M, int N, typename Op::A a, typename Op::B b, typename Op::Out c) {
    Op op{};
    op.M = M, op.N = N, op.a = a, op.b = b, op.c = c;
    return op;
}

// Calls launch(grid, z0) for `batches` independent products (grid z, at most 65535 a launch),
// M x N each in BM x BN tiles, checking each launch.
template <int BM, int BN, class Launch>
void launch_tiles(int M, int N, int batches, const char* name, Launch launch) {
    const size_t m_tiles = convnet::ceil_div(static_cast<size_t>(M), BM);
    const size_t n_tiles = convnet::ceil_div(static_cast<size_t>(N), BN);
    convnet::require(m_tiles <= 0x7fffffffu && n_tiles <= 65535, name,
                     "problem too large for one launch");
    constexpr int kMaxZ = 65535;
    for (int z0 = 0; z0 < batches; z0 += kMaxZ) {
        const int zs = batches - z0 < kMaxZ ? batches - z0 : kMaxZ;
        launch(dim3(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles),
                    static_cast<unsigned>(zs)),
               z0);
        convnet::check_launch(name);
    }
}

// Launch op over `batches` independent products (grid z), M x N each, with tile config Cfg.
template <class Cfg, class Op>
void launch_gemm(const Op& op, int batches, cudaStream_t stream, const char* name) {
    launch_tiles<Cfg::BM, Cfg::BN>(op.M, op.N, batches, name, [&](const dim3& grid, int z0) {
        implicit_gemm_kernel<Cfg, Op><<<grid, Cfg::THREADS, 0, stream>>>(op, z0);
    });
}

// Choosing a tile: the width (N) with the least padded work, weighting narrower tiles by their
// lower efficiency (fewer FMAs per shared-memory read; measured on an H100, the 128x64 tile runs
// at ~0.9 of the 128x128 one). When that grid would not fill the device even once
// (`fill_device`: blocks < SMs x blocks resident per SM), the 64-row tile of that width (or the
// nearest) takes its place: twice the blocks. Measured on an H100 (Fashion conv2, the CIFAR
// local layers), that beat the under-filled grid; a model that also traded 128-row tiles for
// 64-row ones on partial waves (AlexNet conv3-5) lost up to 30%, so only the under-filled case
// switches. The narrow tile holds 16 rows of A per thread when A is loaded along k, so it serves
// only ops that load A along rows.
enum class Tile { Large, Medium, Small, Narrow, Square64, Small64 };

struct TileOption {
    Tile tile;
    int bm, bn, blocks_per_sm;
    double efficiency;
};

constexpr TileOption kTileOptions[] = {
    {Tile::Large, 128, 128, 2, 1.0}, {Tile::Medium, 128, 64, 2, 0.9},
    {Tile::Small, 128, 32, 4, 0.7},  {Tile::Narrow, 256, 16, 4, 0.5},
    {Tile::Square64, 64, 64, 3, 0.75}, {Tile::Small64, 64, 32, 6, 0.6}};

inline const TileOption& tile_option(Tile t) {
    for (const TileOption& o : kTileOptions)
        if (o.tile == t) return o;
    return kTileOptions[0];
}

inline Tile choose_tile(int m, int n, int batches, bool narrow_allowed, bool fill_device) {
    Tile best = Tile::Large;
    double best_cost = -1;
    for (Tile t : {Tile::Large, Tile::Medium, Tile::Small, Tile::Narrow}) {
        const TileOption& o = tile_option(t);
        if (t == Tile::Narrow && !narrow_allowed) continue;
        const double cost = static_cast<double>(convnet::ceil_div(n, o.bn)) * o.bn / o.efficiency;
        if (best_cost < 0 || cost < best_cost) best = t, best_cost = cost;
    }
    if (fill_device && best != Tile::Narrow) {
        const TileOption& o = tile_option(best);
        const double blocks = static_cast<double>(convnet::ceil_div(m, o.bm)) *
                              convnet::ceil_div(n, o.bn) * batches;
        if (blocks < static_cast<double>(convnet::sm_count()) * o.blocks_per_sm)
            best = best == Tile::Small ? Tile::Small64 : Tile::Square64;
    }
    return best;
}

inline int tile_rows(Tile t) { return tile_option(t).bm; }
inline int tile_cols(Tile t) { return tile_option(t).bn; }

template <class Op>
constexpr bool narrow_allowed() { return !Op::A::K_CONTIGUOUS; }

template <class Op>
void launch_gemm_with(Tile tile, const Op& op, int batches, cudaStream_t stream,
                      const char* name) {
    switch (tile) {
        case Tile::Large: launch_gemm<TileLarge>(op, batches, stream, name); break;
        case Tile::Medium: launch_gemm<TileMedium>(op, batches, stream, name); break;
        case Tile::Small: launch_gemm<TileSmall>(op, batches, stream, name); break;
        case Tile::Square64: launch_gemm<TileSquare64>(op, batches, stream, name); break;
        case Tile::Small64: launch_gemm<TileSmall64>(op, batches, stream, name); break;
        case Tile::Narrow:
            if constexpr (narrow_allowed<Op>()) launch_gemm<TileNarrow>(op, batches, stream, name);
            break;
    }
}

// Blocks of implicit_gemm_kernel<Cfg, Op> that fit on one multiprocessor at once (from its
// registers, shared memory and threads, as the runtime computes it for the current device; the
// tile table's figure should the query fail). Cached per device: the query costs microseconds.
template <class Cfg, class Op>
int resident_blocks_per_sm(int fallback) {
    static std::atomic<int> known[64] = {};  // 0: not asked yet
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) {
        cudaGetLastError();
        return fallback;
    }
    int blocks = known[device].load(std::memory_order_relaxed);
    if (blocks == 0) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, implicit_gemm_kernel<Cfg, Op>,
                                                          Cfg::THREADS, 0) != cudaSuccess ||
            blocks < 1) {
            cudaGetLastError();  // a failed query must not poison the next launch check
            return fallback;
        }
        known[device].store(blocks, std::memory_order_relaxed);
    }
    return blocks;
}

template <class Op>
int resident_blocks_per_sm(Tile tile) {
    const int fallback = tile_option(tile).blocks_per_sm;
    switch (tile) {
        case Tile::Large: return resident_blocks_per_sm<TileLarge, Op>(fallback);
        case Tile::Medium: return resident_blocks_per_sm<TileMedium, Op>(fallback);
        case Tile::Small: return resident_blocks_per_sm<TileSmall, Op>(fallback);
        case Tile::Square64: return resident_blocks_per_sm<TileSquare64, Op>(fallback);
        case Tile::Small64: return resident_blocks_per_sm<TileSmall64, Op>(fallback);
        case Tile::Narrow:
            if constexpr (narrow_allowed<Op>())
                return resident_blocks_per_sm<TileNarrow, Op>(fallback);
            break;
    }
    return fallback;
}

// Launch op over `batches` products with the tile choose_tile picks for it.
template <class Op>
void launch_gemm_auto(const Op& op, int batches, cudaStream_t stream, const char* name) {
    if (op.M <= 0 || op.N <= 0 || batches <= 0) return;
    launch_gemm_with(choose_tile(op.M, op.N, batches, narrow_allowed<Op>(), true), op, batches,
                     stream, name);
}

// Every int offset into a tensor of this many elements fits in 31 bits.
inline void require_int_sized(size_t elements, const char* op, const char* what) {
    convnet::require(elements < (size_t(1) << 31), op,
                     std::string(what) + " has 2^31 elements or more (not supported)");
}

}  // namespace convgemm
