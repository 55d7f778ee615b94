// The tensor-core twin of conv_gemm.cuh's engine: the same ops (every pass of conv and local,
// their operands gathered by the op's A and B), the products on mma.sync with FP32 accumulation.
//
//     block (BM x BN outputs of C, warps of WM x WN outputs each)
//       loop over the block's slice of k, BK = 16 at a time:
//         global -> shared      the next 3 slices of A and B (the op's gathers) in flight by
//                               cp.async while the tensor cores work on this one, in 4 buffers
//                               of dynamic shared memory: TF32 as As[m][k], Bs[n][k] with k
//                               contiguous, the floats as they are; BF16 as FP32 staging,
//                               which each thread converts (cvt.rn) into As[m][k], Bs[n][k] of
//                               16 bits, reading back only the elements it copied itself
//         shared -> fragments   ldmatrix (.x4: one 16 x k-step tile of A, or two 8 x k-step
//                               tiles of B; TF32 converts each register, cvt.rna); the rows are
//                               padded so that its 8 row reads of a matrix hit 32 different banks
//         tensor cores          mma.sync m16n8k8 (TF32) or m16n8k16 (BF16)
//       epilogue: the op's store, element by element, as conv_gemm.cuh's
//
// sm_80 and newer: launch_mma refuses older devices with a message, and the instructions trap
// there.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"
#include "mma.cuh"

namespace convmma {

enum class Precision { TF32, BF16 };

template <Precision P>
struct Staged;
// TF32 copies the floats as they are (cp.async, sm_80's asynchronous copy) and converts each
// fragment register after ldmatrix; BF16 converts them from FP32 staging into 16-bit tiles,
// halving what ldmatrix reads (cp.async copies bytes, it cannot convert).
// STAGES: the cp.async buffers. One BK-slice of products on the 128x128 tile is about 0.14 us
// of an H100 SM's TF32 rate (0.07 us at BF16's), several times less than a global load's
// latency, so three slices are kept in flight: 80 KB (TF32) and 88 KB (BF16) of shared memory
// on that tile, within every sm_80+ GPU's 99 KB.
template <>
struct Staged<Precision::TF32> {
    using T = uint32_t;
    static constexpr bool CONVERTS = false;
    static constexpr int STAGES = 4;
    static constexpr int K_STEP = 8;  // k of one mma
    static constexpr int PAD = 4;     // 80-byte rows
    __device__ static uint32_t fragment(uint32_t bits) {
        return convnet::mma::to_tf32(__uint_as_float(bits));
    }
    __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        convnet::mma::mma_tf32(d, a, b, d);
    }
};
template <>
struct Staged<Precision::BF16> {
    using T = uint16_t;
    static constexpr bool CONVERTS = true;
    static constexpr int STAGES = 4;
    static constexpr int K_STEP = 16;
    static constexpr int PAD = 8;  // 48-byte rows
    __device__ static T convert(float v) { return convnet::mma::to_bf16(v); }
    __device__ static uint32_t fragment(uint32_t bits) { return bits; }
    __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        convnet::mma::mma_bf16(d, a, b, d);
    }
};

template <int BM_, int BN_, int WM_, int WN_, int MIN_BLOCKS_>
struct MmaTile {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, MIN_BLOCKS = MIN_BLOCKS_;
    static constexpr int BK = 16;
    static constexpr int WARPS_M = BM / WM, THREADS = 32 * WARPS_M * (BN / WN);
    static constexpr int MT = WM / 16, NT = WN / 8;  // mma tiles of a warp
    static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0 && NT % 2 == 0,
                  "warps tile the block; B's fragments load two n-tiles at a time");
};

using MmaLarge = MmaTile<128, 128, 64, 32, 1>;  // 8 warps
using MmaSmall = MmaTile<64, 64, 32, 32, 2>;    // 4 warps

// A loader's registers into S[row][k], converted.
template <class Convert, class Loader, class T, int LD>
__device__ __forceinline__ void stash_rows(const Loader& l, T (*s)[LD]) {
#pragma unroll
    for (int j = 0; j < Loader::NK; ++j)
#pragma unroll
        for (int i = 0; i < Loader::NR; ++i)
            s[l.row_lane + i * Loader::ROW_LANES][l.k_lane + j * Loader::K_LANES] =
                Convert::convert(l.regs[i][j]);
}

// acc += the products of one BK-slice in shared memory (As[m][k], Bs[n][k]) for warp tile
// (wm, wn). ldmatrix row addresses: lane l names row l % 8 of matrix l / 8. A: matrices (rows
// 0-7, k 0..), (rows 8-15, k 0..), (rows 0-7, k half..), (rows 8-15, k half..) are registers
// a0..a3 of m16n8k8.tf32 and m16n8k16.bf16 alike; B: (n 0-7, k 0..), (n 0-7, k half..) of two
// neighbouring n-tiles.
template <class Cfg, class S, class T, int LD>
__device__ __forceinline__ void mma_slice(float (&acc)[Cfg::MT][Cfg::NT][4], const T (*As)[LD],
                                          const T (*Bs)[LD], int wm, int wn, int lane) {
    constexpr int MT = Cfg::MT, NT = Cfg::NT, HALF_STEP = S::K_STEP / 2;
    const int a_row = lane % 16, a_col = HALF_STEP * (lane / 16);
    const int b_row = lane % 8 + 8 * (lane / 16), b_col = HALF_STEP * (lane / 8 % 2);
#pragma unroll
    for (int kk = 0; kk < Cfg::BK; kk += S::K_STEP) {
        uint32_t a[MT][4], b[NT][2];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            convnet::mma::ldmatrix<4>(a[i], &As[wm + 16 * i + a_row][kk + a_col]);
#pragma unroll
            for (int r = 0; r < 4; ++r) a[i][r] = S::fragment(a[i][r]);
        }
#pragma unroll
        for (int j = 0; j < NT; j += 2) {
            uint32_t r[4];
            convnet::mma::ldmatrix<4>(r, &Bs[wn + 8 * j + b_row][kk + b_col]);
            b[j][0] = S::fragment(r[0]), b[j][1] = S::fragment(r[1]);
            b[j + 1][0] = S::fragment(r[2]), b[j + 1][1] = S::fragment(r[3]);
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j) S::mma(acc[i][j], a[i], b[j]);
    }
}

template <class Cfg, Precision P, class Op>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS)
    mma_gemm_kernel(const Op op, int z_base) {
    using S = Staged<P>;
    using T = typename S::T;
    using Block = typename Op::Block;
    constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, MT = Cfg::MT, NT = Cfg::NT;
    constexpr int LD = BK + S::PAD;

    const Block blk = op.block(z_base + static_cast<int>(blockIdx.z));
    const int m0 = static_cast<int>(blockIdx.x) * BM;
    const int n0 = static_cast<int>(blockIdx.y) * BN;
    const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
    const int wm = (warp % Cfg::WARPS_M) * Cfg::WM, wn = (warp / Cfg::WARPS_M) * Cfg::WN;

    convgemm::TileLoader<typename Op::A, Block, BM, BK, Cfg::THREADS> load_a;
    convgemm::TileLoader<typename Op::B, Block, BN, BK, Cfg::THREADS> load_b;
    load_a.init(op.a, blk, m0);
    load_b.init(op.b, blk, n0);

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // STAGES buffers of cp.async copies (mma_shared_bytes): slice i is computed while slices
    // i + 1 .. i + STAGES - 1 are in flight. Group g holds slice g's copies (empty past k_end),
    // so before slice i at most STAGES - 2 groups may still be pending.
    constexpr int STAGES = S::STAGES;
    extern __shared__ __align__(16) unsigned char mma_shared[];
    int k_next = blk.k_begin, buf = 0;
    if constexpr (!S::CONVERTS) {  // TF32: the copies land where ldmatrix reads them
        T(*As)[BM][LD] = reinterpret_cast<T(*)[BM][LD]>(mma_shared);
        T(*Bs)[BN][LD] = reinterpret_cast<T(*)[BN][LD]>(mma_shared + sizeof(T) * STAGES * BM * LD);
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st, k_next += BK) {
            if (k_next < blk.k_end) {
                load_a.template copy<true>(op.a, blk, k_next, As[st]);
                load_b.template copy<true>(op.b, blk, k_next, Bs[st]);
            }
            convnet::mma::cp_async_commit();
        }
        for (int k0 = blk.k_begin; k0 < blk.k_end; k0 += BK, k_next += BK) {
            convnet::mma::cp_async_wait<STAGES - 2>();
            __syncthreads();  // slice k0 landed for every thread; the last slice's buffer is free
            const int free = buf == 0 ? STAGES - 1 : buf - 1;
            if (k_next < blk.k_end) {
                load_a.template copy<true>(op.a, blk, k_next, As[free]);
                load_b.template copy<true>(op.b, blk, k_next, Bs[free]);
            }
            convnet::mma::cp_async_commit();
            mma_slice<Cfg, S>(acc, As[buf], Bs[buf], wm, wn, lane);
            buf = buf + 1 == STAGES ? 0 : buf + 1;
        }
    } else {  // BF16: FP32 staging (each operand laid out as its loader walks it: no bank
              // conflicts), converted by the thread that copied it into one of two 16-bit tiles
        constexpr bool A_BY_ROW = Op::A::K_CONTIGUOUS, B_BY_ROW = Op::B::K_CONTIGUOUS;
        constexpr int A_LD = A_BY_ROW ? BK : BM, B_LD = B_BY_ROW ? BK : BN;
        constexpr int STAGE = (BM + BN) * BK;  // floats
        float* staging = reinterpret_cast<float*>(mma_shared);
        const auto a_stage = [&](int st) {
            return reinterpret_cast<float(*)[A_LD]>(staging + st * STAGE);
        };
        const auto b_stage = [&](int st) {
            return reinterpret_cast<float(*)[B_LD]>(staging + st * STAGE + BM * BK);
        };
        T* tiles = reinterpret_cast<T*>(staging + STAGES * STAGE);
        T(*As)[BM][LD] = reinterpret_cast<T(*)[BM][LD]>(tiles);
        T(*Bs)[BN][LD] = reinterpret_cast<T(*)[BN][LD]>(tiles + 2 * BM * LD);
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st, k_next += BK) {
            if (k_next < blk.k_end) {
                load_a.template copy<A_BY_ROW>(op.a, blk, k_next, a_stage(st));
                load_b.template copy<B_BY_ROW>(op.b, blk, k_next, b_stage(st));
            }
            convnet::mma::cp_async_commit();
        }
        int tile = 0;
        for (int k0 = blk.k_begin; k0 < blk.k_end; k0 += BK, k_next += BK) {
            convnet::mma::cp_async_wait<STAGES - 2>();  // this thread's copies of slice k0
            load_a.template reload<A_BY_ROW>(a_stage(buf));
            load_b.template reload<B_BY_ROW>(b_stage(buf));
            stash_rows<S>(load_a, As[tile]);  // tile was last read two slices ago, before the
            stash_rows<S>(load_b, Bs[tile]);  // previous barrier
            const int free = buf == 0 ? STAGES - 1 : buf - 1;  // read back last slice: by us
            if (k_next < blk.k_end) {
                load_a.template copy<A_BY_ROW>(op.a, blk, k_next, a_stage(free));
                load_b.template copy<B_BY_ROW>(op.b, blk, k_next, b_stage(free));
            }
            convnet::mma::cp_async_commit();
            __syncthreads();  // every thread's share of the 16-bit tiles is written
            mma_slice<Cfg, S>(acc, As[tile], Bs[tile], wm, wn, lane);
            buf = buf + 1 == STAGES ? 0 : buf + 1;
            tile ^= 1;
        }
    }

    // accumulator element e of tile (i, j): row 16 i + lane / 4 + 8 (e / 2), column
    // 8 j + 2 (lane % 4) + e % 2 (mma.cuh's acc)
    typename Op::Out::Col cols[NT][2];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e)
            cols[j][e] = op.c.col(blk, n0 + wn + 8 * j + convnet::mma::acc(lane, e).col);
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const typename Op::Out::Row row =
                op.c.row(blk, m0 + wm + 16 * i + convnet::mma::acc(lane, 2 * h).row);
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) op.c.store(row, cols[j][e], acc[i][j][2 * h + e]);
        }
}

// ------------------------------------------------------------------------------------------------
// Host side

// The compute capability of the current device as 10 * major + minor (0 should the query fail).
inline int device_arch() {
    int device = 0, major = 0, minor = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return 10 * major + minor;
}

// The tensor-core kernels need sm_80 or newer: std::invalid_argument naming op otherwise (a
// property of the device, not of the shape, so conv_algo_unsupported leaves it to the launch).
inline void require_mma_device(const char* op) {
    const int arch = device_arch();
    const std::string device = arch == 0 ? "unknown" : "sm_" + std::to_string(arch);
    convnet::require(arch >= 80, op,
                     "the TF32 and BF16 tensor-core kernels need sm_80 or newer (this device: " +
                         device + "); use precision fp32");
}

// The dynamic shared memory of mma_gemm_kernel<Cfg, P, ...>: STAGES slices of A and B (TF32:
// padded rows, as ldmatrix reads them; BF16: FP32 staging, then its two 16-bit tiles).
template <class Cfg, Precision P>
constexpr size_t mma_shared_bytes() {
    using S = Staged<P>;
    using T = typename S::T;
    constexpr size_t rows = Cfg::BM + Cfg::BN, ld = Cfg::BK + S::PAD;
    if (S::CONVERTS) return sizeof(float) * S::STAGES * rows * Cfg::BK + sizeof(T) * 2 * rows * ld;
    return sizeof(T) * S::STAGES * rows * ld;
}

template <class Cfg, Precision P, class Op>
void launch_mma_with(const Op& op, int batches, cudaStream_t stream, const char* name) {
    constexpr size_t shared = mma_shared_bytes<Cfg, P>();
    if (shared > (48 << 10))  // a kernel must ask for more than 48 KB of dynamic shared memory
        convnet::check_cuda(cudaFuncSetAttribute(mma_gemm_kernel<Cfg, P, Op>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(shared)),
                            name, "the tensor-core kernel's shared memory");
    convgemm::launch_tiles<Cfg::BM, Cfg::BN>(op.M, op.N, batches, name,
                                             [&](const dim3& grid, int z0) {
        mma_gemm_kernel<Cfg, P, Op><<<grid, Cfg::THREADS, shared, stream>>>(op, z0);
    });
}

// The 128 x 128 tile unless N fits a 64-wide one or its grid would not give every SM a block.
inline bool mma_large(int m, int n, int batches) {
    const double blocks = static_cast<double>(convnet::ceil_div(m, MmaLarge::BM)) *
                          convnet::ceil_div(n, MmaLarge::BN) * batches;
    return n > MmaSmall::BN && blocks >= convnet::sm_count();
}

// The output tiles of an M x N product (one batch) on the tile launch_mma picks.
inline size_t mma_tiles(int m, int n, int batches) {
    const bool large = mma_large(m, n, batches);
    return convnet::ceil_div(m, large ? MmaLarge::BM : MmaSmall::BM) *
           convnet::ceil_div(n, large ? MmaLarge::BN : MmaSmall::BN);
}

template <Precision P, class Op>
void launch_mma(const Op& op, int batches, cudaStream_t stream, const char* name) {
    if (op.M <= 0 || op.N <= 0 || batches <= 0) return;
    require_mma_device(name);
    if (mma_large(op.M, op.N, batches))
        launch_mma_with<MmaLarge, P>(op, batches, stream, name);
    else
        launch_mma_with<MmaSmall, P>(op, batches, stream, name);
}

inline bool is_mma(ConvAlgo a) { return a == ConvAlgo::MmaTF32 || a == ConvAlgo::MmaBF16; }

// Launch op over `batches` products: on the tensor cores for the mma algorithms, else on the
// FP32 engine's tile (every other algorithm that reaches an implicit GEMM runs it so).
template <class Op>
void launch_gemm_algo(ConvAlgo a, const Op& op, int batches, cudaStream_t stream,
                      const char* name) {
    if (a == ConvAlgo::MmaTF32)
        launch_mma<Precision::TF32>(op, batches, stream, name);
    else if (a == ConvAlgo::MmaBF16)
        launch_mma<Precision::BF16>(op, batches, stream, name);
    else
        convgemm::launch_gemm_auto(op, batches, stream, name);
}

}  // namespace convmma
