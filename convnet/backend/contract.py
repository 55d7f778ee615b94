"""The op contract in code: every `<op>_<pass>` both backends implement, its signature, and the
shape rules and argument checks that hold on either backend (one message each).

OPS.md explains the ops in prose; `OPS` below is what the code and the tests hold to
(tests/test_contract.py checks OPS.md, the NumPy backend and the cuda backend against it).
The checks read only shapes and Python numbers, so they take NumPy and CuPy arrays alike; what is
particular to one backend (CuPy's device, contiguity and float32, NumPy's float64) stays there.
Kernel algorithms (`algo=` of the cuda conv and local ops) are chosen in algos.py.
"""
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# shape rules (cuda-convnet's)


def conv_output_size(img, filter_size, stride, padding):
    """1 + ceil((2*padding + img - filter_size) / stride): the last window may run past the
    bottom / right padding, as cuda-convnet's."""
    return 1 + -(-(2 * padding + img - filter_size) // stride)


def pool_output_size(img, size, stride, start):
    """1 + ceil((img - start - size) / stride), as cuda-convnet."""
    return 1 + -(-(img - start - size) // stride)


def cmpool_output_size(channels, size, stride, start):
    """The fewest outputs whose windows cover every channel: 1 + ceil((C - start - size) /
    stride). cuda-convnet2 takes the count from the layer's `outputs` and accepts it when
    start + (outputs - 1) * stride + size >= C; this is the smallest such count."""
    return pool_output_size(channels, size, stride, start)


# the neurons (csrc/ops.h indexes the same kinds in this order) and the parameters each reads
NEURON_KINDS = ("ident", "relu", "logistic", "tanh", "abs", "softrelu", "brelu", "drelu",
                "linear", "square", "sqrt", "log")
NEURON_PARAMS = {"tanh": ("a", "b"), "brelu": ("a",), "drelu": ("a",), "linear": ("a", "b"),
                 "log": ("a",)}


# ----------------------------------------------------------------------------------------------
# argument checks


def integer(op, name, value, least=None):
    """int(value), refusing bools, fractions and values below `least`."""
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{op}: {name} must be an integer, got {value!r}")
    value = int(value)
    if least is not None and value < least:
        raise ValueError(f"{op}: {name} must be an integer >= {least}, got {value}")
    return value


def ndim(op, name, a, n):
    if np.ndim(a) != n:
        raise ValueError(f"{op}: {name} must be {n}-D, got shape {tuple(np.shape(a))}")


def same_shape(op, ref_name, ref, **others):
    for name, a in others.items():
        if tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"{op}: {name} shape {tuple(a.shape)} differs from {ref_name} shape "
                             f"{tuple(ref.shape)}")


def shape_is(op, name, a, expected, layout=""):
    if tuple(a.shape) != tuple(expected):
        what = f"{layout} = " if layout else ""
        raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {what}"
                         f"{tuple(expected)}")


def conv_geometry(op, channels, filters, img_size, filter_size, stride, padding, groups):
    """A conv/local configuration checked; its output size (OH, OW)."""
    stride = integer(op, "stride", stride, 1)
    padding = integer(op, "padding", padding, 0)
    groups = integer(op, "groups", groups, 1)
    filter_size = integer(op, "filter_size", filter_size, 1)
    if channels % groups:
        raise ValueError(f"{op}: {channels} input channels are not divisible by groups={groups}")
    if filters % groups:
        raise ValueError(f"{op}: {filters} filters are not divisible by groups={groups}")
    if len(img_size) != 2:
        raise ValueError(f"{op}: img_size must be (H, W), got {img_size!r}")
    height, width = (integer(op, "img_size", s) for s in img_size)
    if min(height, width) < 1:
        raise ValueError(f"{op}: image size must be positive, got {(height, width)}")
    if filter_size > min(height, width) + 2 * padding:
        raise ValueError(f"{op}: filter_size {filter_size} is larger than the padded image "
                         f"{height + 2 * padding}x{width + 2 * padding}")
    return (conv_output_size(height, filter_size, stride, padding),
            conv_output_size(width, filter_size, stride, padding))


def conv_weights(op, w, channels, groups):
    shape_is(op, "w", w, (w.shape[0], channels // groups, w.shape[2], w.shape[2]),
             "(F, C // groups, fs, fs)")


def local_weights(op, w, filters, channels, groups, out_size):
    shape_is(op, "w", w, (*out_size, filters, channels // groups, w.shape[4], w.shape[4]),
             "(OH, OW, F, C // groups, fs, fs)")


def bias(op, y, b):
    """b must index the leading non-batch axes of y."""
    if b.ndim < 1 or y.ndim < 1 + b.ndim or tuple(y.shape[1:1 + b.ndim]) != tuple(b.shape):
        raise ValueError(f"{op}: b has shape {tuple(b.shape)}, which must equal "
                         f"y.shape[1:1 + b.ndim] for y of shape {tuple(y.shape)}")


def bias_ndim(op, dy, value):
    if int(value) != value or not 1 <= value <= dy.ndim - 1:
        raise ValueError(f"{op}: bias_ndim must be in 1..{dy.ndim - 1} for dy of shape "
                         f"{tuple(dy.shape)}, got {value!r}")
    return int(value)


def fc_pair(op, a, a_name, b, b_name, a_axis, b_axis):
    """Two 2-D operands of a product, a's `a_axis` meeting b's `b_axis`."""
    ndim(op, a_name, a, 2)
    ndim(op, b_name, b, 2)
    if a.shape[a_axis] != b.shape[b_axis]:
        raise ValueError(f"{op}: {a_name} of shape {tuple(a.shape)} does not match {b_name} of "
                         f"shape {tuple(b.shape)}")


def pool_windows(op, img_size, size, stride, start, out_size):
    """(size, stride, start, out_size) checked: every window overlaps the image."""
    size = integer(op, "size", size, 1)
    stride = integer(op, "stride", stride, 1)
    start = integer(op, "start", start)
    if len(out_size) != 2 or any(isinstance(o, bool) or int(o) != o or o < 1 for o in out_size):
        raise ValueError(f"{op}: out_size must be two integers >= 1, got {out_size!r}")
    out_size = tuple(int(o) for o in out_size)
    for img, out in zip(img_size, out_size):
        if start + size <= 0 or start + (out - 1) * stride >= img:
            raise ValueError(f"{op}: with start={start}, size={size}, stride={stride}, {out} "
                             f"outputs do not all overlap an image of {img} pixels")
    return size, stride, start, out_size


def maxpool_grads(op, x, y, dy):
    if tuple(dy.shape) != tuple(y.shape) or tuple(y.shape[:2]) != tuple(x.shape[:2]):
        raise ValueError(f"{op}: x {tuple(x.shape)}, y {tuple(y.shape)} and dy "
                         f"{tuple(dy.shape)} disagree")


def norm_params(op, size, alpha, k):
    """The window size, alpha and k (minDiv) of lrn / rnorm / cnorm."""
    size = integer(op, "size", size, 1)
    if not alpha >= 0:
        raise ValueError(f"{op}: alpha must be >= 0, got {alpha!r}")
    if not k > 0:
        raise ValueError(f"{op}: k (minDiv) must be > 0, got {k!r}")
    return size


def keep(op, value):
    if not 0 < value <= 1:
        raise ValueError(f"{op}: keep must be in (0, 1], got {value!r}")
    return float(value)


def mask(op, name, a, m):
    if tuple(m.shape) != tuple(a.shape):
        raise ValueError(f"{op}: mask shape {tuple(m.shape)} differs from {name} shape "
                         f"{tuple(a.shape)}")


def rows(op, name, a):
    """(N, K) probabilities or scores."""
    if np.ndim(a) != 2:
        raise ValueError(f"{op}: {name} must be (N, K), got shape {tuple(np.shape(a))}")


def labels(op, labels, p):
    """Integer labels of shape (N,) for (N, K) probabilities."""
    if tuple(labels.shape) != (p.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{op}: labels must be integers of shape ({p.shape[0]},), got "
                         f"{tuple(labels.shape)} {labels.dtype}")


def label_range(op, lo, hi, classes):
    """The labels' range within [0, classes) (the NumPy backend checks it; the cuda one cannot
    without a device read)."""
    if lo < 0 or hi >= classes:
        raise ValueError(f"{op}: labels must lie in [0, {classes}), got [{lo}, {hi}]")


def maxnorm_args(op, w, wball, axis):
    if not wball >= 0:
        raise ValueError(f"{op}: wball must be >= 0, got {wball!r}")
    if isinstance(axis, bool) or int(axis) != axis or not -w.ndim <= axis < w.ndim:
        raise ValueError(f"{op}: axis {axis!r} is out of range for a {w.ndim}-d array")
    return int(axis)


# cuda-convnet2's layers (numpy_cc2.py)


def cmpool_windows(op, channels, size, stride, start, outputs):
    """cuda-convnet2's conditions (convPoolCrossMap's asserts): start <= 0, 1 <= stride <= size,
    every channel covered; and every window overlapping the channels (no empty max)."""
    size = integer(op, "size", size, 1)
    stride = integer(op, "stride", stride, 1)
    start = integer(op, "start", start)
    outputs = integer(op, "outputs", outputs, 1)
    if stride > size:
        raise ValueError(f"{op}: stride must be <= size, got stride={stride}, size={size}")
    if start > 0:
        raise ValueError(f"{op}: start must be <= 0, got {start}")
    last = start + (outputs - 1) * stride
    if start + size <= 0 or last >= channels:
        raise ValueError(f"{op}: with start={start}, size={size}, stride={stride}, {outputs} "
                         f"outputs do not all overlap {channels} channels")
    if last + size < channels:
        raise ValueError(f"{op}: with start={start}, size={size}, stride={stride}, {outputs} "
                         f"outputs cover only {last + size} of {channels} channels")
    return size, stride, start, outputs


def channels_first(op, name, a):
    """An array with a batch axis and a channel axis: (N, C, ...)."""
    if len(a.shape) < 2:
        raise ValueError(f"{op}: {name} must be (N, C, ...), got shape {tuple(a.shape)}")


def cmpool_grads(op, x, y, dy):
    """y and dy (N, outputs, ...) of x (N, C, ...)."""
    same_shape(op, "y", y, dy=dy)
    if len(y.shape) != len(x.shape) or y.shape[0] != x.shape[0] or \
            tuple(y.shape[2:]) != tuple(x.shape[2:]):
        raise ValueError(f"{op}: y {tuple(y.shape)} and dy {tuple(dy.shape)} do not pool x "
                         f"{tuple(x.shape)} across its axis 1")


def sum_stride(op, shape, stride):
    """stride >= 1 dividing axis 1 of `shape` (N, D, ...); the groups D // stride."""
    stride = integer(op, "stride", stride, 1)
    if len(shape) < 2 or shape[1] % stride:
        raise ValueError(f"{op}: stride {stride} must divide axis 1 of shape {tuple(shape)}")
    return stride


def crop_window(op, img_size, start, size):
    """(start, size) as ((y, x), (h, w)): a window of at least a pixel inside the image."""
    if len(start) != 2 or len(size) != 2:
        raise ValueError(f"{op}: start and size must be pairs (y, x) and (h, w), got "
                         f"{start!r} and {size!r}")
    start = tuple(integer(op, "start", s, 0) for s in start)
    size = tuple(integer(op, "size", s, 1) for s in size)
    for axis, img, s, n in zip("yx", img_size, start, size):
        if s + n > img:
            raise ValueError(f"{op}: the window's {axis} span [{s}, {s + n}) leaves the image of "
                             f"{img} pixels")
    return start, size


def image_size(op, img_size):
    """(H, W), both >= 1."""
    if len(img_size) != 2:
        raise ValueError(f"{op}: img_size must be (H, W), got {img_size!r}")
    return tuple(integer(op, "img_size", s, 1) for s in img_size)


def dense_labels(op, labels, p):
    """Label values (N, K), one per probability, as cuda-convnet2's costs take them."""
    if tuple(labels.shape) != tuple(p.shape):
        raise ValueError(f"{op}: labels must have the probabilities' shape {tuple(p.shape)}, "
                         f"got {tuple(labels.shape)}")


def pos_weight(op, value):
    if not value >= 0:
        raise ValueError(f"{op}: pos_weight must be >= 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------
# the ops


@dataclass(frozen=True)
class Op:
    """One `<op>_<pass>`: its call as OPS.md writes it (arguments, then what it returns), and
    the kernel algorithms the cuda backend can run it with (algos.py chooses among them)."""
    name: str
    args: tuple
    returns: str
    algorithms: tuple = ()

    @property
    def signature(self):
        return f"{self.name}({', '.join(self.args)}) -> {self.returns}"


def channel_table(op, conns, channels):
    """conns: an integer sequence of whole permutations of range(channels), as v1's layer.py
    drew them (a channel appears once in each block of `channels`); returned as (blocks, C)."""
    conns = np.asarray(conns)
    if conns.ndim != 1 or conns.dtype.kind not in "iu" or channels < 1 or \
            conns.size == 0 or conns.size % channels:
        raise ValueError(f"{op}: conns must be whole permutations of the {channels} channels "
                         f"end to end, got {conns.dtype} shape {conns.shape}")
    blocks = conns.reshape(-1, channels)
    if not (np.sort(blocks, axis=1) == np.arange(channels)).all():
        raise ValueError(f"{op}: each block of {channels} conns must be a permutation of "
                         f"0..{channels - 1}")
    return blocks


def _ops(*entries):
    return {e.name: e for e in entries}


P = "precision='fp32'"  # the conv and local ops' precision (precision.py)
MMA = ("mma_tf32", "mma_bf16")  # every conv and local pass (sm_80 and newer)
WINOGRAD = ("winograd2", "winograd4")  # every conv pass at stride 1
_BWD_FILTER = ("gemm", "gemm_dy_along_f", "gemm_dy_along_f_fill", *WINOGRAD, *MMA)

OPS = _ops(
    Op("conv_forward", ("x", "w", "stride", "padding", "groups", P), "y",
       ("gemm", *WINOGRAD, *MMA)),
    Op("conv_forward_bias_relu", ("x", "w", "b", "stride", "padding", "groups", P),
       "max(y + b, 0)"),
    Op("conv_backward_data", ("dy", "w", "img_size", "stride", "padding", "groups", P), "dx",
       ("gemm", *WINOGRAD, *MMA)),
    Op("conv_backward_filter", ("x", "dy", "filter_size", "stride", "padding", "groups", P), "dw",
       _BWD_FILTER),
    Op("local_forward", ("x", "w", "stride", "padding", "groups", P), "y", ("gemm", *MMA)),
    Op("local_backward_data", ("dy", "w", "img_size", "stride", "padding", "groups", P), "dx",
       ("gemm", *MMA)),
    Op("local_backward_filter", ("x", "dy", "filter_size", "stride", "padding", "groups", P), "dw",
       ("gemm", *MMA)),
    Op("bias_forward", ("y", "b"), "y + b"),
    Op("bias_backward", ("dy", "bias_ndim"), "db"),
    Op("fc_forward", ("x", "w"), "x @ w"),
    Op("fc_backward_data", ("dy", "w"), "dy @ w.T"),
    Op("fc_backward_filter", ("x", "dy"), "x.T @ dy"),
    Op("maxpool_forward", ("x", "size", "stride", "start", "out_size"), "y"),
    Op("maxpool_backward", ("x", "y", "dy", "size", "stride", "start"), "dx"),
    Op("avgpool_forward", ("x", "size", "stride", "start", "out_size"), "y"),
    Op("avgpool_backward", ("dy", "img_size", "size", "stride", "start"), "dx"),
    Op("lrn_forward", ("x", "size", "alpha", "beta", "k"), "y"),
    Op("lrn_backward", ("x", "y", "dy", "size", "alpha", "beta", "k"), "dx"),
    Op("rnorm_forward", ("x", "size", "alpha", "beta", "k"), "y"),
    Op("rnorm_backward", ("x", "y", "dy", "size", "alpha", "beta", "k"), "dx"),
    Op("cnorm_forward", ("x", "size", "alpha", "beta", "k"), "y"),
    Op("cnorm_backward", ("x", "y", "dy", "size", "alpha", "beta", "k"), "dx"),
    Op("neuron_forward", ("x", "kind", "a=0.0", "b=0.0"), "y"),
    Op("neuron_backward", ("x", "y", "dy", "kind", "a=0.0", "b=0.0"), "dx"),
    Op("dropout_mask", ("shape", "keep", "seed", "layer", "step", "offset=0"), "uint8 mask"),
    Op("dropout_forward", ("x", "mask", "keep"), "x * mask / keep"),
    Op("dropout_backward", ("dy", "mask", "keep"), "dy * mask / keep"),
    Op("random_normal", ("shape", "seed", "layer", "step", "offset=0"), "float32"),
    Op("softmax_forward", ("x",), "p"),
    Op("softmax_backward", ("p", "dp"), "dx"),
    Op("logreg_forward", ("p", "labels", "topk=5"), "(nll, wrong1, wrongk)"),
    Op("logreg_backward", ("p", "labels", "scale"), "dp"),
    Op("softmax_logreg_backward", ("p", "labels", "scale"), "dx"),
    Op("sum2_forward", ("x",), "per-case 0.5 * sum(x^2)"),
    Op("sum2_backward", ("x", "scale"), "scale * x"),
    Op("eltsum_forward", ("xs", "coeffs"), "sum_i coeffs[i] * xs[i]"),
    Op("eltmax_forward", ("xs",), "max"),
    Op("eltmax_backward", ("xs", "y", "dy"), "[dx_i]"),
    Op("concat_forward", ("xs",), "along axis 1"),
    Op("concat_backward", ("dy", "sizes"), "list of slices"),
    Op("channel_gather_forward", ("x", "conns"), "x[:, conns]"),
    Op("channel_gather_backward", ("dy", "conns", "channels"), "dx"),
    Op("sgd_update", ("w", "v", "g", "eps", "mom", "wc"), "in place"),
    Op("maxnorm", ("w", "wball", "axis"), "in place"),
    Op("cmpool_forward", ("x", "size", "stride", "start", "outputs"), "y"),
    Op("cmpool_backward", ("x", "y", "dy", "size", "stride", "start"), "dx"),
    Op("sum_forward", ("x", "stride"), "y"),
    Op("sum_backward", ("dy", "stride"), "dx"),
    Op("crop_forward", ("x", "start", "size"), "y"),
    Op("crop_backward", ("dy", "img_size", "start"), "dx"),
    Op("crossent_forward", ("p", "labels"), "(cost, wrong)"),
    Op("crossent_backward", ("p", "labels", "scale"), "dp"),
    Op("softmax_crossent_backward", ("p", "labels", "scale"), "dx"),
    Op("bce_forward", ("y", "labels", "pos_weight=1.0"), "(cost, wrong, top1_wrong)"),
    Op("bce_backward", ("y", "labels", "scale", "pos_weight=1.0"), "dy"),
    Op("logistic_bce_backward", ("y", "labels", "scale", "pos_weight=1.0"), "dx"),
    Op("dce_forward", ("y", "labels", "pos_weight=1.0"), "(cost, wrong, counts)"),
    Op("dce_backward", ("y", "labels", "scale", "pos_weight=1.0"), "dy"),
)
