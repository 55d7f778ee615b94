"""Element-wise combination (eltsum, eltmax, concat) and the channel gather of randSparse: the
xp-generic implementation on NumPy, by hand and against float64 gradients, then on CuPy arrays
(the cuda backend imports the same file), equal to NumPy's result."""
import numpy as np
import pytest

from convnet.backend.elementwise import (array_module, channel_gather_backward,
                                         channel_gather_forward, concat_backward, concat_forward,
                                         eltmax_backward, eltmax_forward, eltsum_backward,
                                         eltsum_forward)
from gradcheck import check_op_grads
from opcheck import assert_equal, cuda_test, normal, to_device


def random_inputs(rng, count, shape):
    return [rng.standard_normal(shape) for _ in range(count)]


def test_array_module_is_numpy_for_numpy_arrays():
    assert array_module(np.ones(2), np.zeros(3)) is np
    assert array_module() is np


def test_eltsum_forward_by_hand():
    xs = [np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([-1.0, 1.0])]
    np.testing.assert_array_equal(eltsum_forward(xs, [1.0, 0.5, -2.0]), [8.0, 10.0])


def test_eltsum_backward_gradcheck(rng):
    shape = (int(rng.integers(1, 4)), 3, int(rng.integers(1, 5)), 2)
    xs = random_inputs(rng, 3, shape)
    coeffs = [1.0, -0.5, 2.0]
    check_op_grads(lambda *xs: eltsum_forward(xs, coeffs), lambda dy: eltsum_backward(dy, coeffs),
                   xs, rng)


def test_eltsum_keeps_float32_with_numpy_float64_coeffs(rng):
    xs = [x.astype(np.float32) for x in random_inputs(rng, 2, (3, 4))]
    y = eltsum_forward(xs, np.array([0.3, 0.7]))
    assert y.dtype == np.float32
    assert all(d.dtype == np.float32 for d in eltsum_backward(y, np.array([0.3, 0.7])))
    np.testing.assert_allclose(y, 0.3 * xs[0] + 0.7 * xs[1], rtol=1e-6)


def test_eltmax_forward_and_backward_gradcheck_off_ties(rng):
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 6)), 3)
    xs = random_inputs(rng, 3, shape)  # continuous draws: ties have probability zero
    y = eltmax_forward(xs)
    np.testing.assert_array_equal(y, np.max(np.stack(xs), axis=0))
    check_op_grads(lambda *xs: eltmax_forward(xs), lambda dy: eltmax_backward(xs, y, dy), xs, rng)


def test_eltmax_backward_ties_go_to_the_first_maximal_input():
    xs = [np.array([1.0, 5.0, 2.0]), np.array([3.0, 5.0, 2.0]), np.array([3.0, 0.0, 2.0])]
    y = eltmax_forward(xs)
    dxs = eltmax_backward(xs, y, np.array([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(dxs[0], [0.0, 20.0, 30.0])
    np.testing.assert_array_equal(dxs[1], [10.0, 0.0, 0.0])
    np.testing.assert_array_equal(dxs[2], [0.0, 0.0, 0.0])


def test_concat_forward_and_backward_gradcheck(rng):
    n = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, 6)) for _ in range(3)]
    xs = [rng.standard_normal((n, s, 2, 3)) for s in sizes]
    y = concat_forward(xs)
    assert y.shape == (n, sum(sizes), 2, 3)
    np.testing.assert_array_equal(y[:, sizes[0]:sizes[0] + sizes[1]], xs[1])
    check_op_grads(lambda *xs: concat_forward(xs), lambda dy: concat_backward(dy, sizes), xs, rng)


def test_concat_of_fc_activations_and_backward_returns_new_arrays():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(4.0).reshape(2, 2)
    y = concat_forward([a, b])
    np.testing.assert_array_equal(y, [[0, 1, 2, 0, 1], [3, 4, 5, 2, 3]])
    pieces = concat_backward(y, [3, 2])
    np.testing.assert_array_equal(pieces[0], a)
    np.testing.assert_array_equal(pieces[1], b)
    pieces[1][0, 0] = 99.0
    assert y[0, 3] == 0.0 and pieces[1].flags.c_contiguous


def test_elementwise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="eltsum_forward: 1 coeffs for 2 inputs"):
        eltsum_forward([np.ones(2), np.ones(2)], [1.0])
    with pytest.raises(ValueError, match="eltmax_forward: input 1 has shape"):
        eltmax_forward([np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="eltsum_forward: input 1 is float32"):
        eltsum_forward([np.ones(2), np.ones(2, np.float32)], [1.0, 1.0])
    with pytest.raises(ValueError, match="concat_forward: inputs must agree"):
        concat_forward([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="concat_backward: sizes"):
        concat_backward(np.ones((2, 5)), [2, 2])
    with pytest.raises(ValueError, match="eltmax_forward: needs at least one input"):
        eltmax_forward([])


# ----------------------------------------------------------------------------------------------
# channel gather (cuda-convnet's randSparse)

# (x shape, blocks of permutations)
GATHER_CASES = [((2, 4, 3, 3), 2), ((1, 8, 2, 5), 1), ((3, 3, 1, 1), 3), ((129, 16, 2, 2), 2),
                ((2, 6), 4)]


def random_conns(rng, channels, blocks):
    return np.concatenate([rng.permutation(channels) for _ in range(blocks)])


def test_channel_gather_by_hand():
    x = np.arange(3.0).reshape(1, 3, 1, 1) + 1  # channels 1, 2, 3
    conns = np.array([2, 0, 1, 1, 2, 0])
    np.testing.assert_array_equal(channel_gather_forward(x, conns).ravel(), [3, 1, 2, 2, 3, 1])
    dy = np.array([10.0, 20, 30, 40, 50, 60]).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(channel_gather_backward(dy, conns, 3).ravel(),
                                  [20 + 60, 30 + 40, 10 + 50])


@pytest.mark.parametrize("shape,blocks", GATHER_CASES)
def test_channel_gather_backward_gradcheck(shape, blocks, rng):
    conns = random_conns(rng, shape[1], blocks)
    x = rng.standard_normal(shape)
    check_op_grads(lambda a: channel_gather_forward(a, conns),
                   lambda dy: [channel_gather_backward(dy, conns, shape[1])], [x], rng)


def test_channel_gather_rejects_tables_that_are_not_permutations():
    x = np.zeros((2, 4, 3, 3))
    with pytest.raises(ValueError, match="channel_gather_forward: each block of 4 conns must be "
                                         "a permutation of 0..3"):
        channel_gather_forward(x, np.array([0, 1, 2, 2]))
    with pytest.raises(ValueError, match="whole permutations of the 4 channels"):
        channel_gather_forward(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="whole permutations"):
        channel_gather_forward(x, np.array([0.0, 1, 2, 3]))
    with pytest.raises(ValueError, match="channel_gather_backward: dy .* must have 8 channels"):
        channel_gather_backward(np.zeros((2, 4, 3, 3)), np.arange(8) % 4, 4)


@cuda_test
@pytest.mark.parametrize("shape,blocks", GATHER_CASES)
def test_channel_gather_on_cupy_equals_numpy(shape, blocks, rng):
    conns = random_conns(rng, shape[1], blocks)
    x = normal(rng, shape)
    assert_equal(channel_gather_forward(to_device(x), conns), channel_gather_forward(x, conns),
                 "channel_gather_forward")
    dy = normal(rng, (shape[0], conns.size) + shape[2:])
    assert_equal(channel_gather_backward(to_device(dy), conns, shape[1]),
                 channel_gather_backward(dy, conns, shape[1]), "channel_gather_backward")
