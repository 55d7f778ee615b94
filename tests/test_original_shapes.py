"""tools/original_shapes.py: the originals' shape formulas beside the nets convnet builds, run on
the shipped nets (the originals' own files are not in the repository; the tool's docstring says
how to run it on them)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("original_shapes",
                                              ROOT / "tools" / "original_shapes.py")
original_shapes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(original_shapes)


@pytest.mark.parametrize("net,image", [
    ("cifar10-18pct", (3, 32, 32)), ("cifar10-80sec", (3, 32, 32)),
    ("cifar10-conv-local-11pct", (3, 24, 24)), ("alexnet", (3, 224, 224)),
    ("alexnet-2gpu", (3, 224, 224)), ("fashion", (1, 28, 28)), ("fashion-full", (1, 26, 26)),
])
def test_shipped_nets_have_the_originals_shapes(net, image, capsys):
    layers, params = ROOT / "layers" / f"{net}.cfg", ROOT / "layers" / f"{net}-params.cfg"
    assert original_shapes.compare(str(layers), str(params), image), capsys.readouterr().out
    assert "all agree" in capsys.readouterr().out


@pytest.mark.parametrize("section,inputs,want", [
    # v1's pool: ceil((32 - 0 - 3) / 2) + 1 = 16 (a window hangs over the edge)
    ({"type": "pool", "sizeX": "3", "stride": "2"}, [(32, 32, 32)], (32, 16, 16)),
    ({"type": "pool", "sizeX": "3", "stride": "2", "start": "-1"}, [(8, 9, 9)], (8, 5, 5)),
    ({"type": "pool", "sizeX": "2", "stride": "2", "outputsX": "3"}, [(8, 7, 7)], (8, 3, 3)),
    # conv: 1 + ceil((2*2 + 32 - 5) / 2) = 17, filters per group x groups
    ({"type": "conv", "filters": "32", "groups": "4", "filterSize": "5", "padding": "2",
      "stride": "2"}, [(128, 32, 32)], (128, 17, 17)),
    ({"type": "local", "filters": "192,192", "filterSize": "3", "padding": "1"},
     [(256, 13, 13), (256, 13, 13)], (192, 13, 13)),
    ({"type": "pass"}, [(64, 5, 5), (32, 5, 5)], (96, 5, 5)),
    ({"type": "fc", "outputs": "10"}, [(64, 4, 4)], (10,)),
    ({"type": "cost.logreg"}, [None, (10,)], None),
])
def test_the_originals_formulas_by_hand(section, inputs, want):
    assert original_shapes.original_shape(section, inputs) == want


def test_a_type_without_a_formula_is_named():
    with pytest.raises(ValueError, match="type cmpool: no formula here"):
        original_shapes.original_shape({"type": "cmpool"}, [(8, 3, 3)])
