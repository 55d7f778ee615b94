// Small kernels that exercise csrc/mma.cuh (mma.sync TF32 and BF16, ldmatrix, cp.async) until
// real kernels use it: one warp computes a 16x8 tile of D = A B, staging A and B through shared
// memory with cp.async. tests/test_mma_emulation.py runs them on the emulator against NumPy,
// checks that planted bugs fail (a missing cp.async wait, a wrong fragment index), and compiles
// this file with nvcc for sm_80 and sm_90 so the PTX is known to assemble.
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "mma.cuh"

using namespace convnet::mma;

// A (M, K), B (K, N) row-major float; M % 16 == 0, N % 8 == 0, K % 8 == 0.
__global__ void gemm_tf32_kernel(const float* A, const float* B, float* D, int N, int K) {
    __shared__ __align__(16) float As[16][8];
    __shared__ __align__(16) float Bs[8][8];
    const int lane = threadIdx.x, m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < K; k0 += 8) {
        // 16 rows of 8 floats: 32 copies of 16 bytes; B's 8 rows of 8: 16 copies
        cp_async<16>(&As[lane / 2][4 * (lane % 2)], A + (m0 + lane / 2) * K + k0 + 4 * (lane % 2));
        if (lane < 16)
            cp_async<16>(&Bs[lane / 2][4 * (lane % 2)], B + (k0 + lane / 2) * N + n0 + 4 * (lane % 2));
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        uint32_t a[4], b[2];
        for (int i = 0; i < 4; ++i) a[i] = to_tf32(As[tf32_a(lane, i).row][tf32_a(lane, i).col]);
        for (int i = 0; i < 2; ++i) b[i] = to_tf32(Bs[tf32_b(lane, i).row][tf32_b(lane, i).col]);
        mma_tf32(d, a, b, d);
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) D[(m0 + acc(lane, i).row) * N + n0 + acc(lane, i).col] = d[i];
}

// A (M, K), B (K, N) row-major bf16 bits; M % 16 == 0, N % 8 == 0, K % 16 == 0.
__global__ void gemm_bf16_kernel(const uint16_t* A, const uint16_t* B, float* D, int N, int K) {
    __shared__ __align__(16) uint16_t As[16][16];
    __shared__ __align__(16) uint16_t Bs[16][8];
    const int lane = threadIdx.x, m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < K; k0 += 16) {
        cp_async<16>(&As[lane / 2][8 * (lane % 2)], A + (m0 + lane / 2) * K + k0 + 8 * (lane % 2));
        if (lane < 16) cp_async<16>(&Bs[lane][0], B + (k0 + lane) * N + n0);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        uint32_t a[4], b[2];
        // matrix j = lane / 8 of A's four: rows 8 * (j % 2) on, columns 8 * (j / 2) on
        ldmatrix<4>(a, &As[lane % 8 + 8 * (lane / 8 % 2)][8 * (lane / 16)]);
        ldmatrix<2, true>(b, &Bs[lane % 16][0]);  // B is (k, n): transposed into (n, k) pairs
        mma_bf16(d, a, b, d);
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) D[(m0 + acc(lane, i).row) * N + n0 + acc(lane, i).col] = d[i];
}

// 0: done; 1: an error, its message in `error`.
extern "C" int test_gemm(int bf16, const void* A, const void* B, float* D, int M, int N, int K,
                         char* error, int error_size) {
    try {
        const dim3 grid(N / 8, M / 16);
        if (bf16)
            gemm_bf16_kernel<<<grid, 32>>>(static_cast<const uint16_t*>(A),
                                           static_cast<const uint16_t*>(B), D, N, K);
        else
            gemm_tf32_kernel<<<grid, 32>>>(static_cast<const float*>(A),
                                           static_cast<const float*>(B), D, N, K);
        const cudaError_t status = cudaDeviceSynchronize();
        if (status != cudaSuccess) throw std::runtime_error(cudaGetErrorString(status));
        return 0;
    } catch (std::exception& e) {
        snprintf(error, error_size, "%s", e.what());
        return 1;
    }
}
