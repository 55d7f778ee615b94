"""cuda-convnet's and cuda-convnet2's own cfg syntax (issue 16), in test cfgs written here in
each original's style: what each key means there, and FILE:LINE for each bad value."""
import json
import re

import numpy as np
import pytest

from convnet.apps.cli import main
from convnet.data import Provider
from convnet.data.prepared import FORMAT_NAME, META_FILE, NEEDED_META
from convnet.engine.net import Net
from convnet.training.saved_run import (FILTERS_MEANING, in_todays_meaning, run_config,
                                        total_filters_to_per_group)
from convnet.training.train import evaluate

from cfg_texts import data_layers, softmax_logreg

# a v1-style net (no sizes on the data layer's neighbours but the image's): conv with groups
V1_GROUPED = data_layers(8, 8) + """\
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

""" + softmax_logreg("fc10")

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


# --- keys and types of the originals -----------------------------------------------------

def small(tmp_path, body, params="", data="channels=4\nimgSize=6\n"):
    """A net: data (4x6x6) -> body (its sections, ending in a layer named 'top') -> fc10."""
    text = (f"[data]\ntype=data\ndataIdx=0\n{data}\n[labels]\ntype=data\ndataIdx=1\n\n{body}\n"
            "[fc10]\ntype=fc\ninputs=top\noutputs=3\ninitW=0.1\n\n[probs]\ntype=softmax\n"
            "inputs=fc10\n\n[logprob]\ntype=cost.logreg\ninputs=labels,probs\n")
    return text, weight_params("fc10") + params + "[logprob]\ncoeff=1\n"


CONV = "[top]\ntype=conv\ninputs=data\nchannels=4\nfilters=2\nfilterSize=3\npadding=1\n"
# v1's random sparse connectivity after a conv (so its gradient reaches c0's weights through the
# channel gather): 2 groups of 4 of c0's 4 channels, two permutations of them
SPARSE = ("[c0]\ntype=conv\ninputs=data\nfilters=4\nfilterSize=3\npadding=1\nneuron=logistic\n\n"
          "[top]\ntype=conv\ninputs=c0\nfilters=2\nfilterSize=3\npadding=1\ngroups=2\n"
          "randSparse=1\nfilterChannels=4\n")


@pytest.mark.parametrize("body,params", [
    (CONV + "sumWidth=4\npartialSum=4\nrandSparse=0\n", weight_params("top")),
    (CONV + "updatePeriod=0\n".replace("updatePeriod=0\n", ""), weight_params("top") .replace(
        "wc=0\n", "wc=0\nupdatePeriod=2\n")),
    ("[top]\ntype=rnorm\ninputs=data\nchannels=4\nsizeX=3\nscale=0.001\npow=0.75\n", ""),
    ("[top]\ntype=cnorm\ninputs=data\nsize=3\n", "[top]\nscale=0.001\npow=0.5\n"),
    ("[top]\ntype=dropout2\ninputs=data\n", "[top]\nkeep=0.5\nenable=1\n"),
    ("[top]\ntype=dropout\ninputs=data\n", "[top]\nenable=false\n"),
    ("[p]\ntype=pass\ninputs=data\n\n[top]\ntype=pass\ninputs=p,data\n", ""),
    ("[top]\ntype=eltsum\ninputs=data,data\ncoeffs=0.5,2\n", ""),
    (SPARSE, weight_params("c0") + weight_params("top")),
    (SPARSE.replace("type=conv\ninputs=c0", "type=local\ninputs=c0").replace(
        "filterChannels=4\n", ""), weight_params("c0") + weight_params("top")),
], ids=["tuning-keys", "updatePeriod", "rnorm-v1-early", "cnorm-params", "dropout2",
        "enable", "pass", "eltsum-v1-coeffs", "randSparse-conv", "randSparse-local"])
def test_original_keys_load_and_check_gradients(tmp_path, capsys, body, params):
    text, ptext = small(tmp_path, body, params)
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(text)
    pp.write_text(ptext)
    assert main([str(lp), str(pp), "--check-grads"]) == 0, capsys.readouterr()
    assert "FAIL" not in capsys.readouterr().out
    assert main([str(lp), str(pp), "--describe"]) == 0


BAD = [  # (layers body, params, the line's text, words)
    (CONV + "sumWidth=0\n", weight_params("top"), "sumWidth=0", ["sumWidth=0", ">= 1"]),
    (CONV + "partialSum=5\n", weight_params("top"), "partialSum=5", ["partialSum=5", "36"]),
    (CONV + "randSparse=2\n", weight_params("top"), "randSparse=2", ["randSparse"]),
    (CONV + "randSparse=1\n", weight_params("top"), "randSparse=1", ["needs groups > 1"]),
    (CONV.replace("channels=4", "channels=4\ngroups=2") + "randSparse=1\nfilterChannels=3\n",
     weight_params("top"), "filterChannels=3", ["filterChannels=3 must divide the 4 channels"]),
    (CONV.replace("channels=4", "channels=4\ngroups=3") + "randSparse=1\nfilterChannels=2\n",
     weight_params("top"), "filterChannels=2", ["groups * filterChannels = 6", "multiple of 4"]),
    (CONV + "filterChannels=4\n", weight_params("top"), "filterChannels=4", ["only with randSparse"]),
    (CONV, weight_params("top").replace("wc=0\n", "wc=0\nupdatePeriod=-1\n"), None,
     ["updatePeriod=-1"]),
    ("[top]\ntype=rnorm\ninputs=data\nsize=3\nsizeX=3\nscale=1\npow=1\n", "", "sizeX=3",
     ["size (line", "sizeX (line"]),
    ("[top]\ntype=rnorm\ninputs=data\nsize=3\nscale=1\npow=1\n", "[top]\nscale=2\n", "scale=1",
     ["both files", "params.cfg:", "layers.cfg:"]),
    ("[top]\ntype=rnorm\ninputs=data\nsizeX=x\nscale=1\npow=1\n", "", "sizeX=x", ["integer"]),
    ("[top]\ntype=dropout2\ninputs=data\n", "[top]\nkeep=0\n", None, ["keep=0"]),
    ("[top]\ntype=dropout\ninputs=data\n", "[top]\nenable=maybe\n", None, ["enable"]),
    ("[top]\ntype=eltsum\ninputs=data,data\ncoeffs=1,1\n", "[top]\ncoeffs=1,2\n", "coeffs=1,1",
     ["both files"]),
    ("[top]\ntype=neuron\ninputs=data\nneuron=relu\n", "[logprob]\ntopk=4\n", None,
     ["topk=4", "3 classes"]),
]


@pytest.mark.parametrize("body,params,needle,words", BAD, ids=[
    "sumWidth", "partialSum", "randSparse-value", "randSparse-groups", "filterChannels-divide",
    "filterChannels-multiple", "filterChannels-alone", "updatePeriod", "size+sizeX",
    "scale-twice", "sizeX-int", "dropout2-keep", "enable", "coeffs-twice", "topk"])
def test_bad_value_of_each_new_key_names_its_line(tmp_path, capsys, body, params, needle, words):
    text, ptext = small(tmp_path, body, params)
    if "[logprob]\ntopk" in params:
        ptext = weight_params("fc10") + "[logprob]\ncoeff=1\ntopk=4\n"
    err, lp = cli_error(tmp_path, capsys, text, ptext)
    if needle is not None:
        assert f"{lp}:{line_of(text, needle)}:" in err, err
    else:
        assert re.search(r"params\.cfg:\d+: ", err), err
    for w in words:
        assert w in err, err


def test_dropout2_scales_at_test_time_as_cuda_convnet2(tmp_path, rng):
    text, ptext = small(tmp_path, "[top]\ntype=dropout2\ninputs=data\n", "[top]\nkeep=0.25\n")
    net = net_from(tmp_path, text, ptext, dtype=np.float64)
    x = rng.standard_normal((2, 4, 6, 6))
    acts = net.forward({0: x, 1: np.array([0, 1])}, train=False)
    assert np.allclose(acts["top"], 0.25 * x)
    train = net.forward({0: x, 1: np.array([0, 1])}, train=True, step=1)["top"]
    kept = train != 0
    assert np.allclose(train[kept], x[kept])  # the 0/1 mask, not divided by keep


def test_pass_concatenates_its_inputs(tmp_path, rng):
    text, ptext = small(tmp_path, "[top]\ntype=pass\ninputs=data,data\n")
    net = net_from(tmp_path, text, ptext, dtype=np.float64)
    x = rng.standard_normal((2, 4, 6, 6))
    assert np.array_equal(net.forward({0: x, 1: np.array([0, 1])})["top"],
                          np.concatenate([x, x], 1))


def test_topk_sets_the_reported_error(tmp_path, rng):
    text, _ = small(tmp_path, "[top]\ntype=neuron\ninputs=data\nneuron=relu\n")
    net = net_from(tmp_path, text, weight_params("fc10") + "[logprob]\ncoeff=1\ntopk=3\n")
    net.forward({0: rng.standard_normal((4, 4, 6, 6)), 1: np.array([0, 1, 2, 0])})
    assert net["logprob"].topk == 3 and net.cost_stats()["logprob"]["top5"] == 0  # all 3 count


def test_update_period_is_n_accumulated_passes(tmp_path, rng):
    period = 3
    text, ptext = small(tmp_path, CONV, weight_params("top").replace(
        "wc=0\n", f"wc=0\nupdatePeriod={period}\n"))
    text_1, ptext_1 = small(tmp_path, CONV, weight_params("top"))
    (tmp_path / "b").mkdir()
    net = net_from(tmp_path, text, ptext, dtype=np.float64, seed=1)
    ref = net_from(tmp_path / "b", text_1, ptext_1, dtype=np.float64, seed=1)
    batches = [{0: rng.standard_normal((2, 4, 6, 6)), 1: np.array([0, 2])} for _ in range(period)]
    start = {k: v.copy() for k, v in net.get_params().items()}
    grads = []
    for i, data in enumerate(batches):
        ref.set_params(net.get_params())  # fc10 (updatePeriod 0) moves every pass, top does not
        net.train_step(data, step=i + 1, progress=0.0)
        ref.forward(data, train=True, step=i + 1)
        ref.zero_grads()
        ref.backward()
        grads.append(ref.get_grads())
        if i < period - 1:  # nothing moves before the Nth pass
            for k, v in net.get_params().items():
                assert not k.startswith("top.") or np.array_equal(v, start[k]), k
    # by hand: one step of the paper's update on the mean of the N gradients (velocity 0)
    for p in net.unique_params():
        if not p.name.startswith("top."):
            continue
        mean = sum(g[p.name] for g in grads) / period
        eps = p.eps(0.0)
        expected = start[p.name] + eps * (-p.wc * start[p.name] - mean)
        assert np.allclose(net.get_params()[p.name], expected), p.name


# --- pool windows: checked at parse time, as both originals' layer.py ---------------------

POOL = "[top]\ntype=pool\npool=max\ninputs=data\nchannels=4\n"


@pytest.mark.parametrize("keys,needle,words", [
    ("sizeX=1\nstride=2\n", "stride=2", ["stride=2", "sizeX=1", "start=0"]),
    ("sizeX=2\nstride=3\nstart=1\n", "stride=3", ["stride=3", "sizeX=2", "start=1"]),
    ("sizeX=2\nstride=1\nstart=-2\n", "start=-2",
     ["sizeX=2", "stride=1", "start=-2", "outputsX=", "wholly outside"]),
    ("sizeX=3\nstride=2\nstart=-3\noutputsX=2\n", "outputsX=2",
     ["sizeX=3", "stride=2", "start=-3", "outputsX=2", "wholly outside"]),
], ids=["stride>sizeX", "stride>sizeX-start", "window-before-the-image", "with-outputsX"])
def test_pool_windows_outside_the_image_name_the_line(tmp_path, capsys, keys, needle, words):
    text, ptext = small(tmp_path, POOL + keys)
    err, lp = cli_error(tmp_path, capsys, text, ptext)
    assert f"{lp}:{line_of(text, needle)}:" in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("keys,out", [
    ("sizeX=3\nstride=2\n", 3), ("sizeX=2\nstride=2\n", 3), ("sizeX=3\nstride=3\nstart=-1\n", 3),
    ("sizeX=2\nstride=1\nstart=-1\n", 6)])
def test_pool_windows_that_overlap_the_image_build_as_the_originals(tmp_path, rng, keys, out):
    """outputsX = 1 + ceil((imgSize - start - sizeX) / stride), both originals' layer.py."""
    text, ptext = small(tmp_path, POOL + keys)
    net = net_from(tmp_path, text, ptext, dtype=np.float64)
    size, stride = (int(re.search(k + r"=(-?\d+)", keys).group(1)) for k in ("sizeX", "stride"))
    start = int(re.search(r"start=(-?\d+)", keys).group(1)) if "start" in keys else 0
    assert out == 1 + int(np.ceil((6 - start - size) / stride))
    assert net["top"].out_shape == (4, out, out)
    acts = net.forward({0: rng.standard_normal((2, 4, 6, 6)), 1: np.array([0, 1])})
    assert acts["top"].shape == (2, 4, out, out)


# --- cuda-convnet2's devices: replicas (gpu=0,1) and the first input's device ------------

def gpu_column(out):
    """{layer: its describe row's gpu column}."""
    rows = out.split("\n\n")[0].splitlines()[1:-1]
    return {r.split()[0]: r.split()[-1] for r in rows}


def test_replicas_describe_and_train(tmp_path, capsys, rng):
    body = CONV.replace("[top]", "[c]") + "gpu=0,1\n\n[top]\ntype=neuron\ninputs=c\nneuron=relu\n"
    text, ptext = small(tmp_path, body, weight_params("c"))
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(text)
    pp.write_text(ptext)
    assert main([str(lp), str(pp), "--describe"]) == 0
    out = capsys.readouterr().out
    gpus = gpu_column(out)
    # top and fc10 take c's replicas (cuda-convnet2: a layer's gpu defaults to its first input's)
    # logprob's first input is the labels' data layer: device 0 (cuda-convnet2 asks for gpu=)
    assert gpus["data"] == gpus["logprob"] == "0"
    assert gpus["c"] == gpus["top"] == gpus["fc10"] == gpus["probs"] == "0,1"
    lines = [r for r in out.splitlines() if r.startswith("replicas:")]
    # logprob's one replica makes two passes (cc2's Rmax / Rmin), each on a slice
    assert len(lines) == 1 and lines[0].startswith(
        "replicas: 4 layers have 2 (gpu=0,1,...: cuda-convnet2's data parallelism): each "
        "minibatch in 2 slices, 2 passes per minibatch"), lines
    net = net_from(tmp_path, text, ptext, dtype=np.float64)
    assert net["c"].gpu == 0 and net["c"].replicas == (0, 1)
    net.train_step({0: rng.standard_normal((2, 4, 6, 6)), 1: np.array([0, 1])}, step=1,
                   progress=0.0)
    assert main([str(lp), str(pp), "--check-grads"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_a_layer_without_gpu_runs_where_its_first_input_runs(tmp_path, capsys):
    body = ("[a]\ntype=neuron\ninputs=data\nneuron=relu\ngpu=1\n\n"
            "[b]\ntype=neuron\ninputs=data\nneuron=relu\n\n"
            "[top]\ntype=eltsum\ninputs=a,b\ncoeffs=1,1\n\n[after]\ntype=neuron\ninputs=b\n"
            "neuron=relu\n")
    text, ptext = small(tmp_path, body)
    net = net_from(tmp_path, text, ptext)
    assert {n: net[n].gpu for n in ("data", "a", "b", "top", "after", "fc10", "logprob")} == {
        "data": 0, "a": 1, "b": 0, "top": 1, "after": 0, "fc10": 1, "logprob": 0}


@pytest.mark.parametrize("keys,words", [
    ("gpu=0,0\n", ["gpu: 0,0", "different devices"]),
    ("gpu=-1\n", ["gpu: -1", ">= 0"]),
    ("gpu=0,x\n", ["gpu: expected an integer, got 'x'"]),
])
def test_bad_gpu_lists_name_the_line(tmp_path, capsys, keys, words):
    text, ptext = small(tmp_path, CONV + keys, weight_params("top"))
    err, lp = cli_error(tmp_path, capsys, text, ptext)
    assert f"{lp}:{line_of(text, keys.strip())}:" in err, err
    for w in words:
        assert w in err, err


def test_replicas_must_divide_their_inputs_replicas(tmp_path, capsys):
    body = (CONV.replace("[top]", "[c]") + "gpu=0,1,2\n\n"
            "[top]\ntype=neuron\ninputs=c\nneuron=relu\ngpu=0,1\n")
    text, ptext = small(tmp_path, body, weight_params("c"))
    err, lp = cli_error(tmp_path, capsys, text, ptext)
    assert f"{lp}:{line_of(text, 'gpu=0,1')}:" in err, err
    assert "2 replicas must divide the 3 of input 'c'" in err, err


def test_describe_marks_tuning_keys_as_not_changing_results(tmp_path, capsys):
    text, ptext = small(tmp_path, CONV + "sumWidth=4\npartialSum=4\n", weight_params("top"))
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(text)
    pp.write_text(ptext)
    assert main([str(lp), str(pp), "--describe"]) == 0
    assert ("tuning only, results unchanged (how the originals' kernels summed): top "
            "partialSum=4, top sumWidth=4") in capsys.readouterr().out


@pytest.mark.parametrize("multiview", [False, True])
def test_topk_sets_the_error_that_tests_report(tmp_path, rng, multiview):
    """evaluate's top5_error (the key every metrics.jsonl has) is the top-k error, k in topk."""
    text, _ = small(tmp_path, "[top]\ntype=neuron\ninputs=data\nneuron=relu\n")
    ptext = weight_params("fc10") + "[logprob]\ncoeff=1\ntopk=2\n"
    net = net_from(tmp_path, text, ptext, dtype=np.float64)
    images = rng.integers(0, 256, (12, 4, 8, 8)).astype(np.uint8)
    labels = rng.integers(0, 3, 12)
    provider = Provider("t", images, labels, images, labels, ["a", "b", "c"], inner_size=6)
    result = evaluate(net, provider, 5, "logprob", multiview=multiview)
    views = provider.test_views(12) if multiview else ((x[None], y) for x, y in
                                                       provider.test_batches(12))
    (x, y), = views
    probs = np.mean([net.forward({0: v, 1: y})["probs"] for v in x], axis=0)
    top2 = np.argsort(-probs, axis=1)[:, :2]
    assert result["topk"] == 2
    assert np.isclose(result["top5_error"], np.mean([t not in row for t, row in zip(y, top2)]))
