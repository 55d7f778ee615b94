// csrc/mma.cuh's side of tests/test_mma_layouts.py: its fragment layouts, printed as JSON in the
// form of dump_layouts.cpp (CuTe's side). Built with g++ against the emulator's CUDA stand-in
// (-I tools/kernel_emulator/include -I csrc); the layout functions are the same on the GPU.
// Only the constexpr layout functions are called, so nothing of the emulator needs linking.
#include "mma.cuh"

#include <cstdio>

namespace {

using convnet::mma::Coord;
bool first_atom = true;

template <class F>
void emit(const char* name, int rows, int cols, int elements, F layout) {
    std::printf("%s\n  \"%s\": {\"source\": \"csrc/mma.cuh\", \"tile\": [%d, %d], \"values\": [",
                first_atom ? "" : ",", name, rows, cols);
    first_atom = false;
    for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < elements; ++i) {
            const Coord c = layout(lane, i);
            std::printf("%s[%d, %d, %d, %d]", lane || i ? ", " : "", lane, i, c.row, c.col);
        }
    std::printf("]}");
}

// ldmatrix .xN: register j holds matrix j; element i of the fragment is register i / 2, half i % 2.
void emit_ldmatrix(const char* name, int matrices, bool trans) {
    std::printf(",\n  \"%s\": {\"source\": \"csrc/mma.cuh\", \"tile\": [%d, 8, 8], \"values\": [",
                name, matrices);
    for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 2 * matrices; ++i) {
            const Coord c = convnet::mma::ldmatrix_elem(lane, i % 2, trans);
            std::printf("%s[%d, %d, %d, %d, %d]", lane || i ? ", " : "", lane, i, i / 2, c.row,
                        c.col);
        }
    std::printf("]}");
}

}  // namespace

int main() {
    namespace m = convnet::mma;
    std::printf("{");
    emit("tf32_a", 16, 8, 4, m::tf32_a);
    emit("tf32_b", 8, 8, 2, m::tf32_b);
    emit("tf32_acc", 16, 8, 4, m::acc);
    emit("bf16_a", 16, 16, 8, m::bf16_a);
    emit("bf16_b", 16, 8, 4, m::bf16_b);
    emit("bf16_acc", 16, 8, 4, m::acc);
    emit_ldmatrix("ldmatrix_x1", 1, false);
    emit_ldmatrix("ldmatrix_x2", 2, false);
    emit_ldmatrix("ldmatrix_x4", 4, false);
    emit_ldmatrix("ldmatrix_x1_trans", 1, true);
    emit_ldmatrix("ldmatrix_x2_trans", 2, true);
    emit_ldmatrix("ldmatrix_x4_trans", 4, true);
    std::printf("\n}\n");
}
