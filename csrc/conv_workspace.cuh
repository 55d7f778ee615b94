// A stream-ordered scratch buffer for the conv launchers (split-K partials, Winograd planes).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "common.cuh"

namespace convnet {

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

}  // namespace convnet
