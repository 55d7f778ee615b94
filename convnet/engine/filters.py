"""A conv or local layer's filters as one image, split into the towers the layer graph gives them.

convnet-show draws the mosaic as a figure (the paper's Figure 3), the TensorBoard logger sends
it as an image; both read the towers from a graph {layer: (type, inputs, groups per input)},
built from cfg sections (a saved run) or from a Net.
"""
import math

import numpy as np

from .sections import split_list

FILTER_TARGET = (900, 1400)        # the largest mosaic, in pixels, before integer upscaling stops
PASSTHROUGH = {"pool", "cmrnorm", "rnorm", "cnorm", "neuron", "dropout"}


def graph_from_sections(sections):
    """{layer: (type, inputs, groups per input)} from a layers cfg's sections."""
    graph = {}
    for name, sec in sections.items():
        e = sec.entries
        inputs = split_list(e["inputs"].value) if "inputs" in e else []
        groups = [int(g) for g in split_list(e["groups"].value)] if "groups" in e else [1]
        graph[name] = (e["type"].value if "type" in e else "?", inputs, groups)
    return graph


def graph_from_net(net):
    return {layer.name: (layer.type, list(layer.inputs), list(layer.cfg.get("groups", [1])))
            for layer in net.layers}


def towers_of(graph, name):
    """How many towers a layer's filters split into: its own groups, or those of the first conv
    layer downstream (through pooling, normalization, neurons and dropout) that splits them.

    AlexNet's conv1 has groups=1, but conv2 (groups=2) reads its first 48 maps in one tower and
    the last 48 in the other: that is the split of the paper's Figure 3.
    """
    own = graph[name][2][0]
    if own > 1:
        return own
    frontier, seen = [name], {name}
    while frontier:
        current = frontier.pop(0)
        for other, (kind, inputs, groups) in graph.items():
            if current not in inputs or other in seen:
                continue
            seen.add(other)
            if kind in ("conv", "local"):
                g = groups[inputs.index(current)] if len(groups) > 1 else groups[0]
                if g > 1:
                    return g
            elif kind in PASSTHROUGH:
                frontier.append(other)
    return 1


def filter_mosaic(weights, towers=1, rgb=None, norm_each=False, max_filters=None,
                  max_channels=32):
    """Filters (F, Cg, fs, fs) as one image: (H, W, 3) for RGB, (H, W) greyscale, in [0, 1].

    One tile per filter (RGB, or one input channel) laid out in rows of 16 (32 for more than
    256 filters), or, for several greyscale channels, one row per filter with a tile per channel.
    Towers stack vertically, separated by a dark band 2 pixels high. Gaps are white.
    Returns (mosaic, info) with info = {"shown", "channels_shown", "tower_rows"}.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"filter_mosaic: expected weights (F, C, fs, fs), got {w.shape}")
    count, channels, size = w.shape[0], w.shape[1], w.shape[2]
    if towers < 1 or count % towers:
        raise ValueError(f"filter_mosaic: {towers} towers do not divide {count} filters")
    rgb = channels == 3 if rgb is None else rgb
    multi = not rgb and channels > 1
    if max_filters is None:
        max_filters = 64 if multi else 256
    per_tower = count // towers
    shown_per_tower = min(per_tower, max(1, max_filters // towers))
    keep = np.concatenate([np.arange(t * per_tower, t * per_tower + shown_per_tower)
                           for t in range(towers)])
    w = w[keep]
    channels_shown = min(channels, max_channels) if multi else channels
    if multi:
        w = w[:, :channels_shown]
    axes = tuple(range(1, 4)) if norm_each else None
    lo = w.min(axis=axes, keepdims=True)
    hi = w.max(axis=axes, keepdims=True)
    w = np.where(hi > lo, (w - lo) / np.where(hi > lo, hi - lo, 1), 0.5)

    pitch = size + 1
    if multi:
        cols, rows = channels_shown, shown_per_tower
    else:
        cols = min(shown_per_tower, 16 if shown_per_tower <= 256 else 32)
        rows = math.ceil(shown_per_tower / cols)
    band = 2
    height = towers * (rows * pitch + 1) + (towers - 1) * band
    width = cols * pitch + 1
    mosaic = np.ones((height, width, 3) if rgb else (height, width))
    tower_rows = []
    for t in range(towers):
        top0 = t * (rows * pitch + 1 + band)
        tower_rows.append((top0, top0 + rows * pitch + 1))
        if t:
            mosaic[top0 - band:top0] = 0.0  # the dark band between towers
        for i in range(shown_per_tower):
            f = w[t * shown_per_tower + i]
            if multi:
                for c in range(channels_shown):
                    y, x = top0 + 1 + i * pitch, 1 + c * pitch
                    mosaic[y:y + size, x:x + size] = f[c]
            else:
                y, x = top0 + 1 + (i // cols) * pitch, 1 + (i % cols) * pitch
                mosaic[y:y + size, x:x + size] = f.transpose(1, 2, 0) if rgb else f[0]
    return mosaic, {"shown": len(keep), "channels_shown": channels_shown,
                    "tower_rows": tower_rows}


def upscale(mosaic, target=FILTER_TARGET):
    """Integer nearest-neighbour upscaling so the mosaic fills about `target` (w, h) pixels."""
    height, width = mosaic.shape[:2]
    scale = max(1, min(16, target[0] // width, target[1] // height))
    return np.repeat(np.repeat(mosaic, scale, axis=0), scale, axis=1), scale
