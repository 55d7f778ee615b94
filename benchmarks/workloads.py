"""The benchmark's cases: shapes, and the minimum work (FLOPs or bytes) each one must do.

Pure Python, no GPU: bench_kernels.py times these cases, tests/test_bench_report.py checks the
counting. A case is compute-bound (`work_kind == "flops"`, reported in TFLOP/s against the
measured FP32 FMA peak) or memory-bound (`work_kind == "bytes"`, GB/s against the measured
device-to-device copy bandwidth).

Minimum work, the honest floor (never the work a particular kernel happens to do):
- conv, every pass: 2 * N * F * OH * OW * (C / groups) * fs * fs FLOPs (one multiply-add per
  filter tap per output; bwd_data and bwd_filter are the same products transposed).
- memory-bound ops: the fewest bytes the op's formula needs, each array read once and each
  result written once. Where the contract passes more than the formula needs, the extra arrays
  are not counted: relu bwd needs dy and one of x, y, LRN bwd needs x and dy (y and the
  denominators can be recomputed from x), max-pool bwd needs x and dy (y can be recomputed).
"""
from dataclasses import dataclass, field

from convnet.backend.contract import conv_output_size, pool_output_size

F32 = 4  # bytes per float32 element
I32 = 4  # labels are int32 on the device
U8 = 1   # dropout masks are uint8

# The paper's response normalization: k=2, n=5, alpha=1e-4, beta=0.75 (alpha per square).
LRN_PARAMS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
POOL_PARAMS = {"size": 3, "stride": 2, "start": 0}
SGD_PARAMS = {"eps": 0.01, "mom": 0.9, "wc": 5e-4}
DROPOUT_KEEP = 0.5


def numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def shape_str(shape):
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution: input (N, C, H, W), F filters fs x fs at `stride`, `padding`, `groups`."""
    net: str
    name: str
    N: int
    C: int
    H: int
    W: int
    F: int
    fs: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    first: bool = False  # reads the data layer: its bwd_data is never needed

    @property
    def OH(self):
        return conv_output_size(self.H, self.fs, self.stride, self.padding)

    @property
    def OW(self):
        return conv_output_size(self.W, self.fs, self.stride, self.padding)

    @property
    def conv_shape(self):
        """csrc/conv.h's ConvShape fields in order (convnet.backend.algos.SHAPE_FIELDS)."""
        return (self.N, self.C, self.H, self.W, self.F, self.fs, self.OH, self.OW, self.stride,
                self.padding, self.groups)

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.F, self.C // self.groups, self.fs, self.fs)

    @property
    def y_shape(self):
        return (self.N, self.F, self.OH, self.OW)

    @property
    def label(self):
        return f"{self.net}-{self.name}"

    def flops(self):
        """The minimum FLOPs of any of the three passes."""
        return (2 * self.N * self.F * self.OH * self.OW * (self.C // self.groups)
                * self.fs * self.fs)

    def describe(self):
        g = f" g{self.groups}" if self.groups != 1 else ""
        p = f" p{self.padding}" if self.padding else ""
        return (f"{shape_str(self.x_shape)} -> {self.F}x{self.fs}x{self.fs}/{self.stride}{p}{g}"
                f" -> {shape_str(self.y_shape)}")


ALEXNET_CONVS = (
    ConvLayer("alexnet", "conv1", 128, 3, 227, 227, 96, 11, stride=4, first=True),
    ConvLayer("alexnet", "conv2", 128, 96, 27, 27, 256, 5, padding=2, groups=2),
    ConvLayer("alexnet", "conv3", 128, 256, 13, 13, 384, 3, padding=1),
    ConvLayer("alexnet", "conv4", 128, 384, 13, 13, 384, 3, padding=1, groups=2),
    ConvLayer("alexnet", "conv5", 128, 384, 13, 13, 256, 3, padding=1, groups=2),
)
FASHION_CONVS = (
    ConvLayer("fashion", "conv1", 128, 1, 28, 28, 32, 5, padding=2, first=True),
    ConvLayer("fashion", "conv2", 128, 32, 14, 14, 64, 5, padding=2),
)
CIFAR_CONVS = (
    ConvLayer("cifar", "conv1", 128, 3, 32, 32, 64, 5, padding=2, first=True),
)
CONV_LAYERS = ALEXNET_CONVS + FASHION_CONVS + CIFAR_CONVS
CONV_PASS_OPS = {"fwd": "conv_forward", "bwd_data": "conv_backward_data",
                 "bwd_filter": "conv_backward_filter"}  # the report's pass -> the backend's op

# AlexNet's conv1 output: where ReLU, LRN and the first max-pool run.
ALEXNET_CONV1_OUT = ALEXNET_CONVS[0].y_shape  # (128, 96, 55, 55)


@dataclass(frozen=True)
class Case:
    """One benchmark row: which op and pass, on what, and its minimum work."""
    op: str
    pass_: str
    layer: str
    shape: str
    work_kind: str  # "flops" or "bytes"
    work: int
    quick: bool = False  # part of the --quick subset
    params: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self):
        return f"{self.op}.{self.pass_}.{self.layer}"


# ---- minimum bytes of the memory-bound ops ----------------------------------------------------

def relu_bytes(n, pass_):
    """fwd: read x, write y. bwd: read dy and x (or y), write dx."""
    return {"fwd": 2, "bwd": 3}[pass_] * n * F32


def lrn_bytes(n, pass_):
    """fwd: read x, write y. bwd: read x and dy, write dx."""
    return {"fwd": 2, "bwd": 3}[pass_] * n * F32


def maxpool_bytes(n_in, n_out, pass_):
    """fwd: read x, write y. bwd: read x and dy, write dx."""
    if pass_ == "fwd":
        return (n_in + n_out) * F32
    return (2 * n_in + n_out) * F32


def dropout_fwd_bytes(n):
    """Draw the mask and apply it: read x, write the uint8 mask (kept for bwd) and y."""
    return n * (2 * F32 + U8)


def softmax_cost_bytes(n_cases, n_classes, pass_):
    """fwd: read x and labels, write p and (nll, wrong1, wrongk) per case.
    bwd (fused softmax + logreg): read p and labels, write dx."""
    if pass_ == "fwd":
        return 2 * n_cases * n_classes * F32 + n_cases * I32 + 3 * n_cases * F32
    return 2 * n_cases * n_classes * F32 + n_cases * I32


def sgd_bytes(n):
    """In place: read w, v, g; write v, w."""
    return 5 * n * F32


# ---- the case list ---------------------------------------------------------------------------

QUICK_CONVS = {("alexnet-conv1", "fwd"), ("alexnet-conv2", "fwd"), ("alexnet-conv2", "bwd_data"),
               ("alexnet-conv2", "bwd_filter"), ("fashion-conv2", "fwd")}


def conv_cases():
    cases = []
    for layer in CONV_LAYERS:
        for pass_ in ("fwd", "bwd_data", "bwd_filter"):
            if pass_ == "bwd_data" and layer.first:
                continue
            cases.append(Case("conv", pass_, layer.label, layer.describe(), "flops",
                              layer.flops(), quick=(layer.label, pass_) in QUICK_CONVS,
                              params={"layer": layer}))
    return cases


def elementwise_cases():
    N, C, H, W = ALEXNET_CONV1_OUT
    n = N * C * H * W
    act = shape_str(ALEXNET_CONV1_OUT)
    cases = []
    for pass_ in ("fwd", "bwd"):
        cases.append(Case("neuron", pass_, "alexnet-relu1", f"{act} relu", "bytes",
                          relu_bytes(n, pass_), quick=pass_ == "fwd",
                          params={"shape": ALEXNET_CONV1_OUT, "kind": "relu"}))
    lrn = f"{act} size {LRN_PARAMS['size']}"
    for pass_ in ("fwd", "bwd"):
        cases.append(Case("lrn", pass_, "alexnet-rnorm1", lrn, "bytes", lrn_bytes(n, pass_),
                          quick=pass_ == "fwd",
                          params={"shape": ALEXNET_CONV1_OUT, **LRN_PARAMS}))
    p = POOL_PARAMS
    OH = pool_output_size(H, p["size"], p["stride"], p["start"])
    OW = pool_output_size(W, p["size"], p["stride"], p["start"])
    pool = f"{act} {p['size']}/{p['stride']} -> {shape_str((N, C, OH, OW))}"
    for pass_ in ("fwd", "bwd"):
        cases.append(Case("maxpool", pass_, "alexnet-pool1", pool, "bytes",
                          maxpool_bytes(n, N * C * OH * OW, pass_), quick=pass_ == "fwd",
                          params={"shape": ALEXNET_CONV1_OUT, "out_size": (OH, OW), **p}))
    for shape, layer, quick in (((128, 4096), "alexnet-fc6", True),
                                ((4096, 4096), "64MiB", False)):
        cases.append(Case("dropout", "fwd", layer,
                          f"{shape_str(shape)} keep {DROPOUT_KEEP}", "bytes",
                          dropout_fwd_bytes(numel(shape)), quick=quick,
                          params={"shape": shape, "keep": DROPOUT_KEEP}))
    cases_, classes = 128, 1000
    for pass_ in ("fwd", "bwd"):
        cases.append(Case("softmax_logreg", pass_, "alexnet-fc8",
                          f"{cases_}x{classes}", "bytes",
                          softmax_cost_bytes(cases_, classes, pass_), quick=pass_ == "fwd",
                          params={"shape": (cases_, classes), "topk": 5}))
    w = (4096, 4096)
    cases.append(Case("sgd_update", "update", "alexnet-fc7", f"{shape_str(w)} weights", "bytes",
                      sgd_bytes(numel(w)), quick=True, params={"shape": w, **SGD_PARAMS}))
    return cases


def all_cases():
    return conv_cases() + elementwise_cases()


def select(cases, quick=False, only=None):
    """The --quick subset and/or the cases whose id matches one of the comma-separated patterns
    in `only` (fnmatch wildcards; a pattern without one matches as a substring)."""
    from fnmatch import fnmatch

    chosen = [c for c in cases if c.quick] if quick else list(cases)
    if only:
        patterns = [p.strip() for p in only.split(",") if p.strip()]

        def matches(case):
            return any(fnmatch(case.id, p) if any(ch in p for ch in "*?[") else p in case.id
                       for p in patterns)

        chosen = [c for c in chosen if matches(c)]
    return chosen
