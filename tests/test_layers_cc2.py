"""cuda-convnet2's layer types in a net (convnet/engine/layers_cc2.py): shapes by cc2's rules,
float64 gradient checks through each, and FILE:LINE errors for bad keys."""
import numpy as np
import pytest

import convnet

from convnet.engine.config import ConfigError
from convnet.engine.gradcheck import check_net_grads
from convnet.engine.net import Net

W = dict(epsW=0.01, epsB=0.02, momW=0.9, momB=0.9, wc=0.0)


def net_with(middle, cost=None, classes=4, shape=(8, 7, 7), data=(), **net_args):
    """data (shape) -> conv -> `middle` layers (the last named 'mid') -> fc -> softmax -> cost;
    `data`: more data layers."""
    specs = [dict(name="data", type="data", dataIdx=0, channels=shape[0], imgSize=shape[1]),
             dict(name="labels", type="data", dataIdx=1), *data,
             dict(name="conv", type="conv", inputs="data", filters=8, filterSize=3, padding=1,
                  initW=0.3, neuron="tanh[1,1]", **W)]
    specs += middle
    specs += [dict(name="fc", type="fc", inputs="mid", outputs=classes, initW=0.2, **W)]
    specs += cost or [dict(name="probs", type="softmax", inputs="fc"),
                      dict(name="cost", type="cost.logreg", inputs="labels,probs", coeff=1)]
    return Net(specs, **{"dtype": np.float64, "seed": 7, **net_args})


def batch(rng, n=3, shape=(8, 7, 7), classes=4):
    return {0: rng.standard_normal((n,) + shape), 1: rng.integers(0, classes, n)}


def assert_grads(net, data, rng):
    rows = check_net_grads(net, data, rng)
    assert rows and all(checked > 0 and worst < 1e-5 for _, worst, checked in rows), rows


@pytest.mark.parametrize("layer, shape", [
    (dict(type="cmpool", pool="max", size=3, stride=2, start=0), (4, 7, 7)),    # cc2's count
    (dict(type="cmpool", pool="max", size=3, stride=3, start=-1, outputs=3), (3, 7, 7)),
    (dict(type="sum", stride=2), (4, 7, 7)),
    (dict(type="crop", startX=1, startY=2, sizeX=4), (8, 4, 4)),
])
def test_shapes_and_gradients_through_each_new_layer(rng, layer, shape):
    net = net_with([dict(name="mid", inputs="conv", **layer)])
    assert net["mid"].out_shape == shape
    assert_grads(net, batch(rng), rng)


def test_cmpool_picks_each_windows_max_across_channels(rng):
    net = net_with([dict(name="mid", type="cmpool", inputs="conv", pool="max", size=3,
                         stride=2)])
    data = batch(rng)
    acts = net.forward(data, train=False)
    conv, mid = acts["conv"], acts["mid"]
    for o in range(4):
        assert np.array_equal(mid[:, o], conv[:, 2 * o:2 * o + 3].max(axis=1))


@pytest.mark.parametrize("cost", ["cost.crossent", "cost.bce", "cost.dce"])
def test_gradients_through_each_new_cost_with_integer_labels(rng, cost):
    head = ([dict(name="probs", type="softmax", inputs="fc")] if cost == "cost.crossent" else
            [dict(name="probs", type="neuron", inputs="fc", neuron="logistic")])
    net = net_with([dict(name="mid", type="crop", inputs="conv", startX=1, sizeX=5)],
                   head + [dict(name="cost", type=cost, inputs="labels,probs", coeff=0.7)])
    data = batch(rng)
    net.forward(data, train=False)
    stats = net.cost_stats()["cost"]
    probs = net.forward(data, train=False)["probs"]
    onehot = np.eye(4)[data[1]]
    if cost == "cost.crossent":
        assert net["cost"].fused and net["probs"].fused_into_cost
        assert stats["cost"] == pytest.approx(-np.log(probs[np.arange(3), data[1]]).sum())
    else:
        want = -(onehot * np.log(probs) + (1 - onehot) * np.log(1 - probs)).sum()
        assert stats["cost"] == pytest.approx(want)
    if cost == "cost.dce":
        assert stats["positive"] == 3 and 0 <= stats["true_positive"] <= stats["positive"]
    assert_grads(net, data, rng)


def test_crossent_takes_a_label_layer_of_class_weights(rng):
    cost = [dict(name="probs", type="softmax", inputs="fc"),
            dict(name="cost", type="cost.crossent", inputs="targets,probs", coeff=1)]
    net = net_with([dict(name="mid", type="sum", inputs="conv", stride=4)], cost,
                   data=[dict(name="targets", type="data", dataIdx=2, outputs=4)])
    data = {**batch(rng), 2: rng.dirichlet(np.ones(4), 3)}
    probs = net.forward(data, train=False)["probs"]
    want = -(data[2] * np.log(probs)).sum()
    assert net.cost_stats()["cost"]["cost"] == pytest.approx(want)
    assert_grads(net, data, rng)


@pytest.mark.parametrize("layer, key, message", [
    (dict(type="cmpool", pool="avg", size=3, stride=2), "pool", "pool=max only"),
    (dict(type="cmpool", pool="max", size=2, stride=3), "size", "stride must be <= size"),
    (dict(type="cmpool", pool="max", size=3, stride=2, start=1), "size", "start must be <= 0"),
    (dict(type="cmpool", pool="max", size=3, stride=2, outputs=2), "size", "cover only 5 of 8"),
    (dict(type="sum", stride=3), "stride", "must divide axis 1"),
    (dict(type="crop", startX=4, sizeX=4), "sizeX", "leaves the image"),
    (dict(type="crop", startX=0, sizeX=3, channels=5), "channels", "the input has 8"),
])
def test_bad_keys_are_errors_naming_the_layer_and_key(layer, key, message):
    with pytest.raises(ConfigError, match=f"layer .mid.*{message}"):
        net_with([dict(name="mid", inputs="conv", **layer)])


CUDA_CASES = [
    ([dict(name="mid", type="cmpool", inputs="conv", pool="max", size=3, stride=2)], None),
    ([dict(name="mid", type="sum", inputs="conv", stride=2)], None),
    ([dict(name="mid", type="crop", inputs="conv", startX=1, startY=2, sizeX=4)],
     [dict(name="probs", type="softmax", inputs="fc"),
      dict(name="cost", type="cost.crossent", inputs="labels,probs", coeff=1)]),
    ([dict(name="mid", type="sum", inputs="conv", stride=4)],
     [dict(name="probs", type="neuron", inputs="fc", neuron="logistic"),
      dict(name="cost", type="cost.bce", inputs="labels,probs", coeff=1)]),
    ([dict(name="mid", type="sum", inputs="conv", stride=4)],
     [dict(name="probs", type="neuron", inputs="fc", neuron="logistic"),
      dict(name="cost", type="cost.dce", inputs="labels,probs", coeff=1)]),
]


@pytest.mark.cuda
@pytest.mark.parametrize("middle, cost", CUDA_CASES,
                         ids=["cmpool", "sum", "crop+crossent", "bce", "dce"])
def test_the_cuda_backend_runs_each_new_layer_as_the_reference(rng, middle, cost):
    """The same net in float32 on both backends: outputs, cost statistics and gradients."""
    if not convnet.cuda_available():
        pytest.skip("needs a GPU (or the emulated one), CuPy and convnet._C built with CUDA")
    nets = [net_with(middle, cost, backend=b, dtype=np.float32) for b in ("numpy", "cuda")]
    data = batch(rng)
    outs = [net.forward(data, train=True, step=1) for net in nets]
    for net in nets:
        net.backward()
    ref, got = nets[0].B, nets[1].B
    for name in ("mid", "probs"):
        np.testing.assert_allclose(got.to_numpy(outs[1][name]), ref.to_numpy(outs[0][name]),
                                   rtol=1e-4, atol=1e-5)
    want, have = nets[0].cost_stats()["cost"], nets[1].cost_stats()["cost"]
    assert have.keys() == want.keys()
    for key in want:
        assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key
    grads = [net.get_grads() for net in nets]
    for name in grads[0]:
        np.testing.assert_allclose(grads[1][name], grads[0][name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)
