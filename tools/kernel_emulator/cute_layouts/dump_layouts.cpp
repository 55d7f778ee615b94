// CuTe's side of tests/test_mma_layouts.py: every (lane, element) -> tile coordinate that CuTe's
// MMA_Traits and ldmatrix Copy_Traits imply, as JSON on stdout, in the orientation and element
// order of csrc/mma.cuh (dump_ours.cpp prints mma.cuh's side in the same form).
//
// Host-only: g++ -std=c++17 -I<cutlass>/include -I<cuda>/include [-I<cuda>/include/cccl]; the
// headers come from PyPI's nvidia-cutlass (cutlass_library/source/include). CuTe needs the CUDA
// headers (cuda_runtime_api.h, cuda/std) but no GPU and no nvcc.
//
// Conventions read off the headers (cute/atom/mma_traits.hpp, copy_traits.hpp):
// - MMA_Traits: ALayout (tid, vid) -> flat (m, k), BLayout -> flat (n, k), CLayout -> flat (m, n),
//   each column-major in its tile (idx = m + M * k, n + N * k, m + M * n); ThrID maps tid to the
//   lane. vid is the element's index in the fragment: register vid for 32-bit types, register
//   vid / 2, low half first, for 16-bit ones (mma_unpack recasts the values to the registers).
//   B is printed as (k, n), mma.cuh's orientation.
// - Copy_Traits: SrcLayout (tid, vid) -> bit and DstLayout (tid, vid) -> bit into one arbitrary
//   bit order. For ldmatrix each source thread's value is the 128-bit row at its address, so the
//   source (tid, vid) of a bit says whose row it is and which bits of that row; the destination
//   vid counts bits of the thread's registers (register vid / 32, bit vid % 32). A 16-bit element
//   i (register i / 2, half i % 2) comes from lane s's row, element (row bit / 16): matrix s / 8,
//   row s % 8. Where several source threads alias one bit (stride 0: .x1 and .x2 use only the
//   addresses of lanes 0..7 / 0..15), the lowest one is taken, as the PTX ISA says.
#include <cute/atom/copy_traits_sm75.hpp>
#include <cute/atom/mma_traits_sm80.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

bool first_atom = true;

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "dump_layouts: %s\n", what.c_str());
    std::exit(1);
}

// One atom: {"source": ..., "tile": [...], "values": [[lane, i, coord...], ...]}.
void emit(const char* name, const char* source, const std::vector<int>& tile,
          const std::vector<std::vector<int>>& values) {
    std::printf("%s\n  \"%s\": {\"source\": \"%s\", \"tile\": [", first_atom ? "" : ",", name,
                source);
    first_atom = false;
    for (size_t d = 0; d < tile.size(); ++d) std::printf("%s%d", d ? ", " : "", tile[d]);
    std::printf("], \"values\": [");
    for (size_t n = 0; n < values.size(); ++n) {
        std::printf("%s[", n ? ", " : "");
        for (size_t d = 0; d < values[n].size(); ++d)
            std::printf("%s%d", d ? ", " : "", values[n][d]);
        std::printf("]");
    }
    std::printf("]}");
}

// (tid, vid) -> flat index of one MMA operand, turned into (row, col) by `coord`.
template <class ThrID, class TV, class Coord>
std::vector<std::vector<int>> mma_values(ThrID thr_id, TV tv, Coord coord) {
    std::vector<std::vector<int>> values;
    for (int t = 0; t < int(cute::size<0>(tv)); ++t)
        for (int v = 0; v < int(cute::size<1>(tv)); ++v) {
            const int idx = int(tv(t, v));
            const auto rc = coord(idx);
            values.push_back({int(thr_id(t)), v, rc.first, rc.second});
        }
    return values;
}

template <class Op>
void mma_atom(const char* a, const char* b, const char* c, const char* source) {
    using Traits = cute::MMA_Traits<Op>;
    using MNK = typename Traits::Shape_MNK;
    constexpr int M = cute::size<0>(MNK{}), N = cute::size<1>(MNK{}), K = cute::size<2>(MNK{});
    const typename Traits::ThrID thr_id{};
    emit(a, source, {M, K},
         mma_values(thr_id, typename Traits::ALayout{},
                    [](int idx) { return std::pair<int, int>{idx % M, idx / M}; }));
    emit(b, source, {K, N},
         mma_values(thr_id, typename Traits::BLayout{},
                    [](int idx) { return std::pair<int, int>{idx / N, idx % N}; }));
    emit(c, source, {M, N},
         mma_values(thr_id, typename Traits::CLayout{},
                    [](int idx) { return std::pair<int, int>{idx % M, idx / M}; }));
}

template <class Op>
void ldsm_atom(const char* name, const char* source) {
    using Traits = cute::Copy_Traits<Op>;
    const typename Traits::ThrID thr_id{};
    const typename Traits::SrcLayout src{};
    const typename Traits::DstLayout dst{};
    const std::string where = std::string(source) + ": ";
    if (int(cute::size<1>(src)) != 128) fail(where + "a source value is not one 128-bit row");
    // bit -> (lane whose row holds it, bit within that row); the lowest lane where aliased
    std::map<int, std::pair<int, int>> row_bit;
    for (int t = 0; t < int(cute::size<0>(src)); ++t)
        for (int v = 0; v < 128; ++v) {
            const int bit = int(src(t, v)), lane = int(thr_id(t));
            auto it = row_bit.find(bit);
            if (it == row_bit.end() || lane < it->second.first) row_bit[bit] = {lane, v};
        }
    const int bits = int(cute::size<1>(dst));
    const int registers = int(sizeof(typename Op::DRegisters) / sizeof(uint32_t));
    if (bits != 32 * registers) fail(where + "DstLayout's values are not the DRegisters' bits");
    std::vector<std::vector<int>> values;
    for (int t = 0; t < int(cute::size<0>(dst)); ++t)
        for (int i = 0; i < bits / 16; ++i) {  // 16-bit element i: register i / 2, half i % 2
            const auto first = row_bit.find(int(dst(t, 16 * i)));
            if (first == row_bit.end()) fail(where + "a destination bit has no source");
            const auto [lane, row_offset] = first->second;
            if (row_offset % 16) fail(where + "an element starts inside a 16-bit element");
            for (int k = 1; k < 16; ++k) {
                const auto it = row_bit.find(int(dst(t, 16 * i + k)));
                if (it == row_bit.end() || it->second != std::pair<int, int>{lane, row_offset + k})
                    fail(where + "an element's 16 bits are not one 16-bit element of one row");
            }
            values.push_back({int(thr_id(t)), i, lane / 8, lane % 8, row_offset / 16});
        }
    emit(name, source, {registers, 8, 8}, values);
}

}  // namespace

int main() {
    using namespace cute;
    std::printf("{");
    mma_atom<SM80_16x8x8_F32TF32TF32F32_TN>("tf32_a", "tf32_b", "tf32_acc",
                                            "MMA_Traits<SM80_16x8x8_F32TF32TF32F32_TN>");
    mma_atom<SM80_16x8x16_F32BF16BF16F32_TN>("bf16_a", "bf16_b", "bf16_acc",
                                             "MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>");
    ldsm_atom<SM75_U32x1_LDSM_N>("ldmatrix_x1", "Copy_Traits<SM75_U32x1_LDSM_N>");
    ldsm_atom<SM75_U32x2_LDSM_N>("ldmatrix_x2", "Copy_Traits<SM75_U32x2_LDSM_N>");
    ldsm_atom<SM75_U32x4_LDSM_N>("ldmatrix_x4", "Copy_Traits<SM75_U32x4_LDSM_N>");
    ldsm_atom<SM75_U16x2_LDSM_T>("ldmatrix_x1_trans", "Copy_Traits<SM75_U16x2_LDSM_T>");
    ldsm_atom<SM75_U16x4_LDSM_T>("ldmatrix_x2_trans", "Copy_Traits<SM75_U16x4_LDSM_T>");
    ldsm_atom<SM75_U16x8_LDSM_T>("ldmatrix_x4_trans", "Copy_Traits<SM75_U16x8_LDSM_T>");
    std::printf("\n}\n");
}
