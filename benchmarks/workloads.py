"""The benchmark's cases: every op of the contract (convnet/backend/contract.py's OPS) on the
shapes of AlexNet, the CIFAR nets and Fashion, with the minimum work (FLOPs or bytes) of each;
and, in EXCUSED, the contract ops that are not timed alone, each with its reason.

Pure Python, no GPU: bench_kernels.py times these cases, tests/test_bench_report.py checks the
counting and tests/test_bench_cases.py that every contract op is benchmarked or excused. A case
is compute-bound (`work_kind == "flops"`, reported in TFLOP/s against the measured FP32 FMA peak)
or memory-bound (`work_kind == "bytes"`, GB/s against the measured device-to-device copy
bandwidth).

Names: a case times one contract op (`contract_op`, e.g. conv_backward_filter) on one layer;
`op` and `pass_` are that name split by report.split_op (conv, bwd_filter), and the case id,
which --only matches, is op.pass.layer.

Minimum work, the honest floor (never the work a particular kernel happens to do):
- conv and local, every pass: 2 * N * F * OH * OW * (C / groups) * fs * fs FLOPs (one
  multiply-add per filter tap per output; bwd_data and bwd_filter are the same products
  transposed). fc, every pass: 2 * N * K * M.
- memory-bound ops: TRAFFIC, the arrays the op's formula needs, each read once, and its results,
  each written once. Where the contract passes more than the formula needs, the extra arrays
  are not counted.
"""
import dataclasses
from dataclasses import dataclass, field

from convnet.backend.contract import OPS, cmpool_output_size, pool_output_size
# the nets' layers, also reached as workloads.* by the tests and algo_table.py
from convnet.backend.contract import conv_output_size  # noqa: F401
from nets import (ALEXNET_CONV1_OUT, ALEXNET_CONVS, ALEXNET_TOWER, CIFAR_CONV2_OUT,
                  CIFAR_POOL1_OUT, CONV_LAYERS, FC_LAYERS, LOCAL_LAYERS, numel, shape_str)
from nets import CIFAR_CONVS, FASHION_CONVS, ConvLayer, FcLayer  # noqa: F401
from report import split_op

F32 = 4  # bytes per float32 element
I32 = 4  # labels are int32 on the device
U8 = 1   # dropout masks are uint8
BATCH = 128

# The paper's response normalization: k=2, n=5, alpha=1e-4, beta=0.75 (alpha per square).
LRN_PARAMS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
# cifar10-18pct's rnorm1: size 3, scale 5e-5 (divided by size^2), pow 0.75, minDiv 1
RNORM_PARAMS = {"size": 3, "alpha": 5e-5 / 9, "beta": 0.75, "k": 1.0}
POOL_PARAMS = {"size": 3, "stride": 2, "start": 0}
SGD_PARAMS = {"eps": 0.01, "mom": 0.9, "wc": 5e-4}
DROPOUT_KEEP = 0.5

# Contract ops with no case of their own: op -> why.
EXCUSED = {
    "dropout_mask": "drawn inside every dropout.fwd case: a training step draws a fresh mask "
                    "and applies it (dropout_mask then dropout_forward, a new step each call), "
                    "and that case checks the mask against philox.py's stream; alone it only "
                    "writes a uint8 array, which says nothing dropout.fwd does not",
    "channel_gather_forward": "CuPy's own indexing (x[:, conns]), no kernel of ours: a copy at "
                              "copy bandwidth, used only by v1's randSparse layers",
    "channel_gather_backward": "CuPy's indexed assignments and adds, no kernel of ours (as "
                               "channel_gather_forward)",
}

# op: (arrays read, arrays written), the fewest the formula needs, each once.
TRAFFIC = {
    "bias_forward": ("y b", "out"),
    "bias_backward": ("dy", "db"),
    "maxpool_forward": ("x", "y"),
    "maxpool_backward": ("x dy", "dx"),         # y can be recomputed from x
    "avgpool_forward": ("x", "y"),
    "avgpool_backward": ("dy", "dx"),
    "lrn_forward": ("x", "y"),
    "lrn_backward": ("x dy", "dx"),             # y and the denominators from x
    "rnorm_forward": ("x", "y"),
    "rnorm_backward": ("x dy", "dx"),
    "cnorm_forward": ("x", "y"),
    "cnorm_backward": ("x dy", "dx"),
    "cmpool_forward": ("x", "y"),
    "cmpool_backward": ("x dy", "dx"),
    "sum_forward": ("x", "y"),
    "sum_backward": ("dy", "dx"),
    "crop_forward": ("x_window", "y"),          # only the window of x
    "crop_backward": ("dy", "dx"),
    "neuron_forward": ("x", "y"),
    "neuron_backward": ("x dy", "dx"),          # relu: dy and one of x, y
    "dropout_forward": ("x", "mask y"),         # the mask drawn in the same case (EXCUSED)
    "dropout_backward": ("dy mask", "dx"),
    "random_normal": ("", "out"),
    "softmax_forward": ("x", "p"),
    "softmax_backward": ("p dp", "dx"),
    "logreg_forward": ("p labels", "nll wrong1 wrongk"),
    "logreg_backward": ("p_label labels", "dp"),  # only p at each case's label
    "softmax_logreg_backward": ("p labels", "dx"),
    # cuda-convnet2's costs: labels (N, K) like the probabilities, one-hot or multi-label
    "crossent_forward": ("p labels", "cost wrong"),
    "crossent_backward": ("p_label labels", "dp"),  # one-hot: only p where t > 0
    "softmax_crossent_backward": ("p labels", "dx"),
    "bce_forward": ("y labels", "cost wrong top1_wrong"),
    "bce_backward": ("y labels", "dy"),
    "logistic_bce_backward": ("y labels", "dx"),
    "dce_forward": ("y labels", "cost wrong counts"),
    "dce_backward": ("y labels", "dy"),
    "sum2_forward": ("x", "cost"),
    "sum2_backward": ("x", "dx"),
    "eltsum_forward": ("xs", "y"),
    "eltmax_forward": ("xs", "y"),
    "eltmax_backward": ("xs dy", "dxs"),        # y can be recomputed from xs
    "concat_forward": ("xs", "y"),
    "concat_backward": ("dy", "dxs"),
    "sgd_update": ("w v g", "v w"),
    "maxnorm": ("w", ""),                       # every unit inside the ball: nothing to write
}


def f32(shape):
    return numel(shape) * F32


def min_bytes(op, **arrays):
    """The minimum bytes of `op` (TRAFFIC) given each array's size in bytes."""
    reads, writes = TRAFFIC[op]
    names = (reads + " " + writes).split()
    if set(names) != set(arrays):
        raise ValueError(f"{op}: sizes given for {sorted(arrays)}, TRAFFIC needs {sorted(names)}")
    return sum(arrays[name] for name in names)


@dataclass(frozen=True)
class Case:
    """One benchmark row: which contract op, on what, and its minimum work."""
    contract_op: str
    layer: str
    shape: str
    work_kind: str  # "flops" or "bytes"
    work: int
    quick: bool = False  # part of the --quick subset
    params: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.contract_op not in OPS:
            raise ValueError(f"{self.contract_op!r} is not an op of convnet/backend/contract.py")

    @property
    def op(self):
        return split_op(self.contract_op)[0]

    @property
    def pass_(self):
        return split_op(self.contract_op)[1]

    @property
    def id(self):
        return f"{self.op}.{self.pass_}.{self.layer}"

    def names(self):
        """The fields that name a report row."""
        return {"op": self.op, "pass": self.pass_, "layer": self.layer, "shape": self.shape,
                "contract_op": self.contract_op}


def bytes_case(op, layer, text, arrays, quick=False, **params):
    """A memory-bound case: its work is min_bytes of `arrays` (name -> bytes)."""
    return Case(op, layer, text, "bytes", min_bytes(op, **arrays), quick=quick, params=params)


def with_batch(shape, batch):
    return (batch,) + tuple(shape[1:])


# ---- the case list ---------------------------------------------------------------------------

QUICK = {("alexnet-conv1", "fwd"), ("alexnet-conv2", "fwd"), ("alexnet-conv2", "bwd_data"),
         ("alexnet-conv2", "bwd_filter"), ("fashion-conv2", "fwd"), ("cifar-local3", "fwd"),
         ("alexnet-fc6", "fwd")}


def conv_cases(batch=BATCH):
    """conv and local, every pass (a data layer's input needs no bwd_data)."""
    cases = []
    for layer in CONV_LAYERS + LOCAL_LAYERS:
        layer = dataclasses.replace(layer, N=batch)
        family = "local" if layer.local else "conv"
        for suffix, pass_ in (("forward", "fwd"), ("backward_data", "bwd_data"),
                              ("backward_filter", "bwd_filter")):
            if pass_ == "bwd_data" and layer.first:
                continue
            cases.append(Case(f"{family}_{suffix}", layer.label, layer.describe(), "flops",
                              layer.flops(), quick=(layer.label, pass_) in QUICK,
                              params={"layer": layer}))
    return cases


UNFUSED = "unfused"  # the layer suffix of a fused op's row that runs the ops it replaces


def fused_conv_cases(batch=BATCH):
    """conv + bias + ReLU on AlexNet's convs (each followed by a ReLU): one launch, and beside it
    the three launches it replaces (layer <layer>@unfused, what ConvLayer ran before)."""
    cases = []
    for layer in ALEXNET_CONVS:
        layer = dataclasses.replace(layer, N=batch)
        for suffix, params in (("", {}), ("@" + UNFUSED, {"unfused": True})):
            cases.append(Case("conv_forward_bias_relu", layer.label + suffix,
                              layer.describe() + " + b, ReLU", "flops", layer.flops(),
                              params={"layer": layer, **params}))
    return cases


def fc_cases(batch=BATCH):
    cases = []
    for layer in FC_LAYERS:
        layer = dataclasses.replace(layer, N=batch)
        shape = f"{layer.N}x{layer.K} @ {layer.K}x{layer.M}"
        for op, pass_ in (("fc_forward", "fwd"), ("fc_backward_data", "bwd_data"),
                          ("fc_backward_filter", "bwd_filter")):
            cases.append(Case(op, layer.label, shape, "flops", layer.flops(),
                              quick=(layer.label, pass_) in QUICK, params={"layer": layer}))
    return cases


def bias_cases(batch=BATCH):
    cases = []
    for layer, y in (("alexnet-conv1", ALEXNET_CONV1_OUT), ("alexnet-fc6", (BATCH, 4096))):
        y = with_batch(y, batch)
        b = y[1:2]  # shared over positions: one per filter, or one per fc output
        text = f"{shape_str(y)} + {shape_str(b)}"
        cases.append(bytes_case("bias_forward", layer, text, dict(y=f32(y), b=f32(b), out=f32(y)),
                                y_shape=y, b_shape=b))
        cases.append(bytes_case("bias_backward", layer, f"{shape_str(y)} -> {shape_str(b)}",
                                dict(dy=f32(y), db=f32(b)), y_shape=y, b_shape=b))
    return cases


def activation_cases(batch=BATCH):
    """The per-image ops with one input and one output, fwd and bwd: neuron, the three
    normalizations, the three poolings, sum and crop."""
    act, p = with_batch(ALEXNET_CONV1_OUT, batch), POOL_PARAMS
    norm = with_batch(CIFAR_POOL1_OUT, batch)
    spots = [("neuron", "alexnet-relu1", act, act, "relu", {"kind": "relu"}),
             ("lrn", "alexnet-rnorm1", act, act, f"size {LRN_PARAMS['size']}", LRN_PARAMS)]
    for family in ("rnorm", "cnorm"):  # no net of layers/ has cnorm: rnorm1's place
        spots.append((family, "cifar-rnorm1", norm, norm, f"size {RNORM_PARAMS['size']}",
                      RNORM_PARAMS))
    for family, layer, x in (("maxpool", "alexnet-pool1", act),
                             ("avgpool", "cifar-pool2", with_batch(CIFAR_CONV2_OUT, batch))):
        out = tuple(pool_output_size(s, p["size"], p["stride"], p["start"]) for s in x[2:])
        spots.append((family, layer, x, x[:2] + out, f"{p['size']}/{p['stride']}",
                      {**p, "out_size": out}))
    # cuda-convnet2's layers, which no net of layers/ uses, on AlexNet's shapes: cross-map
    # pooling of conv1's 96 maps, the sum of conv2's maps in pairs, the data layer's 224 crop
    maps = cmpool_output_size(act[1], p["size"], p["stride"], p["start"])
    spots.append(("cmpool", "alexnet-conv1", act, act[:1] + (maps,) + act[2:],
                  f"{p['size']}/{p['stride']} across maps", {**p, "outputs": maps}))
    conv2 = ALEXNET_CONVS[1].y_shape
    spots.append(("sum", "alexnet-conv2", with_batch(conv2, batch),
                  (batch, conv2[1] // 2) + conv2[2:], "stride 2", {"stride": 2}))
    image = (batch, 3, 256, 256)
    spots.append(("crop", "alexnet-data", image, image[:2] + (224, 224), "at 16,16",
                  {"start": (16, 16), "size": (224, 224)}))
    cases = []
    for family, layer, x, y, what, params in spots:
        sizes = {"x": f32(x), "dx": f32(x), "y": f32(y), "dy": f32(y), "x_window": f32(y)}
        text = f"{shape_str(x)} {what}" + (f" -> {shape_str(y)}" if y != x else "")
        for op in (f"{family}_forward", f"{family}_backward"):
            needed = " ".join(TRAFFIC[op]).split()
            quick = op.endswith("forward") and family in ("neuron", "lrn", "rnorm", "maxpool",
                                                          "avgpool")
            cases.append(bytes_case(op, layer, text, {k: sizes[k] for k in needed}, quick=quick,
                                    shape=x, out_shape=y, **params))
    return cases


def random_cases(batch=BATCH):
    cases = []
    for shape, layer, quick in (((batch, 4096), "alexnet-fc6", True),
                                ((4096, 4096), "64MiB", False)):
        n, text = numel(shape), f"{shape_str(shape)} keep {DROPOUT_KEEP}"
        cases.append(bytes_case("dropout_forward", layer, text,
                                dict(x=n * F32, mask=n * U8, y=n * F32), quick=quick,
                                shape=shape, keep=DROPOUT_KEEP))
        cases.append(bytes_case("dropout_backward", layer, text,
                                dict(dy=n * F32, mask=n * U8, dx=n * F32),
                                shape=shape, keep=DROPOUT_KEEP))
    noise = with_batch(ALEXNET_CONV1_OUT, batch)  # nrelu's noise, where relu1 runs
    cases.append(bytes_case("random_normal", "alexnet-relu1", shape_str(noise),
                            dict(out=f32(noise)), shape=noise))
    return cases


def cost_cases(batch=BATCH):
    n, k = batch, 1000
    text, p, labels, per_case = f"{n}x{k}", n * k * F32, n * I32, n * F32
    dense = p  # cuda-convnet2's labels: float32 (N, K)
    arrays = {"softmax_forward": dict(x=p, p=p),
              "softmax_backward": dict(p=p, dp=p, dx=p),
              "logreg_forward": dict(p=p, labels=labels, nll=per_case, wrong1=per_case,
                                     wrongk=per_case),
              "logreg_backward": dict(p_label=per_case, labels=labels, dp=p),
              "softmax_logreg_backward": dict(p=p, labels=labels, dx=p),
              "crossent_forward": dict(p=p, labels=dense, cost=per_case, wrong=per_case),
              "crossent_backward": dict(p_label=per_case, labels=dense, dp=p),
              "softmax_crossent_backward": dict(p=p, labels=dense, dx=p),
              "bce_forward": dict(y=p, labels=dense, cost=per_case, wrong=per_case,
                                  top1_wrong=per_case),
              "bce_backward": dict(y=p, labels=dense, dy=p),
              "logistic_bce_backward": dict(y=p, labels=dense, dx=p),
              "dce_forward": dict(y=p, labels=dense, cost=per_case, wrong=per_case,
                                  counts=3 * k * F32),
              "dce_backward": dict(y=p, labels=dense, dy=p)}
    quick = ("softmax_forward", "logreg_forward")
    cases = [bytes_case(op, "alexnet-fc8", text, sizes, quick=op in quick, shape=(n, k), topk=5,
                        pos_weight=1.0) for op, sizes in arrays.items()]
    x = (batch, 4096)
    cases.append(bytes_case("sum2_forward", "alexnet-fc7", shape_str(x),
                            dict(x=f32(x), cost=batch * F32), shape=x))
    cases.append(bytes_case("sum2_backward", "alexnet-fc7", shape_str(x),
                            dict(x=f32(x), dx=f32(x)), shape=x))
    return cases


def combine_cases(batch=BATCH):
    """eltsum, eltmax, concat on two towers' outputs."""
    x = with_batch(ALEXNET_TOWER, batch)
    both, text = 2 * f32(x), f"2 x {shape_str(x)}"
    arrays = {"eltsum_forward": dict(xs=both, y=f32(x)),
              "eltmax_forward": dict(xs=both, y=f32(x)),
              "eltmax_backward": dict(xs=both, dy=f32(x), dxs=both),
              "concat_forward": dict(xs=both, y=both),
              "concat_backward": dict(dy=both, dxs=both)}
    return [bytes_case(op, "alexnet-2gpu-pool2", text, sizes, shape=x, inputs=2,
                       coeffs=(1.0, 1.0)) for op, sizes in arrays.items()]


def update_cases(batch=BATCH):
    w = (4096, 4096)
    n = f32(w)
    return [bytes_case("sgd_update", "alexnet-fc7", f"{shape_str(w)} weights",
                       dict(w=n, v=n, g=n), quick=True, shape=w, **SGD_PARAMS),
            bytes_case("maxnorm", "alexnet-fc7", f"{shape_str(w)} weights, units inside the ball",
                       dict(w=n), shape=w, wball=1.0, axis=1)]


def all_cases(batch=BATCH):
    """Every case at batch `batch` (weights, and the 64MiB dropout, keep their shapes)."""
    return (conv_cases(batch) + fused_conv_cases(batch) + fc_cases(batch) + bias_cases(batch)
            + activation_cases(batch) + random_cases(batch) + cost_cases(batch)
            + combine_cases(batch) + update_cases(batch))


def select(cases, quick=False, only=None, skip=None):
    """The --quick subset and/or the cases whose id or contract op matches one of the
    comma-separated patterns in `only`, less those matching one in `skip` (fnmatch wildcards; a
    pattern without one matches as a substring)."""
    from fnmatch import fnmatch

    def matcher(patterns):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        return lambda case: any(fnmatch(name, p) if any(ch in p for ch in "*?[") else p in name
                                for p in patterns for name in (case.id, case.contract_op))

    chosen = [c for c in cases if c.quick] if quick else list(cases)
    if only:
        chosen = list(filter(matcher(only), chosen))
    if skip:
        skipped = matcher(skip)
        chosen = [c for c in chosen if not skipped(c)]
    return chosen
