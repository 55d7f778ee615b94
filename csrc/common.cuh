// Shared helpers of the CUDA kernels: error checks that become Python RuntimeErrors naming the
// op, launch geometry, warp reductions and the vectorized element-wise map.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace convnet {

// Throw std::runtime_error("<op>: <what>: <CUDA's message>"); pybind11 turns it into RuntimeError.
[[noreturn]] inline void throw_cuda_error(const char* op, const char* what, cudaError_t err) {
    throw std::runtime_error(std::string(op) + ": " + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

inline void check_cuda(cudaError_t err, const char* op, const char* what) {
    if (err != cudaSuccess) throw_cuda_error(op, what, err);
}

// After every launch: a bad configuration or an earlier asynchronous fault surfaces here.
inline void check_launch(const char* op) {
    check_cuda(cudaGetLastError(), op, "kernel launch failed");
}

inline void require(bool ok, const char* op, const std::string& message) {
    if (!ok) throw std::invalid_argument(std::string(op) + ": " + message);
}

constexpr int kThreads = 256;

// Multiprocessors of the current device. Should the query fail (no usable device), a typical
// count stands in: the launch that follows then fails and reports the error under its op's name.
inline int sm_count() {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        count < 1) {
        return 132;
    }
    return count;
}

// Blocks for a grid-stride loop over `work` items: enough to fill the device a few times over,
// never more than the work needs.
inline unsigned grid_for(size_t work, int threads = kThreads, int waves = 8) {
    size_t needed = (work + threads - 1) / threads;
    size_t cap = static_cast<size_t>(sm_count()) * waves * (2048 / threads);
    size_t blocks = needed < cap ? needed : cap;
    return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

__host__ __device__ inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

__device__ __forceinline__ size_t global_thread() {
    return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ size_t grid_threads() {
    return static_cast<size_t>(gridDim.x) * blockDim.x;
}

// Row-wise kernels over (N, K) matrices: one warp per row, kRowThreads per block, row_grid(N)
// blocks; for_each_row calls body(row, lane) for each row this warp owns.
constexpr int kRowThreads = 128;  // four warps, four rows per block

inline unsigned row_grid(int N) { return grid_for(size_t(N) * 32, kRowThreads); }

template <class Body>
__device__ __forceinline__ void for_each_row(int N, const Body& body) {
    const int lane = threadIdx.x & 31;
    const size_t warps = grid_threads() / 32;
    for (size_t row = global_thread() / 32; row < static_cast<size_t>(N); row += warps)
        body(row, lane);
}

// Four consecutive elements of an input, loaded as one vector (float4, or uchar4 for masks).
template <class T>
struct Pack4;

template <>
struct Pack4<float> {
    float v[4];
    static bool aligned(const float* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
    __device__ __forceinline__ static Pack4 load(const float* p, size_t q) {
        const float4 t = reinterpret_cast<const float4*>(p)[q];
        return {{t.x, t.y, t.z, t.w}};
    }
};

template <>
struct Pack4<uint8_t> {
    uint8_t v[4];
    static bool aligned(const uint8_t* p) { return (reinterpret_cast<uintptr_t>(p) & 3u) == 0; }
    __device__ __forceinline__ static Pack4 load(const uint8_t* p, size_t q) {
        const uchar4 t = reinterpret_cast<const uchar4*>(p)[q];
        return {{t.x, t.y, t.z, t.w}};
    }
};

template <class F, class... P>
__device__ __forceinline__ float4 apply4(const F& f, const P&... p) {
    return make_float4(f(p.v[0]...), f(p.v[1]...), f(p.v[2]...), f(p.v[3]...));
}

// out[i] = f(in0[i], in1[i], ...) over n elements, in a grid-stride loop. With `vec` (every
// pointer aligned for its vector type) the bulk moves four elements per load and store; the
// n % 4 tail goes element by element.
template <class F, class... In>
__global__ void map_kernel(float* __restrict__ out, size_t n, bool vec, F f,
                           const In* __restrict__... in) {
    const size_t stride = grid_threads();
    size_t first_scalar = 0;
    if (vec) {
        const size_t n4 = n / 4;
        float4* out4 = reinterpret_cast<float4*>(out);
        for (size_t q = global_thread(); q < n4; q += stride)
            out4[q] = apply4(f, Pack4<In>::load(in, q)...);
        first_scalar = 4 * n4;
    }
    for (size_t i = first_scalar + global_thread(); i < n; i += stride) out[i] = f(in[i]...);
}

template <class F, class... In>
void launch_map(const char* op, cudaStream_t stream, float* out, size_t n, F f, const In*... in) {
    if (n == 0) return;
    bool vec = aligned16(out);
    for (bool a : {Pack4<In>::aligned(in)...}) vec = vec && a;
    const size_t work = vec ? ceil_div(n, 4) : n;
    map_kernel<<<grid_for(work), kThreads, 0, stream>>>(out, n, vec, f, in...);
    check_launch(op);
}

}  // namespace convnet
