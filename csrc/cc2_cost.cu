// cuda-convnet2's costs on (N, K) probabilities with label values of the same shape: crossent,
// bce (binomial cross-entropy, with posWeight) and dce (bce with per-class detection counts);
// convnet/backend/numpy_cc2.py is the definition. Per-case values: one warp per row (any K).
// Gradients: element-wise maps. Detection counts: one thread per class and row phase, summed in
// a fixed order (deterministic).
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

constexpr float kSafelogFloor = -50.f;

// log(v) for v > 0, -50 otherwise (cuda-convnet2's safelog, with an accurate log).
__device__ __forceinline__ float safelog(float v) { return v > 0.f ? logf(v) : kSafelogFloor; }

// a / b, 0 where a is 0 (so a zero label weight never meets 0 / 0).
__device__ __forceinline__ float ratio(float a, float b) { return a != 0.f ? a / b : 0.f; }

// cost = -sum_k t safelog(p); wrong = 1 - 1/m when one of the m maximal classes has t > 0.
__global__ void crossent_forward_kernel(const float* __restrict__ p,
                                        const float* __restrict__ labels,
                                        float* __restrict__ cost, float* __restrict__ wrong, int N,
                                        int K) {
    for_each_row(N, [&](size_t row, int lane) {
        const float* pr = p + row * K;
        const float* tr = labels + row * K;
        float m = -INFINITY;
        for (int k = lane; k < K; k += 32) m = fmaxf(m, pr[k]);
        m = warp_max(m);
        float sum = 0.f, maxima = 0.f, labelled = 0.f;
        for (int k = lane; k < K; k += 32) {
            const float t = tr[k];
            sum += t * safelog(pr[k]);
            if (pr[k] == m) {
                maxima += 1.f;
                if (t > 0.f) labelled = 1.f;
            }
        }
        sum = warp_sum(sum);
        maxima = warp_sum(maxima);
        labelled = warp_max(labelled);
        if (lane == 0) {
            cost[row] = -sum;
            wrong[row] = labelled > 0.f ? 1.f - 1.f / maxima : 1.f;
        }
    });
}

// dx = scale * (p * sum_k t - t).
__global__ void softmax_crossent_backward_kernel(const float* __restrict__ p,
                                                 const float* __restrict__ labels,
                                                 float* __restrict__ dx, int N, int K,
                                                 float scale) {
    for_each_row(N, [&](size_t row, int lane) {
        const float* tr = labels + row * K;
        float total = 0.f;
        for (int k = lane; k < K; k += 32) total += tr[k];
        total = warp_sum(total);
        const float* pr = p + row * K;
        float* dxr = dx + row * K;
        for (int k = lane; k < K; k += 32) dxr[k] = scale * (pr[k] * total - tr[k]);
    });
}

// cost = -sum_k (w t safelog(y) + (1 - t) safelog(1 - y)); wrong = the fraction of k with
// (y > 0.5) != t; top1_wrong (when asked) = 1 - sum of t over the m maximal classes / m.
__global__ void bce_forward_kernel(const float* __restrict__ y, const float* __restrict__ labels,
                                   float* __restrict__ cost, float* __restrict__ wrong,
                                   float* __restrict__ top1_wrong, int N, int K, float w) {
    for_each_row(N, [&](size_t row, int lane) {
        const float* yr = y + row * K;
        const float* tr = labels + row * K;
        float sum = 0.f, missed = 0.f;
        for (int k = lane; k < K; k += 32) {
            const float t = tr[k], v = yr[k];
            sum += w * t * safelog(v) + (1.f - t) * safelog(1.f - v);
            missed += (v > 0.5f ? 1.f : 0.f) != t ? 1.f : 0.f;
        }
        sum = warp_sum(sum);
        missed = warp_sum(missed);
        if (lane == 0) {
            cost[row] = -sum;
            wrong[row] = missed / static_cast<float>(K);
        }
        if (top1_wrong == nullptr) return;
        float m = -INFINITY;
        for (int k = lane; k < K; k += 32) m = fmaxf(m, yr[k]);
        m = warp_max(m);
        float maxima = 0.f, labelled = 0.f;
        for (int k = lane; k < K; k += 32) {
            if (yr[k] == m) {
                maxima += 1.f;
                labelled += tr[k];
            }
        }
        maxima = warp_sum(maxima);
        labelled = warp_sum(labelled);
        if (lane == 0) top1_wrong[row] = 1.f - labelled / maxima;
    });
}

constexpr int kCountRows = 8;  // row phases per block of 32 classes

// counts[k] = (cases with y > 0.5, sum of t, sum of t where (y > 0.5) == t) over the batch.
__global__ void dce_counts_kernel(const float* __restrict__ y, const float* __restrict__ labels,
                                  float* __restrict__ counts, int N, int K) {
    __shared__ float partial[3][kCountRows][32];
    const int k = blockIdx.x * 32 + threadIdx.x;
    float declared = 0.f, positive = 0.f, true_positive = 0.f;
    if (k < K) {
        for (int n = threadIdx.y; n < N; n += kCountRows) {
            const size_t i = static_cast<size_t>(n) * K + k;
            const float d = y[i] > 0.5f ? 1.f : 0.f, t = labels[i];
            declared += d;
            positive += t;
            true_positive += d == t ? t : 0.f;
        }
    }
    partial[0][threadIdx.y][threadIdx.x] = declared;
    partial[1][threadIdx.y][threadIdx.x] = positive;
    partial[2][threadIdx.y][threadIdx.x] = true_positive;
    __syncthreads();
    if (threadIdx.y < 3 && k < K) {
        float total = 0.f;
        for (int r = 0; r < kCountRows; ++r) total += partial[threadIdx.y][r][threadIdx.x];
        counts[static_cast<size_t>(k) * 3 + threadIdx.y] = total;
    }
}

struct CrossentGrad {
    float scale;
    __device__ __forceinline__ float operator()(float p, float t) const {
        return ratio(-scale * t, p);
    }
};

struct BceGrad {
    float scale, w;
    __device__ __forceinline__ float operator()(float y, float t) const {
        return -scale * (ratio(w * t, y) - ratio(1.f - t, 1.f - y));
    }
};

struct LogisticBceGrad {
    float scale, w;
    __device__ __forceinline__ float operator()(float y, float t) const {
        return -scale * (w * t * (1.f - y) - (1.f - t) * y);
    }
};

void launch_bce_rows(const char* op, const float* y, const float* labels, float* cost,
                     float* wrong, float* top1_wrong, int N, int K, float w,
                     cudaStream_t stream) {
    if (N == 0) return;
    require(K >= 1, op, "the probabilities need at least one column");
    bce_forward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(y, labels, cost, wrong,
                                                               top1_wrong, N, K, w);
    check_launch(op);
}

}  // namespace

void crossent_forward(const float* p, const float* labels, float* cost, float* wrong, int N,
                      int K, cudaStream_t stream) {
    if (N == 0) return;
    require(K >= 1, "crossent_forward", "the probabilities need at least one column");
    crossent_forward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(p, labels, cost, wrong, N, K);
    check_launch("crossent_forward");
}

void crossent_backward(const float* p, const float* labels, float* dp, size_t n, float scale,
                       cudaStream_t stream) {
    launch_map("crossent_backward", stream, dp, n, CrossentGrad{scale}, p, labels);
}

void softmax_crossent_backward(const float* p, const float* labels, float* dx, int N, int K,
                               float scale, cudaStream_t stream) {
    if (N == 0 || K == 0) return;
    softmax_crossent_backward_kernel<<<row_grid(N), kRowThreads, 0, stream>>>(p, labels, dx, N,
                                                                             K, scale);
    check_launch("softmax_crossent_backward");
}

void bce_forward(const float* y, const float* labels, float* cost, float* wrong,
                 float* top1_wrong, int N, int K, float pos_weight, cudaStream_t stream) {
    launch_bce_rows("bce_forward", y, labels, cost, wrong, top1_wrong, N, K, pos_weight, stream);
}

void bce_backward(const char* op, const float* y, const float* labels, float* dy, size_t n,
                  float scale, float pos_weight, cudaStream_t stream) {
    launch_map(op, stream, dy, n, BceGrad{scale, pos_weight}, y, labels);
}

void logistic_bce_backward(const float* y, const float* labels, float* dx, size_t n, float scale,
                           float pos_weight, cudaStream_t stream) {
    launch_map("logistic_bce_backward", stream, dx, n, LogisticBceGrad{scale, pos_weight}, y,
               labels);
}

void dce_forward(const float* y, const float* labels, float* cost, float* wrong, float* counts,
                 int N, int K, float pos_weight, cudaStream_t stream) {
    launch_bce_rows("dce_forward", y, labels, cost, wrong, nullptr, N, K, pos_weight, stream);
    if (K == 0) return;
    const dim3 block(32, kCountRows);
    dce_counts_kernel<<<static_cast<unsigned>(ceil_div(K, 32)), block, 0, stream>>>(y, labels,
                                                                                   counts, N, K);
    check_launch("dce_forward");
}
