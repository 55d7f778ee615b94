// Bias (OPS.md "bias") and the deterministic sums over the outer and inner axes of an array
// viewed as (outer, mid, inner) that bias_backward, sum2_forward and maxnorm share.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

// ---- bias_forward ------------------------------------------------------------------------------

// out[i] = y[i] + b[(i / inner) % nb]. With vec, inner % 4 == 0: four neighbours share a bias.
template <class Index>
__global__ void bias_forward_kernel(const float* __restrict__ y, const float* __restrict__ b,
                                    float* __restrict__ out, Index n, Index nb, Index inner,
                                    bool vec) {
    const Index stride = static_cast<Index>(grid_threads());
    const Index first = static_cast<Index>(global_thread());
    if (vec) {
        const Index n4 = n / 4, inner4 = inner / 4;
        const float4* y4 = reinterpret_cast<const float4*>(y);
        float4* out4 = reinterpret_cast<float4*>(out);
        for (Index q = first; q < n4; q += stride) {
            const float bias = b[(q / inner4) % nb];
            float4 v = y4[q];
            v.x += bias; v.y += bias; v.z += bias; v.w += bias;
            out4[q] = v;
        }
    } else {
        for (Index i = first; i < n; i += stride) out[i] = y[i] + b[(i / inner) % nb];
    }
}

// ---- sums over (outer, inner) ------------------------------------------------------------------
// Two stages, both in a fixed order, so the result never depends on scheduling:
//  rows (inner >= 32): a warp sums one segment of one row (o, j); partial[o, seg, j].
//  columns (inner < 32): a thread sums a chunk of outer rows of one column (j, i) of the
//      (outer, mid * inner) matrix; partial[chunk, j, i].
//  then finish: out[j] = scale * (sum of j's partials), one thread per j.
// When a single partial per j would result, stage one writes out[j] itself.

constexpr size_t kRowInnerMin = 32;      // rows at least this long go to the warp-per-row path
constexpr size_t kSegment = 2048;        // at most this many floats per warp
constexpr size_t kColumnThreads = 65536; // threads the column path aims for

struct ReducePlan {
    bool rows;
    size_t segments, seg_len;   // rows: segments per row and their length (a multiple of 4)
    size_t chunks, chunk_len;   // columns: chunks of outer rows
    size_t partials;            // partial sums per output (0: stage one writes out)
};

ReducePlan plan_reduce(size_t outer, size_t mid, size_t inner) {
    ReducePlan p{};
    p.rows = inner >= kRowInnerMin;
    if (p.rows) {
        p.segments = ceil_div(inner, kSegment);
        p.seg_len = ceil_div(ceil_div(inner, p.segments), 4) * 4;
        p.segments = ceil_div(inner, p.seg_len);
        const size_t per_output = outer * p.segments;
        p.partials = per_output > 1 ? per_output : 0;
    } else {
        const size_t columns = mid * inner;
        size_t chunks = ceil_div(kColumnThreads, columns < 1 ? 1 : columns);
        chunks = chunks < outer ? chunks : outer;
        p.chunk_len = ceil_div(outer, chunks < 1 ? 1 : chunks);
        p.chunks = ceil_div(outer, p.chunk_len);
        const size_t per_output = p.chunks * inner;
        p.partials = per_output > 1 ? per_output : 0;
    }
    return p;
}

template <bool SQUARE>
__device__ __forceinline__ float term(float v) {
    return SQUARE ? v * v : v;
}

// One warp per (o, segment, j); dst[(o * segments + seg) * mid + j] = scale * sum.
template <bool SQUARE>
__global__ void reduce_rows_kernel(const float* __restrict__ x, float* __restrict__ dst,
                                   size_t outer, size_t mid, size_t inner, size_t segments,
                                   size_t seg_len, bool vec, float scale) {
    const size_t warps = grid_threads() / 32;
    const int lane = threadIdx.x & 31;
    const size_t total = outer * segments * mid;
    for (size_t w = global_thread() / 32; w < total; w += warps) {
        const size_t j = w % mid;
        const size_t seg = (w / mid) % segments;
        const size_t o = w / (mid * segments);
        const size_t begin = seg * seg_len;
        const size_t end = begin + seg_len < inner ? begin + seg_len : inner;
        const float* row = x + (o * mid + j) * inner;
        float acc = 0.f;
        if (vec) {  // begin, end - begin and the row start are multiples of 4
            const float4* row4 = reinterpret_cast<const float4*>(row + begin);
            const size_t n4 = (end - begin) / 4;
            for (size_t q = lane; q < n4; q += 32) {
                const float4 v = row4[q];
                acc += term<SQUARE>(v.x) + term<SQUARE>(v.y) + term<SQUARE>(v.z) +
                       term<SQUARE>(v.w);
            }
        } else {
            for (size_t i = begin + lane; i < end; i += 32) acc += term<SQUARE>(row[i]);
        }
        acc = warp_sum(acc);
        if (lane == 0) dst[(o * segments + seg) * mid + j] = scale * acc;
    }
}

// One thread per (chunk, column) of x viewed as (outer, columns).
template <bool SQUARE>
__global__ void reduce_columns_kernel(const float* __restrict__ x, float* __restrict__ dst,
                                      size_t outer, size_t columns, size_t chunks,
                                      size_t chunk_len, float scale) {
    const size_t total = chunks * columns;
    for (size_t t = global_thread(); t < total; t += grid_threads()) {
        const size_t c = t % columns, chunk = t / columns;
        const size_t begin = chunk * chunk_len;
        const size_t end = begin + chunk_len < outer ? begin + chunk_len : outer;
        float acc = 0.f;
        for (size_t o = begin; o < end; ++o) acc += term<SQUARE>(x[o * columns + c]);
        dst[t] = scale * acc;
    }
}

// out[j] = scale * sum_q partial[q * mid * group + j * group + g] over q < count, g < group.
__global__ void finish_kernel(const float* __restrict__ partial, float* __restrict__ out,
                              size_t mid, size_t count, size_t group, float scale) {
    for (size_t j = global_thread(); j < mid; j += grid_threads()) {
        float acc = 0.f;
        for (size_t q = 0; q < count; ++q)
            for (size_t g = 0; g < group; ++g) acc += partial[(q * mid + j) * group + g];
        out[j] = scale * acc;
    }
}

template <bool SQUARE>
void reduce_impl(const char* op, const float* x, float* out, float* workspace, size_t outer,
                 size_t mid, size_t inner, float scale, cudaStream_t stream) {
    const ReducePlan p = plan_reduce(outer, mid, inner);
    float* dst = p.partials ? workspace : out;
    const float stage_scale = p.partials ? 1.f : scale;
    if (p.rows) {
        const bool vec = inner % 4 == 0 && aligned16(x);
        const size_t warps = outer * p.segments * mid;
        reduce_rows_kernel<SQUARE><<<grid_for(warps * 32), kThreads, 0, stream>>>(
            x, dst, outer, mid, inner, p.segments, p.seg_len, vec, stage_scale);
        check_launch(op);
        if (p.partials) {
            finish_kernel<<<grid_for(mid), kThreads, 0, stream>>>(workspace, out, mid,
                                                                  outer * p.segments, 1, scale);
            check_launch(op);
        }
    } else {
        const size_t columns = mid * inner;
        reduce_columns_kernel<SQUARE><<<grid_for(p.chunks * columns), kThreads, 0, stream>>>(
            x, dst, outer, columns, p.chunks, p.chunk_len, stage_scale);
        check_launch(op);
        if (p.partials) {
            finish_kernel<<<grid_for(mid), kThreads, 0, stream>>>(workspace, out, mid, p.chunks,
                                                                  inner, scale);
            check_launch(op);
        }
    }
}

}  // namespace

size_t reduce_workspace_floats(size_t outer, size_t mid, size_t inner) {
    return plan_reduce(outer, mid, inner).partials * mid;
}

void reduce_outer_inner(const char* op, const float* x, float* out, float* workspace,
                        size_t outer, size_t mid, size_t inner, bool square, float scale,
                        cudaStream_t stream) {
    if (mid == 0) return;
    if (outer == 0 || inner == 0) {  // empty sums
        check_cuda(cudaMemsetAsync(out, 0, mid * sizeof(float), stream), op, "cudaMemsetAsync");
        return;
    }
    if (square)
        reduce_impl<true>(op, x, out, workspace, outer, mid, inner, scale, stream);
    else
        reduce_impl<false>(op, x, out, workspace, outer, mid, inner, scale, stream);
}

void bias_forward(const float* y, const float* b, float* out, size_t outer, size_t nb,
                  size_t inner, cudaStream_t stream) {
    const size_t n = outer * nb * inner;
    if (n == 0) return;
    const bool vec = inner % 4 == 0 && aligned16(y) && aligned16(out);
    const size_t work = vec ? n / 4 : n;
    if (n < (size_t(1) << 31)) {
        bias_forward_kernel<uint32_t><<<grid_for(work), kThreads, 0, stream>>>(
            y, b, out, uint32_t(n), uint32_t(nb), uint32_t(inner), vec);
    } else {
        bias_forward_kernel<size_t><<<grid_for(work), kThreads, 0, stream>>>(y, b, out, n, nb,
                                                                             inner, vec);
    }
    check_launch("bias_forward");
}

void bias_backward(const float* dy, float* db, float* workspace, size_t outer, size_t nb,
                   size_t inner, cudaStream_t stream) {
    reduce_outer_inner("bias_backward", dy, db, workspace, outer, nb, inner, false, 1.f, stream);
}
