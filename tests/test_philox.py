"""Philox4x32-10 and the random streams built on it (dropout_mask, random_normal)."""
import math

import numpy as np
import pytest

from convnet.backend.philox import (dropout_mask, philox4x32, philox_key, random_normal,
                                    stream_words)

# Random123's kat_vectors, philox4x32 10: counter (4 words), key (2 words) -> output (4 words)
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def u32(*words):
    return np.array(words, dtype=np.uint32)


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox4x32_known_answers(counter, key, expected):
    out = philox4x32(u32(*counter)[None], u32(*key))
    np.testing.assert_array_equal(out, u32(*expected)[None])
    assert out.dtype == np.uint32


def scalar_philox(counter, key):
    """Philox4x32-10 on Python ints, one counter at a time (independent of the vectorized code)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    mask = 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def test_philox4x32_vectorized_matches_scalar(rng):
    counters = rng.integers(0, 2**32, size=(64, 4), dtype=np.uint64).astype(np.uint32)
    key = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    out = philox4x32(counters, key)
    for row, got in zip(counters, out):
        assert tuple(int(v) for v in got) == scalar_philox(tuple(int(v) for v in row),
                                                           (int(key[0]), int(key[1])))


def test_philox_key_splits_the_64_bit_seed():
    np.testing.assert_array_equal(philox_key(0x0123456789ABCDEF), u32(0x89ABCDEF, 0x01234567))
    np.testing.assert_array_equal(philox_key(7), u32(7, 0))


def test_stream_words_element_i_is_word_i_mod_4_of_counter_i_div_4():
    seed, layer, step = 0xDEADBEEF12345678, 3, 1234
    words = stream_words(11, seed, layer, step)
    for i in range(11):
        block = scalar_philox((i // 4, layer, step, 0), (seed & 0xFFFFFFFF, seed >> 32))
        assert int(words[i]) == block[i % 4]


def test_dropout_mask_is_word_below_threshold():
    shape, keep, seed, layer, step = (3, 7), 0.3, 99, 2, 5
    words = stream_words(21, seed, layer, step).astype(np.int64)
    expected = (words < math.floor(keep * 2**32)).astype(np.uint8).reshape(shape)
    mask = dropout_mask(shape, keep, seed, layer, step)
    assert mask.dtype == np.uint8 and mask.shape == shape
    np.testing.assert_array_equal(mask, expected)


def test_dropout_mask_mean_close_to_keep():
    for keep in (0.5, 0.8):
        mask = dropout_mask((1000, 1000), keep, 20121203, 1, 0)
        # the standard deviation of the mean is about 5e-4
        assert abs(mask.mean() - keep) < 3e-3


def test_dropout_mask_keep_one_keeps_all():
    assert dropout_mask((257, 33), 1.0, 5, 0, 0).all()


def test_dropout_mask_same_triple_same_mask_and_any_change_differs():
    base = dropout_mask((64, 50), 0.5, 42, 3, 17)
    np.testing.assert_array_equal(base, dropout_mask((64, 50), 0.5, 42, 3, 17))
    for seed, layer, step in ((43, 3, 17), (42, 4, 17), (42, 3, 18), (42 + 2**32, 3, 17)):
        other = dropout_mask((64, 50), 0.5, seed, layer, step)
        # independent masks agree on about half the entries
        assert 0.4 < np.mean(other == base) < 0.6, (seed, layer, step)


def test_dropout_mask_depends_only_on_the_element_index():
    big = dropout_mask((4, 9), 0.5, 8, 1, 2)
    np.testing.assert_array_equal(dropout_mask((35,), 0.5, 8, 1, 2), big.ravel()[:35])


@pytest.mark.parametrize("rows", [(0, 3), (3, 7), (7, 10), (1, 2), (5, 10)])
def test_an_offset_draw_is_those_rows_of_the_whole_draw(rows):
    """A data-parallel rank draws rows r0..r1 of the minibatch's mask and noise with offset
    r0 x 9: rows of 9 elements put rank boundaries at every place in a 4-word block."""
    r0, r1 = rows
    whole_mask, whole_noise = dropout_mask((10, 9), 0.5, 8, 1, 2), random_normal((10, 9), 8, 1, 2)
    np.testing.assert_array_equal(dropout_mask((r1 - r0, 9), 0.5, 8, 1, 2, r0 * 9),
                                  whole_mask[r0:r1])
    np.testing.assert_array_equal(random_normal((r1 - r0, 9), 8, 1, 2, r0 * 9),
                                  whole_noise[r0:r1])


def test_random_normal_mean_and_std():
    z = random_normal((1000, 1000), 20121203, 7, 11)
    assert z.dtype == np.float32 and z.shape == (1000, 1000)
    assert abs(float(z.mean())) < 5e-3          # standard error 1e-3
    assert abs(float(z.std()) - 1.0) < 5e-3      # standard error about 7e-4
    assert abs(float(np.mean(z.astype(np.float64) ** 4)) - 3.0) < 0.05  # kurtosis of a normal


def test_random_normal_box_muller_mapping():
    seed, layer, step = 12345, 0, 9
    z = random_normal((6,), seed, layer, step)
    expected = []
    for block in range(2):
        w = scalar_philox((block, layer, step, 0), (seed, 0))
        for wa, wb in ((w[0], w[1]), (w[2], w[3])):
            u1, u2 = (wa + 1) / 2**32, (wb + 1) / 2**32
            r = math.sqrt(-2 * math.log(u1))
            expected += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    # float64 libm results may differ in the last bit between libraries: allow one float32 ulp
    np.testing.assert_array_max_ulp(z, np.array(expected[:6], dtype=np.float32), maxulp=1)


def test_random_normal_differs_across_streams_and_repeats_within_one():
    a = random_normal(1000, 1, 2, 3)
    np.testing.assert_array_equal(a, random_normal(1000, 1, 2, 3))
    for args in ((2, 2, 3), (1, 3, 3), (1, 2, 4)):
        assert abs(np.corrcoef(a, random_normal(1000, *args))[0, 1]) < 0.15


@pytest.mark.parametrize("call,match", [
    (lambda: dropout_mask((3,), 0.0, 1, 0, 0), "keep"),
    (lambda: dropout_mask((3,), 1.5, 1, 0, 0), "keep"),
    (lambda: dropout_mask((3,), 0.5, -1, 0, 0), "seed"),
    (lambda: dropout_mask((3,), 0.5, 2**64, 0, 0), "seed"),
    (lambda: dropout_mask((3,), 0.5, 1, 2**32, 0), "layer"),
    (lambda: random_normal((3,), 1, 0, -1), "step"),
    (lambda: random_normal((3, -1), 1, 0, 0), "shape"),
    (lambda: random_normal((3,), 1, 0, 0, -2), "offset"),
    (lambda: dropout_mask((3,), 0.5, 1, 0, 0, 2**34), "offset"),
    (lambda: philox4x32(np.zeros((2, 3), np.uint32), u32(0, 0)), "counters"),
    (lambda: philox4x32(np.zeros((2, 4), np.uint32), np.zeros(2, np.int64)), "key"),
])
def test_philox_streams_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
