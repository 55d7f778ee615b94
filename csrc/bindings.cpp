// convnet._C: the only pybind11 file. Every launcher takes raw device pointers as integers
// (CuPy's `a.data.ptr`), sizes, and the stream as an integer (cupy.cuda.get_current_stream().ptr),
// releases the GIL while it queues its kernels, and raises RuntimeError naming the op when CUDA
// reports an error (ValueError for a bad argument it catches itself). Arrays are float32 and
// C-contiguous, NCHW; convnet/backend/cuda_ops.py and cuda_conv.py check that before calling.
// In a CPU-only build (no_cuda.cpp) the same functions exist and raise
// RuntimeError("<op>: convnet was built without CUDA").
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "conv.h"
#include "ops.h"

namespace py = pybind11;

namespace {

using ptr = std::uintptr_t;
using release_gil = py::call_guard<py::gil_scoped_release>;

template <class T = float>
T* dev(ptr p) { return reinterpret_cast<T*>(p); }

cudaStream_t as_stream(ptr s) { return reinterpret_cast<cudaStream_t>(s); }

ConvShape conv_shape(int N, int C, int H, int W, int F, int fs, int OH, int OW, int stride,
                     int padding, int groups) {
    return ConvShape{N, C, H, W, F, fs, OH, OW, stride, padding, groups};
}

void bind_conv(py::module_& m) {
    py::tuple algos(static_cast<size_t>(kConvAlgos));
    for (int a = 0; a < kConvAlgos; ++a) algos[a] = py::str(kConvAlgoNames[a]);
    m.attr("conv_algorithms") = algos;
    py::tuple precisions(static_cast<size_t>(kConvAlgos));
    for (int a = 0; a < kConvAlgos; ++a) precisions[a] = py::str(kConvAlgoPrecisions[a]);
    m.attr("conv_algorithm_precisions") = precisions;
    m.def(
        "conv_algo_unsupported",
        [](const std::string& op, int algo, int N, int C, int H, int W, int F, int fs, int OH,
           int OW, int stride, int padding, int groups) {
            const char* why = conv_algo_unsupported(
                op.c_str(), algo, conv_shape(N, C, H, W, F, fs, OH, OW, stride, padding, groups));
            return std::string(why == nullptr ? "" : why);
        },
        "why `op` cannot run algorithm `algo` (an index of conv_algorithms) on this shape; '' "
        "when it can",
        py::arg("op"), py::arg("algo"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"),
        py::arg("F"), py::arg("fs"), py::arg("OH"), py::arg("OW"), py::arg("stride"),
        py::arg("padding"), py::arg("groups"));
    // conv.h's launchers: (a, b) are (x, w) forward, (dy, w) backward-data, (x, dy)
    // backward-filter; ConvShape's fields follow in order, then the algo, then the stream.
#define CONVNET_BIND_CONV(name, doc)                                                               \
    m.def(                                                                                         \
        #name,                                                                                     \
        [](ptr a, ptr b, ptr out, int N, int C, int H, int W, int F, int fs, int OH, int OW,      \
           int stride, int padding, int groups, int algo, ptr stream) {                            \
            name(dev(a), dev(b), dev(out),                                                         \
                 conv_shape(N, C, H, W, F, fs, OH, OW, stride, padding, groups), algo,            \
                 as_stream(stream));                                                               \
        },                                                                                         \
        doc, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("N"), py::arg("C"),              \
        py::arg("H"), py::arg("W"), py::arg("F"), py::arg("fs"), py::arg("OH"), py::arg("OW"),    \
        py::arg("stride"), py::arg("padding"), py::arg("groups"), py::arg("algo"),                \
        py::arg("stream"), release_gil())
    CONVNET_BIND_CONV(conv_forward, "conv_forward(x, w, y, N, C, H, W, F, fs, OH, OW, stride, "
                                    "padding, groups, algo, stream): y = conv(x, w)");
    CONVNET_BIND_CONV(conv_backward_data, "conv_backward_data(dy, w, dx, ...): dx");
    CONVNET_BIND_CONV(conv_backward_filter, "conv_backward_filter(x, dy, dw, ...): dw");
    CONVNET_BIND_CONV(local_forward, "local_forward(x, w, y, ...): y = local(x, w)");
    CONVNET_BIND_CONV(local_backward_data, "local_backward_data(dy, w, dx, ...): dx");
    CONVNET_BIND_CONV(local_backward_filter, "local_backward_filter(x, dy, dw, ...): dw");
#undef CONVNET_BIND_CONV
    m.def(
        "conv_forward_bias_relu",
        [](ptr x, ptr w, ptr b, ptr y, int N, int C, int H, int W, int F, int fs, int OH, int OW,
           int stride, int padding, int groups, int algo, ptr stream) {
            conv_forward_bias_relu(dev(x), dev(w), dev(b), dev(y),
                                   conv_shape(N, C, H, W, F, fs, OH, OW, stride, padding, groups),
                                   algo, as_stream(stream));
        },
        "conv_forward_bias_relu(x, w, b, y, N, ..., groups, algo, stream): y = max(conv(x, w) + b, "
        "0), one launch",
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("N"), py::arg("C"),
        py::arg("H"), py::arg("W"), py::arg("F"), py::arg("fs"), py::arg("OH"), py::arg("OW"),
        py::arg("stride"), py::arg("padding"), py::arg("groups"), py::arg("algo"),
        py::arg("stream"), release_gil());
}

void bind_elementwise(py::module_& m) {
    py::tuple kinds(static_cast<size_t>(kNeuronKinds));
    for (int k = 0; k < kNeuronKinds; ++k) kinds[k] = py::str(kNeuronKindNames[k]);
    m.attr("neuron_kinds") = kinds;

    m.def(
        "neuron_forward",
        [](ptr x, ptr y, size_t n, int kind, float a, float b, ptr stream) {
            neuron_forward(dev(x), dev(y), n, kind, a, b, as_stream(stream));
        },
        "y = f(x) over n floats; kind indexes neuron_kinds", py::arg("x"), py::arg("y"),
        py::arg("n"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("stream"),
        release_gil());
    m.def(
        "neuron_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, size_t n, int kind, float a, float b, ptr stream) {
            neuron_backward(dev(x), dev(y), dev(dy), dev(dx), n, kind, a, b, as_stream(stream));
        },
        "dx = dy * f'(x) over n floats", py::arg("x"), py::arg("y"), py::arg("dy"),
        py::arg("dx"), py::arg("n"), py::arg("kind"), py::arg("a"), py::arg("b"),
        py::arg("stream"), release_gil());

    m.def(
        "dropout_mask",
        [](ptr mask, size_t n, size_t offset, double keep, uint64_t seed, uint32_t layer,
           uint32_t step, ptr stream) {
            dropout_mask(dev<uint8_t>(mask), n, offset, keep, seed, layer, step,
                         as_stream(stream));
        },
        "uint8 mask of n elements from stream element offset: Philox word < floor(keep * 2^32)",
        py::arg("mask"), py::arg("n"), py::arg("offset"), py::arg("keep"), py::arg("seed"), py::arg("layer"), py::arg("step"),
        py::arg("stream"), release_gil());
    m.def(
        "random_normal",
        [](ptr out, size_t n, size_t offset, uint64_t seed, uint32_t layer, uint32_t step,
           ptr stream) {
            random_normal(dev(out), n, offset, seed, layer, step, as_stream(stream));
        },
        "n float32 N(0, 1) draws from stream element offset, Box-Muller on Philox word pairs",
        py::arg("out"), py::arg("n"), py::arg("offset"), py::arg("seed"), py::arg("layer"), py::arg("step"), py::arg("stream"), release_gil());
    m.def(
        "dropout_forward",
        [](ptr x, ptr mask, ptr y, size_t n, float keep, ptr stream) {
            dropout_apply("dropout_forward", dev(x), dev<const uint8_t>(mask), dev(y), n, keep,
                          as_stream(stream));
        },
        "y = x * mask / keep", py::arg("x"), py::arg("mask"), py::arg("y"), py::arg("n"),
        py::arg("keep"), py::arg("stream"), release_gil());
    m.def(
        "dropout_backward",
        [](ptr dy, ptr mask, ptr dx, size_t n, float keep, ptr stream) {
            dropout_apply("dropout_backward", dev(dy), dev<const uint8_t>(mask), dev(dx), n, keep,
                          as_stream(stream));
        },
        "dx = dy * mask / keep", py::arg("dy"), py::arg("mask"), py::arg("dx"), py::arg("n"),
        py::arg("keep"), py::arg("stream"), release_gil());

    m.def(
        "sgd_update",
        [](ptr w, ptr v, ptr g, size_t n, float eps, float mom, float wc_eps, ptr stream) {
            sgd_update(dev(w), dev(v), dev(g), n, eps, mom, wc_eps, as_stream(stream));
        },
        "in place: v = mom*v - wc_eps*w - eps*g; w += v (wc_eps = wc * eps)", py::arg("w"),
        py::arg("v"), py::arg("g"), py::arg("n"), py::arg("eps"), py::arg("mom"),
        py::arg("wc_eps"), py::arg("stream"), release_gil());
}

void bind_reductions(py::module_& m) {
    m.def("reduce_workspace_floats", &reduce_workspace_floats,
          "workspace floats for bias_backward / sum2_forward on (outer, mid, inner)",
          py::arg("outer"), py::arg("mid"), py::arg("inner"));
    m.def(
        "bias_forward",
        [](ptr y, ptr b, ptr out, size_t outer, size_t nb, size_t inner, ptr stream) {
            bias_forward(dev(y), dev(b), dev(out), outer, nb, inner, as_stream(stream));
        },
        "out = y + b for y viewed as (outer, nb, inner)", py::arg("y"), py::arg("b"),
        py::arg("out"), py::arg("outer"), py::arg("nb"), py::arg("inner"), py::arg("stream"),
        release_gil());
    m.def(
        "bias_backward",
        [](ptr dy, ptr db, ptr workspace, size_t outer, size_t nb, size_t inner, ptr stream) {
            bias_backward(dev(dy), dev(db), dev(workspace), outer, nb, inner, as_stream(stream));
        },
        "db = dy (outer, nb, inner) summed over outer and inner", py::arg("dy"), py::arg("db"),
        py::arg("workspace"), py::arg("outer"), py::arg("nb"), py::arg("inner"),
        py::arg("stream"), release_gil());
    m.def(
        "sum2_forward",
        [](ptr x, ptr out, ptr workspace, size_t N, size_t D, ptr stream) {
            reduce_outer_inner("sum2_forward", dev(x), dev(out), dev(workspace), 1, N, D, true,
                               0.5f, as_stream(stream));
        },
        "out[n] = 0.5 * sum(x[n]^2) for x (N, D); workspace: reduce_workspace_floats(1, N, D)",
        py::arg("x"), py::arg("out"), py::arg("workspace"), py::arg("N"), py::arg("D"),
        py::arg("stream"), release_gil());
    m.def(
        "sum2_backward",
        [](ptr x, ptr out, size_t n, float scale, ptr stream) {
            scale_copy("sum2_backward", dev(x), dev(out), n, scale, as_stream(stream));
        },
        "out = scale * x", py::arg("x"), py::arg("out"), py::arg("n"), py::arg("scale"),
        py::arg("stream"), release_gil());
    m.def("maxnorm_workspace_floats", &maxnorm_workspace_floats,
          "workspace floats for maxnorm on w viewed as (outer, units, inner)", py::arg("outer"),
          py::arg("units"), py::arg("inner"));
    m.def(
        "maxnorm",
        [](ptr w, ptr workspace, size_t outer, size_t units, size_t inner, float wball,
           ptr stream) {
            maxnorm(dev(w), dev(workspace), outer, units, inner, wball, as_stream(stream));
        },
        "in place: scale each unit's slice of w (outer, units, inner) to L2 norm <= wball",
        py::arg("w"), py::arg("workspace"), py::arg("outer"), py::arg("units"), py::arg("inner"),
        py::arg("wball"), py::arg("stream"), release_gil());
}

void bind_pool(py::module_& m) {
#define CONVNET_POOL_ARGS                                                                          \
    py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("OH"), py::arg("OW"),         \
        py::arg("size"), py::arg("stride"), py::arg("start"), py::arg("stream"), release_gil()
    m.def(
        "maxpool_forward",
        [](ptr x, ptr y, int N, int C, int H, int W, int OH, int OW, int size, int stride,
           int start, ptr stream) {
            maxpool_forward(dev(x), dev(y), PoolShape{N, C, H, W, OH, OW, size, stride, start},
                            as_stream(stream));
        },
        "y = window maxima", py::arg("x"), py::arg("y"), CONVNET_POOL_ARGS);
    m.def(
        "maxpool_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, int N, int C, int H, int W, int OH, int OW, int size,
           int stride, int start, ptr stream) {
            maxpool_backward(dev(x), dev(y), dev(dy), dev(dx),
                             PoolShape{N, C, H, W, OH, OW, size, stride, start},
                             as_stream(stream));
        },
        "dx: each window's dy to every input equal to its max", py::arg("x"), py::arg("y"),
        py::arg("dy"), py::arg("dx"), CONVNET_POOL_ARGS);
    m.def(
        "avgpool_forward",
        [](ptr x, ptr y, int N, int C, int H, int W, int OH, int OW, int size, int stride,
           int start, ptr stream) {
            avgpool_forward(dev(x), dev(y), PoolShape{N, C, H, W, OH, OW, size, stride, start},
                            as_stream(stream));
        },
        "y = window means over the clipped windows", py::arg("x"), py::arg("y"),
        CONVNET_POOL_ARGS);
    m.def(
        "avgpool_backward",
        [](ptr dy, ptr dx, int N, int C, int H, int W, int OH, int OW, int size, int stride,
           int start, ptr stream) {
            avgpool_backward(dev(dy), dev(dx), PoolShape{N, C, H, W, OH, OW, size, stride, start},
                             as_stream(stream));
        },
        "dx: each window's dy / count spread over its pixels", py::arg("dy"), py::arg("dx"),
        CONVNET_POOL_ARGS);
#undef CONVNET_POOL_ARGS
}

void bind_norm(py::module_& m) {
    m.def(
        "norm_workspace_floats",
        [](const std::string& op, int N, int C, int H, int W, int size) {
            return norm_workspace_floats(op.c_str(), NormShape{N, C, H, W, size, 0.f, 0.f, 0.f});
        },
        "workspace floats of a normalization op (lrn/rnorm/cnorm _forward/_backward)",
        py::arg("op"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("size"));
#define CONVNET_NORM_ARGS                                                                          \
    py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("size"), py::arg("alpha"),    \
        py::arg("beta"), py::arg("k"), py::arg("stream"), release_gil()
#define CONVNET_NORM_SHAPE NormShape{N, C, H, W, size, alpha, beta, k}
    m.def(
        "lrn_forward",
        [](ptr x, ptr y, int N, int C, int H, int W, int size, float alpha, float beta, float k,
           ptr stream) { lrn_forward(dev(x), dev(y), CONVNET_NORM_SHAPE, as_stream(stream)); },
        "cross-map response normalization", py::arg("x"), py::arg("y"), CONVNET_NORM_ARGS);
    m.def(
        "lrn_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, ptr workspace, int N, int C, int H, int W, int size,
           float alpha, float beta, float k, ptr stream) {
            lrn_backward(dev(x), dev(y), dev(dy), dev(dx), dev(workspace), CONVNET_NORM_SHAPE,
                         as_stream(stream));
        },
        "dx of lrn_forward", py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("workspace"), CONVNET_NORM_ARGS);
    m.def(
        "rnorm_forward",
        [](ptr x, ptr y, int N, int C, int H, int W, int size, float alpha, float beta, float k,
           ptr stream) { rnorm_forward(dev(x), dev(y), CONVNET_NORM_SHAPE, as_stream(stream)); },
        "same-map response normalization", py::arg("x"), py::arg("y"), CONVNET_NORM_ARGS);
    m.def(
        "rnorm_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, ptr workspace, int N, int C, int H, int W, int size,
           float alpha, float beta, float k, ptr stream) {
            rnorm_backward(dev(x), dev(y), dev(dy), dev(dx), dev(workspace), CONVNET_NORM_SHAPE,
                           as_stream(stream));
        },
        "dx of rnorm_forward", py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("workspace"), CONVNET_NORM_ARGS);
    m.def(
        "cnorm_forward",
        [](ptr x, ptr y, ptr workspace, int N, int C, int H, int W, int size, float alpha,
           float beta, float k, ptr stream) {
            cnorm_forward(dev(x), dev(y), dev(workspace), CONVNET_NORM_SHAPE, as_stream(stream));
        },
        "contrast normalization", py::arg("x"), py::arg("y"), py::arg("workspace"),
        CONVNET_NORM_ARGS);
    m.def(
        "cnorm_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, ptr workspace, int N, int C, int H, int W, int size,
           float alpha, float beta, float k, ptr stream) {
            cnorm_backward(dev(x), dev(y), dev(dy), dev(dx), dev(workspace), CONVNET_NORM_SHAPE,
                           as_stream(stream));
        },
        "exact dx of cnorm_forward", py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("dx"),
        py::arg("workspace"), CONVNET_NORM_ARGS);
#undef CONVNET_NORM_SHAPE
#undef CONVNET_NORM_ARGS
}

void bind_softmax(py::module_& m) {
    m.def(
        "softmax_forward",
        [](ptr x, ptr p, int N, int K, ptr stream) {
            softmax_forward(dev(x), dev(p), N, K, as_stream(stream));
        },
        "row softmax of x (N, K)", py::arg("x"), py::arg("p"), py::arg("N"), py::arg("K"),
        py::arg("stream"), release_gil());
    m.def(
        "softmax_backward",
        [](ptr p, ptr dp, ptr dx, int N, int K, ptr stream) {
            softmax_backward(dev(p), dev(dp), dev(dx), N, K, as_stream(stream));
        },
        "dx = p * (dp - sum_row(dp * p))", py::arg("p"), py::arg("dp"), py::arg("dx"),
        py::arg("N"), py::arg("K"), py::arg("stream"), release_gil());
    m.def(
        "logreg_forward",
        [](ptr p, ptr labels, ptr nll, ptr wrong1, ptr wrongk, int N, int K, int topk,
           ptr stream) {
            logreg_forward(dev(p), dev<const int32_t>(labels), dev(nll), dev(wrong1), dev(wrongk),
                           N, K, topk, as_stream(stream));
        },
        "per case: -log p[label], top-1 wrong, top-k wrong (labels int32)", py::arg("p"),
        py::arg("labels"), py::arg("nll"), py::arg("wrong1"), py::arg("wrongk"), py::arg("N"),
        py::arg("K"), py::arg("topk"), py::arg("stream"), release_gil());
    m.def(
        "logreg_backward",
        [](ptr p, ptr labels, ptr dp, int N, int K, float scale, ptr stream) {
            logreg_backward(dev(p), dev<const int32_t>(labels), dev(dp), N, K, scale,
                            as_stream(stream));
        },
        "dp = -scale / p at the label, 0 elsewhere", py::arg("p"), py::arg("labels"),
        py::arg("dp"), py::arg("N"), py::arg("K"), py::arg("scale"), py::arg("stream"),
        release_gil());
    m.def(
        "softmax_logreg_backward",
        [](ptr p, ptr labels, ptr dx, int N, int K, float scale, ptr stream) {
            softmax_logreg_backward(dev(p), dev<const int32_t>(labels), dev(dx), N, K, scale,
                                    as_stream(stream));
        },
        "dx = scale * (p - onehot(label))", py::arg("p"), py::arg("labels"), py::arg("dx"),
        py::arg("N"), py::arg("K"), py::arg("scale"), py::arg("stream"), release_gil());
}

void bind_stage(py::module_& m) {
    m.def(
        "crops_to_float",
        [](ptr crops, ptr mean, ptr shift, ptr x, int N, int h, int w, ptr stream) {
            crops_to_float(dev<const uint8_t>(crops), dev(mean), dev(shift), dev(x), N, h, w,
                           as_stream(stream));
        },
        "x (N, 3, h, w) = RGB of uint8 RGBX crops (N, h, w, 4) - mean (3, h, w) + shift (N, 3)",
        py::arg("crops"), py::arg("mean"), py::arg("shift"), py::arg("x"), py::arg("N"),
        py::arg("h"), py::arg("w"), py::arg("stream"), release_gil());
}

void bind_cc2(py::module_& m) {
#define CONVNET_CMPOOL_ARGS                                                                        \
    py::arg("N"), py::arg("C"), py::arg("outputs"), py::arg("inner"), py::arg("size"),            \
        py::arg("stride"), py::arg("start"), py::arg("stream"), release_gil()
#define CONVNET_CMPOOL_SHAPE CmpoolShape{N, C, outputs, inner, size, stride, start}
    m.def(
        "cmpool_forward",
        [](ptr x, ptr y, int N, int C, int outputs, size_t inner, int size, int stride, int start,
           ptr stream) { cmpool_forward(dev(x), dev(y), CONVNET_CMPOOL_SHAPE, as_stream(stream)); },
        "y (N, outputs, inner) = maxima of x (N, C, inner) over windows of channels",
        py::arg("x"), py::arg("y"), CONVNET_CMPOOL_ARGS);
    m.def(
        "cmpool_backward",
        [](ptr x, ptr y, ptr dy, ptr dx, int N, int C, int outputs, size_t inner, int size,
           int stride, int start, ptr stream) {
            cmpool_backward(dev(x), dev(y), dev(dy), dev(dx), CONVNET_CMPOOL_SHAPE,
                            as_stream(stream));
        },
        "dx: each window's dy to every channel equal to its max", py::arg("x"), py::arg("y"),
        py::arg("dy"), py::arg("dx"), CONVNET_CMPOOL_ARGS);
#undef CONVNET_CMPOOL_SHAPE
#undef CONVNET_CMPOOL_ARGS
    m.def(
        "sum_forward",
        [](ptr x, ptr y, size_t outer, size_t groups, int stride, size_t inner, ptr stream) {
            sum_forward(dev(x), dev(y), outer, groups, stride, inner, as_stream(stream));
        },
        "y (outer, groups, inner) = sums of stride consecutive entries of x's middle axis",
        py::arg("x"), py::arg("y"), py::arg("outer"), py::arg("groups"), py::arg("stride"),
        py::arg("inner"), py::arg("stream"), release_gil());
    m.def(
        "sum_backward",
        [](ptr dy, ptr dx, size_t outer, size_t groups, int stride, size_t inner, ptr stream) {
            sum_backward(dev(dy), dev(dx), outer, groups, stride, inner, as_stream(stream));
        },
        "dx: each dy repeated stride times along the middle axis", py::arg("dy"), py::arg("dx"),
        py::arg("outer"), py::arg("groups"), py::arg("stride"), py::arg("inner"),
        py::arg("stream"), release_gil());
#define CONVNET_CROP_ARGS                                                                          \
    py::arg("planes"), py::arg("H"), py::arg("W"), py::arg("OH"), py::arg("OW"), py::arg("y0"),   \
        py::arg("x0"), py::arg("stream"), release_gil()
    m.def(
        "crop_forward",
        [](ptr x, ptr y, size_t planes, int H, int W, int OH, int OW, int y0, int x0, ptr stream) {
            crop_forward(dev(x), dev(y), CropShape{planes, H, W, OH, OW, y0, x0},
                         as_stream(stream));
        },
        "y = the OH x OW window at (y0, x0) of each map", py::arg("x"), py::arg("y"),
        CONVNET_CROP_ARGS);
    m.def(
        "crop_backward",
        [](ptr dy, ptr dx, size_t planes, int H, int W, int OH, int OW, int y0, int x0,
           ptr stream) {
            crop_backward(dev(dy), dev(dx), CropShape{planes, H, W, OH, OW, y0, x0},
                          as_stream(stream));
        },
        "dx = dy in the window, 0 elsewhere", py::arg("dy"), py::arg("dx"), CONVNET_CROP_ARGS);
#undef CONVNET_CROP_ARGS
    m.def(
        "crossent_forward",
        [](ptr p, ptr labels, ptr cost, ptr wrong, int N, int K, ptr stream) {
            crossent_forward(dev(p), dev(labels), dev(cost), dev(wrong), N, K, as_stream(stream));
        },
        "per case: -sum t safelog(p), 1 - chance a maximal class is labelled", py::arg("p"),
        py::arg("labels"), py::arg("cost"), py::arg("wrong"), py::arg("N"), py::arg("K"),
        py::arg("stream"), release_gil());
    m.def(
        "crossent_backward",
        [](ptr p, ptr labels, ptr dp, size_t n, float scale, ptr stream) {
            crossent_backward(dev(p), dev(labels), dev(dp), n, scale, as_stream(stream));
        },
        "dp = -scale * t / p (0 where t = 0)", py::arg("p"), py::arg("labels"), py::arg("dp"),
        py::arg("n"), py::arg("scale"), py::arg("stream"), release_gil());
    m.def(
        "softmax_crossent_backward",
        [](ptr p, ptr labels, ptr dx, int N, int K, float scale, ptr stream) {
            softmax_crossent_backward(dev(p), dev(labels), dev(dx), N, K, scale,
                                      as_stream(stream));
        },
        "dx = scale * (p * sum_row(t) - t)", py::arg("p"), py::arg("labels"), py::arg("dx"),
        py::arg("N"), py::arg("K"), py::arg("scale"), py::arg("stream"), release_gil());
    m.def(
        "bce_forward",
        [](ptr y, ptr labels, ptr cost, ptr wrong, ptr top1_wrong, int N, int K,
           float pos_weight, ptr stream) {
            bce_forward(dev(y), dev(labels), dev(cost), dev(wrong), dev(top1_wrong), N, K,
                        pos_weight, as_stream(stream));
        },
        "per case: binomial cross-entropy, fraction wrong at 0.5, top-1 wrong", py::arg("y"),
        py::arg("labels"), py::arg("cost"), py::arg("wrong"), py::arg("top1_wrong"),
        py::arg("N"), py::arg("K"), py::arg("pos_weight"), py::arg("stream"), release_gil());
    // The bce gradients: (y, labels, out, n, scale, pos_weight, stream).
#define CONVNET_BCE_GRAD_ARGS                                                                      \
    py::arg("y"), py::arg("labels"), py::arg("out"), py::arg("n"), py::arg("scale"),              \
        py::arg("pos_weight"), py::arg("stream"), release_gil()
    m.def(
        "bce_backward",
        [](ptr y, ptr labels, ptr out, size_t n, float scale, float w, ptr stream) {
            bce_backward("bce_backward", dev(y), dev(labels), dev(out), n, scale, w,
                         as_stream(stream));
        },
        "dy = -scale * (w t / y - (1 - t) / (1 - y))", CONVNET_BCE_GRAD_ARGS);
    m.def(
        "dce_backward",
        [](ptr y, ptr labels, ptr out, size_t n, float scale, float w, ptr stream) {
            bce_backward("dce_backward", dev(y), dev(labels), dev(out), n, scale, w,
                         as_stream(stream));
        },
        "bce_backward's dy", CONVNET_BCE_GRAD_ARGS);
    m.def(
        "logistic_bce_backward",
        [](ptr y, ptr labels, ptr out, size_t n, float scale, float w, ptr stream) {
            logistic_bce_backward(dev(y), dev(labels), dev(out), n, scale, w, as_stream(stream));
        },
        "dx = -scale * (w t (1 - y) - (1 - t) y)", CONVNET_BCE_GRAD_ARGS);
#undef CONVNET_BCE_GRAD_ARGS
    m.def(
        "dce_forward",
        [](ptr y, ptr labels, ptr cost, ptr wrong, ptr counts, int N, int K, float pos_weight,
           ptr stream) {
            dce_forward(dev(y), dev(labels), dev(cost), dev(wrong), dev(counts), N, K,
                        pos_weight, as_stream(stream));
        },
        "bce_forward's cost and wrong, and per-class counts (K, 3)", py::arg("y"),
        py::arg("labels"), py::arg("cost"), py::arg("wrong"), py::arg("counts"), py::arg("N"),
        py::arg("K"), py::arg("pos_weight"), py::arg("stream"), release_gil());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "convnet's CUDA kernels (raw device pointers, float32, NCHW)";
#ifdef CONVNET_WITH_CUDA
    m.attr("built_with_cuda") = true;
    m.attr("cuda_architectures") = CONVNET_CUDA_ARCHITECTURES;
    m.def(
        "cuda_device_count",
        [] {
            int count = 0;
            if (cudaGetDeviceCount(&count) == cudaSuccess) return count;
            cudaGetLastError();  // clear the error so no later launch reports it as its own
            return 0;
        },
        "GPUs the CUDA runtime sees (0 when there is no driver or device); never raises");
#else
    m.attr("built_with_cuda") = false;
    m.attr("cuda_architectures") = "";
    m.def("cuda_device_count", [] { return 0; }, "0: this build has no CUDA");
#endif
    bind_conv(m);
    bind_elementwise(m);
    bind_reductions(m);
    bind_pool(m);
    bind_norm(m);
    bind_softmax(m);
    bind_stage(m);
    bind_cc2(m);
}
