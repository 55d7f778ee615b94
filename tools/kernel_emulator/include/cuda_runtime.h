// A CPU stand-in for the part of CUDA that csrc/ uses, so that g++ can build every kernel (after
// emulator.py rewrites each `kernel<<<grid, block, smem, stream>>>(args);` into
// `emu::launch(grid, block, smem, stream)([&] { kernel(args); });`).
//
// Each block's threads run as fibers (emu.cpp); __syncthreads and every warp-level operation
// switch back to a scheduler that resumes the threads in forward, reverse or shuffled order.
// Warp operations (__shfl*_sync, votes, __syncwarp, warp reductions, and the mma/ldmatrix twins
// of csrc/mma.cuh) are collectives: each lane deposits its operands and waits until every lane
// named in the mask has arrived at its own collective; then one exchange computes every lane's
// result. __shared__ variables are function statics (blocks run one after another). Device
// memory is host memory; cudaMalloc ends each allocation at a protected page, filled with NaN.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>

#define CONVNET_EMULATOR 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
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
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uchar4 make_uchar4(unsigned char a, unsigned char b, unsigned char c, unsigned char d) {
    return {a, b, c, d};
}
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }

namespace emu {
extern uint3 thread_idx, block_idx;
extern dim3 block_dim, grid_dim;
void sync();
// Stops the kernel (from inside a fiber: the launch throws std::runtime_error(what)).
[[noreturn]] void fail(const char* what);
[[noreturn]] void unsupported(const char* what);
// Shared memory a block may have: 48 KB without asking; dynamic shared memory up to sm_90's
// 227 KB once cudaFuncSetAttribute raised the kernel's limit (else the launch fails, as there).
constexpr size_t kStaticSharedLimit = 48 << 10, kMaxDynamicShared = 227 << 10;
// Runs the kernel body once per thread of every block of `grid` (emu.cpp).
struct Launch {
    dim3 grid, block;
    size_t dynamic_bytes;
    const void* kernel;  // for the dynamic shared memory the kernel was allowed
    template <class F>
    Launch of(F* f) const { return {grid, block, dynamic_bytes, reinterpret_cast<const void*>(f)}; }
    void operator()(const std::function<void()>& body) const;
};
inline Launch launch(dim3 grid, dim3 block, size_t smem = 0, void* = nullptr) {
    return {grid, block, smem, nullptr};
}
// `extern __shared__ T name[];` becomes `T* name = reinterpret_cast<T*>(emu::dynamic_shared());`
// (emulator.py): the launch's dynamic bytes, NaN-filled at each block's start.
unsigned char* dynamic_shared();
void allow_dynamic_shared(const void* kernel, int bytes);
// Which kernels ran: emulator.py opens every kernel body with EMU_KERNEL_ENTRY, one tag per
// instantiation, named by emu.cpp's kernel_key ("kernel" or "kernel[Op=DataOp in conv.cu]":
// its template arguments but the tile shape) for emu_kernels_seen and kernel_map.py.
struct KernelTag {
    const char* name;
    const char* signature;  // __PRETTY_FUNCTION__
    const char* unit;       // the .cu file compiled (an op in an anonymous namespace is its own)
    bool seen;
    KernelTag* next;
    KernelTag(const char* name, const char* signature, const char* unit);
};
#define EMU_KERNEL_ENTRY(NAME)                                                          \
    static emu::KernelTag emu_kernel_tag_(NAME, __PRETTY_FUNCTION__, __BASE_FILE__);    \
    emu_kernel_tag_.seen = true

// ---- warp collectives
// One lane's part in a collective: what it brings and what it gets back (32-bit words).
struct LaneOp {
    const char* name;  // the operation, e.g. "__shfl_xor_sync": every lane must name the same
    unsigned mask;
    uint32_t in[16];
    uint32_t out[16];
};
// Called once, when every lane of the mask has arrived: lanes[l] is lane l's LaneOp (nullptr
// for lanes outside the mask); it fills each participant's `out`.
using Exchange = void (*)(LaneOp* const lanes[32], unsigned mask);
// Deposits `op` (name, mask, in), waits for the warp, and returns with op.out filled.
void warp_collective(LaneOp& op, Exchange exchange);
// The value an undefined read gets (e.g. a shuffle from a lane outside the mask): a NaN.
constexpr uint32_t kPoison = 0x7fc00000u;

// ---- cp.async: copies wait in the issuing thread's current group until a wait completes them;
// the destination holds NaN until then.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups);
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define warpSize 32
#define __syncthreads() emu::sync()
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T> inline T __ldg(const T* p) { return *p; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
// CUDA's integer min/max overloads (std::min would refuse mixed int widths just as nvcc warns).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

#include "emu_warp.h"
#include "emu_atomic.h"

// ---- runtime API
typedef void* cudaStream_t;
typedef void* cudaMemPool_t;
enum cudaError_t {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9, cudaErrorNoDevice = 100, cudaErrorLaunchFailure = 719
};
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMemoryPoolsSupported = 115
};
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
namespace emu {
extern cudaError_t last_error;
extern int sm_count, occupancy, device_count, compute_capability;
extern long live_allocations;
void* guarded_alloc(size_t bytes, int mode);  // mode 0: ends at a protected page; 1: starts after one
void guarded_free(void* p);
}  // namespace emu
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
inline cudaError_t cudaGetLastError() { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
inline cudaError_t cudaPeekAtLastError() { return emu::last_error; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = emu::device_count; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount        ? emu::sm_count
         : a == cudaDevAttrComputeCapabilityMajor ? emu::compute_capability / 10
         : a == cudaDevAttrComputeCapabilityMinor ? emu::compute_capability % 10
                                                  : 1;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* p, int) { *p = nullptr; return cudaSuccess; }
inline cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t, cudaMemPoolAttr, void* v) { *(uint64_t*)v = 0; return cudaSuccess; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t n) {
    *p = emu::guarded_alloc(n, 0);
    if (!*p) return cudaErrorMemoryAllocation;
    ++emu::live_allocations;
    return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
inline cudaError_t cudaFree(void* p) { emu::guarded_free(p); --emu::live_allocations; return cudaSuccess; }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t = nullptr) {
    memset(p, value, n);
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <class F>
inline cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        static_cast<size_t>(value) > emu::kMaxDynamicShared) {
        emu::last_error = cudaErrorInvalidValue;
        return cudaErrorInvalidValue;
    }
    emu::allow_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
    return cudaSuccess;
}

// Blocks per SM: emu::occupancy (below 1: the query fails, so the caller's fallback is used).
// conv_gemm.cuh caches the answer for the life of the process.
template <class F>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, F, int, size_t) {
    *n = emu::occupancy;
    if (emu::occupancy >= 1) return cudaSuccess;
    emu::last_error = cudaErrorInvalidConfiguration;
    return cudaErrorInvalidConfiguration;
}
