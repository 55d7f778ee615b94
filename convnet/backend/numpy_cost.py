"""NumPy reference for softmax and the costs (OPS.md "softmax and costs").

Probabilities and scores are (N, K), one row per case; labels are integers (N,).

    softmax_forward(x)      p = e^(x - max_row x) / sum_row e^(x - max_row x)
    softmax_backward(p, dp) dx = p * (dp - sum_row(dp * p))
    logreg_forward(p, labels, topk=5) -> (nll, wrong1, wrongk), each (N,) in p's dtype:
        nll = -log(p[label]); wrong_k = 1 where at least k classes have a probability strictly
        greater than the label's, else 0 (a tie with the label counts as right).
        log is not clipped, as in cuda-convnet (computeLogregCost takes __logf of the label's
        probability as it is): p[label] = 0 gives nll = inf, without a warning.
    logreg_backward(p, labels, scale)  dp = -scale / p[label] at the label, 0 elsewhere
        (unclipped too; it is the gradient of scale * sum(nll)).
    softmax_logreg_backward(p, labels, scale)  dx = scale * (p - onehot(label)), the two
        above fused (the gradient of scale * sum(nll(softmax(x))) in x).
    sum2_forward(x)         per case 0.5 * sum(x^2) over all but the first axis
    sum2_backward(x, scale) scale * x
"""
import numpy as np

from . import contract

__all__ = [
    "softmax_forward", "softmax_backward",
    "logreg_forward", "logreg_backward", "softmax_logreg_backward",
    "sum2_forward", "sum2_backward",
]


def _check_rows(op, name, a):
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{op}: {name} must be (N, K), got shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    return a


def _check_labels(op, labels, p):
    labels = np.asarray(labels)
    contract.labels(op, labels, p)
    if labels.size:
        contract.label_range(op, labels.min(), labels.max(), p.shape[1])
    return labels


def softmax_forward(x):
    """Row softmax, stable: the row max is subtracted before exponentiating."""
    x = _check_rows("softmax_forward", "x", x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(p, dp):
    """dx = p * (dp - sum_row(dp * p)), p = softmax_forward(x)."""
    p = _check_rows("softmax_backward", "p", p)
    dp = np.asarray(dp, dtype=p.dtype)
    if dp.shape != p.shape:
        raise ValueError(f"softmax_backward: dp shape {dp.shape} differs from p shape {p.shape}")
    return p * (dp - np.sum(dp * p, axis=1, keepdims=True))


def logreg_forward(p, labels, topk=5):
    """Per case: (-log p[label], top-1 wrong, top-k wrong), all in p's dtype. With G classes
    above the label's probability and E at it (the label's included), top-k is wrong with
    probability 1 - clip((k - G) / E, 0, 1): a tie is broken at random, as cuda-convnet
    counted it (uniform probabilities are (K - 1) / K wrong at top-1, not right)."""
    p = _check_rows("logreg_forward", "p", p)
    labels = _check_labels("logreg_forward", labels, p)
    if int(topk) != topk or topk < 1:
        raise ValueError(f"logreg_forward: topk must be a positive integer, got {topk!r}")
    label_p = p[np.arange(p.shape[0]), labels]
    with np.errstate(divide="ignore"):
        nll = -np.log(label_p)
    greater = np.sum(p > label_p[:, None], axis=1)
    equal = np.sum(p == label_p[:, None], axis=1)  # the label's own class among them

    def wrong(k):  # ties split as cuda-convnet: the label takes its share of the slots left
        right = (k - greater).astype(p.dtype) / equal.astype(p.dtype)  # p's precision, as the
        return 1 - np.clip(right, 0, 1)                                   # kernel's: bit-equal

    return nll, wrong(1), wrong(topk)


def logreg_backward(p, labels, scale):
    """dp = -scale / p[label] at each case's label, 0 elsewhere."""
    p = _check_rows("logreg_backward", "p", p)
    labels = _check_labels("logreg_backward", labels, p)
    rows = np.arange(p.shape[0])
    dp = np.zeros_like(p)
    with np.errstate(divide="ignore"):
        dp[rows, labels] = -p.dtype.type(scale) / p[rows, labels]
    return dp


def softmax_logreg_backward(p, labels, scale):
    """dx = scale * (p - onehot(label)): softmax_backward(p, logreg_backward(p, labels, scale))."""
    p = _check_rows("softmax_logreg_backward", "p", p)
    labels = _check_labels("softmax_logreg_backward", labels, p)
    dx = p.copy()
    dx[np.arange(p.shape[0]), labels] -= 1
    return p.dtype.type(scale) * dx


def _check_cases(op, x):
    x = np.asarray(x)
    if x.ndim < 1 or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: x must be a float32 or float64 array with a batch axis, got "
                         f"{x.shape} {x.dtype}")
    return x


def sum2_forward(x):
    """Per case 0.5 * sum(x^2) over every axis but the first."""
    x = _check_cases("sum2_forward", x)
    return 0.5 * np.sum((x * x).reshape(x.shape[0], -1), axis=1)


def sum2_backward(x, scale):
    """scale * x, the gradient of scale * sum(sum2_forward(x))."""
    x = _check_cases("sum2_backward", x)
    return x.dtype.type(scale) * x
