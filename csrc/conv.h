// Host launchers of the conv and local kernels (conv.cu, local.cu). Raw device pointers,
// NCHW float32, kernels run on `stream`. Output sizes follow cuda-convnet (see OPS.md).
#pragma once
#include <cuda_runtime.h>

struct ConvShape {
    int N, C, H, W;      // input images
    int F, fs;           // filters, filter size (square)
    int OH, OW;          // output size
    int stride, padding, groups;
};

// The algorithms a pass can run (the launchers' `algo`; convnet._C.conv_algorithms lists the
// names in this order, and convnet/backend/contract.py picks one per call from its table):
//   gemm                   the implicit GEMM of conv_gemm.cuh: every pass of conv and local
//   gemm_dy_along_f        conv backward filter with dy loaded along f (32 cache lines per
//                          load) instead of along r; the reduction split by whole waves
//   gemm_dy_along_f_fill   that kernel split for ~4 blocks per SM: the 2026-11-22 H100 report's rule
//   winograd2, winograd4   every conv pass at stride 1: Winograd F(m x m, fs x fs) with m = 2 or
//                          4, where alpha = m + fs - 1 <= 6 and the transformed planes fit
//                          (backward data: padding <= fs - 1; conv_winograd_run.cuh)
//   mma_tf32, mma_bf16     every pass of conv and local on the tensor cores (conv_mma.cuh):
//                          operands rounded to TF32 / BF16, FP32 sums; sm_80 and newer
// Each algorithm's precision (kConvAlgoPrecisions) is what convnet/backend/precision.py names.
enum class ConvAlgo : int {
    Gemm, GemmDyAlongF, GemmDyAlongFFill, Winograd2, Winograd4, MmaTF32, MmaBF16
};
inline constexpr int kConvAlgos = 7;
inline constexpr const char* kConvAlgoNames[kConvAlgos] = {
    "gemm", "gemm_dy_along_f", "gemm_dy_along_f_fill", "winograd2", "winograd4", "mma_tf32",
    "mma_bf16"};
inline constexpr const char* kConvAlgoPrecisions[kConvAlgos] = {
    "fp32", "fp32", "fp32", "fp32", "fp32", "tf32", "bf16"};

// Why `op` ("conv_forward", ..., "local_backward_filter") cannot run `algo` on shape s, or
// nullptr when it can. Every launcher checks its algo with this (ValueError naming both).
const char* conv_algo_unsupported(const char* op, int algo, const ConvShape& s);

// w: (F, C/groups, fs, fs)
void conv_forward(const float* x, const float* w, float* y, const ConvShape& s, int algo, cudaStream_t stream);
// y = max(conv(x, w) + b, 0), b (F,): bias and ReLU in the GEMM's epilogue (algo gemm or mma_*)
void conv_forward_bias_relu(const float* x, const float* w, const float* b, float* y, const ConvShape& s, int algo, cudaStream_t stream);
void conv_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, int algo, cudaStream_t stream);
void conv_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& s, int algo, cudaStream_t stream);

// w: (OH, OW, F, C/groups, fs, fs)
void local_forward(const float* x, const float* w, float* y, const ConvShape& s, int algo, cudaStream_t stream);
void local_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, int algo, cudaStream_t stream);
void local_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& s, int algo, cudaStream_t stream);
