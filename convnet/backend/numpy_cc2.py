"""NumPy reference for the layer types cuda-convnet2 added (OPS.md "cuda-convnet2's layers"):
cross-map max pooling, the strided sum, cropping and the crossent, bce and dce costs. float32
or float64; each op is its plain definition.

    cmpool_forward(x, size, stride, start, outputs) -> y
        x (N, C, ...) pooled across axis 1: y[:, o] = max of x[:, c] over the channels
        c in [start + o*stride, start + o*stride + size) clipped to [0, C). cuda-convnet2's
        conditions hold: start <= 0, 1 <= stride <= size, the windows cover every channel
        (cmpool_output_size gives the fewest outputs that do) and none is empty.
    cmpool_backward(x, y, dy, size, stride, start) -> dx
        every channel equal to its window's max receives that window's gradient (ties share, as
        maxpool), the windows added in ascending order.
    sum_forward(x, stride) -> y    y[:, j] = sum_{i < stride} x[:, j*stride + i], x (N, D, ...)
    sum_backward(dy, stride) -> dx dx[:, j*stride + i] = dy[:, j]
    crop_forward(x, start, size) -> y  x[:, :, y0:y0 + h, x0:x0 + w]: start (y0, x0), size (h, w)
    crop_backward(dy, img_size, start) -> dx   zero but the window, which holds dy

Costs take probabilities (N, K) and label values of the same shape (one-hot rows, or any
weights), as cuda-convnet2's: integer labels are logreg's (numpy_cost.py). log is cuda-convnet2's
safelog, log(v) for v > 0 and -50 otherwise, so a zero label times a zero probability costs 0.

    crossent_forward(p, labels) -> (cost, wrong), each (N,)
        cost = -sum_k t_k safelog(p_k); wrong = 1 - 1/m when one of the m classes of maximal
        probability has t > 0, else 1.
    crossent_backward(p, labels, scale) -> dp = -scale * t / p  (0 where t = 0)
    softmax_crossent_backward(p, labels, scale) -> dx = scale * (p * sum_k t_k - t)
        the gradient through p = softmax(x): scale * (p - t) for rows of t summing to 1.
    bce_forward(y, labels, pos_weight=1.0) -> (cost, wrong, top1_wrong), each (N,)
        cost = -sum_k (w t safelog(y) + (1 - t) safelog(1 - y)), w = pos_weight;
        wrong = the fraction of the K outputs where (y > 0.5) != t;
        top1_wrong = 1 - sum of t over the m classes of maximal y / m (read as a softmax).
    bce_backward(y, labels, scale, pos_weight=1.0) -> dy = -scale * (w t / y - (1 - t) / (1 - y))
        each term 0 where its label weight (w t, 1 - t) is 0.
    logistic_bce_backward(y, labels, scale, pos_weight=1.0)
        -> dx = -scale * (w t (1 - y) - (1 - t) y),
        the gradient through y = logistic(x): scale * (y - t) for w = 1.
    dce_forward(y, labels, pos_weight=1.0) -> (cost, wrong, counts)
        cost and wrong as bce_forward; counts (K, 3) per class, summed over the batch: cases
        declared positive (y > 0.5), positives (sum of t), true positives (sum of t where
        (y > 0.5) == t), from which precision and recall follow.
    dce_backward(y, labels, scale, pos_weight=1.0) -> dy: bce_backward's.

Taken from cuda-convnet2 (akrizhevsky/cuda-convnet2): layer.py's parsers (CrossMapPoolLayerParser,
SumLayerParser, CropLayerParser, the cost parsers), cudaconv3's convPoolCrossMap /
convCrossMapMaxPoolUndo / convCrop, layer_kernels.cu's kCrossEntCost / kCrossEntGrad, and
layer.cuh's BinomialCrossEnt* operators. Where this reference departs from it, on purpose:
  - cmpool_backward is the exact adjoint: cuda-convnet2's undo kernel finds a channel's first
    window with C's truncating division, and so skips window 0 for channels near its end when
    stride < size (e.g. channel 2 of size 3, stride 2).
  - sum: cuda-convnet2 has the parser only (outputs = inputs / stride; SumLayer is declared but
    never defined), so the groups are this project's choice: consecutive entries of axis 1.
  - crop_backward: cuda-convnet2's asserts; this is the adjoint of crop_forward.
  - gradients have this project's sign (of the cost; cuda-convnet2 returns their negatives) and
    are exact where cuda-convnet2 divides 0 by 0.
"""
import numpy as np

from . import contract
from .contract import cmpool_output_size

__all__ = [
    "cmpool_output_size", "cmpool_forward", "cmpool_backward", "sum_forward", "sum_backward",
    "crop_forward", "crop_backward", "crossent_forward", "crossent_backward",
    "softmax_crossent_backward", "bce_forward", "bce_backward", "logistic_bce_backward",
    "dce_forward", "dce_backward",
]

SAFELOG_FLOOR = -50.0


def _float(op, name, a):
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    return a


def _channels(op, name, a):
    a = _float(op, name, a)
    contract.channels_first(op, name, a)
    return a


# ----------------------------------------------------------------------------------------------
# cross-map max pooling


def _channel_windows(channels, size, stride, start, outputs):
    """[(lo, hi)] of each output's channels, clipped to [0, C)."""
    firsts = (start + o * stride for o in range(outputs))
    return [(max(first, 0), min(first + size, channels)) for first in firsts]


def cmpool_forward(x, size, stride, start, outputs):
    """y[:, o] = max of x[:, c] over window o's channels."""
    op = "cmpool_forward"
    x = _channels(op, "x", x)
    args = contract.cmpool_windows(op, x.shape[1], size, stride, start, outputs)
    windows = _channel_windows(x.shape[1], *args)
    return np.stack([x[:, lo:hi].max(axis=1) for lo, hi in windows], axis=1)


def cmpool_backward(x, y, dy, size, stride, start):
    """dx: every channel equal to its window's max receives that window's gradient."""
    op = "cmpool_backward"
    x, y, dy = (_channels(op, name, a) for name, a in (("x", x), ("y", y), ("dy", dy)))
    contract.cmpool_grads(op, x, y, dy)
    args = contract.cmpool_windows(op, x.shape[1], size, stride, start, y.shape[1])
    dx = np.zeros(x.shape, dtype=np.result_type(x, dy))
    for o, (lo, hi) in enumerate(_channel_windows(x.shape[1], *args)):
        dx[:, lo:hi] += np.where(x[:, lo:hi] == y[:, o:o + 1], dy[:, o:o + 1], 0)
    return dx


# ----------------------------------------------------------------------------------------------
# strided sum and crop


def sum_forward(x, stride):
    """y[:, j] = sum of x[:, j*stride : (j+1)*stride]."""
    x = _float("sum_forward", "x", x)
    stride = contract.sum_stride("sum_forward", x.shape, stride)
    groups = x.shape[1] // stride
    return x.reshape(x.shape[0], groups, stride, *x.shape[2:]).sum(axis=2)


def sum_backward(dy, stride):
    """dx[:, j*stride + i] = dy[:, j]."""
    dy = _float("sum_backward", "dy", dy)
    contract.channels_first("sum_backward", "dy", dy)
    stride = contract.integer("sum_backward", "stride", stride, 1)
    return np.repeat(dy, stride, axis=1)


def crop_forward(x, start, size):
    """The window of size (h, w) at start (y0, x0) of each map of x (N, C, H, W)."""
    op = "crop_forward"
    x = _float(op, "x", x)
    contract.ndim(op, "x", x, 4)
    (y0, x0), (h, w) = contract.crop_window(op, x.shape[2:], start, size)
    return x[:, :, y0:y0 + h, x0:x0 + w].copy()


def crop_backward(dy, img_size, start):
    """dx (N, C, H, W): dy in the window at start (y0, x0), zero elsewhere."""
    op = "crop_backward"
    dy = _float(op, "dy", dy)
    contract.ndim(op, "dy", dy, 4)
    img_size = contract.image_size(op, img_size)
    (y0, x0), (h, w) = contract.crop_window(op, img_size, start, dy.shape[2:])
    dx = np.zeros(dy.shape[:2] + img_size, dtype=dy.dtype)
    dx[:, :, y0:y0 + h, x0:x0 + w] = dy
    return dx


# ----------------------------------------------------------------------------------------------
# costs


def _cost_args(op, p, labels, p_name="p"):
    p = _float(op, p_name, p)
    contract.rows(op, p_name, p)
    labels = np.asarray(labels)
    contract.dense_labels(op, labels, p)
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"{op}: labels must be real numbers, got {labels.dtype}")
    return p, labels.astype(p.dtype, copy=False)


def safelog(v):
    """log(v) for v > 0, SAFELOG_FLOOR elsewhere (cuda-convnet2's safelog)."""
    positive = v > 0
    return np.where(positive, np.log(np.where(positive, v, 1)), SAFELOG_FLOOR).astype(v.dtype)


def _ratio(numerator, denominator):
    """numerator / denominator, 0 where the numerator is 0 (inf where only the denominator is)."""
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=denominator.dtype)
    with np.errstate(divide="ignore"):
        np.divide(numerator, denominator, out=out, where=numerator != 0)
    return out


def _is_max(p):
    return p == p.max(axis=1, keepdims=True)


def crossent_forward(p, labels):
    """Per case: (-sum_k t_k safelog(p_k), 1 - the chance that a maximal class is labelled)."""
    p, t = _cost_args("crossent_forward", p, labels)
    cost = -np.sum(t * safelog(p), axis=1)
    is_max = _is_max(p)
    right = np.any(is_max & (t > 0), axis=1) / np.sum(is_max, axis=1)
    return cost, (1 - right).astype(p.dtype)


def crossent_backward(p, labels, scale):
    """dp = -scale * t / p, 0 where t = 0."""
    p, t = _cost_args("crossent_backward", p, labels)
    return _ratio(-p.dtype.type(scale) * t, p)


def softmax_crossent_backward(p, labels, scale):
    """dx = scale * (p * sum_k t_k - t): crossent_backward through p = softmax(x)."""
    p, t = _cost_args("softmax_crossent_backward", p, labels)
    return p.dtype.type(scale) * (p * t.sum(axis=1, keepdims=True) - t)


def _bce_cost(op, y, labels, pos_weight):
    """(y, t, w, per-case cost, per-case fraction wrong at the 0.5 threshold)."""
    y, t = _cost_args(op, y, labels, "y")
    w = y.dtype.type(contract.pos_weight(op, pos_weight))
    cost = -np.sum(w * t * safelog(y) + (1 - t) * safelog(1 - y), axis=1)
    declared = (y > 0.5).astype(y.dtype)
    wrong = np.mean(declared != t, axis=1).astype(y.dtype)
    return y, t, w, cost, wrong


def bce_forward(y, labels, pos_weight=1.0):
    """Per case: (binomial cross-entropy, fraction wrong at 0.5, top-1 wrong read as softmax)."""
    y, t, _, cost, wrong = _bce_cost("bce_forward", y, labels, pos_weight)
    is_max = _is_max(y)
    top1_right = np.sum(t * is_max, axis=1) / np.sum(is_max, axis=1)
    return cost, wrong, (1 - top1_right).astype(y.dtype)


def _bce_backward(op, y, labels, scale, pos_weight):
    y, t = _cost_args(op, y, labels, "y")
    w = y.dtype.type(contract.pos_weight(op, pos_weight))
    return -y.dtype.type(scale) * (_ratio(w * t, y) - _ratio(1 - t, 1 - y))


def bce_backward(y, labels, scale, pos_weight=1.0):
    """dy = -scale * (w t / y - (1 - t) / (1 - y)), each term 0 where its label weight is."""
    return _bce_backward("bce_backward", y, labels, scale, pos_weight)


def logistic_bce_backward(y, labels, scale, pos_weight=1.0):
    """dx = -scale * (w t (1 - y) - (1 - t) y): bce_backward through y = logistic(x)."""
    op = "logistic_bce_backward"
    y, t = _cost_args(op, y, labels, "y")
    w = y.dtype.type(contract.pos_weight(op, pos_weight))
    return -y.dtype.type(scale) * (w * t * (1 - y) - (1 - t) * y)


def dce_forward(y, labels, pos_weight=1.0):
    """Per case: (bce cost, fraction wrong at 0.5); per class (K, 3) over the batch:
    (declared positive, positive, true positive)."""
    y, t, _, cost, wrong = _bce_cost("dce_forward", y, labels, pos_weight)
    declared = (y > 0.5).astype(y.dtype)
    true_positive = t * (declared == t)
    counts = np.stack([declared.sum(axis=0), t.sum(axis=0), true_positive.sum(axis=0)], axis=1)
    return cost, wrong, counts


def dce_backward(y, labels, scale, pos_weight=1.0):
    """bce_backward's gradient (the detection cost differs only in what it reports)."""
    return _bce_backward("dce_backward", y, labels, scale, pos_weight)
