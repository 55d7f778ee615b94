"""NumPy reference: lrn (cross-map), rnorm (same-map) and cnorm (contrast) normalization."""
import numpy as np
import pytest

from convnet.backend.numpy_norm import (cnorm_backward, cnorm_forward, lrn_backward, lrn_forward,
                                        rnorm_backward, rnorm_forward)
from convnet.backend.numpy_direct import lrn_forward_direct, rnorm_forward_direct
from gradcheck import check_op_grads

K, ALPHA, BETA = 2.0, 0.1, 0.75

OPS = {
    "lrn": (lrn_forward, lrn_backward),
    "rnorm": (rnorm_forward, rnorm_backward),
    "cnorm": (cnorm_forward, cnorm_backward),
}


def as_channels(values):
    return np.array(values, dtype=np.float64).reshape(1, -1, 1, 1)


def as_row(values):
    return np.array(values, dtype=np.float64).reshape(1, 1, 1, -1)


# ----------------------------------------------------------------------------------------------
# forward values written by hand from the formula


def test_lrn_forward_hand_size3():
    # windows: c=0 -> {0,1}, c=1 -> {0,1,2}, c=2 -> {1,2}
    y = lrn_forward(as_channels([1, 2, 3]), 3, ALPHA, BETA, K)
    expected = [1 * 2.5 ** -0.75, 2 * 3.4 ** -0.75, 3 * 3.3 ** -0.75]
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-14)


def test_lrn_forward_hand_even_size_reaches_back():
    # size 2: window [c-1, c+1) -> c=0 {0}, c=1 {0,1}, c=2 {1,2}
    y = lrn_forward(as_channels([1, 2, 3]), 2, ALPHA, BETA, K)
    expected = [1 * 2.1 ** -0.75, 2 * 2.5 ** -0.75, 3 * 3.3 ** -0.75]
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-14)
    # size 4: window [c-2, c+2) -> c=0 {0,1}, c=1 {0,1,2}, c=2 {0,1,2}
    y = lrn_forward(as_channels([1, 2, 3]), 4, ALPHA, BETA, K)
    expected = [1 * 2.5 ** -0.75, 2 * 3.4 ** -0.75, 3 * 3.4 ** -0.75]
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-14)


def test_rnorm_forward_hand():
    # a row of 3 pixels, size 2: columns [w-1, w+1)
    y = rnorm_forward(as_row([1, 2, 3]), 2, ALPHA, BETA, K)
    expected = [1 * 2.1 ** -0.75, 2 * 2.5 ** -0.75, 3 * 3.3 ** -0.75]
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-14)
    # 2x2 image, size 3: every window covers all four pixels, d = 2 + 0.1 * 30 = 5
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(rnorm_forward(x, 3, ALPHA, BETA, K), x * 5.0 ** -0.75, rtol=1e-14)


def test_cnorm_forward_hand():
    # a row [1, 2, 4], size 3: windows {0,1}, {0,1,2}, {1,2}; means 1.5, 7/3, 3
    # u = x - mean = [-1/2, -1/3, 1]; d[p] = k + alpha * sum of u^2 over p's window
    y = cnorm_forward(as_row([1, 2, 4]), 3, ALPHA, BETA, K)
    u2 = [1 / 4, 1 / 9, 1.0]
    d = [2 + 0.1 * (u2[0] + u2[1]), 2 + 0.1 * sum(u2), 2 + 0.1 * (u2[1] + u2[2])]
    expected = [1 * d[0] ** -0.75, 2 * d[1] ** -0.75, 4 * d[2] ** -0.75]
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-14)


def test_cnorm_forward_of_constant_image_is_x_over_k_to_beta():
    x = np.full((2, 3, 4, 5), 1.7)
    np.testing.assert_allclose(cnorm_forward(x, 3, ALPHA, BETA, K), x * K ** -BETA, rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# forward against the formula evaluated window by window (random shapes)


@pytest.mark.parametrize("size", [1, 2, 5, 6])
def test_lrn_forward_matches_window_formula(rng, size):
    x = rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(3, 20)), 3, 2))
    np.testing.assert_allclose(lrn_forward(x, size, 1e-2, BETA, K), lrn_forward_direct(x, size, 1e-2, BETA, K),
                               rtol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_rnorm_forward_matches_window_formula(rng, size):
    x = rng.standard_normal((2, 3, int(rng.integers(1, 7)), int(rng.integers(1, 7))))
    np.testing.assert_allclose(rnorm_forward(x, size, ALPHA, BETA, K),
                               rnorm_forward_direct(x, size, ALPHA, BETA, K), rtol=1e-12)


def test_lrn_alexnet_parameters_float32_close_to_float64(rng):
    x = np.maximum(rng.standard_normal((2, 96, 5, 5)) * 10, 0)
    y64 = lrn_forward(x, 5, 1e-4, 0.75, 2.0)
    y32 = lrn_forward(x.astype(np.float32), 5, np.float64(1e-4), 0.75, 2.0)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=2e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("op,size", [("lrn", 5), ("lrn", 4), ("lrn", 1), ("rnorm", 3),
                                     ("rnorm", 2), ("cnorm", 3), ("cnorm", 4), ("cnorm", 5)])
def test_norm_backward_gradcheck(rng, op, size):
    forward, backward = OPS[op]
    n = int(rng.integers(1, 3))
    channels = int(rng.integers(6, 11)) if op == "lrn" else int(rng.integers(1, 4))
    shape = (n, channels, int(rng.integers(1, 6)), int(rng.integers(2, 7)))
    x = rng.standard_normal(shape)
    alpha, beta, k = 0.3, 0.75, 1.5

    def fwd(x):
        return forward(x, size, alpha, beta, k)

    def bwd(dy):
        return [backward(x, fwd(x), dy, size, alpha, beta, k)]

    check_op_grads(fwd, bwd, [x], rng, max_entries=80)


@pytest.mark.parametrize("op", list(OPS))
def test_norm_keeps_dtype(rng, op):
    forward, backward = OPS[op]
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    y = forward(x, 3, ALPHA, BETA, K)
    dx = backward(x, y, np.ones_like(x), 3, ALPHA, BETA, K)
    assert y.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape


@pytest.mark.parametrize("op", list(OPS))
def test_norm_rejects_bad_arguments(op):
    forward, backward = OPS[op]
    x = np.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match=f"{op}_forward.*size"):
        forward(x, 0, ALPHA, BETA, K)
    with pytest.raises(ValueError, match=f"{op}_forward.*4-d"):
        forward(x[0], 3, ALPHA, BETA, K)
    with pytest.raises(ValueError, match=f"{op}_forward.*k"):
        forward(x, 3, ALPHA, BETA, 0.0)
    with pytest.raises(ValueError, match=f"{op}_backward.*dy"):
        backward(x, x, x[:, :1], 3, ALPHA, BETA, K)
