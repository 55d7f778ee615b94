"""`convnet-train --describe`: the layers, a per-depth summary over the towers, cuda-convnet2's
replicas (their passes and the gradient bytes their updates all-reduce per step), and the copies
between devices (what the paper's two GPUs sent each other; with replicas, the rows of each slice
whose two ends are on different devices, as at a pass layer)."""
import numpy as np

from .layers import TUNING_KEYS, DataLayer, WeightLayer

FLOAT_BYTES = 4


def layer_params(layer):
    return sum(int(np.prod(p.shape)) for p in layer.params if not p.shared)


def layer_neurons(layer):
    return 0 if isinstance(layer, DataLayer) or not layer.out_shape else layer.neurons()


def weight_depths(net):
    """{weight layer name: depth}: conv/local/fc layers counted along the longest path from the
    data, so that both towers' conv1 are depth 1, both conv2 depth 2, and so on."""
    depth, out = {}, {}
    for layer in net.layers:
        d = max((depth[s] for s in layer.inputs), default=0)
        if isinstance(layer, WeightLayer):
            d += 1
            out[layer.name] = d
        depth[layer.name] = d
    return out


def slice_device(layer, i):
    """The device that holds slice i of the minibatch for `layer` (replicas.py: replica r
    takes slice k R + r); a data layer's rows are read on its own device."""
    reps = (layer.gpu,) if isinstance(layer, DataLayer) else layer.replicas
    return reps[i % len(reps)]


def cross_device_edges(net, mini, split_rows=None):
    """[(source, consumer, from gpus, to gpus, forward bytes, backward bytes)] per step of
    `mini` images: the rows whose devices differ at the two ends (all of them without replicas;
    with replicas, slice by slice), activations forward, their gradients back (none for data).
    split_rows(n, i, k): slice i's rows (convnet.parallel's rule), needed for replicas."""
    slices = net.schedule.rmax
    rows = [mini] if slices == 1 else [b - a for a, b in (split_rows(mini, i, slices)
                                                           for i in range(slices))]
    edges = []
    for layer in net.layers:
        for src in dict.fromkeys(layer.inputs):  # an input named twice is copied once
            producer = net[src]
            if producer.out_shape is None:
                continue
            moved = [i for i in range(slices)
                     if slice_device(producer, i) != slice_device(layer, i)]
            if not moved:
                continue
            per_case = int(np.prod(producer.out_shape)) if producer.out_shape else 1
            forward = sum(rows[i] for i in moved) * per_case * FLOAT_BYTES
            backward = 0 if isinstance(producer, DataLayer) else forward
            edges.append((src, layer.name, devices(producer, moved), devices(layer, moved),
                          forward, backward))
    return edges


def devices(layer, moved):
    return ",".join(map(str, dict.fromkeys(slice_device(layer, i) for i in moved)))


def table(rows, right_from=3):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < right_from else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def replicas_line(net):
    """One line on cuda-convnet2's replicas (gpu=0,1): how the minibatch is sliced and run."""
    sch = net.schedule
    counts = sorted({len(r) for _, r in net.replicated})
    return (f"replicas: {len(net.replicated)} layers have {' or '.join(map(str, counts))} "
            f"(gpu=0,1,...: cuda-convnet2's data parallelism): each minibatch in {sch.rmax} "
            f"slices, {sch.passes} pass{'es' * (sch.passes > 1)} per minibatch; each layer "
            f"updates on its slices' gradients averaged by rows, the replicas one after another "
            f"on the first device listed")


def replica_reductions(net):
    """[(layer, gpus, updates per step, gradient bytes all-reduced per step)] for the weight
    layers with replicas: each update sums the replicas' gradients once (a fraction of a step
    where updatePeriod spans several minibatches)."""
    sch, out = net.schedule, []
    for layer in net.layers:
        if len(layer.replicas) < 2 or layer.name not in sch.update_passes:
            continue
        per_step = sch.passes / sch.update_passes[layer.name]
        grad_bytes = layer_params(layer) * FLOAT_BYTES
        out.append((layer.name, ",".join(map(str, layer.replicas)), per_step,
                    round(grad_bytes * per_step)))
    return out


def describe(net, mini=128, split_rows=None):
    """The text of --describe for a minibatch of `mini`; split_rows: as cross_device_edges."""
    rows = [("layer", "type", "output", "neurons", "params", "gpu")]
    for layer in net.layers:
        shape = "x".join(map(str, layer.out_shape)) if layer.out_shape else "-"
        rows.append((layer.name, layer.type, shape, f"{layer_neurons(layer):,}",
                     f"{layer_params(layer):,}", ",".join(map(str, layer.replicas))))
    rows.append(("total", "", "", f"{sum(layer_neurons(l) for l in net.layers):,}",
                 f"{sum(layer_params(l) for l in net.layers):,}", ""))
    parts = [table(rows)]
    if net.replicated:
        parts.append(replicas_line(net))
        reduced = replica_reductions(net)
        if reduced:
            rows = [("layer", "gpu", "updates per step", "gradient bytes all-reduced per step")]
            rows += [(name, gpus, f"{n:g}", f"{b:,}") for name, gpus, n, b in reduced]
            rows.append(("total", "", "", f"{sum(r[3] for r in reduced):,}"))
            parts.append(f"replicas' gradients per step ({net.schedule.passes} pass"
                         f"{'es' * (net.schedule.passes > 1)} per minibatch of {mini}):\n"
                         + table(rows, 2))
    tuning = [f"{layer.name} {key}={layer.section.entries[key].value}" for layer in net.layers
              for key in TUNING_KEYS if key in layer.section.entries]
    if tuning:
        parts.append(f"tuning only, results unchanged (how the originals' kernels summed): "
                     f"{', '.join(tuning)}")
    sparse = [f"{layer.name} input {i}: {groups} groups x {table.size // groups} of "
              f"{layer.in_channels[i]} channels" for layer in net.layers
              for i, table in enumerate(getattr(layer, "conns", ())) if table is not None
              for groups in [layer.geometry[i][3]]]
    if sparse:
        parts.append("random sparse connectivity (randSparse, drawn at initialisation, kept by "
                     f"checkpoints): {', '.join(sparse)}")

    depths = weight_depths(net)
    by_depth = {}
    for name, d in depths.items():
        by_depth.setdefault(d, []).append(net[name])
    if any(len(layers) > 1 for layers in by_depth.values()):
        rows = [("depth", "layers", "", "neurons", "params")]
        for d in sorted(by_depth):
            layers = by_depth[d]
            rows.append((str(d), " + ".join(l.name for l in layers), "",
                         f"{sum(map(layer_neurons, layers)):,}",
                         f"{sum(map(layer_params, layers)):,}"))
        parts.append("per depth, summed over the towers:\n" + table(rows))

    edges = cross_device_edges(net, mini, split_rows)
    if edges:
        rows = [("copy", "gpus", "forward bytes", "backward bytes")]
        for src, dst, a, b, fwd, bwd in edges:
            rows.append((f"{src} -> {dst}", f"{a} -> {b}", f"{fwd:,}", f"{bwd:,}"))
        rows.append(("total", "", f"{sum(e[4] for e in edges):,}",
                     f"{sum(e[5] for e in edges):,}"))
        parts.append(f"copies between devices per step of {mini} images:\n" + table(rows, 2))
    return "\n\n".join(parts)
