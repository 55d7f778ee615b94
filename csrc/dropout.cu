// Counter-based random numbers (Philox4x32-10) and dropout (OPS.md "random numbers"). The
// streams are convnet/backend/philox.py's, bit for bit: element i of an array takes word i % 4
// of philox(counter = (i / 4, layer, step, 0), key = (seed low, seed high)). One thread makes
// one block of four elements.
#include <cmath>

#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

struct Words {
    uint32_t w[4];
};

__device__ __forceinline__ Words philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                               uint32_t k0, uint32_t k1) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
    constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        const uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
        const uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    return {{c0, c1, c2, c3}};
}

struct Stream {
    uint32_t k0, k1, layer, step;
    __device__ __forceinline__ Words block(size_t j) const {
        return philox4x32_10(static_cast<uint32_t>(j), layer, step, 0u, k0, k1);
    }
};

Stream make_stream(uint64_t seed, uint32_t layer, uint32_t step) {
    return {static_cast<uint32_t>(seed & 0xFFFFFFFFu), static_cast<uint32_t>(seed >> 32), layer,
            step};
}

// mask[i] = word_i < threshold, compared in 64 bits (threshold 2^32 keeps everything).
__global__ void dropout_mask_kernel(uint8_t* __restrict__ mask, size_t n, Stream st,
                                    uint64_t threshold, bool vec) {
    const size_t blocks = ceil_div(n, 4);
    for (size_t j = global_thread(); j < blocks; j += grid_threads()) {
        const Words r = st.block(j);
        uint8_t m[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) m[k] = static_cast<uint64_t>(r.w[k]) < threshold ? 1 : 0;
        if (vec && 4 * j + 4 <= n) {
            reinterpret_cast<uchar4*>(mask)[j] = make_uchar4(m[0], m[1], m[2], m[3]);
        } else {
            for (int k = 0; k < 4 && 4 * j + k < n; ++k) mask[4 * j + k] = m[k];
        }
    }
}

// Box-Muller in double precision on the pairs (w0, w1) and (w2, w3), as philox.py.
__device__ __forceinline__ float2 box_muller(uint32_t wa, uint32_t wb) {
    constexpr double kTwoPow32Inv = 2.3283064365386963e-10;  // 2^-32
    constexpr double kPi = 3.141592653589793;                  // the float64 nearest pi
    const double u1 = (static_cast<double>(wa) + 1.0) * kTwoPow32Inv;
    const double u2 = (static_cast<double>(wb) + 1.0) * kTwoPow32Inv;
    const double r = sqrt(-2.0 * log(u1));
    const double theta = 2.0 * kPi * u2;
    double s, c;
    sincos(theta, &s, &c);
    return make_float2(static_cast<float>(r * c), static_cast<float>(r * s));
}

__global__ void random_normal_kernel(float* __restrict__ out, size_t n, Stream st, bool vec) {
    const size_t blocks = ceil_div(n, 4);
    for (size_t j = global_thread(); j < blocks; j += grid_threads()) {
        const Words r = st.block(j);
        const float2 a = box_muller(r.w[0], r.w[1]);
        const float2 b = box_muller(r.w[2], r.w[3]);
        if (vec && 4 * j + 4 <= n) {
            reinterpret_cast<float4*>(out)[j] = make_float4(a.x, a.y, b.x, b.y);
        } else {
            const float v[4] = {a.x, a.y, b.x, b.y};
            for (int k = 0; k < 4 && 4 * j + k < n; ++k) out[4 * j + k] = v[k];
        }
    }
}

// (a * mask) / keep with each operation rounded, as numpy_dropout.py.
struct DropoutApply {
    float keep;
    __device__ __forceinline__ float operator()(float a, uint8_t m) const {
        return __fdiv_rn(__fmul_rn(a, static_cast<float>(m)), keep);
    }
};

void check_size(const char* op, size_t n) {
    require(n <= (size_t(1) << 34), op,
            "arrays are limited to 2^34 elements (a 32-bit block counter), got " +
                std::to_string(n));
}

}  // namespace

void dropout_mask(uint8_t* mask, size_t n, double keep, uint64_t seed, uint32_t layer,
                  uint32_t step, cudaStream_t stream) {
    check_size("dropout_mask", n);
    require(keep > 0.0 && keep <= 1.0, "dropout_mask",
            "keep must be in (0, 1], got " + std::to_string(keep));
    if (n == 0) return;
    const uint64_t threshold = static_cast<uint64_t>(floor(keep * 4294967296.0));
    const bool vec = (reinterpret_cast<uintptr_t>(mask) & 3u) == 0;
    dropout_mask_kernel<<<grid_for(ceil_div(n, 4)), kThreads, 0, stream>>>(
        mask, n, make_stream(seed, layer, step), threshold, vec);
    check_launch("dropout_mask");
}

void random_normal(float* out, size_t n, uint64_t seed, uint32_t layer, uint32_t step,
                   cudaStream_t stream) {
    check_size("random_normal", n);
    if (n == 0) return;
    random_normal_kernel<<<grid_for(ceil_div(n, 4)), kThreads, 0, stream>>>(
        out, n, make_stream(seed, layer, step), aligned16(out));
    check_launch("random_normal");
}

void dropout_apply(const char* op, const float* a, const uint8_t* mask, float* out, size_t n,
                   float keep, cudaStream_t stream) {
    launch_map(op, stream, out, n, DropoutApply{keep}, a, mask);
}
