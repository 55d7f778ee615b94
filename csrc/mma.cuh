// Tensor-core and asynchronous-copy primitives: the only inline PTX in csrc/. On the GPU each is
// one PTX instruction (sm_80 and newer); in the CPU emulator (CONVNET_EMULATOR, see
// tools/kernel_emulator) each has a C++ twin built on the emulator's warp collectives, so that
// kernels using them run against the NumPy reference without a GPU.
//
// Fragment layouts (which lane holds which element) are the PTX ISA's tables ("Matrix fragments
// for mma.m16n8k8" / "mma.m16n8k16", "ldmatrix"), written once here as functions of (lane, i):
// kernels use them to load and store fragments, the twins use them to compute, and
// tests/test_mma_layouts.py checks them against CuTe's MMA_Traits and LDSM copy atoms.
//   groupID g = lane / 4, thread-in-group t = lane % 4.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace convnet {
namespace mma {

struct Coord {
    int row, col;
};

// m16n8k8 TF32: A 16x8 (row, k), 4 registers; B 8x8 (k, col), 2 registers.
__host__ __device__ constexpr Coord tf32_a(int lane, int i) {
    return {lane / 4 + 8 * (i % 2), lane % 4 + 4 * (i / 2)};
}
__host__ __device__ constexpr Coord tf32_b(int lane, int i) { return {lane % 4 + 4 * i, lane / 4}; }
// m16n8k16 BF16: A 16x16, element i of 8 (register i / 2, low half first); B 16x8, 4 elements.
__host__ __device__ constexpr Coord bf16_a(int lane, int i) {
    return {lane / 4 + 8 * (i / 2 % 2), 2 * (lane % 4) + i % 2 + 8 * (i / 4)};
}
__host__ __device__ constexpr Coord bf16_b(int lane, int i) {
    return {2 * (lane % 4) + i % 2 + 8 * (i / 2), lane / 4};
}
// The FP32 accumulators C and D of both shapes: 16x8, 4 registers.
__host__ __device__ constexpr Coord acc(int lane, int i) {
    return {lane / 4 + 8 * (i / 2), 2 * (lane % 4) + i % 2};
}
// ldmatrix .m8n8 .b16: element i (0 low half, 1 high) of each register, within its 8x8 matrix.
// Lanes 8j..8j+7 give the addresses of matrix j's rows 0..7.
__host__ __device__ constexpr Coord ldmatrix_elem(int lane, int i, bool trans) {
    return trans ? Coord{2 * (lane % 4) + i, lane / 4} : Coord{lane / 4, 2 * (lane % 4) + i};
}

__host__ __device__ inline uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

#if defined(CONVNET_EMULATOR)

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits (low 13 zero).
inline uint32_t to_tf32(float x) {
    const uint32_t u = float_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf and NaN stay
    return (u + 0x1000u) & 0xffffe000u;
}
// cvt.rn.bf16x2.f32: two floats rounded to nearest even, `lo` in the low half.
inline uint32_t bf16_bits(float x) {
    const uint32_t u = float_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;  // quiet NaN
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
inline uint32_t pack_bf16(float lo, float hi) { return bf16_bits(lo) | bf16_bits(hi) << 16; }
// cvt.rn.bf16.f32: one float rounded to nearest even, as 16 bits.
inline uint16_t to_bf16(float x) { return static_cast<uint16_t>(bf16_bits(x)); }

namespace twin {
inline float word_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// The tensor core keeps 10 mantissa bits of a TF32 operand: the low 13 of an unconverted float
// are dropped, so a kernel that forgets to_tf32 gets truncated operands, not rounded ones.
inline float tf32_operand(uint32_t u) { return word_float(u & 0xffffe000u); }
inline float bf16_operand(uint32_t word, int half) { return word_float((word >> (16 * half)) << 16); }

// in: a[0..3], b[4..5], c[6..9] (float bits); out: d[0..3]. K = 8 (tf32) or 16 (bf16).
template <int K>
inline void mma_exchange(emu::LaneOp* const lanes[32], unsigned) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const uint32_t* in = lanes[l]->in;
        for (int i = 0; i < K / 2; ++i) {  // elements of A held by lane l
            const Coord a = K == 8 ? tf32_a(l, i) : bf16_a(l, i);
            A[a.row][a.col] = K == 8 ? tf32_operand(in[i]) : bf16_operand(in[i / 2], i % 2);
        }
        for (int i = 0; i < K / 4; ++i) {
            const Coord b = K == 8 ? tf32_b(l, i) : bf16_b(l, i);
            B[b.row][b.col] = K == 8 ? tf32_operand(in[4 + i]) : bf16_operand(in[4 + i / 2], i % 2);
        }
        for (int i = 0; i < 4; ++i) C[acc(l, i).row][acc(l, i).col] = word_float(in[6 + i]);
    }
    for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i) {
            const Coord d = acc(l, i);
            float sum = C[d.row][d.col];
            for (int k = 0; k < K; ++k) sum += A[d.row][k] * B[k][d.col];  // products are exact
            memcpy(&lanes[l]->out[i], &sum, 4);
        }
}

template <int K>
inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                const float (&c)[4]) {
    emu::LaneOp op{};
    op.name = K == 8 ? "mma.sync.m16n8k8.tf32" : "mma.sync.m16n8k16.bf16";
    op.mask = 0xffffffffu;
    memcpy(op.in, a, 16);
    memcpy(op.in + 4, b, 8);
    memcpy(op.in + 6, c, 16);
    emu::warp_collective(op, mma_exchange<K>);
    memcpy(d, op.out, 16);
}

// in[0..1]: the lane's row address; in[2]: matrices; in[3]: transposed.
inline void ldmatrix_exchange(emu::LaneOp* const lanes[32], unsigned) {
    const int count = (int)lanes[0]->in[2];
    const bool trans = lanes[0]->in[3] != 0;
    for (int l = 0; l < 8 * count; ++l) {
        uintptr_t address;
        memcpy(&address, lanes[l]->in, sizeof address);
        if (address % 16) emu::fail("ldmatrix: a row address is not 16-byte aligned");
    }
    for (int l = 0; l < 32; ++l)
        for (int j = 0; j < count; ++j) {
            uint32_t word = 0;
            for (int i = 0; i < 2; ++i) {
                const Coord e = ldmatrix_elem(l, i, trans);
                uintptr_t row;
                memcpy(&row, lanes[8 * j + e.row]->in, sizeof row);
                uint16_t v;
                memcpy(&v, reinterpret_cast<const char*>(row) + 2 * e.col, 2);
                word |= uint32_t(v) << (16 * i);
            }
            lanes[l]->out[j] = word;
        }
}
}  // namespace twin

inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                     const float (&c)[4]) {
    twin::mma<8>(d, a, b, c);
}
inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                     const float (&c)[4]) {
    twin::mma<16>(d, a, b, c);
}
// ldmatrix.sync.aligned.m8n8.xN[.trans].shared.b16: `row` is this lane's row address.
template <int N, bool Trans = false>
inline void ldmatrix(uint32_t (&r)[N], const void* row) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
    emu::LaneOp op{};
    op.name = Trans ? "ldmatrix.trans" : "ldmatrix";
    op.mask = 0xffffffffu;
    const uintptr_t address = reinterpret_cast<uintptr_t>(row);
    memcpy(op.in, &address, sizeof address);
    op.in[2] = N;
    op.in[3] = Trans;
    emu::warp_collective(op, twin::ldmatrix_exchange);
    memcpy(r, op.out, 4 * N);
}
// cp.async of 4, 8 or 16 bytes global -> shared; `src_bytes` < `Bytes` zero-fills the rest.
template <int Bytes>
inline void cp_async(void* smem, const void* gmem, int src_bytes = Bytes) {
    static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
    emu::cp_async(smem, gmem, Bytes, src_bytes);
}
inline void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
inline void cp_async_wait() { emu::cp_async_wait(N); }

#else  // nvcc

__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r = 0;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#else
    __trap();
#endif
    return r;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r = 0;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    __trap();
#endif
    return r;
}
__device__ __forceinline__ uint16_t to_bf16(float x) {
    uint16_t r = 0;
#if __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
#else
    __trap();
#endif
    return r;
}
// Both shapes take the same operands (A 4 registers, B 2, C and D 4 floats); only the
// instruction differs.
#if __CUDA_ARCH__ >= 800
#define CONVNET_MMA_M16N8(instruction)                                                           \
    asm volatile(instruction " {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"        \
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),    \
                   "f"(c[1]), "f"(c[2]), "f"(c[3]))
#else
#define CONVNET_MMA_M16N8(instruction) __trap()
#endif
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2], const float (&c)[4]) {
    CONVNET_MMA_M16N8("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32");
}
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2], const float (&c)[4]) {
    CONVNET_MMA_M16N8("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
}
#undef CONVNET_MMA_M16N8
template <int N, bool Trans = false>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[N], const void* row) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
    if constexpr (N == 1 && !Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(address));
    if constexpr (N == 1 && Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(address));
    if constexpr (N == 2 && !Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(address));
    if constexpr (N == 2 && Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(address));
    if constexpr (N == 4 && !Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
    if constexpr (N == 4 && Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}
template <int Bytes>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, int src_bytes = Bytes) {
    static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if __CUDA_ARCH__ >= 800
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    if constexpr (Bytes == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                     :: "r"(address), "l"(gmem), "r"(src_bytes) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;"
                     :: "r"(address), "l"(gmem), "n"(Bytes), "r"(src_bytes) : "memory");
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
#endif
}

#endif

}  // namespace mma
}  // namespace convnet
