"""cuda-convnet v1's random sparse connectivity (randSparse=1, filterChannels): each of a conv or
local layer's groups sees filterChannels of its input's channels, drawn once as whole
permutations of the channels and kept by every checkpoint. What v1's layer.py meant, stated
directly: group g convolves the channels conns[g*fc:(g+1)*fc] with its own filters."""
import numpy as np
import pytest

from convnet.backend import numpy_backend as B
from convnet.training.saved_run import array_key, param_arrays, restore_arrays

from test_original_syntax import net_from, small, weight_params

# 8 channels, 4 groups of 4: two permutations of the 8 channels end to end
BODY = ("[top]\ntype=conv\ninputs=data\nfilters=3\nfilterSize=3\npadding=1\ngroups=4\n"
        "randSparse=1\nfilterChannels=4\n")
DATA = "channels=8\nimgSize=5\n"


def sparse_net(tmp_path, body=BODY, seed=0):
    text, ptext = small(tmp_path, body, weight_params("top"), data=DATA)
    return net_from(tmp_path, text, ptext, dtype=np.float64, seed=seed)


def test_each_group_convolves_its_own_channels(tmp_path, rng):
    net = sparse_net(tmp_path)
    top = net.by_name["top"]
    conns = top.conns[0]
    assert conns.shape == (16,)
    for block in conns.reshape(2, 8):
        assert sorted(block) == list(range(8))  # every channel feeds exactly two groups
    x = rng.standard_normal((2, 8, 5, 5))
    y = net.forward({0: x, 1: np.array([0, 1])})["top"]
    w, b = top.weights[0].value, top.bias.value
    for g in range(4):
        chans = conns[4 * g:4 * g + 4]
        want = B.conv_forward(np.ascontiguousarray(x[:, chans]), w[3 * g:3 * g + 3], 1, 1, 1)
        np.testing.assert_allclose(y[:, 3 * g:3 * g + 3], want + b[3 * g:3 * g + 3, None, None],
                                   rtol=1e-12, atol=1e-12)


def test_the_table_is_drawn_from_the_seed(tmp_path):
    tables = [sparse_net(tmp_path, seed=s).by_name["top"].conns[0] for s in (1, 1, 2)]
    assert np.array_equal(tables[0], tables[1]) and not np.array_equal(tables[0], tables[2])


def test_a_net_without_randsparse_draws_its_weights_as_before(tmp_path):
    """The tables are drawn after every weight, so other nets' initial weights do not move."""
    plain = BODY.replace("randSparse=1\nfilterChannels=4\n", "")
    sparse = BODY.replace("filterChannels=4\n", "")  # 2 channels a group, as the plain one
    sparse, dense = sparse_net(tmp_path, sparse), sparse_net(tmp_path, plain)
    for a, b in zip(sparse.unique_params(), dense.unique_params(), strict=True):
        np.testing.assert_array_equal(a.value, b.value)


def test_checkpoints_keep_the_table(tmp_path):
    saved = sparse_net(tmp_path, seed=1)
    arrays = param_arrays(saved)
    key = array_key("top.conns0", "buffer")
    assert np.array_equal(arrays[key], saved.by_name["top"].conns[0])
    other = sparse_net(tmp_path, seed=2)
    restore_arrays(other, arrays)
    assert np.array_equal(other.by_name["top"].conns[0], saved.by_name["top"].conns[0])


@pytest.mark.parametrize("forge,words", [
    (lambda t: np.concatenate([t[:8], t[:7], t[:1]]), ["top.conns0", "permutation of 0..7"]),
    (lambda t: t[:8], ["top.conns0", "(8,) vs net (16,)"]),
    (None, ["top.conns0: missing from the checkpoint"]),
])
def test_a_checkpoint_with_a_bad_table_changes_nothing(tmp_path, forge, words):
    arrays = param_arrays(sparse_net(tmp_path, seed=1))
    key = array_key("top.conns0", "buffer")
    if forge is None:
        del arrays[key]
    else:
        arrays[key] = forge(arrays[key])
    net = sparse_net(tmp_path, seed=2)
    before = net.by_name["top"].conns[0].copy(), net.by_name["top"].weights[0].value.copy()
    with pytest.raises(ValueError) as e:
        restore_arrays(net, arrays)
    for w in words:
        assert w in str(e.value)
    assert np.array_equal(net.by_name["top"].conns[0], before[0])
    assert np.array_equal(net.by_name["top"].weights[0].value, before[1])


def test_local_layer_defaults_filter_channels_to_channels_over_groups(tmp_path):
    """v1's layers.gc.cfg: a local layer with randSparse and groups=2, no filterChannels."""
    body = ("[top]\ntype=local\ninputs=data\nfilters=2\nfilterSize=3\npadding=1\ngroups=2\n"
            "randSparse=true\n")
    top = sparse_net(tmp_path, body).by_name["top"]
    assert top.conns[0].shape == (8,) and sorted(top.conns[0]) == list(range(8))
    assert top.weights[0].shape[-3:] == (4, 3, 3)  # each filter sees 4 of the 8 channels
