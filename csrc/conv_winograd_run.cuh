// The Winograd conv passes (conv.cu's winograd2 / winograd4 algos): transform x and w (or dy)
// into alpha x alpha planes, one batched GEMM per plane on conv_gemm.cuh's engine, transform
// back (the kernels and GEMM ops are in conv_winograd.cuh); backward data is a forward pass.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <type_traits>

#include "common.cuh"
#include "conv.h"
#include "conv_gemm.cuh"
#include "conv_split.cuh"
#include "conv_winograd.cuh"
#include "conv_workspace.cuh"

namespace convwino {

using convgemm::ConvGeometry;

// The transformed planes of one Winograd call, at most (1 GiB; more would cost more traffic than
// the multiplications it saves, e.g. AlexNet conv2's 5x5 at alpha 6: 1.3 GB).
constexpr size_t kMaxWinogradFloats = size_t(256) << 20;

// Backward data of a stride-1 conv is the forward conv of dy (F channels, OH x OW) with the
// filters flipped and their two channel axes swapped (flip_filters_kernel), padded by
// fs - 1 - padding, giving the H x W image:
//   dx[c][h][w] = sum over f, a, b of dy[f][h + padding - a][w + padding - b] w[f][c][a][b].
template <typename Shape>
ConvShape transposed_shape(const Shape& s) {
    return {s.N, s.F, s.OH, s.OW, s.C, s.fs, s.H, s.W, 1, s.fs - 1 - s.padding, s.groups};
}

// Why Winograd F(m x m, fs x fs) cannot run conv shape s, or nullptr: it needs stride 1,
// fs >= 2 and alpha = m + fs - 1 <= kMaxAlpha (3x3 filters: m = 2 or 4; 5x5: m = 2), and the
// transformed planes within 31-bit offsets and kMaxWinogradFloats. Backward data runs the
// forward conv of transposed_shape(s), which needs padding <= fs - 1.
inline const char* winograd_unsupported(const ConvShape& s, int m, bool backward_data = false) {
    const int alpha = m + s.fs - 1;
    if (s.stride != 1) return "Winograd needs stride 1";
    if (s.fs < 2) return "Winograd needs filters of at least 2x2";
    if (alpha > convwino::kMaxAlpha) return "Winograd needs m + fs - 1 <= 6";
    if (backward_data) {
        if (s.padding > s.fs - 1) return "Winograd needs padding <= fs - 1 for backward data";
        return winograd_unsupported(transposed_shape(s), m);
    }
    const size_t tiles = static_cast<size_t>(s.N) * convnet::ceil_div(s.OH, m) *
                         convnet::ceil_div(s.OW, m);
    const size_t a2 = static_cast<size_t>(alpha) * alpha;
    const size_t widest = static_cast<size_t>(s.C > s.F ? s.C : s.F);
    if (a2 * widest * tiles >= (size_t(1) << 31)) return "Winograd planes past 31-bit offsets";
    const size_t planes = a2 * ((static_cast<size_t>(s.C) + s.F) * tiles +
                                static_cast<size_t>(s.F) * (s.C / s.groups));
    return planes <= kMaxWinogradFloats ? nullptr : "Winograd planes larger than 1 GiB";
}

template <int ALPHA>
void winograd_forward(const float* x, const float* w, float* y, const ConvGeometry& s, int m,
                      cudaStream_t stream, const char* name) {
    using namespace convwino;
    const Tiling t = make_tiling(s, m);
    const Matrices mt = make_matrices(m, s.fs);
    const size_t a2 = ALPHA * ALPHA;
    const size_t v_size = a2 * s.C * t.NT, u_size = a2 * s.F * s.Cg, mo_size = a2 * s.F * t.NT;
    convnet::Workspace ws((v_size + u_size + mo_size) * sizeof(float), stream, name);
    float* planes = ws.get();
    float* u = planes + v_size;
    float* mo = u + u_size;
    const int threads = convnet::kThreads;
    const unsigned in_grid = convnet::grid_for(static_cast<size_t>(s.C) * t.NT);
    input_transform_kernel<ALPHA><<<in_grid, threads, 0, stream>>>(x, planes, t, mt);
    convnet::check_launch(name);
    const unsigned w_grid = convnet::grid_for(static_cast<size_t>(s.F) * s.Cg);
    filter_transform_kernel<ALPHA><<<w_grid, threads, 0, stream>>>(w, u, t, mt);
    convnet::check_launch(name);
    const FwdOp op = convgemm::make_op<FwdOp>(t.NT, s.Fg, {planes, t}, {u, t}, {mo, t});
    convgemm::launch_gemm_auto(op, static_cast<int>(a2) * s.groups, stream, name);
    const unsigned out_grid = convnet::grid_for(static_cast<size_t>(s.F) * t.NT);
    output_transform_kernel<ALPHA><<<out_grid, threads, 0, stream>>>(mo, y, t, mt);
    convnet::check_launch(name);
}

template <int ALPHA>
void winograd_backward_filter(const float* x, const float* dy, float* dw, const ConvGeometry& s,
                              int m, cudaStream_t stream, const char* name) {
    using namespace convwino;
    const Tiling t = make_tiling(s, m);
    const Matrices mt = make_matrices(s.fs, m);
    const size_t a2 = ALPHA * ALPHA;
    const size_t x_size = a2 * s.C * t.NT, d_size = a2 * s.F * t.NT;
    const size_t out_floats = a2 * s.F * s.Cg;  // one split's partial M[xi][f][c]
    const convgemm::Tile tile =
        convgemm::choose_tile(s.Cg, s.Fg, static_cast<int>(a2) * s.groups, false, false);
    const size_t tiles = convnet::ceil_div(s.Cg, convgemm::tile_rows(tile)) *
                         convnet::ceil_div(s.Fg, convgemm::tile_cols(tile)) * s.groups * a2;
    const int resident =
        convnet::sm_count() * convgemm::resident_blocks_per_sm<convwino::FilterOp>(tile);
    const convsplit::Split split = convsplit::split_by_waves({tiles, t.NT, out_floats, tile, resident});
    const size_t p_size = static_cast<size_t>(split.splits) * out_floats;
    convnet::Workspace ws((x_size + d_size + p_size) * sizeof(float), stream, name);
    float* planes = ws.get();
    float* grads = planes + x_size;
    float* partial = grads + d_size;
    const int threads = convnet::kThreads;
    const unsigned in_grid = convnet::grid_for(static_cast<size_t>(s.C) * t.NT);
    input_transform_kernel<ALPHA><<<in_grid, threads, 0, stream>>>(x, planes, t, mt);
    convnet::check_launch(name);
    const unsigned dy_grid = convnet::grid_for(static_cast<size_t>(s.F) * t.NT);
    grad_transform_kernel<ALPHA><<<dy_grid, threads, 0, stream>>>(dy, grads, t, mt);
    convnet::check_launch(name);
    convwino::FilterOp op =
        convgemm::make_op<convwino::FilterOp>(s.Cg, s.Fg, {planes, t}, {grads, t}, {partial, t});
    op.chunk = split.chunk;
    convgemm::launch_gemm_with(tile, op, split.splits * static_cast<int>(a2) * s.groups, stream,
                               name);
    const unsigned out_grid = convnet::grid_for(static_cast<size_t>(s.F) * s.Cg);
    filter_output_transform_kernel<ALPHA>
        <<<out_grid, threads, 0, stream>>>(partial, dw, split.splits, t, mt);
    convnet::check_launch(name);
}

// dx from dy and w: the forward Winograd conv of transposed_shape(s) on the flipped filters.
template <int ALPHA>
void winograd_backward_data(const float* dy, const float* w, float* dx, const ConvGeometry& s,
                            int m, cudaStream_t stream, const char* name) {
    const ConvGeometry t = convgemm::make_geometry(transposed_shape(s), name, false);
    const size_t filter_floats = static_cast<size_t>(s.C) * s.Fg * s.taps;
    convnet::Workspace flipped(filter_floats * sizeof(float), stream, name);
    flip_filters_kernel<<<convnet::grid_for(filter_floats), convnet::kThreads, 0, stream>>>(
        w, flipped.get(), s);
    convnet::check_launch(name);
    winograd_forward<ALPHA>(dy, flipped.get(), dx, t, m, stream, name);
}

enum class Pass { Forward, BackwardData, BackwardFilter };

// The Winograd version of PASS with m x m output tiles (a, b: the pass's two inputs in the
// launcher's order); the caller has checked winograd_unsupported.
template <Pass PASS>
void run_winograd(const float* a, const float* b, float* out, const ConvGeometry& s, int m,
                  cudaStream_t stream, const char* name) {
    auto run = [&](auto alpha) {
        constexpr int ALPHA = decltype(alpha)::value;
        if constexpr (PASS == Pass::Forward)
            winograd_forward<ALPHA>(a, b, out, s, m, stream, name);
        else if constexpr (PASS == Pass::BackwardData)
            winograd_backward_data<ALPHA>(a, b, out, s, m, stream, name);
        else
            winograd_backward_filter<ALPHA>(a, b, out, s, m, stream, name);
    };
    switch (m + s.fs - 1) {
        case 3: run(std::integral_constant<int, 3>()); break;
        case 4: run(std::integral_constant<int, 4>()); break;
        case 5: run(std::integral_constant<int, 5>()); break;
        default: run(std::integral_constant<int, 6>()); break;
    }
}

}  // namespace convwino
