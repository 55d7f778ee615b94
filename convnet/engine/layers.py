"""One class per cuda-convnet layer type: its config keys, its shapes, its parameters, and the
backend ops it calls. Layers know nothing of CUDA: `B` is a backend module (OPS.md).

Each class has KEYS (layers.cfg) and PARAMS (layer-params.cfg): {key: (parser, default,
per_input)}; REQUIRED marks a key without a default; per_input keys take one value per input
(comma-separated) or one value for all.
"""
import numpy as np

from ..backend import contract
from ..backend.contract import conv_output_size, pool_output_size, pool_windows
from .config import (parse_bool, parse_float, parse_int, parse_momentum, parse_neuron,
                     parse_precision, parse_rate, parse_str, shown)

REQUIRED = object()


def parse_devices(text):
    """gpu=: a logical device, or cuda-convnet2's replicas of the layer (gpu=0,1), each on a
    different device. None where not given: the net places the layer where its first input is."""
    devices = tuple(parse_int(t.strip()) for t in text.split(","))
    if any(d < 0 for d in devices):
        raise ValueError(f"{text}: each device must be >= 0")
    if len(set(devices)) != len(devices):
        raise ValueError(f"{text}: the replicas must be on different devices (cuda-convnet2's "
                         "rule)")
    return devices


COMMON_KEYS = {"type": (parse_str, REQUIRED, False), "gpu": (parse_devices, None, False)}
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
        self.period, self.passes = 1, 0  # cuda-convnet2's updatePeriod: passes per update

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
        """The paper's update; with updatePeriod N, every Nth call, on the mean of the N
        passes' gradients (cuda-convnet2 sums them and divides by N times the cases)."""
        if self.grad is None:
            return
        self.passes += 1
        if self.passes < self.period:
            return  # the next pass adds its gradient to this one
        grad = self.grad if self.period == 1 else self.grad / self.period
        self.passes = 0
        B.sgd_update(self.value, self.velocity, grad, self.eps(progress), self.mom, self.wc)
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
        # the net sets both where gpu= is not given (Net.place); a layer runs on its first replica
        self.replicas = cfg["gpu"]
        self.gpu = None if self.replicas is None else self.replicas[0]
        self.neuron = cfg.get("neuron", ("ident", (0.0, 0.0)))
        self.params = []
        self.out_shape = None
        self.cache = {}

    psection = None  # the layer's params-file section (set by the net)

    def either_file(self, key, default=REQUIRED):
        """A key the originals read from layers.cfg in one version and from the params file in
        another (early cuda-convnet's norm scale/pow, v1's eltsum coeffs): either place, not
        both; parsed values as the layer's cfg or pcfg holds them."""
        in_cfg, in_params = key in self.section.entries, self.psection is not None and \
            key in self.psection.entries
        if in_cfg and in_params:
            raise self.section.error(f"{key} is given in both files ({self.section.file}:"
                                     f"{self.section.entries[key].line} and "
                                     f"{self.psection.file}:{self.psection.entries[key].line}): "
                                     "keep one", key)
        if in_cfg:
            return self.cfg[key]
        if in_params:
            return self.pcfg[key]
        if default is REQUIRED:
            raise self.error(f"missing required key '{key}' (layers or params file)")
        return default

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

    # -- fixed arrays drawn at initialisation, kept by checkpoints (randSparse's tables) --
    def buffers(self):
        """{checkpoint name: host array}: what the layer drew once and never learns."""
        return {}

    def draw_buffers(self, rng):
        pass

    def check_buffer(self, key, value):
        """`value` as buffer `key` takes it (a checkpoint's array); ValueError if it does not fit."""
        raise ValueError(f"{key}: layer '{self.name}' keeps no such array")

    def set_buffer(self, key, value):
        raise ValueError(f"{key}: layer '{self.name}' keeps no such array")

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
                noise = B.asarray(B.random_normal(z.shape, ctx.seed, self.index, ctx.step,
                                                  ctx.offset(z.shape)), z.dtype)
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
    PARAMS = {"epsW": (parse_rate, REQUIRED, True), "epsB": (parse_rate, REQUIRED, False),
              "momW": (parse_momentum, REQUIRED, True), "momB": (parse_momentum, REQUIRED, False),
              "wc": (parse_float, REQUIRED, True), "wball": (parse_float, 0.0, True),
              "updatePeriod": (parse_int, 0, False)}

    def period(self):
        """updatePeriod (cuda-convnet2; 0, the default, updates after every pass)."""
        n = self.pcfg["updatePeriod"]
        if n < 0:
            raise self.error(f"updatePeriod={n} must be >= 0 (0: every pass)", "updatePeriod")
        return max(1, n)

    def make_weight(self, i, shape, unit_dims):
        w = Param(f"{self.name}.w{i}", shape, per_input(self, "initW", i), 0.0,
                  per_input(self, "epsW", i), per_input(self, "momW", i),
                  per_input(self, "wc", i), per_input(self, "wball", i), unit_dims)
        w.period = self.period()
        return w

    def make_bias(self, shape):
        p = self.pcfg
        b = Param(f"{self.name}.b", shape, 0.0, self.cfg["initB"], p["epsB"], p["momB"], 0.0)
        b.period = self.period()
        return b

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
             "partialSum": (parse_int, 0, False),
             "randSparse": (parse_bool, False, True), "filterChannels": (parse_int, None, True)}
TUNING_KEYS = ("partialSum", "sumWidth")  # how the originals' kernels summed; never the result


class ConvLayer(WeightLayer):
    """conv (and local, below). `filters` counts the filters of each group, as in both
    originals (layer.py: filters * groups): an input with groups=G makes filters * G maps, and
    every input must make the same number."""
    KEYS = {**CONV_KEYS, "sharedBiases": (parse_bool, True, False),
            "sumWidth": (parse_int, 0, False)}
    # precision=: the products' precision (fp32, tf32, bf16); unset, the net's (--precision)
    PARAMS = {**WeightLayer.PARAMS, "precision": (parse_precision, None, False)}
    precision = "fp32"  # Net.build sets it from precision= or the net's default
    op = "conv"
    shared_biases = True

    def setup(self, in_shapes):
        out = total = None
        self.geometry = []
        self.conns = [None] * len(in_shapes)  # randSparse inputs' channel tables (draw_buffers)
        self.in_channels = [shape[0] for shape in in_shapes]
        if self.cfg["filterChannels"] != [None] and not any(self.cfg["randSparse"]):
            raise self.error("filterChannels applies only with randSparse=1", "filterChannels")
        for key in TUNING_KEYS:
            if self.cfg.get(key, 0) < 0 or (key == "sumWidth" and key in self.section.entries
                                            and self.cfg[key] < 1):
                raise self.error(f"{key}={self.cfg[key]} must be >= 1 (it only tunes the "
                                 "original's kernels)", key)
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
            sparse = per_input(self, "randSparse", i)
            cg = self.sparse_channels(i, c, groups) if sparse else c // groups
            if not sparse and c % groups:
                raise self.error(f"groups={groups} must divide the input channels ({c})",
                                 "groups")
            if not sparse and self.cfg["filterChannels"] != [None] and \
                    per_input(self, "filterChannels", i) != cg:
                raise self.error(f"filterChannels={per_input(self, 'filterChannels', i)} on "
                                 f"input {i}, which is not randSparse, must be channels / groups "
                                 f"= {cg}", "filterChannels")
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
            self.params.append(self.make_weight(i, self.weight_shape(filters, cg, fs, o),
                                                unit_dims=1 if self.op == "conv" else 3))
        if self.cfg["partialSum"] and (out[0] * out[1]) % self.cfg["partialSum"]:
            raise self.error(f"partialSum={self.cfg['partialSum']} does not divide the "
                             f"{out[0]}x{out[1]}={out[0] * out[1]} outputs per filter (as "
                             "cuda-convnet requires)", "partialSum")
        bias_shape = (total,) if self.shared_biases else (total,) + out
        self.params.append(self.make_bias(bias_shape))
        return (total,) + out

    def weight_shape(self, filters, cg, fs, out):
        return (filters, cg, fs, fs)

    def sparse_channels(self, i, c, groups):
        """randSparse (cuda-convnet v1): each of the groups sees filterChannels of the c channels
        (default c / groups), drawn as groups * filterChannels / c permutations of all c end to
        end, so every channel feeds the same number of groups. v1's rules, less its kernels'
        multiples of 4."""
        given = self.cfg["filterChannels"] != [None]
        fc = per_input(self, "filterChannels", i) if given else c // groups
        if groups < 2:
            raise self.error(f"randSparse=1 on input {i} needs groups > 1 (got {groups})",
                             "randSparse")
        if fc < 1 or c % fc or (groups * fc) % c:
            raise self.error(f"randSparse on input {i}: filterChannels={fc} must divide the "
                             f"{c} channels, and groups * filterChannels = {groups * fc} must be "
                             f"a multiple of {c}", "filterChannels")
        self.conns[i] = np.zeros(groups * fc, dtype=np.int64)  # drawn by draw_buffers
        return fc

    def buffers(self):
        return {f"{self.name}.conns{i}": c for i, c in enumerate(self.conns) if c is not None}

    def draw_buffers(self, rng):
        for i, table in enumerate(self.conns):
            if table is not None:
                c = self.in_channels[i]
                self.conns[i] = np.concatenate([rng.permutation(c)
                                                for _ in range(table.size // c)])

    def check_buffer(self, key, value):
        i = int(key.rsplit("conns", 1)[1])
        if value.shape != self.conns[i].shape:
            raise ValueError(f"{key}: checkpoint {value.shape} vs net {self.conns[i].shape}")
        contract.channel_table(key, value, self.in_channels[i])
        return value.astype(np.int64)

    def set_buffer(self, key, value):
        self.conns[int(key.rsplit("conns", 1)[1])] = value

    def sparse_inputs(self, B, xs):
        return [x if c is None else B.channel_gather_forward(x, c) for x, c in zip(xs, self.conns)]

    def forward(self, B, xs, ctx):
        """One input, shared biases and a ReLU: conv, bias and ReLU are one op (on the cuda
        backend one launch, the bias and ReLU in the GEMM's epilogue)."""
        if not (self.op == "conv" and len(xs) == 1 and self.neuron[0] == "relu" and
                self.bias.value.ndim == 1):
            return super().forward(B, xs, ctx)
        (x,) = self.cache["inputs"] = self.sparse_inputs(B, xs)
        _, stride, pad, groups, _ = self.geometry[0]
        y = B.conv_forward_bias_relu(x, self.weights[0].value, self.bias.value, stride, pad,
                                     groups, precision=self.precision)
        self.cache["z"] = y  # the ReLU's gradient asks z > 0, which y > 0 answers
        return y

    def fprop(self, B, xs, ctx):
        fwd = getattr(B, f"{self.op}_forward")
        y = None
        self.cache["inputs"] = self.sparse_inputs(B, xs)  # backward's, without a second gather
        for x, p, (fs, stride, pad, groups, _) in zip(self.cache["inputs"], self.weights,
                                                      self.geometry):
            yi = fwd(x, p.value, stride, pad, groups, precision=self.precision)
            y = yi if y is None else y + yi
        return B.bias_forward(y, self.bias.value)

    def bprop(self, B, dz, xs, need):
        bwd_data = getattr(B, f"{self.op}_backward_data")
        bwd_filter = getattr(B, f"{self.op}_backward_filter")
        self.bias.add_grad(B.bias_backward(dz, self.bias.value.ndim))
        dxs = []
        for x, sx, conns, p, (fs, stride, pad, groups, img), nd in zip(
                xs, self.cache["inputs"], self.conns, self.weights, self.geometry, need):
            p.add_grad(bwd_filter(sx, dz, fs, stride, pad, groups, precision=self.precision))
            dx = (bwd_data(dz, p.value, img, stride, pad, groups, precision=self.precision)
                  if nd else None)
            if dx is not None and conns is not None:
                dx = B.channel_gather_backward(dx, conns, x.shape[1])
            dxs.append(dx)
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
            raise self.error(f"pool must be max or avg, got {shown(cfg['pool'])}", "pool")
        if cfg["channels"] is not None and cfg["channels"] != c:
            raise self.error(f"channels={cfg['channels']} but the input has {c}", "channels")
        size, stride, start = cfg["sizeX"], cfg["stride"], cfg["start"]
        if size < 1 or stride < 1 or size > min(h, w) - start:
            raise self.error(f"sizeX={size}, stride={stride}, start={start} do not fit a "
                             f"{h}x{w} image", "sizeX")
        if stride > size:  # both originals' layer.py: verify_num_range(stride, 1, sizeX)
            raise self.error(f"stride={stride} exceeds sizeX={size} (start={start}): the "
                             "windows would skip pixels; stride must be between 1 and sizeX",
                             "stride")
        oh, ow = pool_output_size(h, size, stride, start), pool_output_size(w, size, stride, start)
        if cfg["outputsX"]:
            if cfg["outputsX"] > ow:
                raise self.error(f"outputsX={cfg['outputsX']} exceeds the {ow} windows that fit",
                                 "outputsX")
            oh = ow = cfg["outputsX"]
        try:  # the forward pass's own check: every window overlaps the image
            pool_windows("pool", (h, w), size, stride, start, (oh, ow))
        except ValueError:
            raise self.error(f"sizeX={size}, stride={stride}, start={start}, outputsX={ow}: a "
                             f"window lies wholly outside the {h}x{w} image",
                             "outputsX" if cfg["outputsX"] else "start") from None
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
    KEYS = {"size": (parse_int, None, False), "channels": (parse_int, None, False),
            # early cuda-convnet (2011-12): the window as sizeX, scale and pow in layers.cfg
            "sizeX": (parse_int, None, False), "scale": (parse_float, None, False),
            "pow": (parse_float, None, False)}
    PARAMS = {"scale": (parse_float, None, False), "pow": (parse_float, None, False),
              "minDiv": (parse_float, 1.0, False)}

    def setup(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise self.error(f"input '{self.inputs[0]}' is not an image (shape {shape})")
        c = shape[0]
        e = self.section.entries
        if "size" in e and "sizeX" in e:
            raise self.error(f"size (line {e['size'].line}) and sizeX (line {e['sizeX'].line}) "
                             "both give the window: keep one", "sizeX")
        if "size" not in e and "sizeX" not in e:
            raise self.error("missing required key 'size'")
        self.cfg["size"] = size = self.cfg["size"] if "size" in e else self.cfg["sizeX"]
        self.scale, self.pow = self.either_file("scale"), self.either_file("pow")
        limit = c // self.cfg.get("groups", 1) if self.kind == "lrn" else min(shape[1:])
        if not 1 <= size <= limit:
            raise self.error(f"size={size} must be between 1 and {limit}", "size")
        if self.cfg["channels"] is not None and self.cfg["channels"] != c:
            raise self.error(f"channels={self.cfg['channels']} but the input has {c}", "channels")
        if self.pcfg["minDiv"] <= 0:
            raise self.error("minDiv must be > 0", "minDiv")
        self.alpha = self.scale / (size if self.kind == "lrn" else size * size)
        return shape

    @property
    def kind(self):
        return {"cmrnorm": "lrn", "rnorm": "rnorm", "cnorm": "cnorm"}[self.type]

    def args(self):
        return self.cfg["size"], self.alpha, self.pow, self.pcfg["minDiv"]

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
    KEYS = {**{k: v for k, v in NormLayer.KEYS.items() if k != "sizeX"},
            "groups": (parse_int, 1, False)}

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
    """Inverted dropout: training keeps each unit with probability `keep` and divides by it;
    testing passes the input through. enable=0 (cuda-convnet2) turns it off."""
    PARAMS = {"keep": (parse_float, 0.5, False), "enable": (parse_bool, True, False)}

    def setup(self, in_shapes):
        if not 0 < self.pcfg["keep"] <= 1:
            raise self.error(f"keep={self.pcfg['keep']} must be in (0, 1]", "keep")
        return in_shapes[0]

    def fprop(self, B, xs, ctx):
        keep = self.pcfg["keep"]
        if not ctx.train or keep == 1 or not self.pcfg["enable"]:
            self.cache["mask"] = None
            return xs[0]
        mask = B.dropout_mask(xs[0].shape, keep, ctx.seed, self.index, ctx.step,
                              ctx.offset(xs[0].shape))
        self.cache["mask"] = mask
        return B.dropout_forward(xs[0], mask, keep)

    def bprop(self, B, dz, xs, need):
        mask = self.cache["mask"]
        return [dz if mask is None else B.dropout_backward(dz, mask, self.pcfg["keep"])]


class Dropout2Layer(DropoutLayer):
    """cuda-convnet2's dropout2: training multiplies by the 0/1 mask without dividing by
    `keep`; testing (and enable=0) multiplies by `keep`, as Dropout2Layer::fpropActs."""

    def fprop(self, B, xs, ctx):
        y = super().fprop(B, xs, ctx)
        return y * self.pcfg["keep"]

    def bprop(self, B, dz, xs, need):
        return [dx * self.pcfg["keep"] for dx in super().bprop(B, dz, xs, need)]


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
    # topk (cuda-convnet2): the k of the top-k error its statistics report (default 5)
    PARAMS = {**CostLayer.PARAMS, "topk": (parse_int, None, False)}
    takes_labels = True  # its first input is a dataIdx=1 data layer
    fuses_softmax = True  # the net fuses a softmax feeding only this cost into its gradient
    fused = False

    def setup(self, in_shapes):
        if len(in_shapes) != 2 or in_shapes[0] != () or len(in_shapes[1]) != 1:
            raise self.error("cost.logreg takes inputs=<labels>,<probabilities>: a dataIdx=1 "
                             f"data layer, then a softmax (got shapes {in_shapes})", "inputs")
        self.classes = in_shapes[1][0]
        topk = self.pcfg["topk"]
        if topk is not None and not 1 <= topk <= self.classes:
            raise self.error(f"topk={topk} must be between 1 and the {self.classes} classes",
                             "topk")
        self.topk = min(5, self.classes) if topk is None else topk
        return ()

    def fprop(self, B, xs, ctx):
        labels, probs = xs
        nll, wrong1, wrongk = B.logreg_forward(probs, labels, self.topk)
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
    KEYS = {"coeffs": (parse_float, 1.0, True)}  # cuda-convnet's place; cuda-convnet2's: params
    PARAMS = {"coeffs": (parse_float, 1.0, True)}
    has_neuron = True

    def setup(self, in_shapes):
        if len(set(in_shapes)) != 1:
            raise self.error(f"eltsum inputs must have one shape, got {in_shapes}", "inputs")
        coeffs = self.either_file("coeffs", [1.0])
        if len(coeffs) not in (1, len(in_shapes)):
            raise self.error(f"coeffs: gives {len(coeffs)} values for {len(in_shapes)} inputs",
                             "coeffs")
        self.coeffs = [coeffs[i] if len(coeffs) > 1 else coeffs[0] for i in range(len(in_shapes))]
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


class PassLayer(ConcatLayer):
    """cuda-convnet2's pass: its inputs concatenated (one input: itself), copied to the layer's
    device where it sits on another (the net's cross-device edges)."""


CORE_LAYER_TYPES = {  # with layers_cc2's: layer_types.LAYER_TYPES
    "data": DataLayer, "conv": ConvLayer, "local": LocalLayer, "fc": FcLayer, "pool": PoolLayer,
    "cmrnorm": CrossMapNormLayer, "rnorm": NormLayer, "cnorm": NormLayer, "neuron": NeuronLayer,
    "dropout": DropoutLayer, "softmax": SoftmaxLayer, "cost.logreg": LogregCostLayer,
    "cost.sum2": Sum2CostLayer, "eltsum": EltSumLayer, "eltmax": EltMaxLayer,
    "concat": ConcatLayer, "dropout2": Dropout2Layer, "pass": PassLayer,
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
