"""The Bench families of the ops with weights: conv and local (every pass), conv + bias + ReLU,
fc, and bias.

conv's twin is cuDNN through PyTorch (conv2d, aten.convolution_backward); fc's is torch.matmul
(cuBLAS, TF32 off); bias's torch's broadcast add and sum. local has none: PyTorch has no locally
connected layer (an unfold + einsum would time PyTorch's glue, not one kernel).
"""
from bench_base import (TILE_PERIOD, TOL_REDUCTION, Bench, call, check_close, tiled_reference)
from convnet.backend import algos
from convnet.backend import precision as precisions
from workloads import numel


class ProductBench(Bench):
    """The three passes of a product with weights: fwd (x, w) -> y, bwd_data (dy, w) -> dx,
    bwd_filter (x, dy) -> dw. Per-image passes are checked on sample images; bwd_filter, a sum
    over the batch, on the whole result, its set 0 built from TILE_PERIOD images repeated."""
    INPUTS = {"fwd": ("x", "w"), "bwd_data": ("dy", "w"), "bwd_filter": ("x", "dy")}
    OUTPUT = {"fwd": "y", "bwd_data": "dx", "bwd_filter": "dw"}
    TWINS = {}
    PASS = None  # the pass a family of one whole op runs (its rows name another)

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        L = self.L = self.p["layer"]
        self.pass_ = self.PASS or case.pass_
        self.shapes = {"x": L.x_shape, "w": L.w_shape, "y": L.y_shape, "dy": L.y_shape,
                       "dx": L.x_shape, "dw": L.w_shape}
        self.set_bytes = 4 * (numel(L.x_shape) + numel(L.w_shape) + numel(L.y_shape))
        self.fn, self.ref_fn = getattr(self.cb, self.op), getattr(self.ref, self.op)
        self.twin_name = self.TWINS.get(self.pass_)
        if self.pass_ == "bwd_filter":
            self.tol = TOL_REDUCTION

    def extra(self):
        """The pass's arguments after its two arrays."""
        return ()

    def options(self):
        return {}

    def make_set(self, i):
        c = self.ctx
        rand = c.tiled if i == 0 and self.pass_ == "bwd_filter" else c.rand
        s = {name: c.rand(self.shapes[name], 0.1) if name == "w" else rand(self.shapes[name])
             for name in self.INPUTS[self.pass_]}
        out = self.OUTPUT[self.pass_]
        s[out] = c.empty(self.shapes[out])
        return s

    def ours(self, s):
        a, b = self.INPUTS[self.pass_]
        return call(self.fn, s[a], s[b], *self.extra(), out=s[self.OUTPUT[self.pass_]],
                    **self.options())

    def validate(self, s):
        c, (a, b) = self.ctx, self.INPUTS[self.pass_]
        res = self.poisoned_run(s, s[self.OUTPUT[self.pass_]])
        if self.pass_ == "bwd_filter":
            n, p = self.L.N, min(TILE_PERIOD, self.L.N)
            want = tiled_reference(self.ref_fn, n, c.host64(s[a][:p]), c.host64(s[b][:p]),
                                   *self.extra())
            return check_close("dw", c.cupy.asnumpy(res), want, self.tol)
        w = c.host64(s["w"])
        return self.check_images(res, lambda idx: self.ref_fn(c.host64(s[a][idx]), w,
                                                              *self.extra()))

    def twin_setup(self, s):
        return {k: self.ctx.to_torch(v) for k, v in s.items()}


class ConvBench(ProductBench):
    """conv and local; the kernel algorithm is the case's `algo` (None: convnet.backend.algos
    chooses), so --ab rows time the others."""
    ops = tuple(f"{family}_{suffix}" for family in ("conv", "local")
                for suffix in ("forward", "backward_data", "backward_filter"))
    TWINS = {"fwd": "torch.nn.functional.conv2d (cuDNN)",
             "bwd_data": "torch.ops.aten.convolution_backward, input grad (cuDNN)",
             "bwd_filter": "torch.ops.aten.convolution_backward, weight grad (cuDNN)"}

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        if self.L.local:
            self.twin_name = None
        algo = self.p.get("algo")
        # a tensor-core row: checked against the exact result at its precision's bound, and
        # its twin is cuDNN at the same precision (TF32 allowed; BF16 tensors)
        self.precision = algos.precision_of(algo) if algo else "fp32"
        if self.precision != "fp32":
            L = self.L
            reduction = {"fwd": L.C // L.groups * L.fs ** 2, "bwd_data": L.F // L.groups *
                         L.fs ** 2, "bwd_filter": L.N * L.OH * L.OW}[self.pass_]
            self.tol = precisions.tolerance(self.precision, reduction)
            if self.twin_name:
                self.twin_name += f", {self.precision}"

    def extra(self):
        L = self.L
        first = {"fwd": (), "bwd_data": ((L.H, L.W),), "bwd_filter": (L.fs,)}[self.pass_]
        return first + (L.stride, L.padding, L.groups)

    def options(self):
        precision = None if self.precision == "fp32" else self.precision
        return {"algo": self.p.get("algo"), "precision": precision}

    def twin_setup(self, s):
        ts, torch, L = super().twin_setup(s), self.ctx.torch, self.L
        if self.pass_ == "bwd_data":
            ts["x"] = torch.empty(L.x_shape, device="cuda")
        if self.pass_ == "bwd_filter":
            ts["w"] = torch.empty(L.w_shape, device="cuda")
        if self.precision == "bf16":
            ts = {k: v.to(torch.bfloat16) for k, v in ts.items()}
        return ts

    def twin(self, ts):
        torch = self.ctx.torch
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = self.precision == "tf32"
        try:
            return self.cudnn(ts)
        finally:
            torch.backends.cudnn.allow_tf32 = tf32

    def cudnn(self, ts):
        L, torch = self.L, self.ctx.torch
        if self.pass_ == "fwd":
            return torch.nn.functional.conv2d(ts["x"], ts["w"], None, L.stride, L.padding, 1,
                                              L.groups)
        mask = [self.pass_ == "bwd_data", self.pass_ == "bwd_filter", False]
        grads = torch.ops.aten.convolution_backward(
            ts["dy"], ts["x"], ts["w"], None, [L.stride] * 2, [L.padding] * 2, [1, 1], False,
            [0, 0], L.groups, mask)
        return grads[0] if self.pass_ == "bwd_data" else grads[1]


class ConvBiasReluBench(ConvBench):
    """conv_forward_bias_relu, max(conv(x, w) + b, 0): one launch with the bias and ReLU in the
    GEMM's epilogue; its `unfused` rows run what it replaces, conv_forward, bias_forward and the
    ReLU (the fallback of other algorithms, and what ConvLayer ran before). The twin: cuDNN's
    conv2d with the bias, then torch.relu."""
    ops = ("conv_forward_bias_relu",)
    PASS = "fwd"
    INPUTS = {"fwd": ("x", "w", "b")}
    TWINS = {"fwd": "torch.relu(conv2d(x, w, b)) (cuDNN)"}

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shapes["b"] = (self.L.F,)

    def ours(self, s):
        x, w, b, y = s["x"], s["w"], s["b"], s["y"]
        if self.p.get("unfused"):
            cb = self.cb
            y = call(cb.conv_forward, x, w, *self.extra(), out=y, **self.options())
            return call(cb.neuron_forward, cb.bias_forward(y, b), "relu", out=y)
        return call(self.fn, x, w, b, *self.extra(), out=y, **self.options())

    def validate(self, s):
        c = self.ctx
        res = self.poisoned_run(s, s["y"])
        w, b = c.host64(s["w"]), c.host64(s["b"])
        return self.check_images(res, lambda idx: self.ref_fn(c.host64(s["x"][idx]), w, b,
                                                              *self.extra()))

    def cudnn(self, ts):
        L, torch = self.L, self.ctx.torch
        return torch.relu(torch.nn.functional.conv2d(ts["x"], ts["w"], ts["b"], L.stride,
                                                     L.padding, 1, L.groups))


class FcBench(ProductBench):
    """x (N, K) @ w (K, M) and its two gradients (cupy.matmul: cuBLAS, as the twin)."""
    ops = ("fc_forward", "fc_backward_data", "fc_backward_filter")
    TWINS = {"fwd": "torch.matmul(x, w) (cuBLAS)", "bwd_data": "torch.matmul(dy, w.T) (cuBLAS)",
             "bwd_filter": "torch.matmul(x.T, dy) (cuBLAS)"}

    def twin(self, ts):
        matmul = self.ctx.torch.matmul
        if self.pass_ == "fwd":
            return matmul(ts["x"], ts["w"])
        if self.pass_ == "bwd_data":
            return matmul(ts["dy"], ts["w"].T)
        return matmul(ts["x"].T, ts["dy"])


class BiasBench(Bench):
    """fwd: y + b, b shared over the positions (one per filter, or per fc output); bwd: db,
    dy summed over the batch and the positions."""
    ops = ("bias_forward", "bias_backward")

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.y_shape, self.b_shape = tuple(self.p["y_shape"]), tuple(self.p["b_shape"])
        self.set_bytes = 4 * (2 * numel(self.y_shape) + numel(self.b_shape))
        self.fwd = case.pass_ == "fwd"
        positions = len(self.y_shape) > 2
        self.twin_name = ("torch.add (b broadcast)" if self.fwd else
                          "torch.sum over the batch" + (" and positions" if positions else ""))

    def make_set(self, i):
        c = self.ctx
        if self.fwd:
            return {"y": c.rand(self.y_shape), "b": c.rand(self.b_shape),
                    "out": c.empty(self.y_shape)}
        return {"dy": c.rand(self.y_shape), "db": c.empty(self.b_shape)}

    def ours(self, s):
        if self.fwd:
            return call(self.cb.bias_forward, s["y"], s["b"], out=s["out"])
        return call(self.cb.bias_backward, s["dy"], len(self.b_shape), out=s["db"])

    def validate(self, s):
        c = self.ctx
        if self.fwd:
            res = self.poisoned_run(s, s["out"])
            b = c.host64(s["b"])
            return self.check_images(res, lambda idx: self.ref.bias_forward(
                c.host64(s["y"][idx]), b))
        res = self.poisoned_run(s, s["db"])
        want = self.ref.bias_backward(c.host64(s["dy"]), len(self.b_shape))
        return check_close("db", c.cupy.asnumpy(res), want, self.tol)

    def twin_setup(self, s):
        return {k: self.ctx.to_torch(v) for k, v in s.items()}

    def twin(self, ts):
        trailing = len(self.y_shape) - 1 - len(self.b_shape)
        if self.fwd:
            return ts["y"] + ts["b"].reshape(self.b_shape + (1,) * trailing)
        dims = (0,) + tuple(range(1 + len(self.b_shape), len(self.y_shape)))
        return ts["dy"].sum(dim=dims)
