"""Response normalization: lrn (cross-map), rnorm (same-map) and cnorm (contrast), one case
list on the NumPy backend (numpy_norm against numpy_direct's definitions and float64 gradients)
and on the cuda backend (csrc/lrn.cu against the reference, on a GPU or the CPU emulator;
tests/opcheck.py says how).

cuda bound, float32 against the float64 reference, every out= poisoned with NaN (window sums):
  |err| <= 1e-5 |ref| + 1e-6 max|ref|
"""

import numpy as np
import pytest

from convnet.backend import numpy_norm
from convnet.backend.numpy_norm import (cnorm_backward, cnorm_forward, lrn_backward, lrn_forward,
                                        rnorm_backward, rnorm_forward)
from convnet.backend.numpy_direct import lrn_forward_direct, rnorm_forward_direct
from gradcheck import check_op_grads
from opcheck import (assert_close, cu, cuda_test, cupy, normal, on_backends, poisoned,
                     to_device)

K, ALPHA, BETA = 2.0, 0.1, 0.75

OPS = {
    "lrn": (lrn_forward, lrn_backward),
    "rnorm": (rnorm_forward, rnorm_backward),
    "cnorm": (cnorm_forward, cnorm_backward),
}


# shape, size, alpha, beta, k
CROSS_MAP_CASES = [
    pytest.param(((128, 96, 55, 55), 5, 1e-4 / 5, 0.75, 2.0),
                 marks=pytest.mark.big),           # AlexNet's LRN after conv1
    ((4, 24, 9, 7), 5, 1e-4 / 5, 0.75, 2.0),       # the same at a size the emulator runs
    ((1, 3, 5, 7), 5, 0.02, 0.75, 1.0),            # window wider than the channels
    ((3, 17, 4, 6), 4, 0.01, 0.5, 1.5),            # even size
    ((129, 10, 3, 3), 3, 0.05, 0.9, 1.0),
    ((2, 7, 3, 2), 1, 0.3, 0.75, 1.5),             # size 1
    ((3, 19, 3, 2), 6, 1e-2, 0.75, 2.0),           # even size, more channels than the window
    ((2, 13, 3, 4), 9, 1e-2, 0.75, 2.0),           # the widest window of the one-pass kernels
    ((2, 13, 3, 4), 11, 1e-2, 0.75, 2.0),          # wider: lrn.cu's per-element kernels
]
SAME_MAP_CASES = [
    ((8, 16, 27, 27), 5, 1e-3 / 25, 0.75, 2.0),
    ((1, 3, 7, 5), 3, 0.02, 0.75, 1.0),
    ((2, 5, 6, 4), 4, 0.01, 0.5, 1.5),             # even size
    ((3, 18, 5, 9), 9, 0.005, 0.8, 1.0),           # window larger than the image
    ((2, 3, 1, 6), 2, 0.3, 0.75, 1.5),             # one row
    ((1, 2, 5, 1), 3, 0.3, 0.75, 1.5),             # one column
]
DIRECT = {"lrn": lrn_forward_direct, "rnorm": rnorm_forward_direct}  # cnorm: by hand below


def case_id(case):
    (n, c, h, w), size, alpha, beta, k = case
    return f"n{n}c{c}h{h}w{w}z{size}a{alpha:g}b{beta:g}k{k:g}"


def norm_numpy(name, case, rng):
    """Forward equals the direct definition (lrn, rnorm); backward passes the float64 gradient
    check."""
    shape, size, alpha, beta, k = case
    forward, backward = OPS[name]
    x = rng.standard_normal(shape) * 2.0
    if name in DIRECT:
        np.testing.assert_allclose(forward(x, size, alpha, beta, k),
                                   DIRECT[name](x, size, alpha, beta, k), rtol=1e-12)
    check_op_grads(lambda x: forward(x, size, alpha, beta, k),
                   lambda dy: [backward(x, forward(x, size, alpha, beta, k), dy, size, alpha,
                                        beta, k)], [x], rng, max_entries=80)


def norm_cuda(name, case, rng):
    shape, size, alpha, beta, k = case
    forward_ref = getattr(numpy_norm, f"{name}_forward")
    backward_ref = getattr(numpy_norm, f"{name}_backward")
    x = normal(rng, shape, 2.0)
    dy = normal(rng, shape)
    y_ref = forward_ref(x.astype(np.float64), size, alpha, beta, k)
    y = getattr(cu, f"{name}_forward")(to_device(x), size, alpha, beta, k, out=poisoned(shape))
    assert_close(y, y_ref, 1e-5, 1e-6 * np.abs(y_ref).max(), f"{name}_forward")
    y32 = forward_ref(x, size, alpha, beta, k)
    dx_ref = backward_ref(x.astype(np.float64), y32.astype(np.float64), dy.astype(np.float64),
                          size, alpha, beta, k)
    dx = getattr(cu, f"{name}_backward")(to_device(x), to_device(y32), to_device(dy), size,
                                         alpha, beta, k, out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-5, 1e-6 * np.abs(dx_ref).max(), f"{name}_backward")


CHECKS = {"numpy": norm_numpy, "cuda": norm_cuda}


@on_backends(CROSS_MAP_CASES, case_id)
def test_lrn_forward_backward(backend, case, rng):
    CHECKS[backend]("lrn", case, rng)


@on_backends(SAME_MAP_CASES, case_id)
def test_rnorm_forward_backward(backend, case, rng):
    CHECKS[backend]("rnorm", case, rng)


@on_backends(SAME_MAP_CASES, case_id)
def test_cnorm_forward_backward(backend, case, rng):
    CHECKS[backend]("cnorm", case, rng)


# ----------------------------------------------------------------------------------------------
# the reference: values by hand, random shapes, dtypes


def as_channels(values):
    return np.array(values, dtype=np.float64).reshape(1, -1, 1, 1)


def as_row(values):
    return np.array(values, dtype=np.float64).reshape(1, 1, 1, -1)


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


@cuda_test
def test_cuda_norm_rejects_bad_arguments():
    x = cupy.zeros((1, 3, 4, 4), cupy.float32)
    with pytest.raises(ValueError, match="lrn_forward: k"):
        cu.lrn_forward(x, 5, 1e-4, 0.75, 0.0)
    with pytest.raises(ValueError, match="rnorm_forward: size"):
        cu.rnorm_forward(x, 0, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match="cnorm_forward: x must be 4-D"):
        cu.cnorm_forward(x[0], 3, 1e-4, 0.75, 1.0)


@cuda_test
@pytest.mark.parametrize("size, launches", [(5, (1, 1)), (9, (1, 1)), (11, (1, 2))])
def test_lrn_is_one_launch_each_way_up_to_size_9(size, launches, rng, emulator_controls):
    """csrc/lrn.cu's one-pass kernels (a window of at most 9 channels in registers)."""
    controls = emulator_controls
    x, dy = to_device(normal(rng, (2, 12, 3, 3))), to_device(normal(rng, (2, 12, 3, 3)))
    before = controls.launches()
    y = cu.lrn_forward(x, size, 1e-2, 0.75, 2.0)
    forward = controls.launches() - before
    cu.lrn_backward(x, y, dy, size, 1e-2, 0.75, 2.0)
    assert (forward, controls.launches() - before - forward) == launches
