// Counter-based random numbers (Philox4x32-10) and dropout (OPS.md "random numbers"). The
// streams are convnet/backend/philox.py's, bit for bit: element i of an array takes word i % 4
// of philox(counter = (i / 4, layer, step, 0), key = (seed low, seed high)); with an offset k,
// element i of the output is element k + i of the stream (a data-parallel rank's rows of the
// whole minibatch's draw). One thread makes one block of four stream elements.
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

// The stream blocks that elements offset .. offset + n - 1 fall in: [first, first + count).
struct Span {
    size_t first, count;
};

__host__ __device__ __forceinline__ Span span(size_t n, size_t offset) {
    return {offset / 4, ceil_div(offset + n, 4) - offset / 4};
}

// mask[i] = word_(offset + i) < threshold, compared in 64 bits (threshold 2^32 keeps
// everything). vec: mask is 4-byte aligned and offset a multiple of 4.
__global__ void dropout_mask_kernel(uint8_t* __restrict__ mask, size_t n, size_t offset,
                                    Stream st, uint64_t threshold, bool vec) {
    const Span s = span(n, offset);
    for (size_t b = global_thread(); b < s.count; b += grid_threads()) {
        const size_t j = s.first + b;
        const Words r = st.block(j);
        uint8_t m[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) m[k] = static_cast<uint64_t>(r.w[k]) < threshold ? 1 : 0;
        if (vec && 4 * j + 4 <= offset + n) {
            reinterpret_cast<uchar4*>(mask)[b] = make_uchar4(m[0], m[1], m[2], m[3]);
        } else {
            for (int k = 0; k < 4; ++k) {
                const size_t e = 4 * j + k;  // the stream element
                if (e >= offset && e < offset + n) mask[e - offset] = m[k];
            }
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

// out[i] = stream element offset + i. vec: out is 16-byte aligned and offset a multiple of 4.
__global__ void random_normal_kernel(float* __restrict__ out, size_t n, size_t offset,
                                     Stream st, bool vec) {
    const Span s = span(n, offset);
    for (size_t b = global_thread(); b < s.count; b += grid_threads()) {
        const size_t j = s.first + b;
        const Words r = st.block(j);
        const float2 x = box_muller(r.w[0], r.w[1]);
        const float2 y = box_muller(r.w[2], r.w[3]);
        if (vec && 4 * j + 4 <= offset + n) {
            reinterpret_cast<float4*>(out)[b] = make_float4(x.x, x.y, y.x, y.y);
        } else {
            const float v[4] = {x.x, x.y, y.x, y.y};
            for (int k = 0; k < 4; ++k) {
                const size_t e = 4 * j + k;
                if (e >= offset && e < offset + n) out[e - offset] = v[k];
            }
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

void check_size(const char* op, size_t n, size_t offset) {
    require(n <= (size_t(1) << 34) && offset <= (size_t(1) << 34) - n, op,
            "streams are limited to 2^34 elements (a 32-bit block counter), got offset " +
                std::to_string(offset) + " + " + std::to_string(n));
}

}  // namespace

void dropout_mask(uint8_t* mask, size_t n, size_t offset, double keep, uint64_t seed,
                  uint32_t layer, uint32_t step, cudaStream_t stream) {
    check_size("dropout_mask", n, offset);
    require(keep > 0.0 && keep <= 1.0, "dropout_mask",
            "keep must be in (0, 1], got " + std::to_string(keep));
    if (n == 0) return;
    const uint64_t threshold = static_cast<uint64_t>(floor(keep * 4294967296.0));
    const bool vec = (reinterpret_cast<uintptr_t>(mask) & 3u) == 0 && offset % 4 == 0;
    dropout_mask_kernel<<<grid_for(span(n, offset).count), kThreads, 0, stream>>>(
        mask, n, offset, make_stream(seed, layer, step), threshold, vec);
    check_launch("dropout_mask");
}

void random_normal(float* out, size_t n, size_t offset, uint64_t seed, uint32_t layer,
                   uint32_t step, cudaStream_t stream) {
    check_size("random_normal", n, offset);
    if (n == 0) return;
    random_normal_kernel<<<grid_for(span(n, offset).count), kThreads, 0, stream>>>(
        out, n, offset, make_stream(seed, layer, step), aligned16(out) && offset % 4 == 0);
    check_launch("random_normal");
}

void dropout_apply(const char* op, const float* a, const uint8_t* mask, float* out, size_t n,
                   float keep, cudaStream_t stream) {
    launch_map(op, stream, out, n, DropoutApply{keep}, a, mask);
}
