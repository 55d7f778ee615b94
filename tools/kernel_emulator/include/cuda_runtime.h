// A CPU stand-in for the small part of CUDA that csrc/conv.cu and csrc/local.cu use, so that g++
// can build them (after emulator.py rewrites each `kernel<<<grid, block, smem, stream>>>(args);`
// into `emu::launch(grid, block, smem, stream)([&] { kernel(args); });`).
//
// Each block's threads run as ucontext fibers; __syncthreads switches back to a scheduler that
// resumes every thread of the block in turn, in forward, reverse or shuffled order, to expose
// races between barriers. __shared__ variables are function statics: one copy, shared by the
// block (blocks run one after another). Device memory is host memory; cudaMalloc ends each
// allocation at a protected page and fills it with NaN.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

namespace emu {
extern uint3 thread_idx, block_idx;
extern dim3 block_dim, grid_dim;
void sync();
[[noreturn]] void unsupported(const char* what);
// Runs the kernel body once per thread of every block of `grid` (emu.cpp).
struct Launch {
    dim3 grid, block;
    void operator()(const std::function<void()>& body) const;
};
inline Launch launch(dim3 grid, dim3 block, size_t = 0, void* = nullptr) { return {grid, block}; }
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __syncthreads() emu::sync()

template <class T> inline T __ldg(const T* p) { return *p; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
// Warps are not emulated: a kernel that exchanges values across lanes stops the run.
template <class T> inline T __shfl_xor_sync(unsigned, T, int) { emu::unsupported("__shfl_xor_sync"); }

// ---- runtime API
typedef void* cudaStream_t;
typedef void* cudaMemPool_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMemoryPoolsSupported = 115 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
namespace emu {
extern cudaError_t last_error;
extern int sm_count, occupancy;
extern long live_allocations;
void* guarded_alloc(size_t bytes, int mode);  // mode 0: ends at a protected page; 1: starts after one
void guarded_free(void* p);
}  // namespace emu
inline const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? emu::sm_count : 1;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* p, int) { *p = nullptr; return cudaSuccess; }
inline cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t, cudaMemPoolAttr, void* v) { *(uint64_t*)v = 0; return cudaSuccess; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t n) {
    *p = emu::guarded_alloc(n, 0);
    ++emu::live_allocations;
    return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
inline cudaError_t cudaFree(void* p) { emu::guarded_free(p); --emu::live_allocations; return cudaSuccess; }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// Blocks per SM: emu::occupancy (below 1: the query fails, so the caller's fallback is used).
// conv_gemm.cuh caches the answer for the life of the process.
template <class F>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, F, int, size_t) {
    *n = emu::occupancy;
    if (emu::occupancy >= 1) return cudaSuccess;
    emu::last_error = cudaErrorInvalidConfiguration;
    return cudaErrorInvalidConfiguration;
}
