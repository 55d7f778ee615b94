"""NumPy reference for cuda-convnet2's layer types (numpy_cc2.py): cross-map max pooling, the
strided sum, crop and the crossent, bce and dce costs, against direct loop definitions,
hand-computed cases and float64 gradient checks of every backward against its forward."""
import itertools

import numpy as np
import pytest

from convnet.backend import numpy_cc2 as ref
from convnet.backend.numpy_cost import logreg_forward, softmax_backward, softmax_forward
from convnet.backend.numpy_neuron import neuron_forward
from gradcheck import assert_grad_close, check_op_grads, numeric_grad


def distinct_values(rng, shape):
    """Well separated values in random order: no ties in any window."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) - 0.5


# ----------------------------------------------------------------------------------------------
# cmpool

# (x shape, size, stride, start, outputs or None for cmpool_output_size)
CMPOOL_CASES = [
    ((2, 5, 3, 4), 3, 2, 0, None),     # overlapping 3/2, the last window clipped
    ((1, 7, 2, 3), 3, 2, -1, None),    # start < 0: the first window hangs below channel 0
    ((3, 6, 1, 1), 2, 2, 0, None),     # non-overlapping (maxout over maps)
    ((2, 12), 4, 4, 0, None),          # fc activations: maxout over units
    ((2, 4, 3, 2), 4, 1, -3, None),    # stride 1, every window clipped but the last
    ((1, 5, 2, 2), 3, 2, 0, 3),        # one output more than the fewest that cover
    ((4, 9, 5), 5, 3, -2, None),       # 3-D input, awkward sizes
]
CMPOOL_IDS = [f"{'x'.join(map(str, c[0]))}-z{c[1]}s{c[2]}st{c[3]}o{c[4]}" for c in CMPOOL_CASES]


def cmpool_case(case):
    shape, size, stride, start, outputs = case
    if outputs is None:
        outputs = ref.cmpool_output_size(shape[1], size, stride, start)
    return shape, size, stride, start, outputs


def direct_cmpool(x, size, stride, start, outputs):
    y = np.empty((x.shape[0], outputs) + x.shape[2:])
    for o in range(outputs):
        chans = [c for c in range(start + o * stride, start + o * stride + size)
                 if 0 <= c < x.shape[1]]
        y[:, o] = np.max([x[:, c] for c in chans], axis=0)
    return y


@pytest.mark.parametrize("case", CMPOOL_CASES, ids=CMPOOL_IDS)
def test_cmpool_forward_matches_direct(case, rng):
    shape, size, stride, start, outputs = cmpool_case(case)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(ref.cmpool_forward(x, size, stride, start, outputs),
                                  direct_cmpool(x, size, stride, start, outputs))


@pytest.mark.parametrize("case", CMPOOL_CASES, ids=CMPOOL_IDS)
def test_cmpool_backward_gradcheck(case, rng):
    shape, size, stride, start, outputs = cmpool_case(case)
    x = distinct_values(rng, shape)
    y = ref.cmpool_forward(x, size, stride, start, outputs)
    check_op_grads(lambda a: ref.cmpool_forward(a, size, stride, start, outputs),
                   lambda dy: [ref.cmpool_backward(x, y, dy, size, stride, start)], [x], rng)


def test_cmpool_output_size_is_the_fewest_that_cover():
    for channels, size, stride, start in itertools.product(range(1, 9), range(1, 5),
                                                           range(1, 5), range(-3, 1)):
        if stride > size or start + size <= 0:
            continue
        out = ref.cmpool_output_size(channels, size, stride, start)
        assert start + (out - 1) * stride + size >= channels
        assert out == 1 or start + (out - 2) * stride + size < channels


def test_cmpool_hand_computed():
    # channels 1 3 2 5 4, windows [0, 3) and [2, 5): maxima 3 (channel 1) and 5 (channel 3)
    x = np.array([1.0, 3, 2, 5, 4]).reshape(1, 5, 1, 1)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    np.testing.assert_array_equal(y.ravel(), [3, 5])
    dy = np.array([10.0, 20]).reshape(y.shape)
    np.testing.assert_array_equal(ref.cmpool_backward(x, y, dy, 3, 2, 0).ravel(),
                                  [0, 10, 0, 20, 0])


def test_cmpool_backward_reaches_every_window_of_a_channel():
    # channel 2 is the max of both windows [0, 3) and [2, 5): it gets both gradients
    # (cuda-convnet2's undo kernel, truncating (2 - 0 - 3) / 2 to 0, gives it window 1's only)
    x = np.array([1.0, 2, 3, 0, 0]).reshape(1, 5)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    np.testing.assert_array_equal(y, [[3, 3]])
    np.testing.assert_array_equal(ref.cmpool_backward(x, y, np.array([[10.0, 20]]), 3, 2, 0),
                                  [[0, 0, 30, 0, 0]])


def test_cmpool_ties_share_the_gradient():
    x = np.ones((1, 4, 1, 1), dtype=np.float32)
    y = ref.cmpool_forward(x, 2, 2, 0, 2)
    dx = ref.cmpool_backward(x, y, np.array([1.0, 2], dtype=np.float32).reshape(y.shape), 2, 2, 0)
    np.testing.assert_array_equal(dx.ravel(), [1, 1, 2, 2])
    assert y.dtype == dx.dtype == np.float32


def test_cmpool_rejects_bad_arguments():
    x = np.zeros((2, 5, 3, 3))
    with pytest.raises(ValueError, match="cmpool_forward: stride must be <= size"):
        ref.cmpool_forward(x, 2, 3, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: start must be <= 0"):
        ref.cmpool_forward(x, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="cmpool_forward: .* cover only 4 of 5 channels"):
        ref.cmpool_forward(x, 2, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: .* do not all overlap 5 channels"):
        ref.cmpool_forward(x, 3, 2, 0, 4)
    with pytest.raises(ValueError, match="cmpool_forward: .* do not all overlap"):
        ref.cmpool_forward(x, 2, 1, -2, 6)
    with pytest.raises(ValueError, match="cmpool_forward: size must be an integer >= 1"):
        ref.cmpool_forward(x, 0, 1, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: outputs must be an integer"):
        ref.cmpool_forward(x, 3, 2, 0, 2.5)
    with pytest.raises(ValueError, match=r"cmpool_forward: x must be \(N, C, ...\)"):
        ref.cmpool_forward(np.zeros(5), 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_forward: x must be float32 or float64"):
        ref.cmpool_forward(x.astype(int), 3, 2, 0, 2)
    y = ref.cmpool_forward(x, 3, 2, 0, 2)
    with pytest.raises(ValueError, match="cmpool_backward: dy shape"):
        ref.cmpool_backward(x, y, y[:1], 3, 2, 0)
    with pytest.raises(ValueError, match="cmpool_backward: y .* do not pool x"):
        ref.cmpool_backward(x, y[..., :2], y[..., :2], 3, 2, 0)


# ----------------------------------------------------------------------------------------------
# sum and crop

SUM_CASES = [((3, 12), 4), ((2, 6, 3, 5), 3), ((1, 7, 2, 2), 7), ((4, 5), 1), ((2, 8, 3), 2)]


@pytest.mark.parametrize("shape,stride", SUM_CASES)
def test_sum_forward_matches_direct_and_gradcheck(shape, stride, rng):
    x = rng.standard_normal(shape)
    y = ref.sum_forward(x, stride)
    direct = np.stack([sum(x[:, j * stride + i] for i in range(stride))
                       for j in range(shape[1] // stride)], axis=1)
    np.testing.assert_allclose(y, direct, rtol=1e-14, atol=1e-15)
    check_op_grads(lambda a: ref.sum_forward(a, stride),
                   lambda dy: [ref.sum_backward(dy, stride)], [x], rng)


def test_sum_hand_computed():
    y = ref.sum_forward(np.array([[1.0, 2, 3, 4, 5, 6]], dtype=np.float32), 3)
    np.testing.assert_array_equal(y, [[6, 15]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(ref.sum_backward(np.array([[1.0, 2]]), 3), [[1, 1, 1, 2, 2, 2]])


def test_sum_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sum_forward: stride 4 must divide axis 1"):
        ref.sum_forward(np.zeros((2, 6)), 4)
    with pytest.raises(ValueError, match="sum_forward: stride must be an integer >= 1"):
        ref.sum_forward(np.zeros((2, 6)), 0)
    with pytest.raises(ValueError, match="sum_forward: stride 1 must divide axis 1"):
        ref.sum_forward(np.zeros(6), 1)
    with pytest.raises(ValueError, match=r"sum_backward: dy must be \(N, C, ...\)"):
        ref.sum_backward(np.zeros(6), 2)


# (x shape, start (y, x), size (h, w))
CROP_CASES = [((2, 3, 7, 6), (1, 2), (4, 3)), ((1, 1, 5, 5), (0, 0), (5, 5)),
              ((3, 2, 9, 4), (8, 3), (1, 1)), ((2, 4, 6, 8), (2, 0), (3, 8))]


@pytest.mark.parametrize("shape,start,size", CROP_CASES)
def test_crop_matches_direct_and_gradcheck(shape, start, size, rng):
    x = rng.standard_normal(shape)
    y = ref.crop_forward(x, start, size)
    direct = np.array([[[[x[n, c, start[0] + i, start[1] + j] for j in range(size[1])]
                         for i in range(size[0])] for c in range(shape[1])]
                       for n in range(shape[0])])
    np.testing.assert_array_equal(y, direct)
    check_op_grads(lambda a: ref.crop_forward(a, start, size),
                   lambda dy: [ref.crop_backward(dy, shape[2:], start)], [x], rng)


def test_crop_backward_is_zero_outside_the_window():
    dx = ref.crop_backward(np.full((1, 1, 2, 2), 3.0, dtype=np.float32), (4, 3), (1, 1))
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 3, 3], [0, 3, 3], [0, 0, 0]])
    assert dx.dtype == np.float32


def test_crop_rejects_bad_arguments():
    x = np.zeros((1, 2, 5, 6))
    with pytest.raises(ValueError, match=r"crop_forward: the window's x span \[3, 7\) leaves"):
        ref.crop_forward(x, (0, 3), (2, 4))
    with pytest.raises(ValueError, match="crop_forward: start must be an integer >= 0"):
        ref.crop_forward(x, (-1, 0), (2, 2))
    with pytest.raises(ValueError, match="crop_forward: size must be an integer >= 1"):
        ref.crop_forward(x, (0, 0), (0, 2))
    with pytest.raises(ValueError, match="crop_forward: start and size must be pairs"):
        ref.crop_forward(x, (0,), (2, 2))
    with pytest.raises(ValueError, match="crop_forward: x must be 4-D"):
        ref.crop_forward(x[0], (0, 0), (2, 2))
    with pytest.raises(ValueError, match=r"crop_backward: the window's y span \[4, 6\) leaves"):
        ref.crop_backward(np.zeros((1, 2, 2, 2)), (5, 6), (4, 0))
    with pytest.raises(ValueError, match=r"crop_backward: img_size must be \(H, W\)"):
        ref.crop_backward(np.zeros((1, 2, 2, 2)), (5,), (0, 0))


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
    p = random_probs(rng)
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
