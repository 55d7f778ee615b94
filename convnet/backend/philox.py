"""Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11; Random123), vectorized.

The CUDA kernels reproduce these functions bit for bit, so the mapping is spelled out here.

Philox4x32-10
    counter (c0, c1, c2, c3), key (k0, k1), all uint32. Ten rounds; before every round but the
    first the key is bumped: k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2^32). One round:
        (hi0, lo0) = 64-bit product 0xD2511F53 * c0 split in high / low 32 bits
        (hi1, lo1) = 64-bit product 0xCD9E8D57 * c2
        (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    The output is the counter after the tenth round (checked against Random123's kat_vectors).

Streams (OPS.md "random numbers")
    seed: an integer in [0, 2^64); key = (seed & 0xffffffff, seed >> 32).
    layer, step: integers in [0, 2^32) naming the layer and the training step.
    Element i of an output array, in C order, belongs to block j = i // 4 and takes word i % 4 of
        philox4x32(counter = (j, layer, step, 0), key).
    (So arrays are limited to 2^34 elements.)
    offset: an array drawn with offset k holds elements k, k+1, ... of the stream, i.e. rows
    r0.. of a larger array when k = r0 x (elements per row): a data-parallel rank's rows of the
    whole minibatch's mask (convnet/parallel), the same words wherever k falls in a block.

dropout_mask(shape, keep, seed, layer, step) -> uint8 array
    mask[i] = 1 if word_i < floor(keep * 2^32) else 0, the comparison in 64-bit integers, so
    keep = 1 (threshold 2^32) keeps everything. The threshold is computed in float64:
    floor(keep * 4294967296.0), keep a Python float in (0, 1].

random_normal(shape, seed, layer, step) -> float32 array of N(0, 1) draws, Box-Muller.
    Block j's words (w0, w1, w2, w3) form two pairs, (w0, w1) -> elements 4j, 4j+1 and
    (w2, w3) -> elements 4j+2, 4j+3. For a pair (wa, wb), in float64:
        u1 = (wa + 1) * 2^-32,  u2 = (wb + 1) * 2^-32        (exact, in (0, 1])
        r = sqrt(-2 * log(u1)),  theta = 2 * pi * u2          (pi = the float64 nearest pi)
        first = r * cos(theta),  second = r * sin(theta)
    each then rounded to float32. A kernel doing the same in double precision agrees exactly but
    for results within a couple of float64 ulps of a float32 rounding boundary (different libm),
    i.e. to one float32 ulp at worst and almost always exactly.
"""
import numpy as np

__all__ = ["philox4x32", "philox_key", "stream_words", "dropout_mask", "random_normal"]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_ROUNDS = 10


def philox4x32(counters, key):
    """Philox4x32-10 of each counter row: counters (n, 4) uint32, key (2,) uint32 -> (n, 4) uint32."""
    counters = np.asarray(counters)
    key = np.asarray(key)
    if counters.dtype != np.uint32 or counters.ndim != 2 or counters.shape[1] != 4:
        raise ValueError(f"philox4x32: counters must be (n, 4) uint32, got {counters.shape} "
                         f"{counters.dtype}")
    if key.dtype != np.uint32 or key.shape != (2,):
        raise ValueError(f"philox4x32: key must be (2,) uint32, got {key.shape} {key.dtype}")
    c0, c1, c2, c3 = (counters[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = int(key[0]), int(key[1])
    for r in range(_ROUNDS):
        if r > 0:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        p0 = _M0 * c0  # < 2^64: no wrap-around
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ np.uint64(k0), p1 & _LOW32,
                          (p0 >> _SHIFT32) ^ c3 ^ np.uint64(k1), p0 & _LOW32)
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def _check_word(op, name, value, limit):
    if int(value) != value or not 0 <= value < limit:
        raise ValueError(f"{op}: {name} must be an integer in [0, {limit}), got {value!r}")
    return int(value)


def philox_key(seed):
    """The key (seed & 0xffffffff, seed >> 32) of a 64-bit seed."""
    seed = _check_word("philox_key", "seed", seed, 2**64)
    return np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)


def stream_words(size, seed, layer, step, op="stream_words", offset=0):
    """The uint32 word of elements offset .. offset + size - 1, in C order (module docstring)."""
    size = _check_word(op, "size", size, 2**34 + 1)
    offset = _check_word(op, "offset", offset, 2**34 + 1 - size)
    layer = _check_word(op, "layer", layer, 2**32)
    step = _check_word(op, "step", step, 2**32)
    key = philox_key(seed)
    first, end = offset // 4, -(-(offset + size) // 4)
    counters = np.zeros((end - first, 4), dtype=np.uint32)
    counters[:, 0] = np.arange(first, end, dtype=np.uint64).astype(np.uint32)
    counters[:, 1] = layer
    counters[:, 2] = step
    skip = offset - 4 * first
    return philox4x32(counters, key).reshape(-1)[skip:skip + size]


def _shape_size(op, shape):
    """(shape as a tuple, its element count); shape is an int or a sequence of ints."""
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    if any(int(s) != s or s < 0 for s in shape):
        raise ValueError(f"{op}: shape must hold non-negative integers, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    return shape, int(np.prod(shape, dtype=np.int64))


def dropout_mask(shape, keep, seed, layer, step, offset=0):
    """uint8 mask of `shape`: 1 where word < floor(keep * 2^32), the fraction `keep` kept;
    elements offset.. of the stream."""
    shape, size = _shape_size("dropout_mask", shape)
    if not 0 < keep <= 1:
        raise ValueError(f"dropout_mask: keep must be in (0, 1], got {keep!r}")
    threshold = int(np.floor(float(keep) * 4294967296.0))
    words = stream_words(size, seed, layer, step, op="dropout_mask", offset=offset)
    return (words.astype(np.uint64) < np.uint64(threshold)).astype(np.uint8).reshape(shape)


def random_normal(shape, seed, layer, step, offset=0):
    """float32 N(0, 1) draws of `shape` by Box-Muller on word pairs (see the module docstring);
    elements offset.. of the stream (a pair split by the offset is drawn whole, then cut)."""
    shape, size = _shape_size("random_normal", shape)
    offset = _check_word("random_normal", "offset", offset, 2**34 + 1)
    start = offset - offset % 2
    words = stream_words(-(-(offset + size - start) // 2) * 2, seed, layer, step,
                         op="random_normal", offset=start)
    pairs = words.reshape(-1, 2).astype(np.float64)  # rows (wa, wb)
    u = (pairs + 1.0) * 2.0**-32
    r = np.sqrt(-2.0 * np.log(u[:, 0]))
    theta = 2.0 * np.pi * u[:, 1]
    normals = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)
    skip = offset - start
    return normals[skip:skip + size].astype(np.float32).reshape(shape)
