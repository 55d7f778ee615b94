"""cuda-convnet2's layer types that cuda-convnet (v1) lacked: cross-map pooling (cmpool), sum,
crop, and the crossent, bce and dce costs. Keys as cuda-convnet2's layer.py names them; the ops
and their meaning are in convnet/backend/OPS.md ("cuda-convnet2's layer types").

The three costs take labels as cuda-convnet2 does, one weight per class and case ((K,) per
case, e.g. from a data layer with `outputs=K`), or as integer class labels (a dataIdx=1 data
layer, as cost.logreg), which they read as one-hot rows.
"""
from ..backend import contract
from .config import parse_float, parse_int, parse_str
from .layers import REQUIRED, CostLayer, Layer


def _checked(layer, key, check, *args):
    """A contract check at parse time: its ValueError as FILE:LINE naming `key`."""
    try:
        return check(*args)
    except ValueError as e:
        raise layer.error(str(e).split(": ", 1)[-1], key) from None


class CrossMapPoolLayer(Layer):
    """Max over windows of `size` channels every `stride`, from channel `start` (<= 0)."""
    KEYS = {"pool": (parse_str, REQUIRED, False), "size": (parse_int, REQUIRED, False),
            "stride": (parse_int, REQUIRED, False), "start": (parse_int, 0, False),
            "outputs": (parse_int, 0, False), "channels": (parse_int, None, False)}
    has_neuron = True

    def setup(self, in_shapes):
        (shape,) = in_shapes
        c = self.cfg
        if c["pool"] != "max":
            raise self.error(f"cmpool supports pool=max only, got {c['pool']!r}", "pool")
        if c["channels"] is not None and c["channels"] != shape[0]:
            raise self.error(f"channels={c['channels']} but the input has {shape[0]}",
                             "channels")
        outputs = c["outputs"] or contract.cmpool_output_size(shape[0], c["size"], c["stride"],
                                                              c["start"])
        _checked(self, "size", contract.cmpool_windows, "cmpool", shape[0], c["size"],
                 c["stride"], c["start"], outputs)
        return (outputs,) + tuple(shape[1:])

    def forward(self, B, xs, ctx):
        c = self.cfg
        self.cache["pooled"] = pooled = B.cmpool_forward(xs[0], c["size"], c["stride"],
                                                         c["start"], self.out_shape[0])
        return self.apply_neuron(B, pooled, ctx)

    def bprop(self, B, dz, xs, need):
        c = self.cfg
        return [B.cmpool_backward(xs[0], self.cache["pooled"], dz, c["size"], c["stride"],
                                  c["start"]) if need[0] else None]


class SumLayer(Layer):
    """Sums of `stride` consecutive entries of axis 1 (channels, or an fc layer's outputs)."""
    KEYS = {"stride": (parse_int, 1, False)}
    has_neuron = True

    def setup(self, in_shapes):
        (shape,) = in_shapes
        _checked(self, "stride", contract.sum_stride, "sum", (1,) + tuple(shape),
                 self.cfg["stride"])
        return (shape[0] // self.cfg["stride"],) + tuple(shape[1:])

    def fprop(self, B, xs, ctx):
        return B.sum_forward(xs[0], self.cfg["stride"])

    def bprop(self, B, dz, xs, need):
        return [B.sum_backward(dz, self.cfg["stride"]) if need[0] else None]


class CropLayer(Layer):
    """The sizeX x sizeX window at (startY, startX) of each map."""
    KEYS = {"channels": (parse_int, None, False), "startX": (parse_int, REQUIRED, False),
            "startY": (parse_int, None, False), "sizeX": (parse_int, REQUIRED, False)}
    has_neuron = True

    def setup(self, in_shapes):
        (shape,) = in_shapes
        c = self.cfg
        if len(shape) != 3:
            raise self.error(f"input '{self.inputs[0]}' is not an image (shape {shape})",
                             "inputs")
        if c["channels"] is not None and c["channels"] != shape[0]:
            raise self.error(f"channels={c['channels']} but the input has {shape[0]}",
                             "channels")
        self.start = (c["startX"] if c["startY"] is None else c["startY"], c["startX"])
        _checked(self, "sizeX", contract.crop_window, "crop", shape[1:], self.start,
                 (c["sizeX"], c["sizeX"]))
        return (shape[0], c["sizeX"], c["sizeX"])

    def fprop(self, B, xs, ctx):
        return B.crop_forward(xs[0], self.start, self.out_shape[1:])

    def bprop(self, B, dz, xs, need):
        return [B.crop_backward(dz, xs[0].shape[2:], self.start) if need[0] else None]


class LabelledCostLayer(CostLayer):
    """A cost over inputs=<labels>,<predictions (K,)>: labels (K,) weights or integer classes."""
    takes_labels = True

    def setup(self, in_shapes):
        if len(in_shapes) != 2 or len(in_shapes[1]) != 1 or in_shapes[0] not in ((),
                                                                                 in_shapes[1]):
            raise self.error(f"{self.type} takes inputs=<labels>,<predictions>: integer labels "
                             f"or a (K,) label layer, then (K,) predictions (got shapes "
                             f"{in_shapes})", "inputs")
        self.classes = in_shapes[1][0]
        return ()

    def label_rows(self, B, labels, like):
        """(N, K) labels: integer classes as one-hot rows."""
        if labels.ndim == 2:
            return labels
        return B.xp.eye(self.classes, dtype=like.dtype)[labels]


class CrossEntCostLayer(LabelledCostLayer):
    """-sum_k t_k log p_k over a softmax's probabilities; fused through that softmax."""
    fuses_softmax = True
    fused = False

    def fprop(self, B, xs, ctx):
        labels, probs = xs
        cost, wrong = B.crossent_forward(probs, self.label_rows(B, labels, probs))
        self.stats = {"cost": float(cost.sum()), "top1": float(wrong.sum()),
                      "cases": int(probs.shape[0])}

    def backward(self, B, dy, xs, y, need):
        labels, probs = xs
        t, scale = self.label_rows(B, labels, probs), self.pcfg["coeff"] / probs.shape[0]
        if self.fused:
            return [None, B.softmax_crossent_backward(probs, t, scale)]
        return [None, B.crossent_backward(probs, t, scale)]


class BceCostLayer(LabelledCostLayer):
    """Binomial cross-entropy of independent (logistic) outputs; positives weighted posWeight."""
    PARAMS = {**CostLayer.PARAMS, "posWeight": (parse_float, 1.0, False)}

    def fprop(self, B, xs, ctx):
        labels, y = xs
        cost, wrong, top1 = B.bce_forward(y, self.label_rows(B, labels, y),
                                          self.pcfg["posWeight"])
        self.stats = {"cost": float(cost.sum()), "wrong": float(wrong.sum()),
                      "top1": float(top1.sum()), "cases": int(y.shape[0])}

    def backward(self, B, dy, xs, y_out, need):
        labels, y = xs
        return [None, B.bce_backward(y, self.label_rows(B, labels, y),
                                     self.pcfg["coeff"] / y.shape[0], self.pcfg["posWeight"])]


class DceCostLayer(BceCostLayer):
    """bce's cost and gradient, reporting detection counts summed over the classes: declared
    positive, positive, true positive (cuda-convnet2 prints them per class)."""

    def fprop(self, B, xs, ctx):
        labels, y = xs
        cost, wrong, counts = B.dce_forward(y, self.label_rows(B, labels, y),
                                            self.pcfg["posWeight"])
        totals = [float(v) for v in B.to_numpy(counts).sum(axis=0)]
        self.stats = {"cost": float(cost.sum()), "wrong": float(wrong.sum()),
                      "declared_positive": totals[0], "positive": totals[1],
                      "true_positive": totals[2], "cases": int(y.shape[0])}


CC2_LAYER_TYPES = {"cmpool": CrossMapPoolLayer, "sum": SumLayer, "crop": CropLayer,
                   "cost.crossent": CrossEntCostLayer, "cost.bce": BceCostLayer,
                   "cost.dce": DceCostLayer}
