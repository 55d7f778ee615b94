"""Check convnet's reading of cuda-convnet's and cuda-convnet2's own net files against the
originals' parsers: every layer's output shape by their formulas (layer.py of each), beside the
shape convnet builds.

    python tools/original_shapes.py LAYERS.cfg PARAMS.cfg --data 3x32x32 [--show]

--data gives the images' shape (dataIdx 0: what the provider gives, CIFAR 3x32x32, a 24 crop
3x24x24, ImageNet 3x224x224); labels are not compared. The formulas, as the originals wrote them:
  conv, local   modulesX = 1 + ceil((2 padding + imgSize - filterSize) / stride), maps
                filters * groups (filters counts each group's)
  pool          outputsX = ceil((imgSize - start - sizeX) / stride) + 1 unless given
  fc            outputs;   softmax, neurons, norms, dropouts: their input's shape
  pass          the channels of its inputs added
Exit status 0 when every layer agrees, 1 otherwise (each difference printed).
"""
import argparse
import configparser
import math
import sys

from convnet.engine.config import read_cfg
from convnet.engine.net import Net
from convnet.engine.sections import split_list

SAME_SHAPE = {"softmax", "neuron", "rnorm", "cmrnorm", "cnorm", "dropout", "dropout2"}


def first(value):
    return int(split_list(value)[0])


def per_input(sec, key, i, default=None):
    if key not in sec:
        return default
    values = split_list(sec[key])
    return int(values[i] if len(values) > 1 else values[0])


def original_shape(sec, inputs):
    """The output shape the originals' parsers give, from the inputs' shapes: (C, S, S) or
    (n,) for fc; None for a cost."""
    kind = sec["type"]
    if kind.startswith("cost."):
        return None
    if kind in SAME_SHAPE:
        return inputs[0]
    if kind == "fc":
        return (first(sec["outputs"]),)
    if kind == "pass":
        return (sum(s[0] for s in inputs),) + inputs[0][1:]
    if kind in ("conv", "local"):
        maps = set()
        sizes = set()
        for i, (c, s, _) in enumerate(inputs):
            pad, stride = per_input(sec, "padding", i, 0), per_input(sec, "stride", i, 1)
            fs, groups = per_input(sec, "filterSize", i), per_input(sec, "groups", i, 1)
            sizes.add(1 + math.ceil((2 * pad + s - fs) / stride))
            maps.add(per_input(sec, "filters", i) * groups)
        assert len(maps) == len(sizes) == 1, f"inputs disagree: {maps} maps, {sizes} sizes"
        m, s = maps.pop(), sizes.pop()
        return (m, s, s)
    if kind == "pool":
        c, s, _ = inputs[0]
        size, stride, start = int(sec["sizeX"]), int(sec["stride"]), int(sec.get("start", 0))
        out = int(sec.get("outputsX", 0)) or math.ceil((s - start - size) / stride) + 1
        return (c, out, out)
    raise ValueError(f"type {kind}: no formula here")


def shape_text(shape):
    return "-" if shape is None else "x".join(map(str, shape))


def compare(layers_path, params_path, image_shape, show=False):
    raw = configparser.RawConfigParser()
    raw.read(layers_path)
    images = [n for n in raw.sections() if raw[n]["type"] == "data" and raw[n]["dataIdx"] == "0"]
    net = Net(layer_sections=read_cfg(layers_path), param_sections=read_cfg(params_path),
              params_file=params_path, data_shapes={n: image_shape for n in images})
    built = {layer.name: layer.out_shape for layer in net.layers}
    shapes, bad = {}, 0
    for name in raw.sections():
        sec = raw[name]
        if sec["type"] == "data":
            shapes[name] = image_shape if name in images else None
        else:
            shapes[name] = original_shape(sec, [shapes[i] for i in split_list(sec["inputs"])])
        ours = built[name]
        ours = None if shapes[name] is None else tuple(ours)
        agree = ours == shapes[name]
        bad += not agree
        if show or not agree:
            print(f"  {name:16s} {sec['type']:12s} originals {shape_text(shapes[name]):14s} "
                  f"convnet {shape_text(ours):14s} {'' if agree else 'DIFFERS'}")
    print(f"{layers_path}: {len(raw.sections())} layers, "
          f"{'all agree' if not bad else f'{bad} differ'}")
    return bad == 0


def parse_shape(text):
    return tuple(int(v) for v in text.split("x"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("layers")
    ap.add_argument("params")
    ap.add_argument("--data", type=parse_shape, required=True,
                    help="the images' shape (dataIdx 0), e.g. 3x32x32")
    ap.add_argument("--show", action="store_true", help="print every layer, not only differences")
    args = ap.parse_args(argv)
    return 0 if compare(args.layers, args.params, args.data, args.show) else 1


if __name__ == "__main__":
    sys.exit(main())
