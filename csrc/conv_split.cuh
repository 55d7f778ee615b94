// Split-K for the backward-filter GEMMs (conv.cu, conv_winograd_run.cuh): the reduction over
// r = (n, oy, ox) is cut into slices, each block sums one slice of one output tile into its own
// partial result, and a second kernel adds the partials in a fixed order (deterministic).
// Host code only: how many slices.
#pragma once
#include <cstddef>

#include "common.cuh"
#include "conv_gemm.cuh"

namespace convsplit {

constexpr int kMinChunk = 512;    // reduction elements per split, at least
constexpr int kMaxSplits = 256;
constexpr size_t kMaxWorkspaceFloats = size_t(64) << 20;  // 256 MiB

// The reduction [0, N*OH*OW) in `splits` slices of `chunk` elements (a multiple of BK; the last
// slice may be shorter).
struct Split {
    int splits, chunk;
};

inline Split split_of(int reduction, size_t splits) {
    const int bk = convgemm::TileLarge::BK;
    const int chunk = static_cast<int>(
        convnet::ceil_div(convnet::ceil_div(reduction, splits < 1 ? 1 : splits), bk) * bk);
    return {static_cast<int>(convnet::ceil_div(reduction, chunk)), chunk};
}

// The most splits allowed: none shorter than kMinChunk, the workspace (`out_floats` per split)
// within kMaxWorkspaceFloats.
inline size_t max_splits(int reduction, size_t out_floats) {
    size_t most = convnet::ceil_div(reduction, kMinChunk);
    const size_t by_memory = kMaxWorkspaceFloats / (out_floats > 0 ? out_floats : 1);
    if (most > by_memory) most = by_memory;
    if (most > static_cast<size_t>(kMaxSplits)) most = kMaxSplits;
    return most < 1 ? 1 : most;
}

// A split-K GEMM to size: `tiles` output tiles of `tile` (all grid z's together), a reduction of
// `reduction` elements, a result of `out_floats` floats per split, `resident` blocks at once.
struct SplitProblem {
    size_t tiles;
    int reduction;
    size_t out_floats;
    convgemm::Tile tile;
    int resident;
};

// Whole waves. Every block of the split-K grid does the same work (one BM x BN tile over one
// chunk of the reduction), so the grid runs in waves of `resident` blocks (SMs x the blocks that
// fit on one), and a wave that is only partly full takes nearly as long as a full one (its
// blocks run a little faster with an SM to themselves, far from proportionally). The old
// rule's ~4 blocks per SM gave AlexNet conv2 and conv3 540 blocks on an H100's 264 slots: 2.05
// waves of work in 3 waves of time. So among the allowed split counts s, take the one with the
// least estimated time, in units of one BK step of one block:
//
//     ceil(tiles * s / resident) * (chunk(s) / BK + kBlockOverheadSteps)  +  s * split_cost
//
// split_cost: the split sum's traffic (each split writes out_floats, the sum reads them back)
// as GEMM steps: 8*out_floats bytes at kFlopPerByte (the GEMM's FLOP rate over DRAM bandwidth,
// H100: ~30 TFLOP/s / ~2.5 TB/s), over the FLOPs of one step of the whole device,
// resident * 2*BM*BN*BK. On an H100 (264 slots of the 128x128 and 128x64 tiles) this picks
// 13 splits for conv2 (260 blocks, 1 wave), 19 for conv3 (1026 blocks, 3.9 waves), 3 for conv4
// (252 blocks), 9 for conv5 (252) and 37 for Fashion conv2 (259).
constexpr double kBlockOverheadSteps = 2.0;  // a block's prologue and epilogue, in BK steps
constexpr double kFlopPerByte = 12.0;

inline Split split_by_waves(const SplitProblem& p) {
    const int bk = convgemm::TileLarge::BK;
    const double step_flops = 2.0 * p.resident * convgemm::tile_rows(p.tile) *
                              convgemm::tile_cols(p.tile) * bk;
    const double split_cost = 8.0 * static_cast<double>(p.out_floats) * kFlopPerByte / step_flops;
    Split best = split_of(p.reduction, 1);
    double best_cost = -1;
    const size_t most = max_splits(p.reduction, p.out_floats);
    for (size_t n = 1; n <= most; ++n) {
        const Split split = split_of(p.reduction, n);
        if (static_cast<size_t>(split.splits) != n) continue;  // same chunk as a smaller count
        const size_t waves = convnet::ceil_div(p.tiles * n, static_cast<size_t>(p.resident));
        const double cost = static_cast<double>(waves) * (split.chunk / bk + kBlockOverheadSteps) +
                            (n > 1 ? static_cast<double>(n) * split_cost : 0.0);
        if (best_cost < 0 || cost < best_cost) best = split, best_cost = cost;
    }
    return best;
}

// The 2026-11-22 rule (algo gemm_dy_along_f_fill): enough splits that the grid holds about four
// blocks per SM, `tiles` being the output tiles of one split.
inline Split split_by_fill(size_t tiles, int reduction, size_t out_floats) {
    const size_t target_blocks = 4 * static_cast<size_t>(convnet::sm_count());
    const size_t splits = convnet::ceil_div(target_blocks, tiles);
    const size_t most = max_splits(reduction, out_floats);
    return split_of(reduction, splits < most ? splits : most);
}

}  // namespace convsplit
