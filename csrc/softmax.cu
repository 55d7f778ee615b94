// Softmax and the costs (OPS.md "softmax and costs"). Rows are cases: one warp per row, any K.
// Labels are int32; a label outside [0, K) turns its whole row of outputs into NaN instead of
// reading outside p.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

__device__ __forceinline__ int warp_sum_int(int v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__global__ void softmax_forward_kernel(const float* __restrict__ x, float* __restrict__ p, int N,
                                       int K) {
    for_each_row(N, [&](size_t row, int lane) {
        const float* xr = x + row * K;
        float* pr = p + row * K;
        float m = -INFINITY;
        for (int k = lane; k < K; k += 32) m = fmaxf(m, xr[k]);
        m = warp_max(m);
        float sum = 0.f;
        for (int k = lane; k < K; k += 32) sum += expf(xr[k] - m);
        sum = warp_sum(sum);
        for (int k = lane; k < K; k += 32) pr[k] = expf(xr[k] - m) / sum;
    });
}

__global__ void softmax_backward_kernel(const float* __restrict__ p, const float* __restrict__ dp,
                                        float* __restrict__ dx, int N, int K) {
    for_each_row(N, [&](size_t row, int lane) {
        const float* pr = p + row * K;
        const float* dpr = dp + row * K;
        float dot = 0.f;
        for (int k = lane; k < K; k += 32) dot += __fmul_rn(dpr[k], pr[k]);
        dot = warp_sum(dot);
        float* dxr = dx + row * K;
        for (int k = lane; k < K; k += 32) dxr[k] = __fmul_rn(pr[k], __fsub_rn(dpr[k], dot));
    });
}

__global__ void logreg_forward_kernel(const float* __restrict__ p,
                                      const int32_t* __restrict__ labels,
                                      float* __restrict__ nll, float* __restrict__ wrong1,
                                      float* __restrict__ wrongk, int N, int K, int topk) {
    for_each_row(N, [&](size_t row, int lane) {
        const int label = labels[row];
        if (label < 0 || label >= K) {
            if (lane == 0) nll[row] = wrong1[row] = wrongk[row] = NAN;
            return;
        }
        const float* pr = p + row * K;
        const float lp = pr[label];
        int greater = 0, equal = 0;  // equal counts the label's own class
        for (int k = lane; k < K; k += 32) {
            greater += pr[k] > lp ? 1 : 0;
            equal += pr[k] == lp ? 1 : 0;
        }
        greater = warp_sum_int(greater);
        equal = warp_sum_int(equal);
        if (lane == 0) {  // ties split: 1 - clip((k - greater) / equal, 0, 1), as numpy_cost
            const auto wrong = [&](int k) {
                const float right = static_cast<float>(k - greater) / static_cast<float>(equal);
                return 1.f - fminf(fmaxf(right, 0.f), 1.f);
            };
            nll[row] = -logf(lp);
            wrong1[row] = wrong(1);
            wrongk[row] = wrong(topk);
        }
    });
}

// dp = -scale / p at the label, 0 elsewhere.
__global__ void logreg_backward_kernel(const float* __restrict__ p,
                                       const int32_t* __restrict__ labels,
                                       float* __restrict__ dp, size_t n, int K, float scale) {
    for (size_t i = global_thread(); i < n; i += grid_threads()) {
        const size_t row = i / K;
        const int k = static_cast<int>(i - row * K);
        const int label = labels[row];
        if (label < 0 || label >= K)
            dp[i] = NAN;
        else
            dp[i] = k == label ? __fdiv_rn(-scale, p[i]) : 0.f;
    }
}

// dx = scale * (p - onehot(label)).
__global__ void softmax_logreg_backward_kernel(const float* __restrict__ p,
                                               const int32_t* __restrict__ labels,
                                               float* __restrict__ dx, size_t n, int K,
                                               float scale) {
    for (size_t i = global_thread(); i < n; i += grid_threads()) {
        const size_t row = i / K;
        const int k = static_cast<int>(i - row * K);
        const int label = labels[row];
        if (label < 0 || label >= K)
            dx[i] = NAN;
        else
            dx[i] = __fmul_rn(scale, k == label ? __fsub_rn(p[i], 1.f) : p[i]);
    }
}

struct Scale {
    float scale;
    __device__ __forceinline__ float operator()(float v) const { return __fmul_rn(scale, v); }
};

}  // namespace

void softmax_forward(const float* x, float* p, int N, int K, cudaStream_t stream) {
    if (N == 0 || K == 0) return;
    softmax_forward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(x, p, N, K);
    check_launch("softmax_forward");
}

void softmax_backward(const float* p, const float* dp, float* dx, int N, int K,
                      cudaStream_t stream) {
    if (N == 0 || K == 0) return;
    softmax_backward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(p, dp, dx, N, K);
    check_launch("softmax_backward");
}

void logreg_forward(const float* p, const int32_t* labels, float* nll, float* wrong1,
                    float* wrongk, int N, int K, int topk, cudaStream_t stream) {
    if (N == 0) return;
    logreg_forward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(p, labels, nll, wrong1, wrongk,
                                                                  N, K, topk);
    check_launch("logreg_forward");
}

void logreg_backward(const float* p, const int32_t* labels, float* dp, int N, int K, float scale,
                     cudaStream_t stream) {
    const size_t n = size_t(N) * K;
    if (n == 0) return;
    logreg_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, labels, dp, n, K, scale);
    check_launch("logreg_backward");
}

void softmax_logreg_backward(const float* p, const int32_t* labels, float* dx, int N, int K,
                             float scale, cudaStream_t stream) {
    const size_t n = size_t(N) * K;
    if (n == 0) return;
    softmax_logreg_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, labels, dx, n, K,
                                                                        scale);
    check_launch("softmax_logreg_backward");
}

void scale_copy(const char* op, const float* x, float* out, size_t n, float scale,
                cudaStream_t stream) {
    launch_map(op, stream, out, n, Scale{scale}, x);
}
