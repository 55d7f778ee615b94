// Kernels that check the emulator's own warp semantics (tests/test_kernel_emulator.py): every
// shuffle, vote and reduction against the CUDA programming guide's definitions, atomics across
// blocks, and the misuses the emulator must stop with a message rather than compute through.
#include <cstdio>
#include <stdexcept>
#include <string>

#include <cuda_runtime.h>

constexpr int kResults = 12;  // per thread

// out[t * kResults + j]: thread t's j-th result. Lanes of the last warp past `threads` do not
// exist; the masks name only the lanes that do.
__global__ void warp_ops_kernel(int* out, int threads) {
    const int t = threadIdx.x, lane = t % 32, first = t / 32 * 32;
    const int lanes = threads - first < 32 ? threads - first : 32;
    const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    int* r = out + t * kResults;
    r[0] = __shfl_sync(mask, 100 + lane, (lane * 7 + 3) % lanes);
    r[1] = __shfl_up_sync(mask, 100 + lane, 3);
    r[2] = __shfl_down_sync(mask, 100 + lane, 5, 16);
    r[3] = __shfl_xor_sync(mask, 100 + lane, 9 % lanes);
    r[4] = static_cast<int>(__ballot_sync(mask, lane % 3 == 0));
    r[5] = __any_sync(mask, lane == 17);
    r[6] = __all_sync(mask, lane < 40);
    r[7] = __all_sync(mask, lane != 5);
    r[8] = static_cast<int>(__reduce_add_sync(mask, static_cast<unsigned>(lane)));
    r[9] = static_cast<int>(__reduce_max_sync(mask, static_cast<unsigned>(lane * 5 % 11)));
    const float f = __shfl_sync(mask, 0.5f + lane, lanes - 1 - lane);  // a float, reversed
    r[10] = static_cast<int>(f * 2);
    __syncwarp(mask);
    // a half-warp collective: lanes 0-15 and 16-31 reduce separately
    const unsigned half = (lane < 16 ? 0x0000ffffu : 0xffff0000u) & mask;
    r[11] = static_cast<int>(__reduce_add_sync(half, 1u));
}

__global__ void atomics_kernel(int* counter, float* sum, unsigned* top) {
    atomicAdd(counter, 1);
    atomicAdd(sum, 0.5f);
    atomicMax(top, blockIdx.x * blockDim.x + threadIdx.x);
}

// Misuses: 0 a lane exits before the others shuffle; 1 lanes disagree on the mask; 2 some threads
// reach __syncthreads after others exited; 3 a full mask in a warp of 20 threads; 4 a warp op
// waits for lanes that wait at __syncthreads.
__global__ void misuse_kernel(int which, int* out) {
    const int lane = threadIdx.x % 32;
    if (which == 0) {
        if (lane == 3) return;
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane, 1);
    } else if (which == 1) {
        out[threadIdx.x] = __shfl_xor_sync(lane < 8 ? 0xffffffffu : 0x0000ffffu, lane, 1);
    } else if (which == 2) {
        if (threadIdx.x == 40) return;
        __syncthreads();
    } else if (which == 3) {
        out[threadIdx.x] = __shfl_sync(0xffffffffu, lane, 0);
    } else {
        if (lane < 16) __syncthreads();
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane, 1);
    }
}

namespace {
int finish(char* error, int size) {
    try {
        const cudaError_t status = cudaGetLastError();
        if (status != cudaSuccess) throw std::runtime_error(cudaGetErrorName(status));
        return 0;
    } catch (std::exception& e) {
        snprintf(error, size, "%s", e.what());
        return 1;
    }
}
template <class F>
int guarded(F launch, char* error, int size) {
    try {
        launch();
    } catch (std::exception& e) {
        snprintf(error, size, "%s", e.what());
        return 1;
    }
    return finish(error, size);
}
}  // namespace

extern "C" {
int test_warp_ops(int* out, int threads, char* error, int size) {
    return guarded([&] { warp_ops_kernel<<<1, threads>>>(out, threads); }, error, size);
}
int test_atomics(int* counter, float* sum, unsigned* top, int blocks, char* error, int size) {
    return guarded([&] { atomics_kernel<<<blocks, 64>>>(counter, sum, top); }, error, size);
}
int test_misuse(int which, int* out, char* error, int size) {
    const int threads = which == 3 ? 20 : 64;
    return guarded([&] { misuse_kernel<<<1, threads>>>(which, out); }, error, size);
}
}
