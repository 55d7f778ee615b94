"""Issue 17: cuda-convnet2's replicas in one job (gpu=0,1 on a layer and the layers after it).

A net whose layers all have R replicas (cc2's 2gpu-data) follows the same net without replicas
up to the order of summation (float64, dropout on, rtol 1e-12), with uneven slices; the hybrid
(4gpu-data-model: replicated convs, single-replica fc layers after a pass layer) equals its own
definition, R passes per minibatch written out by hand; bad replica specs are clear errors."""
import numpy as np
import pytest

from convnet.engine.config import ConfigError
from convnet.engine.describe import describe
from convnet.engine.net import Net
from convnet.parallel import split_rows
from convnet.training.replicas import ReplicaStep, slice_rows
from test_reliability import DROPOUT_LAYERS, DROPOUT_PARAMS


def build(tmp_path, layers=DROPOUT_LAYERS, params=DROPOUT_PARAMS, name="net"):
    lp, pp = tmp_path / f"{name}.cfg", tmp_path / f"{name}-params.cfg"
    lp.write_text(layers)
    pp.write_text(params)
    return Net.from_cfg(str(lp), str(pp), dtype=np.float64, seed=3)


def replicated(layers, devices):
    """`layers` with gpu=<devices> on conv1 (the layers after it inherit it) and on the cost
    layer (its first input is the labels), as cc2's imagenet-2gpu-data.cfg has them."""
    for section in ("[conv1]\n", "[logprob]\n"):
        layers = layers.replace(section, f"{section}gpu={devices}\n")
    return layers


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return {0: rng.standard_normal((n, 3, 24, 24)), 1: rng.integers(0, 10, n)}


def plain_steps(net, batches, first_step=0):
    for k, data in enumerate(batches):
        net.train_step(data, step=first_step + k, progress=0.0)


def assert_same_params(a, b):
    pa, pb = a.get_params(), b.get_params()
    assert sorted(pa) == sorted(pb)
    for name in pa:
        np.testing.assert_allclose(pa[name], pb[name], rtol=1e-12,
                                   atol=1e-12 * np.abs(pb[name]).max(), err_msg=name)


def test_slices_are_the_ranks_rows_split_again():
    rows = slice_rows(100, 2, 3)  # ranks of 50, each in slices of 17, 17, 16
    assert rows == [[(0, 17), (17, 34), (34, 50)], [(50, 67), (67, 84), (84, 100)]]
    assert slice_rows(100, 1, 3)[0] == [split_rows(100, i, 3) for i in range(3)]


@pytest.mark.parametrize("devices,n,steps", [("0,1", 64, 1), ("0,1", 64, 3), ("0,1,2", 100, 2)],
                         ids=["2-replicas-1-step", "2-replicas-3-steps", "3-replicas-uneven"])
def test_data_parallel_replicas_equal_the_net_without_them(tmp_path, devices, n, steps):
    ref = build(tmp_path)
    net = build(tmp_path, replicated(DROPOUT_LAYERS, devices), name="replicas")
    assert net.schedule.rmax == len(devices.split(",")) and net.schedule.passes == 1
    assert [name for name, _ in net.replicated] == [l.name for l in net.layers][2:]
    net.set_params(ref.get_params())
    batches = [batch(n, seed) for seed in range(steps)]
    step = ReplicaStep(net)
    for k, data in enumerate(batches):
        stats = step(data, step=k, progress=0.0)
        expected = ref.train_step(data, step=k, progress=0.0)
        assert stats["logprob"]["cases"] == n
        assert stats["logprob"]["cost"] == pytest.approx(expected["logprob"]["cost"], rel=1e-12)
        assert_same_params(net, ref)
    # the slices' dropout masks are their rows of the one-process mask: other rows differ
    net.set_params(ref.get_params())
    net.row0 = 0  # each slice taking the masks of rows 0.. instead of its own
    lo, hi = split_rows(n, 1, net.schedule.rmax)
    net.forward({k: v[lo:hi] for k, v in batches[0].items()}, train=True, step=0)
    ref.forward(batches[0], train=True, step=0)
    assert not np.allclose(net.acts["drop"], ref.acts["drop"][lo:hi])


def test_an_update_period_of_two_minibatches_keeps_its_meaning(tmp_path):
    """updatePeriod=2 on fc10 of a 2-replica net: one update per two minibatches, as without
    replicas (Param.update keeps the first minibatch's gradient)."""
    params = DROPOUT_PARAMS.replace("[fc10]\n", "[fc10]\nupdatePeriod=2\n")
    ref = build(tmp_path, params=params)
    net = build(tmp_path, replicated(DROPOUT_LAYERS, "0,1"), params, name="replicas")
    net.set_params(ref.get_params())
    step = ReplicaStep(net)
    start = ref.get_params()["fc10.w0"]
    for k in range(2):
        step(batch(40, k), step=k, progress=0.0)
        ref.train_step(batch(40, k), step=k, progress=0.0)
        moved = not np.array_equal(net.get_params()["fc10.w0"], start)
        assert moved == (k == 1)
        assert_same_params(net, ref)


# --- the hybrid: replicated convs, single-replica fc layers after pass layers ------------------
HYBRID = DROPOUT_LAYERS.replace("[conv1]\n", "[conv1]\ngpu=0,1,2,3\n").replace(
    "[fc32]\ntype=fc\ninputs=pool1\n", "[fc32]\ntype=fc\ninputs=pool1\ngpu=0\n").replace(
    "[fc10]\ntype=fc\ninputs=drop\n", "[feed]\ntype=pass\ninputs=drop\ngpu=1\n\n"
    "[fc10]\ntype=fc\ninputs=feed\n")
HYBRID_PARAMS = DROPOUT_PARAMS.replace("[fc32]\n", "[fc32]\nupdatePeriod=1\n")


def test_the_hybrid_makes_its_passes(tmp_path):
    net = build(tmp_path, HYBRID, HYBRID_PARAMS)
    s = net.schedule
    assert (s.rmax, s.rmin, s.passes) == (4, 1, 4)
    assert s.update_passes == {"conv1": 4, "fc32": 1, "fc10": 1}
    assert [s.updates_after("conv1", p) for p in range(4)] == [False, False, False, True]
    assert all(s.updates_after("fc32", p) for p in range(4))


def hybrid_by_hand(net, data, step):
    """The hybrid's definition, written out: pass p runs the whole net on slice p's rows (its
    dropout masks those rows' of the one-process mask) and updates the single-replica fc
    layers on that pass's mean gradient; conv1 (4 replicas) updates once, after the last
    pass, on the row-weighted sum of the 4 passes' gradients (the minibatch's mean)."""
    n = len(data[1])
    conv = net["conv1"].params
    acc = [0.0 for _ in conv]
    for p in range(4):
        lo, hi = split_rows(n, p, 4)
        net.row0 = lo
        net.zero_grads()
        net.forward({k: v[lo:hi] for k, v in data.items()}, train=True, step=step)
        net.backward()
        for name in ("fc32", "fc10"):
            for param in net[name].params:
                param.update(net.B, 0.0)
        for i, param in enumerate(conv):
            acc[i] = acc[i] + param.grad * ((hi - lo) / n)
    for param, g in zip(conv, acc):
        param.grad = g
        param.update(net.B, 0.0)
    net.row0 = 0


@pytest.mark.parametrize("n", [64, 50], ids=["even", "uneven"])
def test_the_hybrid_equals_its_four_pass_definition(tmp_path, n):
    net = build(tmp_path, HYBRID, HYBRID_PARAMS)
    ref = build(tmp_path, name="plain")  # no replicas: the loop above is the only schedule
    ref.set_params(net.get_params())
    step = ReplicaStep(net)
    for k in range(2):
        stats = step(batch(n, k), step=k, progress=0.0)
        hybrid_by_hand(ref, batch(n, k), step=k)
        assert stats["logprob"]["cases"] == n
        assert_same_params(net, ref)
    # and it is not the one-pass step: the fc layers moved 4 times per minibatch
    once = build(tmp_path, name="once")
    once.set_params(build(tmp_path, HYBRID, HYBRID_PARAMS, name="again").get_params())
    plain_steps(once, [batch(n, k) for k in range(2)])
    assert not np.allclose(once.get_params()["fc10.w0"], net.get_params()["fc10.w0"])


def test_the_hybrid_updating_once_per_minibatch_is_the_one_pass_step(tmp_path):
    """updatePeriod=4 (the 4 passes) on the single-replica fc layers: every layer updates once,
    on the minibatch's mean gradient, so the hybrid takes the step of the net without replicas."""
    params = HYBRID_PARAMS.replace("updatePeriod=1", "updatePeriod=4").replace(
        "[fc10]\n", "[fc10]\nupdatePeriod=4\n")
    net = build(tmp_path, HYBRID, params)
    assert net.schedule.update_passes == {"conv1": 4, "fc32": 4, "fc10": 4}
    ref = build(tmp_path, name="plain")
    ref.set_params(net.get_params())
    step = ReplicaStep(net)
    for k in range(2):
        step(batch(50, k), step=k, progress=0.0)
        ref.train_step(batch(50, k), step=k, progress=0.0)
        assert_same_params(net, ref)


# --- what --describe says, and bad replica specs ------------------------------------------------
def section(text, title):
    """The rows of the --describe table under the line starting with `title`."""
    block = next(part for part in text.split("\n\n") if part.startswith(title))
    return [line.split() for line in block.splitlines()[2:]]


def test_describe_shows_replicas_and_the_bytes_each_step_moves(tmp_path):
    plain = build(tmp_path, name="plain")
    text = describe(build(tmp_path, HYBRID, HYBRID_PARAMS), 128, split_rows)
    assert "each minibatch in 4 slices, 4 passes per minibatch" in text, text
    # conv1's 4 replicas sum their gradients once a step; fc32 and fc10 have one replica
    conv_bytes = sum(int(np.prod(p.shape)) * 4 for p in plain["conv1"].params)
    assert section(text, "replicas' gradients") == [
        ["conv1", "0,1,2,3", "1", f"{conv_bytes:,}"], ["total", f"{conv_bytes:,}"]]
    # pool1's rows of replicas 1-3 go to fc32 on device 0 (3/4 of 128 rows, and back), the
    # pass layer sends all 128 rows of drop from device 0 to 1
    per_case = int(np.prod(plain["pool1"].out_shape)) * 4
    copies = {row[0] + row[1] + row[2]: row[-2:] for row in section(text, "copies")[:-1]}
    assert copies["pool1->fc32"] == [f"{96 * per_case:,}"] * 2
    assert copies["drop->feed"] == [f"{128 * 32 * 4:,}"] * 2
    three = describe(build(tmp_path, replicated(DROPOUT_LAYERS, "0,1,2"), name="three"), 100,
                     split_rows)
    assert [row[:3] for row in section(three, "replicas' gradients")[:-1]] == [
        [name, "0,1,2", "1"] for name in ("conv1", "fc32", "fc10")]
    assert "replicas" not in describe(plain, 128) and "all-reduced" not in describe(plain, 128)


@pytest.mark.parametrize("body,params,key,words", [
    (replicated(DROPOUT_LAYERS, "0,1,2").replace("[fc10]\ntype=fc\n", "[fc10]\ntype=fc\ngpu=0,1\n"),
     DROPOUT_PARAMS, "gpu=0,1", "must divide the 3"),
    (replicated(DROPOUT_LAYERS, "0,0"), DROPOUT_PARAMS, "gpu=0,0", "different devices"),
    (HYBRID, HYBRID_PARAMS.replace("[conv1]\n", "[conv1]\nupdatePeriod=6\n"), "updatePeriod=6",
     "multiple of the 4 passes"),
    (HYBRID, HYBRID_PARAMS.replace("updatePeriod=1", "updatePeriod=3"), "updatePeriod=3",
     "divide 4"),
    (HYBRID.replace("inputs=pool1\ngpu=0\n", "inputs=mid\n").replace(
        "[fc32]", "[mid]\ntype=pass\ninputs=pool1\ngpu=0\n\n[fc32]"), HYBRID_PARAMS, "gpu=0",
     "as many replicas as its inputs"),
], ids=["not-dividing", "same-device", "period-not-multiple", "period-not-dividing",
        "pass-replicas"])
def test_bad_replica_specs_are_clear_errors(tmp_path, body, params, key, words):
    with pytest.raises(ConfigError) as err:
        build(tmp_path, body, params, name="bad")
    text = str(err.value)
    assert words in text, text
    where = tmp_path / ("bad-params.cfg" if key.startswith("updatePeriod") else "bad.cfg")
    lines = where.read_text().splitlines()
    line = next(i for i, l in enumerate(lines, 1) if l.strip() == key.strip())
    assert f"{where}:{line}" in text, text
