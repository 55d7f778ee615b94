// The weight update (OPS.md "update"), in place: sgd_update in one pass over w, v and g, and
// maxnorm (per-unit L2 norms by the deterministic reduction of bias.cu, then one scaling pass).
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

// v = mom*v; v = v - wc_eps*w; v = v - eps*g; w = w + v, each operation rounded to float32 in
// numpy_update.py's order (no fused multiply-add), so w and v agree with it bit for bit.
__device__ __forceinline__ void sgd_step(float& w, float& v, float g, float eps, float mom,
                                         float wc_eps) {
    float nv = __fmul_rn(mom, v);
    nv = __fsub_rn(nv, __fmul_rn(wc_eps, w));
    nv = __fsub_rn(nv, __fmul_rn(eps, g));
    v = nv;
    w = __fadd_rn(w, nv);
}

__global__ void sgd_update_kernel(float* __restrict__ w, float* __restrict__ v,
                                  const float* __restrict__ g, size_t n, bool vec, float eps,
                                  float mom, float wc_eps) {
    const size_t stride = grid_threads();
    size_t first_scalar = 0;
    if (vec) {
        const size_t n4 = n / 4;
        float4* w4 = reinterpret_cast<float4*>(w);
        float4* v4 = reinterpret_cast<float4*>(v);
        const float4* g4 = reinterpret_cast<const float4*>(g);
        for (size_t q = global_thread(); q < n4; q += stride) {
            float4 a = w4[q], b = v4[q];
            const float4 c = g4[q];
            sgd_step(a.x, b.x, c.x, eps, mom, wc_eps);
            sgd_step(a.y, b.y, c.y, eps, mom, wc_eps);
            sgd_step(a.z, b.z, c.z, eps, mom, wc_eps);
            sgd_step(a.w, b.w, c.w, eps, mom, wc_eps);
            w4[q] = a;
            v4[q] = b;
        }
        first_scalar = 4 * n4;
    }
    for (size_t i = first_scalar + global_thread(); i < n; i += stride)
        sgd_step(w[i], v[i], g[i], eps, mom, wc_eps);
}

// w[o, u, i] *= wball / norm[u] where norm[u] > wball; norm2 holds the squared norms.
__global__ void maxnorm_scale_kernel(float* __restrict__ w, const float* __restrict__ norm2,
                                     size_t n, size_t units, size_t inner, float wball) {
    for (size_t t = global_thread(); t < n; t += grid_threads()) {
        const float norm = sqrtf(norm2[(t / inner) % units]);
        if (norm > wball) w[t] = __fmul_rn(w[t], __fdiv_rn(wball, norm));
    }
}

}  // namespace

void sgd_update(float* w, float* v, const float* g, size_t n, float eps, float mom, float wc_eps,
                cudaStream_t stream) {
    if (n == 0) return;
    const bool vec = aligned16(w) && aligned16(v) && aligned16(g);
    sgd_update_kernel<<<grid_for(vec ? ceil_div(n, 4) : n), kThreads, 0, stream>>>(
        w, v, g, n, vec, eps, mom, wc_eps);
    check_launch("sgd_update");
}

size_t maxnorm_workspace_floats(size_t outer, size_t units, size_t inner) {
    return units + reduce_workspace_floats(outer, units, inner);
}

void maxnorm(float* w, float* workspace, size_t outer, size_t units, size_t inner, float wball,
             cudaStream_t stream) {
    const size_t n = outer * units * inner;
    if (n == 0 || wball == 0.f) return;  // wball = 0: no constraint (cuda-convnet's default)
    float* norm2 = workspace;
    reduce_outer_inner("maxnorm", w, norm2, workspace + units, outer, units, inner, true, 1.f,
                       stream);
    maxnorm_scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, norm2, n, units, inner, wball);
    check_launch("maxnorm");
}
