// The image provider's GPU staging (convnet/imagedata.py, CudaStager): uint8 RGBX crops as
// decoded, (N, h, w, 4), become the float32 NCHW batch (N, 3, h, w) = RGB - mean (3, h, w)
// + shift (N, 3), the PCA lighting. The same two roundings, in the same order, as the CPU path's
// imagedata.to_float, so both give the same floats bit for bit.
#include "common.cuh"
#include "ops.h"

using namespace convnet;

namespace {

__global__ void crops_to_float_kernel(const uint8_t* __restrict__ crops,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ shift, float* __restrict__ x,
                                      size_t total, int h, int w) {
    for (size_t i = global_thread(); i < total; i += grid_threads()) {
        const size_t col = i % w, row = i / w % h, c = i / (size_t(w) * h) % 3;
        const size_t n = i / (size_t(w) * h * 3);
        const float pixel = static_cast<float>(crops[((n * h + row) * w + col) * 4 + c]);
        x[i] = __fadd_rn(__fsub_rn(pixel, mean[(c * h + row) * w + col]), shift[n * 3 + c]);
    }
}

}  // namespace

void crops_to_float(const uint8_t* crops, const float* mean, const float* shift, float* x,
                    int N, int h, int w, cudaStream_t stream) {
    const size_t total = size_t(N) * 3 * h * w;
    if (total == 0) return;
    crops_to_float_kernel<<<grid_for(total), kThreads, 0, stream>>>(crops, mean, shift, x, total,
                                                                     h, w);
    check_launch("crops_to_float");
}
