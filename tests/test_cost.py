"""Softmax, the logistic-regression cost, the fused gradient and sum2: the NumPy reference by hand
and against float64 gradients, then the cuda backend against the reference (on a GPU or the CPU
emulator; tests/opcheck.py says how).

cuda bounds, float32 against the float64 reference, outputs poisoned with NaN:
  softmax rows, sum2           |err| <= 1e-4 |ref| + 1e-5 * (the same sum over |terms|)
  logreg wrong fractions, the gradients    equal to the float32 reference
"""
import warnings

import numpy as np
import pytest

from convnet.backend import numpy_cost
from convnet.backend.numpy_cost import (logreg_backward, logreg_forward, softmax_backward,
                                        softmax_forward, softmax_logreg_backward, sum2_backward,
                                        sum2_forward)
from gradcheck import assert_grad_close, check_op_grads, numeric_grad
from opcheck import (assert_close, assert_equal, cu, cuda_test, cupy, host, normal, poisoned,
                     to_device)


def random_problem(rng):
    n, k = int(rng.integers(1, 6)), int(rng.integers(2, 13))
    return rng.standard_normal((n, k)) * 2, rng.integers(0, k, size=n)


def test_softmax_forward_rows_sum_to_one_and_shift_invariant(rng):
    x, _ = random_problem(rng)
    p = softmax_forward(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum(axis=1, keepdims=True), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(softmax_forward(x + 1000.0), p, rtol=1e-10)
        assert softmax_forward(np.array([[1e4, 0.0]], dtype=np.float32)).tolist() == [[1.0, 0.0]]


def test_softmax_backward_gradcheck(rng):
    x, _ = random_problem(rng)
    check_op_grads(softmax_forward, lambda dp: [softmax_backward(softmax_forward(x), dp)], [x], rng)


def test_logreg_backward_gradcheck(rng):
    x, labels = random_problem(rng)
    p = softmax_forward(x)
    scale = 0.7
    numeric = numeric_grad(lambda: scale * float(np.sum(logreg_forward(p, labels)[0])), p)
    assert_grad_close(logreg_backward(p, labels, scale), numeric)


def test_softmax_logreg_backward_equals_the_chain(rng):
    x, labels = random_problem(rng)
    p = softmax_forward(x)
    chain = softmax_backward(p, logreg_backward(p, labels, 0.25))
    np.testing.assert_allclose(softmax_logreg_backward(p, labels, 0.25), chain, rtol=1e-12,
                               atol=1e-15)


def test_softmax_logreg_backward_gradcheck(rng):
    x, labels = random_problem(rng)
    scale = 1.0 / x.shape[0]
    numeric = numeric_grad(
        lambda: scale * float(np.sum(logreg_forward(softmax_forward(x), labels)[0])), x)
    assert_grad_close(softmax_logreg_backward(softmax_forward(x), labels, scale), numeric)


def test_logreg_forward_top1_top5_known_table():
    p = np.array([
        # label 0 is the largest: right at top-1 and top-5
        [0.50, 0.10, 0.10, 0.10, 0.10, 0.05, 0.05],
        # label 2 is third: wrong at top-1, right at top-5
        [0.30, 0.25, 0.20, 0.10, 0.10, 0.05, 0.00],
        # label 6 has five larger classes: wrong at both
        [0.25, 0.20, 0.20, 0.15, 0.10, 0.06, 0.04],
        # label 5 is fifth, tied with class 6 for the last slot: half right at top-5
        [0.30, 0.20, 0.20, 0.15, 0.00, 0.15 / 2, 0.15 / 2],
        # label 1 ties the maximum: half right at top-1 (cuda-convnet's 1 / numMax), right at 2
        [0.40, 0.40, 0.10, 0.05, 0.05, 0.00, 0.00],
        # uniform: 6 of 7 wrong at top-1, 2 of 7 at top-5 (it once scored 0% error)
        [1 / 7] * 7,
    ])
    labels = np.array([0, 2, 6, 5, 1, 3])
    nll, wrong1, wrong5 = logreg_forward(p, labels, topk=5)
    np.testing.assert_allclose(nll, -np.log([0.50, 0.20, 0.04, 0.075, 0.40, 1 / 7]), rtol=1e-14)
    np.testing.assert_allclose(wrong1, [0, 1, 1, 1, 0.5, 6 / 7], rtol=1e-14)
    np.testing.assert_allclose(wrong5, [0, 0, 1, 0.5, 0, 2 / 7], rtol=1e-14)
    _, _, wrong2 = logreg_forward(p, labels, topk=2)
    np.testing.assert_allclose(wrong2, [0, 1, 1, 1, 0, 5 / 7], rtol=1e-14)
    assert nll.dtype == wrong1.dtype == wrong5.dtype == np.float64


def test_logreg_zero_probability_gives_inf_without_warning():
    p = np.array([[1.0, 0.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nll, wrong1, _ = logreg_forward(p, np.array([1]))
        dp = logreg_backward(p, np.array([1]), 1.0)
    assert np.isposinf(nll[0]) and wrong1[0] == 1 and np.isneginf(dp[0, 1]) and dp[0, 0] == 0


def test_cost_ops_keep_float32(rng):
    x, labels = random_problem(rng)
    x = x.astype(np.float32)
    p = softmax_forward(x)
    outs = [p, softmax_backward(p, x), *logreg_forward(p, labels),
            logreg_backward(p, labels, np.float64(0.5)),
            softmax_logreg_backward(p, labels, np.float64(0.5)),
            sum2_forward(x), sum2_backward(x, np.float64(2.0))]
    assert all(o.dtype == np.float32 for o in outs)


def test_sum2_forward_by_hand_and_gradcheck(rng):
    x = np.array([[[1.0, 2.0], [3.0, 0.0]], [[-1.0, 0.5], [0.0, 0.0]]])
    np.testing.assert_allclose(sum2_forward(x), [7.0, 0.625], rtol=1e-15)
    x = rng.standard_normal((3, 2, 4))
    check_op_grads(sum2_forward, lambda r: [r[:, None, None] * sum2_backward(x, 1.0)], [x], rng)
    np.testing.assert_allclose(sum2_backward(x, 0.25), 0.25 * x, rtol=1e-15)


def test_cost_ops_reject_bad_labels_and_shapes():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"logreg_forward: labels must lie in \[0, 3\)"):
        logreg_forward(p, np.array([0, 3]))
    with pytest.raises(ValueError, match="logreg_backward: labels must be integers"):
        logreg_backward(p, np.array([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="softmax_logreg_backward: labels"):
        softmax_logreg_backward(p, np.array([0]), 1.0)
    with pytest.raises(ValueError, match="softmax_forward: x must be"):
        softmax_forward(np.ones(3))
    with pytest.raises(ValueError, match="logreg_forward: topk"):
        logreg_forward(p, np.array([0, 1]), topk=0)


# ----------------------------------------------------------------------------------------------
# the cuda backend

ROW_SHAPES = [(128, 1000), (1, 10), (129, 7), (3, 1), (5, 2000), (64, 33)]


def softmax_input(rng, shape):
    return normal(rng, shape, 3.0)


@cuda_test
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_forward_backward_match_reference(shape, rng):
    x = softmax_input(rng, shape)
    p_ref = numpy_cost.softmax_forward(x.astype(np.float64))
    p = cu.softmax_forward(to_device(x), out=poisoned(shape))
    assert_close(p, p_ref, 1e-5, 1e-30, "softmax_forward")
    p32 = numpy_cost.softmax_forward(x)
    dp = normal(rng, shape)
    dx_ref = numpy_cost.softmax_backward(p32.astype(np.float64), dp.astype(np.float64))
    dot_abs = np.sum(np.abs(dp.astype(np.float64) * p32), axis=1, keepdims=True)
    dx = cu.softmax_backward(to_device(p32), to_device(dp), out=poisoned(shape))
    assert_close(dx, dx_ref, 1e-4, 1e-5 * p32 * (np.abs(dp) + dot_abs), "softmax_backward")


def labels_for(rng, n, k):
    return rng.integers(0, k, n)


@cuda_test
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("topk", [1, 5])
def test_logreg_forward_matches_reference(shape, topk, rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, shape))
    if shape[1] >= 4:  # ties with the label's probability take their share (cuda-convnet)
        p[:, 1] = p[:, 0]
    labels = labels_for(rng, *shape)
    want = numpy_cost.logreg_forward(p, labels, topk)
    outs = tuple(poisoned((shape[0],)) for _ in range(3))
    got = cu.logreg_forward(to_device(p), cupy.asarray(labels), topk, out=outs)
    nll_ref = numpy_cost.logreg_forward(p.astype(np.float64), labels, topk)[0]
    assert_close(got[0], nll_ref, 1e-5, 1e-6, "logreg_forward nll")
    assert_equal(got[1], want[1], "logreg_forward wrong1")
    assert_equal(got[2], want[2], "logreg_forward wrongk")


@cuda_test
@pytest.mark.parametrize("classes", [7, 1000])
def test_logreg_forward_splits_ties_as_the_reference(classes, rng):
    """Uniform rows: every class ties, (K - 1) / K wrong at top-1, (K - 5) / K at top-5."""
    p = np.full((3, classes), 1 / classes, np.float32)
    labels = labels_for(rng, 3, classes)
    want = numpy_cost.logreg_forward(p, labels, 5)
    got = cu.logreg_forward(to_device(p), cupy.asarray(labels), 5)
    assert_equal(got[1], want[1], "logreg_forward wrong1 with ties")
    assert_equal(got[2], want[2], "logreg_forward wrongk with ties")
    assert np.allclose(want[1], (classes - 1) / classes)


@cuda_test
def test_logreg_forward_takes_any_integer_labels(rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, (9, 6)))
    labels = labels_for(rng, 9, 6)
    for dtype in (np.int64, np.int32, np.uint8):
        got = cu.logreg_forward(to_device(p), cupy.asarray(labels.astype(dtype)))
        assert_equal(got[2], numpy_cost.logreg_forward(p, labels)[2], f"labels {dtype}")


@cuda_test
def test_logreg_out_of_range_label_gives_nan(rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, (3, 4)))
    labels = cupy.asarray([0, 4, 1])
    nll, _, _ = cu.logreg_forward(to_device(p), labels)
    assert np.isnan(host(nll)[1]) and not np.isnan(host(nll)[[0, 2]]).any()
    dx = host(cu.softmax_logreg_backward(to_device(p), labels, 1.0))
    assert np.isnan(dx[1]).all() and not np.isnan(dx[[0, 2]]).any()


@cuda_test
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_logreg_backward_and_fused_equal_reference(shape, rng):
    p = numpy_cost.softmax_forward(softmax_input(rng, shape))
    labels = labels_for(rng, *shape)
    scale = -1.0 / shape[0]
    got = cu.logreg_backward(to_device(p), cupy.asarray(labels), scale, out=poisoned(shape))
    assert_equal(got, numpy_cost.logreg_backward(p, labels, scale), "logreg_backward")
    got = cu.softmax_logreg_backward(to_device(p), cupy.asarray(labels), scale,
                                     out=poisoned(shape))
    assert_equal(got, numpy_cost.softmax_logreg_backward(p, labels, scale),
                 "softmax_logreg_backward")


@cuda_test
@pytest.mark.parametrize("shape", [(128, 4096), (1, 3), (129, 10, 3, 3), (5, 7), (3, 50000),
                                   (2, 1)])
def test_sum2_forward_backward_match_reference(shape, rng):
    x = normal(rng, shape)
    want = numpy_cost.sum2_forward(x.astype(np.float64))
    for misaligned in (False, True):
        got = cu.sum2_forward(to_device(x, misaligned), out=poisoned((shape[0],), misaligned=True))
        assert_close(got, want, 1e-4, 1e-5 * want, f"sum2_forward misaligned={misaligned}")
    got = cu.sum2_backward(to_device(x), 0.25, out=poisoned(shape))
    assert_equal(got, numpy_cost.sum2_backward(x, 0.25), "sum2_backward")
