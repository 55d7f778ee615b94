"""cuda-convnet2's replicas (gpu=0,1,2,3): when each layer runs and updates within a minibatch.

cuda-convnet2 (convnet.cu, layer.cu) splits a minibatch into Rmax slices (Rmax: the most
replicas any layer has) and runs it in P = Rmax / Rmin passes (Rmin: the fewest). Pass p holds
slices [p Rmin, (p+1) Rmin). A layer with R replicas runs once per R slices: replica r takes
slice k R + r of its k-th window, so a gpu=0,1,2,3 conv sees every slice in one window while a
single-replica fc after a `pass` layer runs once per pass, on that pass's slice. A weight
layer updates every u = max(updatePeriod, R / Rmin) passes (cc2's _weightUpdatePassPeriod), on
the row-weighted mean of the gradients since its last update.

Replicas of a layer share its weights, and every layer but the cost maps rows to rows, so a
pass can run the whole net on its rows: the layers whose window spans several passes see the
same weights in each (they update only at the window's end), which is what cc2 computes. With
one pass (all layers with the same replicas: cc2's 2gpu-data), the step equals the net without
replicas up to the order of summation. The rows of each slice are the training loop's to split
(convnet/training/replicas.py), as the ranks' are."""
from dataclasses import dataclass

from .layers import DataLayer, WeightLayer


@dataclass
class Schedule:
    rmax: int  # slices per minibatch
    rmin: int  # slices per pass
    update_passes: dict  # weight layer name: u, the passes between its updates

    @property
    def passes(self):
        return self.rmax // self.rmin

    def step_period(self, name):
        """A layer's updates counted in minibatches (Param.period): u / P when u spans whole
        minibatches, else 1 (the passes within the minibatch are the training loop's)."""
        return max(1, self.update_passes[name] // self.passes)

    def updates_after(self, name, p):
        """Whether layer `name` updates after pass p of a minibatch."""
        u = self.update_passes[name]
        return p == self.passes - 1 if u >= self.passes else (p + 1) % u == 0

    def group(self, name, p):
        """The slices [lo, hi) whose gradients the update of `name` that covers pass p
        averages (the whole minibatch when it updates at most once per minibatch)."""
        u = min(self.update_passes[name], self.passes)
        first = p - p % u
        return first * self.rmin, (first + u) * self.rmin


def schedule(layers):
    """The Schedule of the layers (in net order, placed); a ConfigError naming the layer and
    key for what cuda-convnet2 refused and for what this schedule cannot keep."""
    counts = {layer.name: len(layer.replicas) for layer in layers}
    data = {layer.name for layer in layers if isinstance(layer, DataLayer)}
    used = [layer for layer in layers if not isinstance(layer, DataLayer)]
    rmax = max((counts[l.name] for l in used), default=1)
    rmin = min((counts[l.name] for l in used), default=1)
    for layer in used:
        theirs = {counts[s] for s in layer.inputs if s not in data}
        if len(theirs) > 1:
            raise layer.error(f"its inputs have {' and '.join(map(str, sorted(theirs)))} "
                              f"replicas: cuda-convnet2 requires the same number for all "
                              f"inputs ({', '.join(layer.inputs)})", "inputs")
        if layer.type == "pass" and theirs and theirs != {counts[layer.name]}:
            raise layer.error(f"a pass layer needs as many replicas as its inputs ("
                              f"{theirs.pop()}), has {counts[layer.name]} (cuda-convnet2's rule)",
                              "gpu")
    passes = rmax // rmin
    update = {}
    for layer in used:
        if not isinstance(layer, WeightLayer):
            continue
        active = counts[layer.name] // rmin
        asked = layer.pcfg["updatePeriod"]
        u = max(asked, active)
        if u % active:
            raise layer.error(f"updatePeriod={asked} must be a multiple of the {active} passes "
                              f"this layer's {counts[layer.name]} replicas take per window "
                              f"(the net makes {passes} passes per minibatch)", "updatePeriod")
        if (u < passes and passes % u) or (u > passes and u % passes):
            raise layer.error(f"updatePeriod={asked}: with {passes} passes per minibatch an "
                              f"update period must divide {passes} or be a multiple of it",
                              "updatePeriod")
        update[layer.name] = u
    return Schedule(rmax, rmin, update)
