// Host launchers of every kernel but conv/local (those are in conv.h). Raw device pointers,
// float32, NCHW (fc activations (N, features)), C order; each launcher queues its kernels on
// `stream`, checks every launch and throws std::runtime_error naming the op on failure.
// The semantics are OPS.md's; the NumPy reference (convnet/backend/numpy_*.py) is the truth.
// CPU-only builds get the same symbols from no_cuda.cpp, each throwing "built without CUDA".
#pragma once
#include <cuda_runtime.h>  // CPU-only builds get a stub that declares cudaStream_t (CMakeLists.txt)

#include <cstddef>
#include <cstdint>

// ---- neurons (neuron.cu) -----------------------------------------------------------------------
// The order of NEURON_KINDS in convnet/backend/numpy_neuron.py; bindings export the names.
enum NeuronKind : int {
    kIdent, kRelu, kLogistic, kTanh, kAbs, kSoftrelu, kBrelu, kDrelu, kLinear, kSquare, kSqrt,
    kLog, kNeuronKinds
};
inline constexpr const char* kNeuronKindNames[kNeuronKinds] = {
    "ident", "relu", "logistic", "tanh", "abs", "softrelu", "brelu", "drelu", "linear", "square",
    "sqrt", "log"};

void neuron_forward(const float* x, float* y, size_t n, int kind, float a, float b,
                    cudaStream_t stream);
void neuron_backward(const float* x, const float* y, const float* dy, float* dx, size_t n,
                     int kind, float a, float b, cudaStream_t stream);

// ---- bias and sums over the outer and inner axes (bias.cu) -------------------------------------
// y viewed as (outer, nb, inner): out[o, j, i] = y[o, j, i] + b[j].
void bias_forward(const float* y, const float* b, float* out, size_t outer, size_t nb,
                  size_t inner, cudaStream_t stream);

// out[j] = scale * sum over o, i of f(x[o, j, i]) for x viewed as (outer, mid, inner), with
// f(v) = v or v * v. Deterministic (a fixed summation order). `workspace` holds
// reduce_workspace_floats(outer, mid, inner) floats (0 means none is needed).
size_t reduce_workspace_floats(size_t outer, size_t mid, size_t inner);
void reduce_outer_inner(const char* op, const float* x, float* out, float* workspace,
                        size_t outer, size_t mid, size_t inner, bool square, float scale,
                        cudaStream_t stream);

// db[j] = sum of dy (outer, nb, inner) over the batch and the shared trailing axes.
void bias_backward(const float* dy, float* db, float* workspace, size_t outer, size_t nb,
                   size_t inner, cudaStream_t stream);

// ---- pooling (pool.cu) -------------------------------------------------------------------------
struct PoolShape {
    int N, C, H, W;    // input
    int OH, OW;        // output
    int size, stride, start;
};
void maxpool_forward(const float* x, float* y, const PoolShape& s, cudaStream_t stream);
void maxpool_backward(const float* x, const float* y, const float* dy, float* dx,
                      const PoolShape& s, cudaStream_t stream);
void avgpool_forward(const float* x, float* y, const PoolShape& s, cudaStream_t stream);
void avgpool_backward(const float* dy, float* dx, const PoolShape& s, cudaStream_t stream);

// ---- response normalization (lrn.cu) -----------------------------------------------------------
struct NormShape {
    int N, C, H, W;
    int size;
    float alpha, beta, k;
};
// Workspace floats, as multiples of N*C*H*W: lrn/rnorm backward 1, cnorm forward 1,
// cnorm backward 3; the forwards of lrn and rnorm need none.
size_t norm_workspace_floats(const char* op, const NormShape& s);
void lrn_forward(const float* x, float* y, const NormShape& s, cudaStream_t stream);
void lrn_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                  const NormShape& s, cudaStream_t stream);
void rnorm_forward(const float* x, float* y, const NormShape& s, cudaStream_t stream);
void rnorm_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                    const NormShape& s, cudaStream_t stream);
void cnorm_forward(const float* x, float* y, float* workspace, const NormShape& s,
                   cudaStream_t stream);
void cnorm_backward(const float* x, const float* y, const float* dy, float* dx, float* workspace,
                    const NormShape& s, cudaStream_t stream);

// ---- random numbers and dropout (dropout.cu) ---------------------------------------------------
// Philox4x32-10 streams of convnet/backend/philox.py, bit for bit: n elements from stream
// element `offset` on.
void dropout_mask(uint8_t* mask, size_t n, size_t offset, double keep, uint64_t seed,
                  uint32_t layer, uint32_t step, cudaStream_t stream);
void random_normal(float* out, size_t n, size_t offset, uint64_t seed, uint32_t layer,
                   uint32_t step, cudaStream_t stream);
// out = a * mask / keep (dropout_forward on x, dropout_backward on dy).
void dropout_apply(const char* op, const float* a, const uint8_t* mask, float* out, size_t n,
                   float keep, cudaStream_t stream);

// ---- softmax and costs (softmax.cu); p, x: (N, K), labels int32 (N,) ---------------------------
void softmax_forward(const float* x, float* p, int N, int K, cudaStream_t stream);
void softmax_backward(const float* p, const float* dp, float* dx, int N, int K,
                      cudaStream_t stream);
// A label outside [0, K) gives NaN in every output of its case (the kernels never read past p).
void logreg_forward(const float* p, const int32_t* labels, float* nll, float* wrong1,
                    float* wrongk, int N, int K, int topk, cudaStream_t stream);
void logreg_backward(const float* p, const int32_t* labels, float* dp, int N, int K, float scale,
                     cudaStream_t stream);
void softmax_logreg_backward(const float* p, const int32_t* labels, float* dx, int N, int K,
                             float scale, cudaStream_t stream);
// out = scale * x (sum2_backward).
void scale_copy(const char* op, const float* x, float* out, size_t n, float scale,
                cudaStream_t stream);

// ---- weight update (sgd.cu), in place ----------------------------------------------------------
void sgd_update(float* w, float* v, const float* g, size_t n, float eps, float mom, float wc_eps,
                cudaStream_t stream);
// w viewed as (outer, units, inner); `workspace` holds maxnorm_workspace_floats(...) floats.
size_t maxnorm_workspace_floats(size_t outer, size_t units, size_t inner);
void maxnorm(float* w, float* workspace, size_t outer, size_t units, size_t inner, float wball,
             cudaStream_t stream);

// ---- image staging (stage.cu) ------------------------------------------------------------------
// x (N, 3, h, w) = crops[..., :3] (uint8 RGBX (N, h, w, 4)) as NCHW - mean (3, h, w) + shift (N, 3).
void crops_to_float(const uint8_t* crops, const float* mean, const float* shift, float* x,
                    int N, int h, int w, cudaStream_t stream);

// ---- cuda-convnet2's layers (cc2_layers.cu, cc2_cost.cu; convnet/backend/numpy_cc2.py) ------
// Cross-map max pooling: x viewed as (N, C, inner) -> y (N, outputs, inner); output o covers
// channels [start + o*stride, start + o*stride + size) clipped to [0, C).
struct CmpoolShape {
    int N, C, outputs;
    size_t inner;  // H * W, 1 for fc activations
    int size, stride, start;
};
void cmpool_forward(const float* x, float* y, const CmpoolShape& s, cudaStream_t stream);
void cmpool_backward(const float* x, const float* y, const float* dy, float* dx,
                     const CmpoolShape& s, cudaStream_t stream);
// x viewed as (outer, groups * stride, inner) -> y (outer, groups, inner): sums of `stride`
// consecutive entries of the middle axis; sum_backward repeats each dy `stride` times.
void sum_forward(const float* x, float* y, size_t outer, size_t groups, int stride, size_t inner,
                 cudaStream_t stream);
void sum_backward(const float* dy, float* dx, size_t outer, size_t groups, int stride,
                  size_t inner, cudaStream_t stream);
// planes (N * C) maps of H x W; the window of OH x OW at (y0, x0).
struct CropShape {
    size_t planes;
    int H, W, OH, OW, y0, x0;
};
void crop_forward(const float* x, float* y, const CropShape& s, cudaStream_t stream);
void crop_backward(const float* dy, float* dx, const CropShape& s, cudaStream_t stream);

// Costs on (N, K) probabilities with label values of the same shape; per-case outputs (N,).
void crossent_forward(const float* p, const float* labels, float* cost, float* wrong, int N,
                      int K, cudaStream_t stream);
void crossent_backward(const float* p, const float* labels, float* dp, size_t n, float scale,
                       cudaStream_t stream);
void softmax_crossent_backward(const float* p, const float* labels, float* dx, int N, int K,
                               float scale, cudaStream_t stream);
// top1_wrong may be null (not computed).
void bce_forward(const float* y, const float* labels, float* cost, float* wrong,
                 float* top1_wrong, int N, int K, float pos_weight, cudaStream_t stream);
// dy of the bce cost (op: "bce_backward" or "dce_backward", for the error messages).
void bce_backward(const char* op, const float* y, const float* labels, float* dy, size_t n,
                  float scale, float pos_weight, cudaStream_t stream);
void logistic_bce_backward(const float* y, const float* labels, float* dx, size_t n, float scale,
                           float pos_weight, cudaStream_t stream);
// bce_forward's cost and wrong, and counts (K, 3): per class, over the batch, (declared positive,
// positive, true positive).
void dce_forward(const float* y, const float* labels, float* cost, float* wrong, float* counts,
                 int N, int K, float pos_weight, cudaStream_t stream);
