"""cuda-convnet2's costs: crossent (soft labels), bce and dce (binary). The NumPy reference
(numpy_cc2.py) by hand, against logreg and float64 gradient checks of every backward against its
forward; then the cuda backend (cuda_cc2.py -> convnet._C) against the reference (on a GPU or the
CPU emulator; tests/opcheck.py says how).

cuda bounds, float32 against the reference:
  per-case costs (row sums)       |err| <= 1e-4 |ref| + 1e-5 sum |terms|
  element-wise gradients          |err| <= 1e-5 |ref| + 1e-6 (|first term| + |second term|)
                                  (softmax_crossent's row sum: 1e-5)
  wrong fractions                 |err| <= 1e-6 |ref| (ratios of small integers)
  detection counts                |err| <= 1e-5 |ref| (equal for binary labels)
"""
import numpy as np
import pytest

from convnet.backend import numpy_cc2 as ref
from convnet.backend.numpy_cost import logreg_forward, softmax_backward, softmax_forward
from convnet.backend.numpy_neuron import neuron_forward
from gradcheck import assert_grad_close, numeric_grad
from opcheck import (assert_close, assert_equal, cu, cuda_test, cupy, host, normal, poisoned,
                     to_device)


# ----------------------------------------------------------------------------------------------
# costs


def random_probs(rng, n=None, k=None):
    n = int(rng.integers(1, 7)) if n is None else n
    k = int(rng.integers(2, 14)) if k is None else k
    return softmax_forward(rng.standard_normal((n, k)) * 2)


def soft_labels(rng, shape):
    """Label weights with zeros among them, rows not summing to 1."""
    t = rng.uniform(0, 1, shape)
    return np.where(rng.uniform(size=shape) < 0.3, 0.0, t)


def one_hot(labels, k):
    return np.eye(k)[labels]


def test_crossent_hand_computed():
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.0, 0.6, 0.4]])
    t = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.5, 0.5]])
    cost, wrong = ref.crossent_forward(p, t)
    np.testing.assert_allclose(cost, [-np.log(0.5), -np.log(0.4), -np.log(0.2),
                                      -0.5 * np.log(0.6) - 0.5 * np.log(0.4)], rtol=1e-14)
    # a tie of two maxima with the label on one: right half the time
    np.testing.assert_array_equal(wrong, [0, 0.5, 1, 0])


def test_crossent_safelog_floor():
    p = np.array([[0.0, 1.0], [0.0, 1.0]])
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    cost, _ = ref.crossent_forward(p, t)
    np.testing.assert_array_equal(cost, [0.0, 50.0])
    dp = ref.crossent_backward(p, t, 1.0)
    assert dp[0].tolist() == [0.0, -1.0] and dp[1, 0] == -np.inf and dp[1, 1] == 0


def test_crossent_with_one_hot_labels_is_logreg(rng):
    p = random_probs(rng)
    labels = rng.integers(0, p.shape[1], size=p.shape[0])
    cost, wrong = ref.crossent_forward(p, one_hot(labels, p.shape[1]))
    nll, wrong1, _ = logreg_forward(p, labels)
    np.testing.assert_allclose(cost, nll, rtol=1e-14)
    np.testing.assert_array_equal(wrong, wrong1)


def test_crossent_backward_gradcheck(rng):
    # Probabilities >= 0.1 / K: the central difference of log p errs by about (eps / p)^2 / 3,
    # 3e-5 at p = 1e-4 (which softmax rows of 13 classes reach), over the 1e-5 bound.
    k = int(rng.integers(2, 14))
    p = 0.9 * random_probs(rng, k=k) + 0.1 / k
    t = soft_labels(rng, p.shape)
    scale = 0.7
    numeric = numeric_grad(lambda: scale * float(np.sum(ref.crossent_forward(p, t)[0])), p)
    assert_grad_close(ref.crossent_backward(p, t, scale), numeric)


def test_softmax_crossent_backward_gradcheck_and_chain(rng):
    x = rng.standard_normal((int(rng.integers(1, 7)), int(rng.integers(2, 14))))
    t = soft_labels(rng, x.shape)
    scale = 1.0 / x.shape[0]
    p = softmax_forward(x)
    numeric = numeric_grad(
        lambda: scale * float(np.sum(ref.crossent_forward(softmax_forward(x), t)[0])), x)
    dx = ref.softmax_crossent_backward(p, t, scale)
    assert_grad_close(dx, numeric)
    chain = softmax_backward(p, ref.crossent_backward(p, t, scale))
    np.testing.assert_allclose(dx, chain, rtol=1e-10, atol=1e-14)


def test_bce_hand_computed():
    y = np.array([[0.8, 0.3], [0.6, 0.6], [0.2, 0.9]])
    t = np.array([[1.0, 0], [1, 0], [1, 0]])
    cost, wrong, top1 = ref.bce_forward(y, t)
    np.testing.assert_allclose(cost, [-np.log(0.8) - np.log(0.7), -np.log(0.6) - np.log(0.4),
                                      -np.log(0.2) - np.log(0.1)], rtol=1e-14)
    np.testing.assert_array_equal(wrong, [0, 0.5, 1])
    np.testing.assert_array_equal(top1, [0, 0.5, 1])   # row 1: a tie of two maxima
    weighted, _, _ = ref.bce_forward(y, t, pos_weight=2.0)
    np.testing.assert_allclose(weighted, cost - np.log(y[:, 0]), rtol=1e-14)


@pytest.mark.parametrize("pos_weight", [1.0, 2.5, 0.0])
def test_bce_backward_gradcheck(pos_weight, rng):
    n, k = int(rng.integers(1, 7)), int(rng.integers(1, 14))
    y = rng.uniform(0.05, 0.95, (n, k))
    t = np.where(rng.uniform(size=(n, k)) < 0.5, 1.0, soft_labels(rng, (n, k)))
    scale = 0.3
    for forward, backward in ((ref.bce_forward, ref.bce_backward),
                              (ref.dce_forward, ref.dce_backward)):
        numeric = numeric_grad(
            lambda: scale * float(np.sum(forward(y, t, pos_weight)[0])), y)
        assert_grad_close(backward(y, t, scale, pos_weight), numeric)


@pytest.mark.parametrize("pos_weight", [1.0, 3.0])
def test_logistic_bce_backward_gradcheck(pos_weight, rng):
    x = rng.standard_normal((int(rng.integers(1, 7)), int(rng.integers(1, 14)))) * 2
    t = (rng.uniform(size=x.shape) < 0.4).astype(float)
    scale = 0.5
    numeric = numeric_grad(
        lambda: scale * float(np.sum(ref.bce_forward(neuron_forward(x, "logistic"), t,
                                                     pos_weight)[0])), x)
    y = neuron_forward(x, "logistic")
    assert_grad_close(ref.logistic_bce_backward(y, t, scale, pos_weight), numeric)
    if pos_weight == 1.0:
        np.testing.assert_allclose(ref.logistic_bce_backward(y, t, scale), scale * (y - t),
                                   rtol=1e-12, atol=1e-15)


def test_bce_backward_is_finite_at_certain_right_answers():
    y = np.array([[0.0, 1.0, 0.5]])
    t = np.array([[0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(ref.bce_backward(y, t, 1.0), [[1.0, -1.0, -2.0]])
    cost, _, _ = ref.bce_forward(y, t)
    np.testing.assert_allclose(cost, [-np.log(0.5)], rtol=1e-14)


def test_dce_hand_computed():
    y = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]], dtype=np.float32)
    t = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    cost, wrong, counts = ref.dce_forward(y, t)
    bce_cost, bce_wrong, _ = ref.bce_forward(y, t)
    np.testing.assert_array_equal(cost, bce_cost)
    np.testing.assert_array_equal(wrong, bce_wrong)
    np.testing.assert_array_equal(wrong, [0, 0.5, 0.5])
    # per class: (declared positive, positive, true positive)
    np.testing.assert_array_equal(counts, [[2, 2, 1], [1, 1, 1]])
    assert cost.dtype == wrong.dtype == counts.dtype == np.float32


def test_costs_keep_float32(rng):
    p = random_probs(rng).astype(np.float32)
    t = soft_labels(rng, p.shape).astype(np.float32)
    outputs = [*ref.crossent_forward(p, t), ref.crossent_backward(p, t, 0.5),
               ref.softmax_crossent_backward(p, t, 0.5), *ref.bce_forward(p, t),
               ref.bce_backward(p, t, 0.5, 2.0), ref.logistic_bce_backward(p, t, 0.5)]
    assert all(o.dtype == np.float32 for o in outputs)


def test_costs_reject_bad_arguments():
    p = np.full((2, 3), 1 / 3)
    t = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"crossent_forward: labels must have the probabilities' "
                                         r"shape \(2, 3\)"):
        ref.crossent_forward(p, np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"crossent_backward: p must be \(N, K\)"):
        ref.crossent_backward(p.ravel(), t.ravel(), 1.0)
    with pytest.raises(ValueError, match="softmax_crossent_backward: p must be float32"):
        ref.softmax_crossent_backward(p.astype(int), t, 1.0)
    with pytest.raises(ValueError, match="bce_forward: pos_weight must be >= 0"):
        ref.bce_forward(p, t, pos_weight=-1.0)
    with pytest.raises(ValueError, match=r"bce_backward: y must be \(N, K\)"):
        ref.bce_backward(p[None], t[None], 1.0)
    with pytest.raises(ValueError, match="logistic_bce_backward: labels must be real numbers"):
        ref.logistic_bce_backward(p, t.astype(complex), 1.0)
    with pytest.raises(ValueError, match="dce_forward: pos_weight must be >= 0"):
        ref.dce_forward(p, t, pos_weight=float("nan"))
    with pytest.raises(ValueError, match="dce_backward: labels must have"):
        ref.dce_backward(p, t[:1], 1.0)


# ----------------------------------------------------------------------------------------------
# the cuda backend


def f64(*arrays):
    return tuple(a.astype(np.float64) for a in arrays)


ROW_SHAPES = [pytest.param((128, 1000), marks=pytest.mark.big), (1, 10), (129, 7), (3, 1),
              (5, 200), (64, 33)]


def probabilities(rng, shape):
    """Softmax rows with a tie of two maxima in row 0 and an exact zero in row 1 (safelog)."""
    p = softmax_forward(normal(rng, shape, 3.0))
    if shape[1] >= 2:
        p[0, 1] = p[0, 0] = p[0].max()
        if shape[0] >= 2:
            p[1, 0] = 0
    return p


def label_values(rng, shape):
    """Soft weights with zeros among them, and one-hot rows in the second half."""
    t = rng.uniform(0, 1, shape).astype(np.float32)
    t[rng.uniform(size=shape) < 0.3] = 0
    half = shape[0] // 2
    t[half:] = np.eye(shape[1], dtype=np.float32)[rng.integers(0, shape[1], shape[0] - half)]
    return t


@cuda_test
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_crossent_matches_reference(shape, rng):
    p, t = probabilities(rng, shape), label_values(rng, shape)
    cost_ref, wrong_ref = ref.crossent_forward(*f64(p, t))
    terms = np.sum(np.abs(t.astype(np.float64) * ref.safelog(p.astype(np.float64))), axis=1)
    outs = (poisoned((shape[0],)), poisoned((shape[0],), misaligned=True))
    cost, wrong = cu.crossent_forward(to_device(p), to_device(t, True), out=outs)
    assert_close(cost, cost_ref, 1e-4, 1e-5 * terms, "crossent_forward cost")
    assert_close(wrong, wrong_ref, 1e-6, 0, "crossent_forward wrong")
    scale = 1.0 / shape[0]
    dp_ref = ref.crossent_backward(*f64(p, t), scale)
    dp = cu.crossent_backward(to_device(p, True), to_device(t), scale,
                              out=poisoned(shape, misaligned=True))
    finite = np.isfinite(dp_ref)
    assert_close(np.where(finite, host(dp), 0), np.where(finite, dp_ref, 0), 1e-5, 0,
                 "crossent_backward")
    assert np.array_equal(host(dp)[~finite], dp_ref[~finite]), "crossent_backward at p = 0"
    dx_ref = ref.softmax_crossent_backward(*f64(p, t), scale)
    dx = cu.softmax_crossent_backward(to_device(p), to_device(t), scale, out=poisoned(shape))
    row_sum = np.abs(t.astype(np.float64)).sum(axis=1, keepdims=True)
    assert_close(dx, dx_ref, 1e-5, 1e-5 * scale * (p * row_sum + t), "softmax_crossent_backward")


def targets(rng, shape):
    """Outputs of a logistic unit and binary labels (soft ones in some rows), with exact 0, 0.5
    and 1 outputs among them."""
    y = rng.uniform(0.01, 0.99, shape).astype(np.float32)
    t = (rng.uniform(size=shape) < 0.4).astype(np.float32)
    t[::3] = rng.uniform(0, 1, t[::3].shape)
    flat_y, flat_t = y.reshape(-1), t.reshape(-1)
    for i, (value, label) in enumerate([(0.0, 0.0), (1.0, 1.0), (0.5, 1.0), (0.5, 0.0)]):
        if i < flat_y.size:
            flat_y[i], flat_t[i] = value, label
    return y, t


@cuda_test
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("pos_weight", [1.0, 2.5])
def test_bce_and_dce_match_reference(shape, pos_weight, rng):
    y, t = targets(rng, shape)
    n = shape[0]
    y64, t64 = f64(y, t)
    terms = np.sum(np.abs(pos_weight * t64 * ref.safelog(y64))
                   + np.abs((1 - t64) * ref.safelog(1 - y64)), axis=1)
    cost_ref, wrong_ref, top1_ref = ref.bce_forward(y64, t64, pos_weight)
    outs = tuple(poisoned((n,), misaligned=m) for m in (False, True, False))
    cost, wrong, top1 = cu.bce_forward(to_device(y), to_device(t), pos_weight, out=outs)
    assert_close(cost, cost_ref, 1e-4, 1e-5 * terms, "bce_forward cost")
    assert_close(wrong, wrong_ref, 1e-6, 0, "bce_forward wrong")
    assert_close(top1, top1_ref, 1e-6, 1e-7, "bce_forward top1_wrong")

    dce_ref = ref.dce_forward(y64, t64, pos_weight)
    outs = (poisoned((n,)), poisoned((n,)), poisoned((shape[1], 3), misaligned=True))
    cost, wrong, counts = cu.dce_forward(to_device(y, True), to_device(t), pos_weight, out=outs)
    assert_close(cost, dce_ref[0], 1e-4, 1e-5 * terms, "dce_forward cost")
    assert_close(wrong, dce_ref[1], 1e-6, 0, "dce_forward wrong")
    assert_close(counts, dce_ref[2], 1e-5, 0, "dce_forward counts")

    scale = -0.5 / n
    first = np.abs(ref._ratio(pos_weight * t64, y64))
    second = np.abs(ref._ratio(1 - t64, 1 - y64))
    bound = 1e-6 * abs(scale) * (first + second)
    for name in ("bce_backward", "dce_backward"):
        got = getattr(cu, name)(to_device(y), to_device(t, True), scale, pos_weight,
                                out=poisoned(shape, misaligned=True))
        assert_close(got, getattr(ref, name)(y64, t64, scale, pos_weight), 1e-5, bound, name)
    got = cu.logistic_bce_backward(to_device(y), to_device(t), scale, pos_weight,
                                   out=poisoned(shape))
    bound = 1e-6 * abs(scale) * (pos_weight * t64 * (1 - y64) + (1 - t64) * y64)
    assert_close(got, ref.logistic_bce_backward(y64, t64, scale, pos_weight), 1e-5, bound,
                 "logistic_bce_backward")


@cuda_test
def test_dce_counts_of_binary_labels_are_exact(rng):
    shape = (1000, 37)
    y, t = targets(rng, shape)
    t = (t > 0.5).astype(np.float32)
    _, _, counts = cu.dce_forward(to_device(y), to_device(t))
    assert_equal(counts, ref.dce_forward(y, t)[2], "dce_forward counts")


@cuda_test
def test_cuda_costs_reject_bad_arguments():
    p = cupy.full((2, 3), 1 / 3, cupy.float32)
    with pytest.raises(ValueError, match="crossent_forward: labels must have the probabilities'"):
        cu.crossent_forward(p, cupy.zeros(2, cupy.float32))
    with pytest.raises(ValueError, match="crossent_backward: labels must be float32"):
        cu.crossent_backward(p, cupy.zeros((2, 3), cupy.int32), 1.0)
    with pytest.raises(ValueError, match=r"softmax_crossent_backward: p must be \(N, K\)"):
        cu.softmax_crossent_backward(p.ravel(), p.ravel(), 1.0)
    with pytest.raises(ValueError, match="bce_forward: out must be a tuple of 3 arrays"):
        cu.bce_forward(p, p, out=(cupy.zeros(2, cupy.float32),))
    with pytest.raises(ValueError, match="bce_backward: pos_weight must be >= 0"):
        cu.bce_backward(p, p, 1.0, -2.0)
    with pytest.raises(ValueError, match=r"dce_forward: out\[2\] has shape"):
        cu.dce_forward(p, p, out=(cupy.zeros(2, cupy.float32), cupy.zeros(2, cupy.float32),
                                  cupy.zeros((2, 3), cupy.float32)))
