// Warp-level intrinsics on the emulator's collectives (cuda_runtime.h): shuffles, votes,
// __syncwarp and the sm_80 warp reductions. Every lane of `mask` must reach the same intrinsic
// with the same mask (the emulator stops the kernel otherwise, naming the lanes), as the CUDA
// programming guide requires for the *_sync intrinsics; a lane that reads from a lane outside
// the mask gets NaN bits (undefined on the GPU).
#pragma once

namespace emu {
namespace warp {

inline unsigned lane_of_current() {
    const unsigned t = (thread_idx.z * block_dim.y + thread_idx.y) * block_dim.x + thread_idx.x;
    return t % 32;
}

// in[0..1]: the value's words; in[2]: the source lane the lane computed (or 32+: none, keep own).
inline void shuffle_exchange(LaneOp* const lanes[32], unsigned) {
    for (int l = 0; l < 32; ++l) {
        if (!lanes[l]) continue;
        const unsigned src = lanes[l]->in[2];
        for (int w = 0; w < 2; ++w) {
            if (src >= 32) lanes[l]->out[w] = lanes[l]->in[w];
            else lanes[l]->out[w] = lanes[src] ? lanes[src]->in[w] : kPoison;
        }
    }
}

template <class T>
inline T shuffle(const char* name, unsigned mask, T value, unsigned src) {
    static_assert(sizeof(T) <= 8, "shuffles move 4- or 8-byte values");
    LaneOp op{};
    op.name = name;
    op.mask = mask;
    memcpy(op.in, &value, sizeof(T));
    op.in[2] = src;
    warp_collective(op, shuffle_exchange);
    T out;
    memcpy(&out, op.out, sizeof(T));
    return out;
}

inline void check_width(const char* name, int width) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail((std::string(name) + ": width must be a power of 2 in 1..32").c_str());
}

// in[0]: the predicate (or the value to reduce); out[0]: the result.
inline uint32_t vote(const char* name, unsigned mask, uint32_t value, Exchange exchange) {
    LaneOp op{};
    op.name = name;
    op.mask = mask;
    op.in[0] = value;
    warp_collective(op, exchange);
    return op.out[0];
}

template <class Combine>
inline void reduce_exchange(LaneOp* const lanes[32], unsigned, Combine combine, uint32_t init) {
    uint32_t acc = init;
    for (int l = 0; l < 32; ++l)
        if (lanes[l]) acc = combine(acc, lanes[l]->in[0]);
    for (int l = 0; l < 32; ++l)
        if (lanes[l]) lanes[l]->out[0] = acc;
}

inline void ballot_exchange(LaneOp* const lanes[32], unsigned mask) {
    uint32_t bits = 0;
    for (int l = 0; l < 32; ++l)
        if (lanes[l] && lanes[l]->in[0]) bits |= 1u << l;
    for (int l = 0; l < 32; ++l)
        if (lanes[l]) lanes[l]->out[0] = bits & mask;
}

}  // namespace warp
}  // namespace emu

template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    emu::warp::check_width("__shfl_sync", width);
    const unsigned lane = emu::warp::lane_of_current();
    const unsigned from = (lane & ~(unsigned)(width - 1)) + ((unsigned)src & (width - 1));
    return emu::warp::shuffle("__shfl_sync", mask, v, from);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    emu::warp::check_width("__shfl_up_sync", width);
    const unsigned lane = emu::warp::lane_of_current();
    const unsigned from = (lane % width) >= delta ? lane - delta : 32;
    return emu::warp::shuffle("__shfl_up_sync", mask, v, from);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    emu::warp::check_width("__shfl_down_sync", width);
    const unsigned lane = emu::warp::lane_of_current();
    const unsigned from = (lane % width) + delta < (unsigned)width ? lane + delta : 32;
    return emu::warp::shuffle("__shfl_down_sync", mask, v, from);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    emu::warp::check_width("__shfl_xor_sync", width);
    const unsigned lane = emu::warp::lane_of_current();
    const unsigned from = lane ^ (unsigned)lane_mask;
    // a source past the lane's own segment of `width` lanes: the lane keeps its value
    const bool inside = from / width == lane / width && from < 32;
    return emu::warp::shuffle("__shfl_xor_sync", mask, v, inside ? from : 32);
}

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    emu::warp::vote("__syncwarp", mask, 0, [](emu::LaneOp* const[32], unsigned) {});
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return emu::warp::vote("__ballot_sync", mask, predicate != 0, emu::warp::ballot_exchange);
}
inline int __any_sync(unsigned mask, int predicate) {
    return emu::warp::vote("__any_sync", mask, predicate != 0,
                                [](emu::LaneOp* const l[32], unsigned m) {
                                    emu::warp::reduce_exchange(
                                        l, m, [](uint32_t a, uint32_t b) { return a | b; }, 0u);
                                }) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
    return emu::warp::vote("__all_sync", mask, predicate != 0,
                                [](emu::LaneOp* const l[32], unsigned m) {
                                    emu::warp::reduce_exchange(
                                        l, m, [](uint32_t a, uint32_t b) { return a & b; }, 1u);
                                }) != 0;
}

#define CONVNET_EMU_REDUCE(name, type, expr, init)                                               \
    inline type name(unsigned mask, type value) {                                                 \
        uint32_t word;                                                                            \
        memcpy(&word, &value, 4);                                                                 \
        const uint32_t r = emu::warp::vote(                                                  \
            #name, mask, word, [](emu::LaneOp* const l[32], unsigned m) {                         \
                emu::warp::reduce_exchange(                                                       \
                    l, m,                                                                         \
                    [](uint32_t wa, uint32_t wb) {                                                \
                        type a, b;                                                                \
                        memcpy(&a, &wa, 4);                                                       \
                        memcpy(&b, &wb, 4);                                                       \
                        const type c = (expr);                                                    \
                        uint32_t wc;                                                              \
                        memcpy(&wc, &c, 4);                                                       \
                        return wc;                                                                \
                    },                                                                            \
                    [] { type i = (init); uint32_t w; memcpy(&w, &i, 4); return w; }());          \
            });                                                                                   \
        type out;                                                                                 \
        memcpy(&out, &r, 4);                                                                      \
        return out;                                                                               \
    }
CONVNET_EMU_REDUCE(__reduce_add_sync, unsigned, a + b, 0u)
CONVNET_EMU_REDUCE(__reduce_min_sync, unsigned, a < b ? a : b, 0xffffffffu)
CONVNET_EMU_REDUCE(__reduce_max_sync, unsigned, a > b ? a : b, 0u)
CONVNET_EMU_REDUCE(__reduce_and_sync, unsigned, a & b, 0xffffffffu)
CONVNET_EMU_REDUCE(__reduce_or_sync, unsigned, a | b, 0u)
CONVNET_EMU_REDUCE(__reduce_xor_sync, unsigned, a ^ b, 0u)
#undef CONVNET_EMU_REDUCE
inline int __reduce_add_sync(unsigned mask, int value) {
    return (int)__reduce_add_sync(mask, (unsigned)value);
}
