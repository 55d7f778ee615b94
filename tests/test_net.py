"""The layer graph: the Python API, gradient flow, weight sharing, and every shipped net."""
import glob
import os

import numpy as np
import pytest

from convnet.apps.cli import main
from convnet.engine.gradcheck import check_net_grads
from convnet.engine.net import Net

LAYERS_DIR = os.path.join(os.path.dirname(__file__), "..", "layers")
SHIPPED = sorted(p[:-4] for p in glob.glob(os.path.join(LAYERS_DIR, "*.cfg"))
                 if not p.endswith("-params.cfg"))


def cfg_pair(net_name):
    base = os.path.join(LAYERS_DIR, net_name)
    return base + ".cfg", base + "-params.cfg"
WEIGHTS = dict(epsW=0.01, epsB=0.02, momW=0.9, momB=0.9, wc=0.0005)


def small_specs(fc_inputs="pool1"):
    return [
        dict(name="data", type="data", dataIdx=0, channels=3, imgSize=9),
        dict(name="labels", type="data", dataIdx=1),
        dict(name="conv1", type="conv", inputs="data", filters=6, filterSize=3, padding=1,
             initW=0.3, neuron="tanh[1,1]", **WEIGHTS),
        dict(name="pool1", type="pool", inputs="conv1", pool="avg", sizeX=3, stride=2),
        dict(name="fc2", type="fc", inputs=fc_inputs, outputs=5, initW=0.1, **WEIGHTS),
        dict(name="probs", type="softmax", inputs="fc2"),
        dict(name="logprob", type="cost.logreg", inputs="labels,probs", coeff=1),
    ]


def batch(rng, n=4, shape=(3, 9, 9), classes=5):
    return {0: rng.standard_normal((n,) + shape), 1: rng.integers(0, classes, n)}


def test_net_python_api_shapes_params_and_grads(rng):
    net = Net(small_specs(), dtype=np.float64, seed=3)
    assert net["conv1"].out_shape == (6, 9, 9) and net["pool1"].out_shape == (6, 4, 4)
    params = net.get_params()
    assert set(params) == {"conv1.w0", "conv1.b", "fc2.w0", "fc2.b"}
    assert params["conv1.w0"].shape == (6, 3, 3, 3) and params["fc2.w0"].shape == (96, 5)
    params["fc2.b"][:] = [1, 2, 3, 4, 5]
    net.set_params({"fc2.b": params["fc2.b"]})
    assert np.array_equal(net.get_params()["fc2.b"], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="shape"):
        net.set_params({"fc2.b": np.zeros(4)})
    data = batch(rng)
    acts = net.forward(data, train=False)
    probs = acts["probs"]
    assert probs.shape == (4, 5) and np.allclose(probs.sum(1), 1)
    stats = net.cost_stats()["logprob"]
    nll = -np.log(probs[np.arange(4), data[1]])
    assert stats["cost"] == pytest.approx(nll.sum()) and stats["cases"] == 4
    net.backward()
    grads = net.get_grads()
    assert set(grads) == set(params)
    for name, worst, checked in check_net_grads(net, data, rng):
        assert checked > 0 and worst < 1e-5, (name, worst)


def test_net_missing_data_is_named_before_any_layer_runs(rng):
    net = Net(small_specs(), dtype=np.float64)
    with pytest.raises(ValueError, match="no data for data layer 'labels' \\(dataIdx=1\\)"):
        net.forward({0: batch(rng)[0]})
    assert not hasattr(net, "acts")  # nothing ran, nothing half-stored


def test_net_fused_softmax_logreg_equals_the_chain(rng):
    """With a second consumer of probs the net takes the unfused path; gradients agree."""
    specs = small_specs()
    fused = Net(specs, dtype=np.float64, seed=1)
    unfused = Net(specs + [dict(name="extra", type="cost.sum2", inputs="probs", coeff=0.0)],
                  dtype=np.float64, seed=1)
    assert fused["logprob"].fused and not unfused["logprob"].fused
    data = batch(rng)
    for net in (fused, unfused):
        net.forward(data, train=True)
        net.backward()
    a, b = fused.get_grads(), unfused.get_grads()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-14)


def test_net_update_is_the_papers_rule(rng):
    net = Net(small_specs(), dtype=np.float64, seed=2)
    data = batch(rng)
    w0 = net.get_params()
    net.forward(data, train=True)
    net.backward()
    g = net.get_grads()
    net.update(progress=0.0)
    w1 = net.get_params()
    # first step from zero momentum: v = -wc*eps*w - eps*g (no decay on biases)
    np.testing.assert_allclose(w1["fc2.w0"], w0["fc2.w0"] - 0.0005 * 0.01 * w0["fc2.w0"]
                               - 0.01 * g["fc2.w0"], rtol=1e-12)
    np.testing.assert_allclose(w1["fc2.b"], w0["fc2.b"] - 0.02 * g["fc2.b"], rtol=1e-12)
    net.forward(data, train=True)
    net.backward()
    g2 = net.get_grads()
    net.update(progress=0.0)
    v1 = w1["fc2.b"] - w0["fc2.b"]
    np.testing.assert_allclose(net.get_params()["fc2.b"], w1["fc2.b"] + 0.9 * v1 - 0.02 * g2["fc2.b"],
                               rtol=1e-12)


def test_net_gradient_sums_where_a_layer_feeds_two(rng):
    specs = small_specs()
    specs.insert(4, dict(name="twice", type="eltsum", inputs="pool1,pool1", coeffs="1,2"))
    specs[5]["inputs"] = "twice"
    net = Net(specs, dtype=np.float64, seed=5)
    data = batch(rng)
    for name, worst, checked in check_net_grads(net, data, rng):
        assert checked > 0 and worst < 1e-5, (name, worst)


def test_net_weight_source_shares_one_array(rng):
    specs = small_specs()
    specs.insert(5, dict(name="fc2b", type="fc", inputs="pool1", outputs=5,
                         weightSource="fc2", **WEIGHTS))
    specs.insert(6, dict(name="both", type="eltsum", inputs="fc2,fc2b"))
    specs[7]["inputs"] = "both"
    net = Net(specs, dtype=np.float64, seed=4)
    assert net["fc2b"].weights[0] is net["fc2"].weights[0]
    assert "fc2b.w0" not in net.get_params()
    data = batch(rng)
    for name, worst, checked in check_net_grads(net, data, rng):
        assert checked > 0 and worst < 1e-5, (name, worst)


def test_net_dropout_is_identity_at_test_and_fixed_per_step(rng):
    specs = small_specs("drop")
    specs.insert(4, dict(name="drop", type="dropout", inputs="pool1", keep=0.5))
    net = Net(specs, dtype=np.float64, seed=4)
    data = batch(rng)
    test_out = net.forward(data, train=False)["drop"]
    np.testing.assert_array_equal(test_out, net.acts["pool1"])
    a = net.forward(data, train=True, step=7)["drop"].copy()
    b = net.forward(data, train=True, step=7)["drop"]
    c = net.forward(data, train=True, step=8)["drop"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    kept = a != 0
    np.testing.assert_allclose(a[kept], 2 * net.acts["pool1"][kept])


@pytest.mark.parametrize("net_name", [os.path.basename(n) for n in SHIPPED])
def test_shipped_net_describes(net_name, capsys):
    assert main([*cfg_pair(net_name), "--describe"]) == 0
    out = capsys.readouterr().out
    assert "total" in out


@pytest.mark.parametrize("net_name", [os.path.basename(n) for n in SHIPPED])
def test_shipped_net_check_grads(net_name, capsys):
    status = main([*cfg_pair(net_name), "--check-grads"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "FAIL" not in out


def test_alexnet_describe_shows_the_papers_counts(capsys):
    base = os.path.join(LAYERS_DIR, "alexnet")
    assert main([base + ".cfg", base + "-params.cfg", "--describe"]) == 0
    out = capsys.readouterr().out
    for layer, shape, neurons in [("conv1", "96x55x55", "290,400"), ("conv2", "256x27x27", "186,624"),
                                  ("conv3", "384x13x13", "64,896"), ("conv4", "384x13x13", "64,896"),
                                  ("conv5", "256x13x13", "43,264"), ("fc6", "4096", "4,096"),
                                  ("fc8", "1000", "1,000")]:
        row = next(line for line in out.splitlines() if line.startswith(layer + " "))
        assert shape in row and neurons in row, row
    total = int(out.splitlines()[-1].split()[-1].replace(",", ""))
    assert 60_000_000 < total < 62_000_000


def test_readme_python_api_examples_run_and_draw_fresh_masks():
    """The README's two Python blocks, run as written: a loop on your own arrays whose dropout
    masks change every pass without step=, then the Trainer on a Provider of arrays."""
    import re

    readme = open(os.path.join(LAYERS_DIR, "..", "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    scope = {}
    exec(blocks[0], scope)
    kept = scope["kept"]
    assert len(kept) == 4 and all(k.shape == (16, 16, 14, 14) for k in kept)
    assert all(not np.array_equal(a, b) for a, b in zip(kept, kept[1:]))  # a new mask each step
    assert 0.4 < np.mean(kept) < 0.6
    assert scope["probs"].shape == (16, 10)
    assert set(scope["grads"]) == {"conv1.w0", "conv1.b", "fc2.w0", "fc2.b"}
    assert np.array_equal(scope["net"].get_params()["fc2.b"], np.zeros(10))
    net = scope["net"]
    replay = [net.forward({"data": scope["x"][:16], "labels": scope["y"][:16]}, train=True,
                          step=7)["drop1"] != 0 for _ in range(2)]
    assert np.array_equal(*replay)  # step= replays one mask
    exec(blocks[1], scope)
    record = scope["record"]
    assert record["epoch"] == 1 and record["step"] == 5 and 0.0 <= record["top1_error"] <= 1.0
