"""The Bench families of the softmax, the costs and the in-place updates: softmax (fwd, bwd),
the costs (cuda-convnet's logreg; cuda-convnet2's crossent, bce, dce) with their fused
gradients, sum2, sgd_update and maxnorm.

Twins: softmax and _softmax_backward_data; the fused gradients and bce's by autograd of
cross_entropy, binary_cross_entropy(_with_logits); mul for sum2's backward, renorm_ for maxnorm.
None for the forward costs (no PyTorch op gives the cost with the top-1 / top-k errors or the
detection counts), logreg's and crossent's own backward (-scale * t / p: no one op), sum2's
forward (two ops in PyTorch), or sgd_update (PyTorch's SGD applies weight decay and momentum
in another order: other numbers).
"""
import numpy as np

from bench_base import (TOL_ELEMENTWISE, Bench, ValidationFailed, call, check_close)
from workloads import numel


class SoftmaxBench(Bench):
    """Row softmax of (N, K) scores and its backward."""
    ops = ("softmax_forward", "softmax_backward")

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.fwd = case.pass_ == "fwd"
        self.set_bytes = 4 * numel(self.shape) * (2 if self.fwd else 3)
        self.twin_name = ("torch.softmax" if self.fwd else
                          "torch.ops.aten._softmax_backward_data")

    def make_set(self, i):
        c = self.ctx
        if self.fwd:
            return {"x": c.rand(self.shape, 3.0), "p": c.empty(self.shape)}
        return {"p": probabilities(c, self.shape)[1], "dp": c.rand(self.shape),
                "dx": c.empty(self.shape)}

    def ours(self, s):
        if self.fwd:
            return call(self.cb.softmax_forward, s["x"], out=s["p"])
        return call(self.cb.softmax_backward, s["p"], s["dp"], out=s["dx"])

    def validate(self, s):
        c = self.ctx
        res = self.poisoned_run(s, s["p"] if self.fwd else s["dx"])
        if self.fwd:
            return self.check_images(res, lambda idx: self.ref.softmax_forward(
                c.host64(s["x"][idx])))
        return self.check_images(res, lambda idx: self.ref.softmax_backward(
            c.host64(s["p"][idx]), c.host64(s["dp"][idx])))

    def twin_setup(self, s):
        return {k: self.ctx.to_torch(v) for k, v in s.items()}

    def twin(self, ts):
        torch = self.ctx.torch
        if self.fwd:
            return torch.softmax(ts["x"], 1)
        return torch.ops.aten._softmax_backward_data(ts["dp"], ts["p"], 1, torch.float32)


def probabilities(c, shape):
    """(x, p): random scores and their row softmax, computed with the array module."""
    x = c.rand(shape, 3.0)
    e = c.cupy.exp(x - x.max(axis=1, keepdims=True))
    return x, c.cupy.ascontiguousarray(e / e.sum(axis=1, keepdims=True))


# op: (what it reads: softmax probabilities or logistic outputs, its labels: class indices
# (N,) int32, or (N, K) float32 one-hot rows or multi-label 0/1, its outputs: None for one
# (N, K) gradient); arguments (p, labels) + topk (logreg) + scale (backward) + pos_weight (bce)
COSTS = {
    "logreg_forward": ("softmax", "index", ("nll", "wrong1", "wrongk")),
    "logreg_backward": ("softmax", "index", None),
    "softmax_logreg_backward": ("softmax", "index", None),
    "crossent_forward": ("softmax", "onehot", ("cost", "wrong")),
    "crossent_backward": ("softmax", "onehot", None),
    "softmax_crossent_backward": ("softmax", "onehot", None),
    "bce_forward": ("logistic", "multi", ("cost", "wrong", "top1_wrong")),
    "bce_backward": ("logistic", "multi", None),
    "logistic_bce_backward": ("logistic", "multi", None),
    "dce_forward": ("logistic", "multi", ("cost", "wrong", "counts")),
    "dce_backward": ("logistic", "multi", None),
}
EXACT = ("wrong1", "wrongk", "counts")  # decided by comparisons: must agree exactly


class CostBench(Bench):
    """logreg (cuda-convnet) and crossent, bce, dce (cuda-convnet2), forward and backward, and
    their fused gradients through softmax / logistic; outputs checked on the whole batch."""
    ops = tuple(COSTS)
    TWINS = {"softmax_logreg_backward": "torch cross_entropy + autograd",
             "softmax_crossent_backward": "torch cross_entropy (probability targets) + autograd",
             "bce_backward": "torch binary_cross_entropy + autograd",
             "dce_backward": "torch binary_cross_entropy + autograd",
             "logistic_bce_backward": "torch binary_cross_entropy_with_logits + autograd"}

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.N, self.K = self.p["shape"]
        self.reads, self.labels, self.outputs = COSTS[self.op]
        self.scale = 1.0 / self.N
        self.set_bytes = 4 * (4 * self.N * self.K + 4 * self.N)
        if self.outputs is None:
            self.tol = TOL_ELEMENTWISE
        self.twin_name = self.TWINS.get(self.op)
        if self.reads == "logistic" and self.p["pos_weight"] != 1 and self.op != \
                "logistic_bce_backward":
            self.twin_name = None  # binary_cross_entropy has no pos_weight

    def make_set(self, i):
        c, cp, (n, k) = self.ctx, self.cp, (self.N, self.K)
        if self.reads == "softmax":
            x, p = probabilities(c, (n, k))
        else:
            x = c.rand((n, k), 3.0)
            p = cp.ascontiguousarray(1 / (1 + cp.exp(-x)))
        index = c.labels(n, k)
        labels = {"index": index, "multi": (c.rand((n, k)) > 1.28).astype(cp.float32)}
        if self.labels == "onehot":
            labels["onehot"] = cp.zeros((n, k), dtype=cp.float32)
            labels["onehot"][cp.arange(n), index] = 1
        s = {"x": x, "p": p, "labels": labels[self.labels]}
        if self.outputs is None:
            s["dx"] = c.empty((n, k))
        else:
            s["cost_out"] = tuple(c.empty((k, 3) if name == "counts" else (n,))
                                  for name in self.outputs)
        return s

    def args(self, p, labels):
        return ((p, labels) + ((self.p["topk"],) if self.op == "logreg_forward" else ())
                + ((self.scale,) if self.outputs is None else ())
                + ((self.p["pos_weight"],) if self.reads == "logistic" else ()))

    def ours(self, s):
        out = s["dx"] if self.outputs is None else s["cost_out"]
        return call(getattr(self.cb, self.op), *self.args(s["p"], s["labels"]), out=out)

    def validate(self, s):
        c, cp = self.ctx, self.cp
        labels = cp.asnumpy(s["labels"])
        if self.labels != "index":
            labels = labels.astype(np.float64)
        # ours cast exactly: the same comparisons decide top-k, maxima and thresholds
        want = getattr(self.ref, self.op)(*self.args(c.host64(s["p"]), labels))
        if self.outputs is None:
            res = self.poisoned_run(s, s["dx"])
            return check_close("dx", cp.asnumpy(res), want, self.tol)
        err = 0.0
        for name, got, expected in zip(self.outputs, self.poisoned_run(s, *s["cost_out"]),
                                       want):
            got = cp.asnumpy(got)
            if name in EXACT:
                if got.shape != expected.shape or (got != expected).any():
                    raise ValidationFailed(f"{name}: differs from the reference")
            else:
                err = max(err, check_close(name, got, expected, self.tol))
        return err

    def twin_setup(self, s):
        c, torch = self.ctx, self.ctx.torch
        F = torch.nn.functional
        target = c.to_torch(s["labels"])
        if self.op == "softmax_logreg_backward":
            target = target.long()
        leaf = c.to_torch(s["p" if self.op in ("bce_backward", "dce_backward") else "x"])
        leaf = leaf.detach().requires_grad_(True)
        if self.reads == "softmax":
            loss = F.cross_entropy(leaf, target, reduction="sum")
        elif self.op == "logistic_bce_backward":
            weight = torch.tensor(self.p["pos_weight"], device="cuda")
            loss = F.binary_cross_entropy_with_logits(leaf, target, pos_weight=weight,
                                                      reduction="sum")
        else:
            loss = F.binary_cross_entropy(leaf, target, reduction="sum")
        return {"leaf": leaf, "loss": loss, "g": torch.tensor(self.scale, device="cuda")}

    def twin(self, ts):
        return self.ctx.torch.autograd.grad(ts["loss"], ts["leaf"], ts["g"],
                                            retain_graph=True)[0]


class Sum2Bench(Bench):
    """sum2_forward: per case 0.5 * sum(x^2); sum2_backward: scale * x."""
    ops = ("sum2_forward", "sum2_backward")

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.fwd = case.pass_ == "fwd"
        self.scale = 1.0 / self.shape[0]
        self.set_bytes = 4 * (numel(self.shape) * (1 if self.fwd else 2) + self.shape[0])
        if not self.fwd:
            self.tol = TOL_ELEMENTWISE
            self.twin_name = "torch.mul"

    def make_set(self, i):
        c = self.ctx
        out = (self.shape[0],) if self.fwd else self.shape
        return {"x": c.rand(self.shape), "out": c.empty(out)}

    def ours(self, s):
        if self.fwd:
            return call(self.cb.sum2_forward, s["x"], out=s["out"])
        return call(self.cb.sum2_backward, s["x"], self.scale, out=s["out"])

    def validate(self, s):
        c = self.ctx
        res = self.poisoned_run(s, s["out"])
        if self.fwd:
            return self.check_images(res, lambda idx: self.ref.sum2_forward(
                c.host64(s["x"][idx])))
        return self.check_images(res, lambda idx: self.ref.sum2_backward(
            c.host64(s["x"][idx]), self.scale))

    def twin_setup(self, s):
        return {"x": self.ctx.to_torch(s["x"])}

    def twin(self, ts):
        return self.ctx.torch.mul(ts["x"], self.scale)


class SgdBench(Bench):
    """In place: v <- mom v - wc eps w - eps g; w <- w + v. No twin."""
    ops = ("sgd_update",)
    tol = TOL_ELEMENTWISE

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape = tuple(self.p["shape"])
        self.set_bytes = 3 * 4 * numel(self.shape)

    def make_set(self, i):
        c = self.ctx
        return {"w": c.rand(self.shape, 0.01), "v": c.rand(self.shape, 0.001),
                "g": c.rand(self.shape, 0.01)}

    def ours(self, s):
        p = self.p
        self.cb.sgd_update(s["w"], s["v"], s["g"], p["eps"], p["mom"], p["wc"])
        return s["w"]

    def validate(self, s):
        cp, p = self.cp, self.p
        w, v, g = (cp.asnumpy(s[k]).copy() for k in ("w", "v", "g"))
        self.validated = self.ours(s)
        cp.cuda.runtime.deviceSynchronize()
        self.ref.sgd_update(w, v, g, p["eps"], p["mom"], p["wc"])  # float32, in place
        err = check_close("v", cp.asnumpy(s["v"]), v, self.tol)
        return max(err, check_close("w", cp.asnumpy(s["w"]), w, self.tol))


class MaxnormBench(Bench):
    """In place: every unit (slice along `axis`) scaled to L2 norm <= wball. Timed in the
    steady state of training, every unit inside the ball (the norms read, nothing written);
    validated first on the same weights scaled so that every unit lies outside it."""
    ops = ("maxnorm",)
    tol = TOL_ELEMENTWISE
    twin_name = "torch.Tensor.renorm_"
    OUTSIDE = 4.0  # validation's weights: this times the timed ones

    def __init__(self, case, ctx):
        super().__init__(case, ctx)
        self.shape, self.wball, self.axis = tuple(self.p["shape"]), self.p["wball"], self.p["axis"]
        self.set_bytes = 4 * numel(self.shape)
        others = numel(self.shape) // self.shape[self.axis]
        self.std = 0.5 * self.wball / np.sqrt(others)  # unit norms about wball / 2

    def make_set(self, i):
        return {"w": self.ctx.rand(self.shape, self.std)}

    def ours(self, s):
        self.cb.maxnorm(s["w"], self.wball, self.axis)
        return s["w"]

    def validate(self, s):
        cp = self.cp
        inside = s["w"].copy()
        s["w"] *= np.float32(self.OUTSIDE)
        want = self.ctx.host64(s["w"])
        self.ref.maxnorm(want, self.wball, self.axis)
        res = self.ours(s)
        cp.cuda.runtime.deviceSynchronize()
        err = check_close("w", cp.asnumpy(res), want, self.tol)
        s["w"][...] = inside
        self.validated = self.ours(s)
        cp.cuda.runtime.deviceSynchronize()
        if bool((s["w"] != inside).any()):
            raise ValidationFailed("w: changed although every unit is inside the ball")
        return err

    def twin_setup(self, s):
        return {"w": self.ctx.to_torch(s["w"])}

    def twin(self, ts):
        return ts["w"].renorm_(2, self.axis, self.wball)
