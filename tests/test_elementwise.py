"""Element-wise combination (eltsum, eltmax, concat), the xp-generic implementation on NumPy."""
import numpy as np
import pytest

from convnet.backend.elementwise import (array_module, concat_backward, concat_forward,
                                         eltmax_backward, eltmax_forward, eltsum_backward,
                                         eltsum_forward)
from gradcheck import check_op_grads


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
