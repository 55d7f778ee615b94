"""One class per cuda-convnet layer type: its config keys, its shapes, its parameters, and the
backend ops it calls. Layers know nothing of CUDA: `B` is a backend module (OPS.md).

Each class has KEYS (layers.cfg) and PARAMS (layer-params.cfg): {key: (parser, default,
per_input)}; REQUIRED marks a key without a default; per_input keys take one value per input
(comma-separated) or one value for all.
"""
import numpy as np

from ..backend.contract import conv_output_size, pool_output_size
from .config import (parse_bool, parse_float, parse_int, parse_neuron, parse_schedule,
                     parse_str)

REQUIRED = object()
COMMON_KEYS = {"type": (parse_str, REQUIRED, False), "gpu": (parse_int, 0, False)}
INPUT_KEYS = {"inputs": (parse_str, REQUIRED, True)}
NEURON_KEY = {"neuron": (parse_neuron, ("ident", (0.0, 0.0)), False)}


class Param:
    """A learned array with its gradient, momentum buffer and hyper-parameters."""

    def __init__(self, name, shape, init_std, init_value, eps, mom, wc, wball=0.0, unit_dims=1):
        self.name, self.shape = name, tuple(shape)
        self.init_std, self.init_value = init_std, init_value
        self.eps, self.mom, self.wc, self.wball = eps, mom, wc, wball
        # max-norm units: the first `unit_dims` axes index them (conv 1, local 3); -1: columns (fc)
        self.unit_dims = unit_dims
        self.value = self.grad = self.velocity = None
        self.shared = False  # True when another layer owns it (weightSource)

    def init(self, B, rng, dtype):
        if self.init_std:
            host = rng.standard_normal(self.shape) * self.init_std
        else:
            host = np.full(self.shape, self.init_value)
        self.value = B.asarray(host, dtype)
        self.velocity = B.xp.zeros_like(self.value)
        self.grad = None

    def add_grad(self, g):
        self.grad = g if self.grad is None else self.grad + g

    def update(self, B, progress):
        if self.grad is None:
            return
        B.sgd_update(self.value, self.velocity, self.grad, self.eps(progress), self.mom, self.wc)
        if self.wball > 0:
            if self.unit_dims < 0:
                B.maxnorm(self.value, self.wball, 1)
            else:
                units = int(np.prod(self.shape[:self.unit_dims]))
                B.maxnorm(self.value.reshape(units, -1), self.wball, 0)
        self.grad = None


class Layer:
    KEYS = {}
    PARAMS = {}
    needs_params_section = False
    has_neuron = False

    def __init__(self, name, cfg, params, section, index):
        self.name, self.cfg, self.pcfg, self.section, self.index = name, cfg, params, section, index
        self.type = cfg["type"]
        self.inputs = list(cfg.get("inputs", []))
        self.gpu = cfg["gpu"]
        if self.gpu < 0:
            raise section.error(f"gpu={self.gpu} must be >= 0", "gpu")
        self.neuron = cfg.get("neuron", ("ident", (0.0, 0.0)))
        self.params = []
        self.out_shape = None
        self.cache = {}

    psection = None  # the layer's params-file section (set by the net)

    def error(self, message, key=None):
        """A ConfigError at `key`'s line: in the params file for a PARAMS key given there."""
        if key in self.PARAMS and self.psection is not None and key in self.psection.entries:
            return self.psection.error(message, key)
        return self.section.error(message, key)

    # -- shapes and parameters --
    def setup(self, in_shapes):
        """Validate the input shapes, create self.params, return the output shape."""
        raise NotImplementedError

    def neurons(self):
        return int(np.prod(self.out_shape)) if self.out_shape else 0

    # -- passes --
    def forward(self, B, xs, ctx):
        z = self.fprop(B, xs, ctx)
        return self.apply_neuron(B, z, ctx)

    def backward(self, B, dy, xs, y, need):
        """Gradients for each input (None where need[i] is False); adds parameter gradients."""
        return self.bprop(B, self.neuron_grad(B, dy, y), xs, need)

    def apply_neuron(self, B, z, ctx):
        kind, (a, b) = self.neuron
        if kind == "ident":
            return z
        self.cache["z"] = z
        if kind == "nrelu":  # Nair & Hinton's noisy ReLU: max(0, z + N(0, logistic(z)))
            self.cache["noise"] = None
            if ctx.train:
                noise = B.asarray(B.random_normal(z.shape, ctx.seed, self.index, ctx.step), z.dtype)
                self.cache["noise"] = noise
                z = z + B.xp.sqrt(B.neuron_forward(z, "logistic")) * noise
            return B.neuron_forward(z, "relu")
        return B.neuron_forward(z, kind, a, b)

    def neuron_grad(self, B, dy, y):
        kind, (a, b) = self.neuron
        if kind == "ident":
            return dy
        if kind == "nrelu":
            dz = B.neuron_backward(y, y, dy, "relu")
            noise = self.cache["noise"]
            if noise is None:
                return dz
            # the noise's scale sqrt(logistic(z)) depends on z: d/dz = sqrt(s) (1 - s) / 2
            s = B.neuron_forward(self.cache["z"], "logistic")
            return dz * (1 + noise * B.xp.sqrt(s) * (1 - s) / 2)
        return B.neuron_backward(self.cache["z"], y, dy, kind, a, b)

    def fprop(self, B, xs, ctx):
        raise NotImplementedError

    def bprop(self, B, dz, xs, need):
        raise NotImplementedError


def per_input(layer, key, i):
    values = layer.cfg[key] if key in layer.cfg else layer.pcfg[key]
    return values[i] if len(values) > 1 else values[0]


class DataLayer(Layer):
    KEYS = {"dataIdx": (parse_int, REQUIRED, False), "channels": (parse_int, None, False),
            "imgSize": (parse_int, None, False), "imgSizeY": (parse_int, None, False),
            "outputs": (parse_int, None, False)}

    def declared_shape(self):
        """The shape the cfg declares (this project's extension), or None."""
        c = self.cfg
        if self.cfg["dataIdx"] != 0:  # labels: integer classes, or (outputs,) class weights
            return (c["outputs"],) if c["outputs"] is not None else ()
        for key in ("channels", "imgSize", "imgSizeY", "outputs"):
            if c[key] is not None and c[key] < 1:
                raise self.error(f"{key}={c[key]} must be >= 1", key)
        if c["imgSize"] is not None:
            return (c["channels"] or 1, c["imgSizeY"] or c["imgSize"], c["imgSize"])
        if c["outputs"] is not None:
            return (c["outputs"],)
        return None

    def setup(self, in_shapes):
        return self.out_shape


class WeightLayer(Layer):
    """conv, local and fc: one weight array per input, a bias, the paper's update."""
    needs_params_section = True
    has_neuron = True
    PARAMS = {"epsW": (parse_schedule, REQUIRED, True), "epsB": (parse_schedule, REQUIRED, False),
              "momW": (parse_float, REQUIRED, True), "momB": (parse_float, REQUIRED, False),
              "wc": (parse_float, REQUIRED, True), "wball": (parse_float, 0.0, True)}

    def make_weight(self, i, shape, unit_dims):
        return Param(f"{self.name}.w{i}", shape, per_input(self, "initW", i), 0.0,
                     per_input(self, "epsW", i), per_input(self, "momW", i),
                     per_input(self, "wc", i), per_input(self, "wball", i), unit_dims)

    def make_bias(self, shape):
        p = self.pcfg
        return Param(f"{self.name}.b", shape, 0.0, self.cfg["initB"], p["epsB"], p["momB"], 0.0)

    @property
    def weights(self):
        return self.params[:-1]

    @property
    def bias(self):
        return self.params[-1]


CONV_KEYS = {"channels": (parse_int, None, True), "filters": (parse_int, REQUIRED, True),
             "filterSize": (parse_int, REQUIRED, True), "padding": (parse_int, 0, True),
             "stride": (parse_int, 1, True), "groups": (parse_int, 1, True),
             "initW": (parse_float, 0.01, True), "initB": (parse_float, 0.0, False),
             "partialSum": (parse_int, 0, False)}


class ConvLayer(WeightLayer):
    """conv (and local, below). `filters` counts the filters of each group, as in both
    originals (layer.py: filters * groups): an input with groups=G makes filters * G maps, and
    every input must make the same number."""
    KEYS = {**CONV_KEYS, "sharedBiases": (parse_bool, True, False)}
    op = "conv"
    shared_biases = True

    def setup(self, in_shapes):
        out = total = None
        self.geometry = []
        for i, shape in enumerate(in_shapes):
            if len(shape) != 3:
                raise self.error(f"input '{self.inputs[i]}' is not an image (shape {shape})")
            c, h, w = shape
            per_group, fs, pad, stride, groups = (per_input(self, k, i) for k in
                                                  ("filters", "filterSize", "padding", "stride",
                                                   "groups"))
            if per_group < 1:
                raise self.error(f"filters={per_group} must be >= 1", "filters")
            declared = per_input(self, "channels", i) if self.cfg["channels"] else None
            if declared is not None and declared != c:
                raise self.error(f"channels={declared} but input '{self.inputs[i]}' has {c}",
                                 "channels")
            if min(fs, stride, groups) < 1 or pad < 0:
                raise self.error("filterSize, stride and groups must be >= 1, padding >= 0")
            if c % groups:
                raise self.error(f"groups={groups} must divide the input channels ({c})",
                                 "groups")
            filters = per_group * groups
            if total is not None and filters != total:
                raise self.error(f"input {i} makes {per_group} filters x {groups} groups = "
                                 f"{filters} maps, input 0 makes {total}; every input must "
                                 "make the same number (filters counts each group's)", "filters")
            total = filters
            if fs > min(h, w) + 2 * pad:
                raise self.error(f"filterSize={fs} is larger than the padded image "
                                 f"({h}x{w} + 2*{pad})", "filterSize")
            o = (conv_output_size(h, fs, stride, pad), conv_output_size(w, fs, stride, pad))
            if out is not None and o != out:
                raise self.error(f"input {i} gives a {o} output, input 0 gives {out}")
            out = o
            self.geometry.append((fs, stride, pad, groups, (h, w)))
            self.params.append(self.make_weight(i, self.weight_shape(filters, c // groups, fs, o),
                                                unit_dims=1 if self.op == "conv" else 3))
        bias_shape = (total,) if self.shared_biases else (total,) + out
        self.params.append(self.make_bias(bias_shape))
        return (total,) + out

    def weight_shape(self, filters, cg, fs, out):
        return (filters, cg, fs, fs)

    def fprop(self, B, xs, ctx):
        fwd = getattr(B, f"{self.op}_forward")
        y = None
        for x, p, (fs, stride, pad, groups, _) in zip(xs, self.weights, self.geometry):
            yi = fwd(x, p.value, stride, pad, groups)
            y = yi if y is None else y + yi
        return B.bias_forward(y, self.bias.value)

    def bprop(self, B, dz, xs, need):
        bwd_data = getattr(B, f"{self.op}_backward_data")
        bwd_filter = getattr(B, f"{self.op}_backward_filter")
        self.bias.add_grad(B.bias_backward(dz, self.bias.value.ndim))
        dxs = []
        for x, p, (fs, stride, pad, groups, img), nd in zip(xs, self.weights, self.geometry, need):
            p.add_grad(bwd_filter(x, dz, fs, stride, pad, groups))
            dxs.append(bwd_data(dz, p.value, img, stride, pad, groups) if nd else None)
        return dxs


class LocalLayer(ConvLayer):
    KEYS = CONV_KEYS
    op = "local"
    shared_biases = False

    def weight_shape(self, filters, cg, fs, out):
        return out + (filters, cg, fs, fs)


class FcLayer(WeightLayer):
    KEYS = {"outputs": (parse_int, REQUIRED, False), "initW": (parse_float, 0.01, True),
            "initB": (parse_float, 0.0, False), "weightSource": (parse_str, None, True)}

    def setup(self, in_shapes):
        m = self.cfg["outputs"]
        if m < 1:
            raise self.error("outputs must be >= 1", "outputs")
        for i, shape in enumerate(in_shapes):
            self.params.append(self.make_weight(i, (int(np.prod(shape)), m), unit_dims=-1))
        self.params.append(self.make_bias((m,)))
        return (m,)

    def weight_sources(self):
        """[(input index, source layer name, source input index)] from weightSource."""
        out = []
        for i in range(len(self.inputs)):
            src = per_input(self, "weightSource", i) if self.cfg["weightSource"] else None
            if src:
                name, _, idx = src.partition(".")
                out.append((i, name, int(idx) if idx.isdigit() else 0))
        return out

    def fprop(self, B, xs, ctx):
        y = None
        for x, p in zip(xs, self.weights):
            yi = B.fc_forward(x.reshape(x.shape[0], -1), p.value)
            y = yi if y is None else y + yi
        return B.bias_forward(y, self.bias.value)

    def bprop(self, B, dz, xs, need):
        self.bias.add_grad(B.bias_backward(dz, 1))
        dxs = []
        for x, p, nd in zip(xs, self.weights, need):
            p.add_grad(B.fc_backward_filter(x.reshape(x.shape[0], -1), dz))
            dxs.append(B.fc_backward_data(dz, p.value).reshape(x.shape) if nd else None)
        return dxs


class PoolLayer(Layer):
    KEYS = {"pool": (parse_str, REQUIRED, False), "sizeX": (parse_int, REQUIRED, False),
            "stride": (parse_int, REQUIRED, False), "start": (parse_int, 0, False),
            "outputsX": (parse_int, 0, False), "channels": (parse_int, None, False)}
    has_neuron = True

    def setup(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise self.error(f"input '{self.inputs[0]}' is not an image (shape {shape})")
        c, h, w = shape
        cfg = self.cfg
        if cfg["pool"] not in ("max", "avg"):
            raise self.error(f"pool must be max or avg, got {cfg['pool']!r}", "pool")
        if cfg["channels"] is not None and cfg["channels"] != c:
            raise self.error(f"channels={cfg['channels']} but the input has {c}", "channels")
        size, stride, start = cfg["sizeX"], cfg["stride"], cfg["start"]
        if size < 1 or stride < 1 or size > min(h, w) - start:
            raise self.error(f"sizeX={size}, stride={stride}, start={start} do not fit a "
                             f"{h}x{w} image", "sizeX")
        oh, ow = pool_output_size(h, size, stride, start), pool_output_size(w, size, stride, start)
        if cfg["outputsX"]:
            if cfg["outputsX"] > ow:
                raise self.error(f"outputsX={cfg['outputsX']} exceeds the {ow} windows that fit",
                                 "outputsX")
            oh = ow = cfg["outputsX"]
        return (c, oh, ow)

    def fprop(self, B, xs, ctx):
        c = self.cfg
        op = B.maxpool_forward if c["pool"] == "max" else B.avgpool_forward
        return op(xs[0], c["sizeX"], c["stride"], c["start"], self.out_shape[1:])

    def bprop(self, B, dz, xs, need):
        c = self.cfg
        if not need[0]:
            return [None]
        if c["pool"] == "max":
            return [B.maxpool_backward(xs[0], self.cache["pooled"], dz, c["sizeX"], c["stride"],
                                       c["start"])]
        return [B.avgpool_backward(dz, xs[0].shape[2:], c["sizeX"], c["stride"], c["start"])]

    def forward(self, B, xs, ctx):
        self.cache["pooled"] = pooled = self.fprop(B, xs, ctx)
        return self.apply_neuron(B, pooled, ctx)


class NormLayer(Layer):
    """cmrnorm (across maps), rnorm (within a map), cnorm (contrast, within a map).

    cuda-convnet divides `scale` by the window: cmrnorm uses alpha = scale / size per squared
    input (the paper's alpha=1e-4 over n=5 maps is written scale=0.0001), rnorm and cnorm use
    scale / size^2. minDiv is the paper's k (default 1; the paper uses 2)."""
    KEYS = {"size": (parse_int, REQUIRED, False), "channels": (parse_int, None, False)}
    PARAMS = {"scale": (parse_float, REQUIRED, False), "pow": (parse_float, REQUIRED, False),
              "minDiv": (parse_float, 1.0, False)}
    needs_params_section = True

    def setup(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise self.error(f"input '{self.inputs[0]}' is not an image (shape {shape})")
        c = shape[0]
        size = self.cfg["size"]
        limit = c // self.cfg.get("groups", 1) if self.kind == "lrn" else min(shape[1:])
        if not 1 <= size <= limit:
            raise self.error(f"size={size} must be between 1 and {limit}", "size")
        if self.cfg["channels"] is not None and self.cfg["channels"] != c:
            raise self.error(f"channels={self.cfg['channels']} but the input has {c}", "channels")
        if self.pcfg["minDiv"] <= 0:
            raise self.error("minDiv must be > 0", "minDiv")
        self.alpha = self.pcfg["scale"] / (size if self.kind == "lrn" else size * size)
        return shape

    @property
    def kind(self):
        return {"cmrnorm": "lrn", "rnorm": "rnorm", "cnorm": "cnorm"}[self.type]

    def args(self):
        return self.cfg["size"], self.alpha, self.pcfg["pow"], self.pcfg["minDiv"]

    def fprop(self, B, xs, ctx):
        return getattr(B, f"{self.kind}_forward")(xs[0], *self.args())

    def forward(self, B, xs, ctx):
        self.cache["normed"] = y = self.fprop(B, xs, ctx)
        return y

    def bprop(self, B, dz, xs, need):
        if not need[0]:
            return [None]
        return [getattr(B, f"{self.kind}_backward")(xs[0], self.cache["normed"], dz, *self.args())]


class CrossMapNormLayer(NormLayer):
    """cmrnorm with this project's `groups` key: windows stay inside each group of maps, as
    the paper's two GPUs normalized only their own tower's maps (a one-GPU net with groups=2
    then computes exactly what the two-tower net computes). groups=1 is cuda-convnet's cmrnorm."""
    KEYS = {**NormLayer.KEYS, "groups": (parse_int, 1, False)}

    def setup(self, in_shapes):
        groups = self.cfg["groups"]
        c = in_shapes[0][0] if len(in_shapes[0]) == 3 else 0
        if groups < 1 or c % groups:
            raise self.error(f"groups={groups} must divide the input's {c} maps", "groups")
        return super().setup(in_shapes)

    def grouped(self, a):
        """(N, C, H, W) -> (N * groups, C / groups, H, W): a view, no copy."""
        n, c, h, w = a.shape
        return a.reshape(n * self.cfg["groups"], c // self.cfg["groups"], h, w)

    def fprop(self, B, xs, ctx):
        return B.lrn_forward(self.grouped(xs[0]), *self.args()).reshape(xs[0].shape)

    def bprop(self, B, dz, xs, need):
        if not need[0]:
            return [None]
        dx = B.lrn_backward(self.grouped(xs[0]), self.grouped(self.cache["normed"]),
                            self.grouped(dz), *self.args())
        return [dx.reshape(xs[0].shape)]


class NeuronLayer(Layer):
    KEYS = {"neuron": (parse_neuron, REQUIRED, False)}

    def setup(self, in_shapes):
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        return xs[0]

    def bprop(self, B, dz, xs, need):
        return [dz]


class DropoutLayer(Layer):
    PARAMS = {"keep": (parse_float, 0.5, False)}

    def setup(self, in_shapes):
        if not 0 < self.pcfg["keep"] <= 1:
            raise self.error(f"keep={self.pcfg['keep']} must be in (0, 1]", "keep")
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        keep = self.pcfg["keep"]
        if not ctx.train or keep == 1:
            self.cache["mask"] = None
            return xs[0]
        mask = B.dropout_mask(xs[0].shape, keep, ctx.seed, self.index, ctx.step)
        self.cache["mask"] = mask
        return B.dropout_forward(xs[0], mask, keep)

    def bprop(self, B, dz, xs, need):
        mask = self.cache["mask"]
        return [dz if mask is None else B.dropout_backward(dz, mask, self.pcfg["keep"])]


class SoftmaxLayer(Layer):
    fused_into_cost = False  # set by the net when its only consumer fuses it (cost.logreg)

    def setup(self, in_shapes):
        if len(in_shapes[0]) != 1:
            raise self.error(f"softmax needs a vector input (an fc layer), got {in_shapes[0]}")
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        return B.softmax_forward(xs[0])

    def backward(self, B, dy, xs, y, need):
        return [dy if self.fused_into_cost else B.softmax_backward(y, dy)]


class CostLayer(Layer):
    """A cost: forward records host statistics in self.stats; its gradient is coeff * d(mean)."""
    PARAMS = {"coeff": (parse_float, 1.0, False)}
    needs_params_section = True
    takes_labels = False
    fuses_softmax = False

    def setup(self, in_shapes):
        return ()


class LogregCostLayer(CostLayer):
    takes_labels = True  # its first input is a dataIdx=1 data layer
    fuses_softmax = True  # the net fuses a softmax feeding only this cost into its gradient
    fused = False

    def setup(self, in_shapes):
        if len(in_shapes) != 2 or in_shapes[0] != () or len(in_shapes[1]) != 1:
            raise self.error("cost.logreg takes inputs=<labels>,<probabilities>: a dataIdx=1 "
                             f"data layer, then a softmax (got shapes {in_shapes})", "inputs")
        self.classes = in_shapes[1][0]
        return ()

    def fprop(self, B, xs, ctx):
        labels, probs = xs
        nll, wrong1, wrongk = B.logreg_forward(probs, labels, min(5, self.classes))
        self.stats = {"cost": float(nll.sum()), "top1": float(wrong1.sum()),
                      "top5": float(wrongk.sum()), "cases": int(labels.shape[0])}
        return None

    def backward(self, B, dy, xs, y, need):
        labels, probs = xs
        scale = self.pcfg["coeff"] / labels.shape[0]
        if self.fused:
            return [None, B.softmax_logreg_backward(probs, labels, scale)]
        return [None, B.logreg_backward(probs, labels, scale)]


class Sum2CostLayer(CostLayer):
    def fprop(self, B, xs, ctx):
        cost = B.sum2_forward(xs[0])
        self.stats = {"cost": float(cost.sum()), "cases": int(xs[0].shape[0])}
        return None

    def backward(self, B, dy, xs, y, need):
        return [B.sum2_backward(xs[0], self.pcfg["coeff"] / xs[0].shape[0])]


class EltSumLayer(Layer):
    PARAMS = {"coeffs": (parse_float, 1.0, True)}
    has_neuron = True

    def setup(self, in_shapes):
        if len(set(in_shapes)) != 1:
            raise self.error(f"eltsum inputs must have one shape, got {in_shapes}", "inputs")
        self.coeffs = [per_input(self, "coeffs", i) for i in range(len(in_shapes))]
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        return B.eltsum_forward(xs, self.coeffs)

    def bprop(self, B, dz, xs, need):
        return [dz * c if nd else None for c, nd in zip(self.coeffs, need)]


class EltMaxLayer(Layer):
    has_neuron = True

    def setup(self, in_shapes):
        if len(set(in_shapes)) != 1:
            raise self.error(f"eltmax inputs must have one shape, got {in_shapes}", "inputs")
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        self.cache["max"] = y = B.eltmax_forward(xs)
        return y

    def bprop(self, B, dz, xs, need):
        return B.eltmax_backward(xs, self.cache["max"], dz)


class ConcatLayer(Layer):
    has_neuron = True

    def setup(self, in_shapes):
        if len({len(s) for s in in_shapes}) != 1 or len({s[1:] for s in in_shapes}) != 1:
            raise self.error(f"concat inputs must agree except in channels, got {in_shapes}",
                             "inputs")
        self.sizes = [s[0] for s in in_shapes]
        return (sum(self.sizes),) + in_shapes[0][1:]

    def fprop(self, B, xs, ctx):
        return B.concat_forward(xs)

    def bprop(self, B, dz, xs, need):
        return B.concat_backward(dz, self.sizes)


CORE_LAYER_TYPES = {  # with layers_cc2's: layer_types.LAYER_TYPES
    "data": DataLayer, "conv": ConvLayer, "local": LocalLayer, "fc": FcLayer, "pool": PoolLayer,
    "cmrnorm": CrossMapNormLayer, "rnorm": NormLayer, "cnorm": NormLayer, "neuron": NeuronLayer,
    "dropout": DropoutLayer, "softmax": SoftmaxLayer, "cost.logreg": LogregCostLayer,
    "cost.sum2": Sum2CostLayer, "eltsum": EltSumLayer, "eltmax": EltMaxLayer,
    "concat": ConcatLayer,
}


def layer_keys(cls):
    """The layers.cfg keys a layer type accepts: its own plus the common ones."""
    keys = dict(COMMON_KEYS)
    if cls is not DataLayer:
        keys.update(INPUT_KEYS)
    if cls.has_neuron:
        keys.update(NEURON_KEY)
    keys.update(cls.KEYS)
    return keys
