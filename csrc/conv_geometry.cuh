// The sizes of a conv/local configuration, validated once on the host and precomputed for the
// kernels (conv.cu, local.cu).
#pragma once
#include <string>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"

namespace convgemm {

// 1 + ceil((2*padding + img - filter_size) / stride), as cuda-convnet (OPS.md).
inline int conv_output_size(int img, int filter_size, int stride, int padding) {
    const int span = 2 * padding + img - filter_size;
    return 1 + (span >= 0 ? (span + stride - 1) / stride : -((-span) / stride));
}

struct ConvGeometry {
    int N, C, H, W, F, fs, OH, OW, stride, padding, groups;
    int Cg, Fg;    // channels and filters per group
    int HW, P;     // input pixels, output positions per image
    int taps, K;   // fs*fs, and the reduction length of one filter: Cg * taps
    FastDiv div_taps, div_fs, div_HW, div_W, div_P, div_OW, div_Fg;
};

// Validate `s` (throws std::invalid_argument naming `op`) and precompute its sizes.
// local: the weights are the local layout (OH, OW, F, C/groups, fs, fs).
inline ConvGeometry make_geometry(const ConvShape& s, const char* op, bool local) {
    using convnet::require;
    require(s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.F >= 1 && s.fs >= 1, op,
            "every size must be >= 1");
    require(s.stride >= 1 && s.padding >= 0 && s.groups >= 1, op,
            "stride and groups must be >= 1 and padding >= 0");
    require(s.C % s.groups == 0 && s.F % s.groups == 0, op,
            "channels and filters must be divisible by groups");
    require(s.fs <= 2 * s.padding + (s.H < s.W ? s.H : s.W), op,
            "filter larger than the padded image");
    require(s.OH == conv_output_size(s.H, s.fs, s.stride, s.padding) &&
                s.OW == conv_output_size(s.W, s.fs, s.stride, s.padding),
            op,
            "output size " + std::to_string(s.OH) + "x" + std::to_string(s.OW) +
                " does not match 1 + ceil((2*padding + img - fs) / stride)");
    ConvGeometry g;
    g.N = s.N, g.C = s.C, g.H = s.H, g.W = s.W, g.F = s.F, g.fs = s.fs;
    g.OH = s.OH, g.OW = s.OW, g.stride = s.stride, g.padding = s.padding, g.groups = s.groups;
    g.Cg = s.C / s.groups;
    g.Fg = s.F / s.groups;
    g.HW = s.H * s.W;
    g.P = s.OH * s.OW;
    g.taps = s.fs * s.fs;
    g.K = g.Cg * g.taps;
    const size_t weights = static_cast<size_t>(s.F) * g.K * (local ? static_cast<size_t>(g.P) : 1);
    require_int_sized(static_cast<size_t>(s.N) * s.C * g.HW, op, "x");
    require_int_sized(static_cast<size_t>(s.N) * s.F * g.P, op, "y");
    require_int_sized(weights, op, "w");
    // Offsets like oy*stride - padding + fs must stay far from the kFarAway sentinel.
    // (and filter offsets ky, kx are packed in 16 bits in some kernels).
    require(s.H + s.W + 2 * s.padding + 2 * s.fs < (1 << 26) && s.stride < (1 << 12) &&
                s.fs < (1 << 15),
            op, "image, padding, stride or filter too large");
    g.div_taps = FastDiv(g.taps);
    g.div_fs = FastDiv(g.fs);
    g.div_HW = FastDiv(g.HW);
    g.div_W = FastDiv(g.W);
    g.div_P = FastDiv(g.P);
    g.div_OW = FastDiv(g.OW);
    g.div_Fg = FastDiv(g.Fg);
    return g;
}

// The image patches the forward passes of conv and local gather: a patch row starts at image
// position (iy0, ix0) of one image and group; tap k = (c, ky, kx) of a filter is an offset into
// it. Taps outside the image read zero; kFarAway coordinates make every tap of a row (or every
// row of a tap past the reduction) read zero.
struct PatchRow { int base, iy0, ix0; };
struct PatchTap { int off, ky, kx; };

__device__ inline PatchTap patch_tap(const ConvGeometry& s, int k, int k_end) {
    if (k >= k_end) return {0, kFarAway, kFarAway};
    int c, ky;
    const int t = s.div_taps.divmod(k, c);
    const int kx = s.div_fs.divmod(t, ky);
    return {c * s.HW + ky * s.W + kx, ky, kx};
}

__device__ inline const float* patch_address(const float* x, const ConvGeometry& s,
                                            const PatchRow& r, const PatchTap& c) {
    return inside(r.iy0 + c.ky, r.ix0 + c.kx, s.H, s.W) ? x + r.base + c.off : nullptr;
}

// The algo checked (ValueError naming op and algo) and returned as the enum.
inline ConvAlgo checked_algo(const char* op, int algo, const ConvShape& shape) {
    const char* why = conv_algo_unsupported(op, algo, shape);
    if (why != nullptr) {
        const std::string name = algo >= 0 && algo < kConvAlgos ? kConvAlgoNames[algo]
                                                                : std::to_string(algo);
        convnet::require(false, op, "algo " + name + ": " + why);
    }
    return static_cast<ConvAlgo>(algo);
}

}  // namespace convgemm
