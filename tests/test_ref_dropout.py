"""NumPy reference: inverted dropout with a given mask (dropout_forward / dropout_backward)."""
import numpy as np
import pytest

from convnet.backend.numpy_dropout import dropout_backward, dropout_forward
from convnet.backend.philox import dropout_mask
from gradcheck import check_op_grads


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
