"""cuda-convnet's and cuda-convnet2's own cfg syntax (issue 16), in test cfgs written here in
each original's style: what each key means there, and FILE:LINE for each bad value."""
import json
import re

import numpy as np
import pytest

from convnet.apps.cli import main
from convnet.data.prepared import FORMAT_NAME, META_FILE, NEEDED_META
from convnet.engine.config import ConfigError, read_cfg
from convnet.engine.net import Net
from convnet.training.saved_run import (FILTERS_MEANING, in_todays_meaning, run_config,
                                        total_filters_to_per_group)

# a v1-style net (no sizes on the data layer's neighbours but the image's): conv with groups
V1_GROUPED = """\
[data]
type=data
dataIdx=0
channels=8
imgSize=8

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
channels=8
groups=4
filters=16
filterSize=3
padding=1
stride=1
initW=0.01
partialSum=4
sharedBiases=1

[fc10]
type=fc
inputs=conv1
outputs=10
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""

def weight_params(name, inputs=1):
    """A layer-params.cfg section of a weight layer, v1 style (one value per input)."""
    per = ",".join(["{}"] * inputs).format
    return (f"[{name}]\nepsW={per(*['0.001'] * inputs)}\nepsB=0.002\n"
            f"momW={per(*['0.9'] * inputs)}\nmomB=0.9\nwc={per(*['0'] * inputs)}\n\n")


V1_PARAMS = weight_params("conv1") + weight_params("fc10") + "[logprob]\ncoeff=1\n"


def net_from(tmp_path, layers, params=V1_PARAMS, **kw):
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(layers)
    pp.write_text(params)
    return Net.from_cfg(str(lp), str(pp), **kw)


def cli_error(tmp_path, capsys, layers, params=V1_PARAMS, *extra):
    """(the one stderr line, the layers file) of a describe that must fail with exit 2."""
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(layers)
    pp.write_text(params)
    status = main([str(lp), str(pp), "--describe", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    return err[0], str(lp)


def line_of(text, needle, after=None):
    lines = text.splitlines()
    start = 0 if after is None else next(i for i, t in enumerate(lines) if t == after)
    return next(i for i, t in enumerate(lines) if i >= start and t == needle) + 1


# --- filters with groups: filters per group -------------------------------------------

def originals_conv_maps(filters, groups):
    """Both originals' layer.py: dic['filters'] = [filters*groups ...], one count for all
    inputs; filterChannels = channels / groups."""
    maps = {f * g for f, g in zip(filters, groups)}
    assert len(maps) == 1
    return maps.pop()


@pytest.mark.parametrize("filters,groups,channels", [
    ([16], [4], [8]), ([16], [1], [8]), ([8, 16], [2, 1], [8, 4]), ([4], [2], [8])])
def test_filters_count_each_groups_filters_as_the_originals(tmp_path, filters, groups, channels):
    text = V1_GROUPED.replace("inputs=data\nchannels=8\ngroups=4\nfilters=16",
                              "inputs=" + ",".join(["data", "d2"][:len(filters)]) +
                              "\nchannels=" + ",".join(map(str, channels)) +
                              "\ngroups=" + ",".join(map(str, groups)) +
                              "\nfilters=" + ",".join(map(str, filters)))
    text = text.replace("filterSize=3\npadding=1\nstride=1\ninitW=0.01\n",
                        "filterSize=3\npadding=1\nstride=1\ninitW=" +
                        ",".join(["0.01"] * len(filters)) + "\n")
    if len(filters) == 2:
        text = text.replace("[labels]", "[d2]\ntype=data\ndataIdx=0\nchannels=4\nimgSize=8\n\n"
                                        "[labels]")
        params = V1_PARAMS.replace(weight_params("conv1"), weight_params("conv1", 2))
    else:
        params = V1_PARAMS
    net = net_from(tmp_path, text, params, data_shapes={})
    maps = originals_conv_maps(filters, groups)
    assert net["conv1"].out_shape == (maps, 8, 8)
    for i, (c, g) in enumerate(zip(channels, groups)):
        assert net["conv1"].weights[i].shape == (maps, c // g, 3, 3)
    assert net["conv1"].bias.shape == (maps,)


def test_filters_that_make_unequal_map_counts_name_the_line(tmp_path, capsys):
    text = V1_GROUPED.replace("[labels]", "[d2]\ntype=data\ndataIdx=0\nchannels=8\nimgSize=8\n\n"
                                          "[labels]")
    text = text.replace("inputs=data\nchannels=8\ngroups=4\nfilters=16\n",
                        "inputs=data,d2\nchannels=8,8\ngroups=4,2\nfilters=16,16\n")
    err, lp = cli_error(tmp_path, capsys, text)
    assert f"{lp}:{line_of(text, 'filters=16,16')}:" in err
    assert "32 maps" in err and "64" in err


def test_grouped_local_layer_makes_filters_times_groups_maps(tmp_path):
    text = V1_GROUPED.replace("type=conv", "type=local").replace("partialSum=4\n"
                                                                 "sharedBiases=1\n", "")
    net = net_from(tmp_path, text, data_shapes={})
    assert net["conv1"].out_shape == (64, 8, 8)
    assert net["conv1"].weights[0].shape == (8, 8, 64, 2, 3, 3)


# --- checkpoints saved when filters counted all of a layer's filters -------------------

OLD_TEXT = V1_GROUPED.replace("groups=4\nfilters=16", "groups=4\nfilters=64")


def test_old_checkpoint_cfg_is_read_as_saved(tmp_path):
    assert run_config("x", "l.cfg", str(tmp_path / "p.cfg"), 0)["filters"] == FILTERS_MEANING
    old_state = {"layers_cfg": OLD_TEXT, "layers_file": "l.cfg"}  # no "filters": saved before
    state = in_todays_meaning(old_state)
    assert state["filters"] == FILTERS_MEANING and "filters=64" in old_state["layers_cfg"]
    assert state["layers_cfg"] == OLD_TEXT.replace("filters=64", "filters=16")
    net = net_from(tmp_path, state["layers_cfg"], data_shapes={})
    assert net["conv1"].weights[0].shape == (64, 2, 3, 3)  # the net the old run trained
    assert in_todays_meaning(state) is state  # today's checkpoints are taken as they are


def test_old_cfg_conversion_per_input_and_untouched_lines():
    text = ("[c]\ntype=conv\ninputs=a,b\n  filters : 12\ngroups=2,3\n\n[d]\ntype=conv\n"
            "filters=5\n\n[e]\ntype=local\nfilters=6\ngroups=4\n")
    out = total_filters_to_per_group(text)
    assert "filters=6,4" in out  # 12 maps from 2 and from 3 groups
    assert "filters=5" in out  # no groups: unchanged
    assert "filters=6\ngroups=4" in out  # never built (6 % 4): left for its own error


# --- --describe and --check-grads take the shapes from the data provider ---------------

V1_SIZELESS = V1_GROUPED.replace("channels=8\nimgSize=8\n", "").replace(
    "channels=8\ngroups=4\nfilters=16", "channels=3\nfilters=16")


@pytest.mark.parametrize("provider,extra,shape", [
    ("cifar", [], "16x32x32"), ("cifar", ["--inner-size", "24"], "16x24x24"),
    ("fashion-mnist", [], "16x28x28")])
def test_describe_asks_the_provider_without_reading_images(tmp_path, capsys, provider, extra,
                                                           shape):
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    text = V1_SIZELESS if provider == "cifar" else V1_SIZELESS.replace("channels=3\n", "")
    lp.write_text(text)
    pp.write_text(V1_PARAMS)
    missing = str(tmp_path / "no-such-folder")  # nothing is read from it
    assert main([str(lp), str(pp), "--describe", "--data-provider", provider, "--data-path",
                 missing, *extra]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("conv1 "))
    assert shape in row


def test_describe_image_provider_reads_only_the_meta(tmp_path, capsys):
    folder = tmp_path / "prepared"
    folder.mkdir()
    meta = {k: [] for k in NEEDED_META}
    meta.update(format=FORMAT_NAME, image_size=40, label_names=["a", "b"],
                rgb_eigenvalues=[1, 1, 1], rgb_eigenvectors=np.eye(3).tolist())
    (folder / META_FILE).write_text(json.dumps(meta))
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(V1_SIZELESS)
    pp.write_text(V1_PARAMS)
    assert main([str(lp), str(pp), "--describe", "--data-provider", "image", "--data-path",
                 str(folder), "--inner-size", "36"]) == 0
    assert "16x36x36" in capsys.readouterr().out


def test_check_grads_asks_the_provider(tmp_path, capsys):
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(V1_SIZELESS.replace("filters=16", "filters=2"))
    pp.write_text(V1_PARAMS)
    assert main([str(lp), str(pp), "--check-grads", "--data-provider", "cifar",
                 "--inner-size", "6", "--data-path", str(tmp_path / "none")]) == 0
    assert "FAIL" not in capsys.readouterr().out
