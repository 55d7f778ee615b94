"""Inverted dropout with a given mask (dropout_forward / dropout_backward) and the Philox streams
that draw masks and noise (dropout_mask, random_normal): the NumPy reference by hand and against
float64 gradients, then the cuda backend against the reference (on a GPU or the CPU emulator).

cuda bounds: dropout_mask, dropout_forward and dropout_backward equal to the reference bit for bit;
random_normal within one float32 ulp (Box-Muller in float64).
"""
import numpy as np
import pytest

from convnet.backend import numpy_dropout, philox
from convnet.backend.numpy_dropout import dropout_backward, dropout_forward
from convnet.backend.philox import dropout_mask
from gradcheck import check_op_grads
from opcheck import assert_equal, cu, cuda_test, cupy, host, normal, poisoned, to_device


def test_dropout_forward_by_hand():
    x = np.array([[1.0, -2.0, 3.0, 4.0]])
    mask = np.array([[1, 0, 1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(dropout_forward(x, mask, 0.5), [[2.0, 0.0, 6.0, 0.0]])
    np.testing.assert_array_equal(dropout_backward(x, mask, 0.25), [[4.0, 0.0, 12.0, 0.0]])


def test_dropout_backward_gradcheck_with_fixed_mask(rng):
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 40)))
    keep = 0.6
    mask = dropout_mask(shape, keep, int(rng.integers(0, 2**63)), 6, 0)
    x = rng.standard_normal(shape)
    check_op_grads(lambda x: dropout_forward(x, mask, keep),
                   lambda dy: [dropout_backward(dy, mask, keep)], [x], rng)


def test_dropout_forward_keeps_expectation():
    x = np.linspace(-1, 1, 8)[None].repeat(200_000, axis=0)
    mask = dropout_mask(x.shape, 0.5, 3, 1, 1)
    mean = dropout_forward(x, mask, 0.5).mean(axis=0)
    np.testing.assert_allclose(mean, x[0], atol=0.01)


def test_dropout_float32_is_x_over_keep_where_kept(rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    mask = dropout_mask(x.shape, 0.7, 11, 0, 4)
    y = dropout_forward(x, mask, 0.7)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.where(mask == 1, x / np.float32(0.7), np.float32(0)))


def test_dropout_rejects_bad_arguments():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="dropout_forward: mask shape"):
        dropout_forward(x, np.ones((3, 2), np.uint8), 0.5)
    with pytest.raises(ValueError, match="dropout_backward: keep"):
        dropout_backward(x, np.ones((2, 3), np.uint8), 0.0)


# ----------------------------------------------------------------------------------------------
# the cuda backend

STREAM_CASES = [  # shape, keep, seed, layer, step
    ((128, 4096), 0.5, 2012, 6, 0),
    ((1, 3), 0.9, 0, 0, 0),
    ((129, 37), 1.0, 2**40 + 17, 7, 123456),
    ((7,), 0.3, 2**64 - 1, 2**32 - 1, 2**32 - 1),
    ((3, 5, 11), 0.75, 123456789, 3, 99),
]


@cuda_test
@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_dropout_mask_equals_reference_bit_for_bit(shape, keep, seed, layer, step):
    want = philox.dropout_mask(shape, keep, seed, layer, step)
    for misaligned in (False, True):
        got = cu.dropout_mask(shape, keep, seed, layer, step,
                              out=poisoned(shape, np.uint8, misaligned))
        assert_equal(got, want, f"dropout_mask misaligned={misaligned}")
    if keep == 1.0:
        assert want.all()


@cuda_test
@pytest.mark.parametrize("rows,width", [((0, 3), 9), ((3, 7), 9), ((5, 10), 9), ((1, 2), 6),
                                        ((64, 128), 4096)])
def test_offset_streams_are_those_rows_of_the_whole_draw(rows, width):
    """A data-parallel rank's rows r0..r1 (offset r0 x width): rows of 9 and 6 elements start
    at every place in a 4-word block; aligned and misaligned outputs."""
    r0, r1 = rows
    shape, offset = (r1 - r0, width), r0 * width
    want_mask = philox.dropout_mask(shape, 0.5, 77, 3, 9, offset)
    want_noise = philox.random_normal(shape, 77, 3, 9, offset)
    for misaligned in (False, True):
        got = cu.dropout_mask(shape, 0.5, 77, 3, 9, offset,
                              out=poisoned(shape, np.uint8, misaligned))
        assert_equal(got, want_mask, f"dropout_mask offset {offset} misaligned={misaligned}")
        noise = host(cu.random_normal(shape, 77, 3, 9, offset,
                                      out=poisoned(shape, misaligned=misaligned)))
        np.testing.assert_array_max_ulp(noise, want_noise, maxulp=1)


@cuda_test
def test_dropout_mask_keeps_the_fraction_keep():
    mask = host(cu.dropout_mask((128, 4096), 0.5, 1, 2, 3))
    assert abs(mask.mean() - 0.5) < 0.01


@cuda_test
@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_random_normal_matches_reference_to_one_ulp(shape, keep, seed, layer, step):
    want = philox.random_normal(shape, seed, layer, step)
    got = host(cu.random_normal(shape, seed, layer, step, out=poisoned(shape)))
    assert not np.isnan(got).any()
    np.testing.assert_array_max_ulp(got, want, maxulp=1)
    assert (got == want).mean() >= 0.99


@cuda_test
@pytest.mark.parametrize("shape,keep,seed,layer,step", STREAM_CASES)
def test_dropout_forward_backward_equal_reference(shape, keep, seed, layer, step, rng):
    mask = philox.dropout_mask(shape, keep, seed, layer, step)
    x, dy = normal(rng, shape), normal(rng, shape)
    misaligned = len(shape) == 1
    y = cu.dropout_forward(to_device(x, misaligned), to_device(mask), keep,
                           out=poisoned(shape, misaligned=misaligned))
    assert_equal(y, numpy_dropout.dropout_forward(x, mask, keep), "dropout_forward")
    dx = cu.dropout_backward(to_device(dy), to_device(mask, misaligned), keep,
                             out=poisoned(shape))
    assert_equal(dx, numpy_dropout.dropout_backward(dy, mask, keep), "dropout_backward")


@cuda_test
def test_cuda_dropout_rejects_bad_arguments():
    x = cupy.zeros((2, 3), cupy.float32)
    with pytest.raises(ValueError, match="dropout_forward: mask must be uint8"):
        cu.dropout_forward(x, x, 0.5)
    with pytest.raises(ValueError, match="dropout_mask: keep"):
        cu.dropout_mask((2, 3), 0.0, 1, 2, 3)
    with pytest.raises(ValueError, match="random_normal: seed"):
        cu.random_normal((2, 3), -1, 2, 3)
    with pytest.raises(ValueError, match="dropout_mask: offset"):
        cu.dropout_mask((2, 3), 0.5, 1, 2, 3, -1)
    with pytest.raises(ValueError, match="random_normal: streams are limited"):
        cu.random_normal((2, 3), 1, 2, 3, 2**34)
