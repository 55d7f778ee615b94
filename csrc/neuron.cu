// Neurons (OPS.md "neurons"): one element-wise functor per kind, forward and backward, each
// instantiated into the vectorized map of common.cuh. Formulas follow numpy_neuron.py term for
// term, each product rounded before it is added (no fused multiply-add), so kinds without a
// transcendental function agree with the float32 reference bit for bit; logistic and softrelu
// never overflow.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

// 1 / (1 + e^-x) with e^-|x| <= 1, so nothing overflows.
__device__ __forceinline__ float stable_logistic(float x) {
    const float e = expf(-fabsf(x));
    return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}

template <int KIND>
struct NeuronForward {
    float a, b;
    __device__ __forceinline__ float operator()(float x) const {
        if constexpr (KIND == kIdent) return x;
        if constexpr (KIND == kRelu) return x > 0.f ? x : 0.f;
        if constexpr (KIND == kLogistic) return stable_logistic(x);
        if constexpr (KIND == kTanh) return a * tanhf(b * x);
        if constexpr (KIND == kAbs) return fabsf(x);
        if constexpr (KIND == kSoftrelu) return fmaxf(x, 0.f) + log1pf(expf(-fabsf(x)));
        if constexpr (KIND == kBrelu) return fminf(x > 0.f ? x : 0.f, a);
        if constexpr (KIND == kDrelu) return x - __fmul_rn(a, tanhf(x / a));
        if constexpr (KIND == kLinear) return __fadd_rn(__fmul_rn(a, x), b);
        if constexpr (KIND == kSquare) return x * x;
        if constexpr (KIND == kSqrt) return sqrtf(x);
        if constexpr (KIND == kLog) return logf(a + x);
        return 0.f;
    }
};

template <int KIND>
struct NeuronBackward {
    float a, b;
    __device__ __forceinline__ float operator()(float x, float y, float dy) const {
        if constexpr (KIND == kIdent) return dy;
        if constexpr (KIND == kRelu) return x > 0.f ? dy : 0.f;
        if constexpr (KIND == kLogistic) return dy * y * (1.f - y);
        if constexpr (KIND == kTanh) {
            const float t = tanhf(b * x);
            return dy * (a * b) * (1.f - __fmul_rn(t, t));
        }
        if constexpr (KIND == kAbs) return x > 0.f ? dy : -dy;
        if constexpr (KIND == kSoftrelu) return dy * stable_logistic(x);
        if constexpr (KIND == kBrelu) return (x > 0.f && x < a) ? dy : 0.f;
        if constexpr (KIND == kDrelu) {
            const float t = tanhf(x / a);
            return dy * (t * t);
        }
        if constexpr (KIND == kLinear) return dy * a;
        if constexpr (KIND == kSquare) return dy * 2.f * x;
        if constexpr (KIND == kSqrt) return dy / (2.f * y);
        if constexpr (KIND == kLog) return dy / (a + x);
        return 0.f;
    }
};

template <int KIND>
void forward_kind(const float* x, float* y, size_t n, float a, float b, cudaStream_t stream) {
    launch_map("neuron_forward", stream, y, n, NeuronForward<KIND>{a, b}, x);
}

template <int KIND>
void backward_kind(const float* x, const float* y, const float* dy, float* dx, size_t n, float a,
                   float b, cudaStream_t stream) {
    launch_map("neuron_backward", stream, dx, n, NeuronBackward<KIND>{a, b}, x, y, dy);
}

// Calls body.run<KIND>() for the runtime kind.
template <class Body>
void dispatch_kind(const char* op, int kind, Body&& body) {
    switch (kind) {
        case kIdent: return body.template run<kIdent>();
        case kRelu: return body.template run<kRelu>();
        case kLogistic: return body.template run<kLogistic>();
        case kTanh: return body.template run<kTanh>();
        case kAbs: return body.template run<kAbs>();
        case kSoftrelu: return body.template run<kSoftrelu>();
        case kBrelu: return body.template run<kBrelu>();
        case kDrelu: return body.template run<kDrelu>();
        case kLinear: return body.template run<kLinear>();
        case kSquare: return body.template run<kSquare>();
        case kSqrt: return body.template run<kSqrt>();
        case kLog: return body.template run<kLog>();
        default: require(false, op, "unknown neuron kind " + std::to_string(kind));
    }
}

struct ForwardBody {
    const float* x; float* y; size_t n; float a, b; cudaStream_t stream;
    template <int KIND> void run() const { forward_kind<KIND>(x, y, n, a, b, stream); }
};

struct BackwardBody {
    const float *x, *y, *dy; float* dx; size_t n; float a, b; cudaStream_t stream;
    template <int KIND> void run() const { backward_kind<KIND>(x, y, dy, dx, n, a, b, stream); }
};

}  // namespace

void neuron_forward(const float* x, float* y, size_t n, int kind, float a, float b,
                    cudaStream_t stream) {
    dispatch_kind("neuron_forward", kind, ForwardBody{x, y, n, a, b, stream});
}

void neuron_backward(const float* x, const float* y, const float* dy, float* dx, size_t n,
                     int kind, float a, float b, cudaStream_t stream) {
    dispatch_kind("neuron_backward", kind, BackwardBody{x, y, dy, dx, n, a, b, stream});
}
