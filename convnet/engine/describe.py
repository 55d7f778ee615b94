"""`convnet-train --describe`: the layers, a per-depth summary over the towers, and the copies
between devices (what the paper's two GPUs sent each other)."""
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


def cross_device_edges(net, mini):
    """[(source, consumer, from gpu, to gpu, forward bytes, backward bytes)] per step of `mini`
    images: activations go forward, their gradients come back (none for data)."""
    edges = []
    for layer in net.layers:
        for src in dict.fromkeys(layer.inputs):  # an input named twice is copied once
            producer = net[src]
            if producer.gpu == layer.gpu or producer.out_shape is None:
                continue
            per_case = int(np.prod(producer.out_shape)) if producer.out_shape else 1
            forward = mini * per_case * FLOAT_BYTES
            backward = 0 if isinstance(producer, DataLayer) else forward
            edges.append((src, layer.name, producer.gpu, layer.gpu, forward, backward))
    return edges


def table(rows, right_from=3):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < right_from else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def replicas_line(net):
    """The one line that says cuda-convnet2's replicas (gpu=0,1) run as one here."""
    counts = sorted({len(r) for _, r in net.replicated})
    return (f"replicas: {len(net.replicated)} layers have {' or '.join(map(str, counts))} "
            f"(gpu=0,1,...: cuda-convnet2's data parallelism); they run as one, each layer on "
            f"the first device it lists")


def describe(net, mini=128):
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

    edges = cross_device_edges(net, mini)
    if edges:
        rows = [("copy", "gpus", "forward bytes", "backward bytes")]
        for src, dst, a, b, fwd, bwd in edges:
            rows.append((f"{src} -> {dst}", f"{a} -> {b}", f"{fwd:,}", f"{bwd:,}"))
        rows.append(("total", "", f"{sum(e[4] for e in edges):,}",
                     f"{sum(e[5] for e in edges):,}"))
        parts.append(f"copies between devices per step of {mini} images:\n" + table(rows, 2))
    return "\n\n".join(parts)
