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

// w: (F, C/groups, fs, fs)
void conv_forward(const float* x, const float* w, float* y, const ConvShape& s, cudaStream_t stream);
void conv_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, cudaStream_t stream);
void conv_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& s, cudaStream_t stream);

// w: (OH, OW, F, C/groups, fs, fs)
void local_forward(const float* x, const float* w, float* y, const ConvShape& s, cudaStream_t stream);
void local_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s, cudaStream_t stream);
void local_backward_filter(const float* x, const float* dy, float* dw, const ConvShape& s, cudaStream_t stream);
