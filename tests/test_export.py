"""torch_state_dict: a net's weights in torch's names and orientations, checked by computing
each layer the way torch.nn.Conv2d and torch.nn.Linear compute with them (torch itself is not
a dependency)."""
import numpy as np
import pytest

from convnet.backend import numpy_direct
from convnet.engine.export import torch_state_dict
from convnet.engine.net import Net

HEAD = [dict(name="data", type="data", dataIdx=0, channels=3, imgSize=9),
        dict(name="labels", type="data", dataIdx=1)]
TAIL = [dict(name="probs", type="softmax", inputs="fc"),
        dict(name="cost", type="cost.logreg", inputs="labels,probs")]
RATES = dict(epsW=0.01, epsB=0.01, momW=0.9, momB=0.9, wc=0.0)


def net_of(*layers):
    return Net(HEAD + list(layers) + TAIL, dtype=np.float64, seed=3)


def test_conv_and_fc_compute_as_torch_would_with_the_exported_arrays(rng):
    net = net_of(dict(name="conv1", type="conv", inputs="data", filters=2, groups=1,
                      filterSize=3, padding=1, stride=2, initW=0.1, **RATES),
                 dict(name="fc", type="fc", inputs="conv1,data", outputs=4, initW=0.1, **RATES))
    net.set_params({"conv1.b": rng.standard_normal(2), "fc.b": rng.standard_normal(4)})
    state = torch_state_dict(net)
    assert set(state) == {"conv1.weight", "conv1.bias", "fc.weight", "fc.bias"}
    assert state["conv1.weight"].shape == (2, 3, 3, 3)  # Conv2d: (out, in / groups, k, k)
    assert state["fc.weight"].shape == (4, 2 * 5 * 5 + 3 * 9 * 9)  # Linear: (out, in)
    x = rng.standard_normal((2, 3, 9, 9))
    acts = net.forward({0: x, 1: np.array([0, 1])})
    conv = numpy_direct.conv_forward_direct(x, state["conv1.weight"], 2, 1, 1)
    np.testing.assert_allclose(acts["conv1"], conv + state["conv1.bias"][:, None, None],
                               rtol=1e-12, atol=1e-12)
    flat = np.concatenate([acts["conv1"].reshape(2, -1), x.reshape(2, -1)], axis=1)  # torch.cat
    np.testing.assert_allclose(acts["fc"], flat @ state["fc.weight"].T + state["fc.bias"],
                               rtol=1e-12, atol=1e-12)


def test_layers_without_a_torch_module_are_named():
    net = net_of(dict(name="loc", type="local", inputs="data", filters=2, filterSize=3,
                      padding=1, initW=0.1, **RATES),
                 dict(name="fc", type="fc", inputs="loc", outputs=4, initW=0.1, **RATES))
    with pytest.raises(ValueError, match=r"no torch module .*: loc \(local\)"):
        torch_state_dict(net)
    assert set(torch_state_dict(net, skip=True)) == {"fc.weight", "fc.bias"}
