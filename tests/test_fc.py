"""fc and bias: one case list each on the NumPy backend (numpy_conv's fc and bias by hand and
through float64 gradients) and on the cuda backend (csrc/bias.cu and the fc GEMMs through
the cuda backend against the reference, on a GPU or the CPU emulator; tests/opcheck.py says how).

cuda bounds, float32 against the float64 reference, every out= poisoned with NaN:
  bias_forward                     equal to the float32 reference (also off 16-byte alignment)
  bias_backward, fc (reductions)   |err| <= 1e-4 |ref| + 1e-5 * (the same sum over |terms|)
"""
import numpy as np
import pytest

from convnet.backend.numpy_conv import (bias_backward, bias_forward, fc_backward_data,
                                        fc_backward_filter, fc_forward)
from gradcheck import check_op_grads
from opcheck import (assert_close, assert_equal, cu, cuda_test, cupy, normal, on_backends,
                     poisoned, to_device)

FC_CASES = [  # n, k, m: x (n, k) @ w (k, m)
    (1, 1, 1), (3, 7, 5), (4, 13, 2),
    pytest.param((128, 9216, 4096), marks=pytest.mark.big),   # AlexNet's fc6
    (1, 3, 5), (129, 37, 10),
]
BIAS_CASES = [  # the output's shape, how many of its axes after the batch the bias has
    ((3, 4, 5, 2), 1),          # conv, shared over positions
    ((1, 3, 2, 5), 3),          # conv, unshared (one bias per output)
    ((5, 7), 1),                # fc
    ((2, 3, 4, 4), 2),          # partially shared: per map and row
    pytest.param(((128, 96, 55, 55), 1), marks=pytest.mark.big),
    ((5, 7, 3, 3), 3), ((129, 10), 1), ((1, 17, 5, 5), 1), ((3, 13, 6, 1), 1), ((2, 4096), 1),
    ((6, 5, 2, 2), 3),
]


def fc_id(case):
    return "n{}k{}m{}".format(*case)


def bias_id(case):
    return f"{'x'.join(map(str, case[0]))}-b{case[1]}"


# ----------------------------------------------------------------------------------------------
# the case lists on both backends


def fc_numpy(case, rng):
    x, w = rng.standard_normal(case[:2]), rng.standard_normal(case[1:])
    check_op_grads(fc_forward, lambda dy: [fc_backward_data(dy, w), fc_backward_filter(x, dy)],
                   [x, w], rng)


def fc_cuda(case, rng):
    n, k, m = case
    x, w, dy = normal(rng, (n, k)), normal(rng, (k, m), 0.01), normal(rng, (n, m))
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    cases = [
        ("fc_forward", cu.fc_forward(to_device(x), to_device(w), out=poisoned((n, m))),
         x64 @ w64, np.abs(x64) @ np.abs(w64)),
        ("fc_backward_data", cu.fc_backward_data(to_device(dy), to_device(w),
                                                 out=poisoned((n, k))),
         dy64 @ w64.T, np.abs(dy64) @ np.abs(w64).T),
        ("fc_backward_filter", cu.fc_backward_filter(to_device(x), to_device(dy),
                                                     out=poisoned((k, m))),
         x64.T @ dy64, np.abs(x64).T @ np.abs(dy64)),
    ]
    for name, got, want, abs_sum in cases:
        assert_close(got, want, 1e-4, 1e-5 * abs_sum, name)


def bias_numpy(case, rng):
    y_shape, bias_ndim = case
    y, b = rng.standard_normal(y_shape), rng.standard_normal(y_shape[1:1 + bias_ndim])
    check_op_grads(bias_forward, lambda dy: [dy, bias_backward(dy, bias_ndim)], [y, b], rng)


def bias_cuda(case, rng):
    shape, bias_ndim = case
    y = normal(rng, shape)
    b = normal(rng, shape[1:1 + bias_ndim])
    want = bias_forward(y, b)
    got = cu.bias_forward(to_device(y), to_device(b), out=poisoned(shape))
    assert_equal(got, want, "bias_forward")
    got = cu.bias_forward(to_device(y, misaligned=True), to_device(b),
                          out=poisoned(shape, misaligned=True))
    assert_equal(got, want, "bias_forward (misaligned)")
    dy = normal(rng, shape)
    want = bias_backward(dy.astype(np.float64), bias_ndim)
    abs_sum = bias_backward(np.abs(dy).astype(np.float64), bias_ndim)
    for misaligned in (False, True):
        got = cu.bias_backward(to_device(dy, misaligned), bias_ndim,
                               out=poisoned(want.shape, misaligned=misaligned))
        assert_close(got, want, 1e-4, 1e-5 * abs_sum, f"bias_backward misaligned={misaligned}")


@on_backends(FC_CASES, fc_id)
def test_fc_forward_backward(backend, case, rng):
    {"numpy": fc_numpy, "cuda": fc_cuda}[backend](case, rng)


@on_backends(BIAS_CASES, bias_id)
def test_bias_forward_backward(backend, case, rng):
    {"numpy": bias_numpy, "cuda": bias_cuda}[backend](case, rng)


# ----------------------------------------------------------------------------------------------
# the reference by hand; the cuda backend's argument checks


def test_fc_forward_hand_case():
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    w = np.array([[1.0, 0.0, 2.0], [3.0, -1.0, 1.0]])
    np.testing.assert_array_equal(fc_forward(x, w), [[7.0, -2.0, 4.0], [-3.0, 1.0, -1.0]])


def test_bias_forward_hand_cases():
    y = np.zeros((2, 2, 1, 2))
    shared = bias_forward(y, np.array([1.0, -1.0]))
    np.testing.assert_array_equal(shared[1], [[[1.0, 1.0]], [[-1.0, -1.0]]])
    unshared = bias_forward(y, np.arange(4.0).reshape(2, 1, 2))
    np.testing.assert_array_equal(unshared[0], [[[0.0, 1.0]], [[2.0, 3.0]]])
    fc = bias_forward(np.ones((3, 2)), np.array([0.5, 2.0]))
    np.testing.assert_array_equal(fc, [[1.5, 3.0]] * 3)


def test_bias_backward_sums_batch_and_shared_axes():
    dy = np.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(bias_backward(dy, 1), dy.sum(axis=(0, 2, 3)))
    np.testing.assert_array_equal(bias_backward(dy, 3), dy[0] + dy[1])
    np.testing.assert_array_equal(bias_backward(dy.reshape(2, 12), 1), dy.reshape(2, 12).sum(0))


@cuda_test
def test_cuda_bias_rejects_mismatched_shapes():
    y = cupy.zeros((2, 3, 4, 4), cupy.float32)
    with pytest.raises(ValueError, match="bias_forward: b has shape"):
        cu.bias_forward(y, cupy.zeros((4,), cupy.float32))
    with pytest.raises(ValueError, match="bias_backward: bias_ndim"):
        cu.bias_backward(y, 4)
