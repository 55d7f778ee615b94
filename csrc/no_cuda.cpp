// The launchers of ops.h and conv.h for a CPU-only build (CONVNET_CUDA=OFF, or AUTO without
// nvcc): bindings.cpp compiles unchanged and every call raises
// RuntimeError("<op>: convnet was built without CUDA"). The NumPy backend needs none of them.
#include <stdexcept>
#include <string>

#include "conv.h"
#include "ops.h"

namespace {

[[noreturn]] void no_cuda(const char* op) {
    throw std::runtime_error(std::string(op) + ": convnet was built without CUDA");
}

}  // namespace

const char* conv_algo_unsupported(const char*, int, const ConvShape&) {
    return "convnet was built without CUDA";
}
void conv_forward(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("conv_forward");
}
void conv_forward_bias_relu(const float*, const float*, const float*, float*, const ConvShape&,
                            int, cudaStream_t) {
    no_cuda("conv_forward_bias_relu");
}
void conv_backward_data(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("conv_backward_data");
}
void conv_backward_filter(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("conv_backward_filter");
}
void local_forward(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("local_forward");
}
void local_backward_data(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("local_backward_data");
}
void local_backward_filter(const float*, const float*, float*, const ConvShape&, int,
                  cudaStream_t) {
    no_cuda("local_backward_filter");
}

void neuron_forward(const float*, float*, size_t, int, float, float, cudaStream_t) {
    no_cuda("neuron_forward");
}
void neuron_backward(const float*, const float*, const float*, float*, size_t, int, float, float,
                     cudaStream_t) {
    no_cuda("neuron_backward");
}

void bias_forward(const float*, const float*, float*, size_t, size_t, size_t, cudaStream_t) {
    no_cuda("bias_forward");
}
size_t reduce_workspace_floats(size_t, size_t, size_t) { no_cuda("reduce_workspace_floats"); }
void reduce_outer_inner(const char* op, const float*, float*, float*, size_t, size_t, size_t,
                        bool, float, cudaStream_t) {
    no_cuda(op);
}
void bias_backward(const float*, float*, float*, size_t, size_t, size_t, cudaStream_t) {
    no_cuda("bias_backward");
}

void maxpool_forward(const float*, float*, const PoolShape&, cudaStream_t) {
    no_cuda("maxpool_forward");
}
void maxpool_backward(const float*, const float*, const float*, float*, const PoolShape&,
                      cudaStream_t) {
    no_cuda("maxpool_backward");
}
void avgpool_forward(const float*, float*, const PoolShape&, cudaStream_t) {
    no_cuda("avgpool_forward");
}
void avgpool_backward(const float*, float*, const PoolShape&, cudaStream_t) {
    no_cuda("avgpool_backward");
}

size_t norm_workspace_floats(const char* op, const NormShape&) { no_cuda(op); }
void lrn_forward(const float*, float*, const NormShape&, cudaStream_t) { no_cuda("lrn_forward"); }
void lrn_backward(const float*, const float*, const float*, float*, float*, const NormShape&,
                  cudaStream_t) {
    no_cuda("lrn_backward");
}
void rnorm_forward(const float*, float*, const NormShape&, cudaStream_t) {
    no_cuda("rnorm_forward");
}
void rnorm_backward(const float*, const float*, const float*, float*, float*, const NormShape&,
                    cudaStream_t) {
    no_cuda("rnorm_backward");
}
void cnorm_forward(const float*, float*, float*, const NormShape&, cudaStream_t) {
    no_cuda("cnorm_forward");
}
void cnorm_backward(const float*, const float*, const float*, float*, float*, const NormShape&,
                    cudaStream_t) {
    no_cuda("cnorm_backward");
}

void dropout_mask(uint8_t*, size_t, size_t, double, uint64_t, uint32_t, uint32_t, cudaStream_t) {
    no_cuda("dropout_mask");
}
void random_normal(float*, size_t, size_t, uint64_t, uint32_t, uint32_t, cudaStream_t) {
    no_cuda("random_normal");
}
void dropout_apply(const char* op, const float*, const uint8_t*, float*, size_t, float,
                   cudaStream_t) {
    no_cuda(op);
}

void softmax_forward(const float*, float*, int, int, cudaStream_t) { no_cuda("softmax_forward"); }
void softmax_backward(const float*, const float*, float*, int, int, cudaStream_t) {
    no_cuda("softmax_backward");
}
void logreg_forward(const float*, const int32_t*, float*, float*, float*, int, int, int,
                    cudaStream_t) {
    no_cuda("logreg_forward");
}
void logreg_backward(const float*, const int32_t*, float*, int, int, float, cudaStream_t) {
    no_cuda("logreg_backward");
}
void softmax_logreg_backward(const float*, const int32_t*, float*, int, int, float,
                             cudaStream_t) {
    no_cuda("softmax_logreg_backward");
}
void scale_copy(const char* op, const float*, float*, size_t, float, cudaStream_t) { no_cuda(op); }

void sgd_update(float*, float*, const float*, size_t, float, float, float, cudaStream_t) {
    no_cuda("sgd_update");
}
size_t maxnorm_workspace_floats(size_t, size_t, size_t) { no_cuda("maxnorm_workspace_floats"); }
void maxnorm(float*, float*, size_t, size_t, size_t, float, cudaStream_t) { no_cuda("maxnorm"); }

void crops_to_float(const uint8_t*, const float*, const float*, float*, int, int, int,
                    cudaStream_t) {
    no_cuda("crops_to_float");
}

void cmpool_forward(const float*, float*, const CmpoolShape&, cudaStream_t) {
    no_cuda("cmpool_forward");
}
void cmpool_backward(const float*, const float*, const float*, float*, const CmpoolShape&,
                     cudaStream_t) {
    no_cuda("cmpool_backward");
}
void sum_forward(const float*, float*, size_t, size_t, int, size_t, cudaStream_t) {
    no_cuda("sum_forward");
}
void sum_backward(const float*, float*, size_t, size_t, int, size_t, cudaStream_t) {
    no_cuda("sum_backward");
}
void crop_forward(const float*, float*, const CropShape&, cudaStream_t) { no_cuda("crop_forward"); }
void crop_backward(const float*, float*, const CropShape&, cudaStream_t) {
    no_cuda("crop_backward");
}
void crossent_forward(const float*, const float*, float*, float*, int, int, cudaStream_t) {
    no_cuda("crossent_forward");
}
void crossent_backward(const float*, const float*, float*, size_t, float, cudaStream_t) {
    no_cuda("crossent_backward");
}
void softmax_crossent_backward(const float*, const float*, float*, int, int, float,
                               cudaStream_t) {
    no_cuda("softmax_crossent_backward");
}
void bce_forward(const float*, const float*, float*, float*, float*, int, int, float,
                 cudaStream_t) {
    no_cuda("bce_forward");
}
void bce_backward(const char* op, const float*, const float*, float*, size_t, float, float,
                  cudaStream_t) {
    no_cuda(op);
}
void logistic_bce_backward(const float*, const float*, float*, size_t, float, float,
                           cudaStream_t) {
    no_cuda("logistic_bce_backward");
}
void dce_forward(const float*, const float*, float*, float*, float*, int, int, float,
                 cudaStream_t) {
    no_cuda("dce_forward");
}
