"""Issue 18, items 10, 11 and 13, and the small ones: options and the net are checked before any
data is read (one line, exit 2), sizes before anything is allocated (memory cases run under
RLIMIT_AS in their subprocess, so a regression fails instead of taking the machine down), a
net with more outputs than classes never trains, convnet-show prints no raw warning.

--data-path of a folder that does not exist shows "before any data is read": the option's
error comes first."""
import gzip
import hashlib
import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest

from convnet.data.datasets import FASHION_FILES, write_idx
from convnet.training.checkpoint import (checkpoint_paths, load_latest_checkpoint,
                                         save_checkpoint)
from run_helpers import LIMIT_PRELUDE, cli, one_line, tiny, train_run
from test_reliability import TINY_LAYERS, TINY_PARAMS, write_net

assert tiny  # a fixture, used by name
LIMIT = LIMIT_PRELUDE.format(limit=3 << 30)  # 3 GiB of address space


def no_data(tiny):
    tmp, layers, params, common = tiny
    return [layers, params, *common, "--data-path", tmp / "no-such-data"]


# ------------------------------------------------------------------ 11: options and the net

@pytest.mark.parametrize("option, value, says", [
    ("--test-freq", -3, "--test-freq must be >= 0"),
    ("--epochs", 0, "--epochs must be >= 1"),
    ("--epochs", -1, "--epochs must be >= 1"),
    ("--mini", 0, "--mini must be >= 1"),
    ("--seed", -1, "--seed must be in 0..2^63-1"),
    ("--logreg-name", "fc10", "--logreg-name fc10: a fc layer, not a cost.logreg layer"),
    ("--logreg-name", "fc3", "--logreg-name fc3: not a layer of the net"),
])
def test_bad_option_is_one_line_before_any_data_is_read(tiny, option, value, says):
    status, out, err = cli([*no_data(tiny), option, value, "--save-path", tiny[0] / "run"])
    assert status == 2 and says in one_line(err), err
    assert not (tiny[0] / "run").exists()


def test_unknown_option_is_one_line_not_the_usage(tiny):
    status, _, err = cli([*no_data(tiny), "--no-such-option"])
    assert status == 2
    assert one_line(err) == ("convnet-train: error: unrecognized arguments: --no-such-option "
                             "(see convnet-train --help)")


@pytest.mark.parametrize("edit, line, says", [
    (("momW=0.9", "momW=2"), 4, "momW: a momentum must be in [0, 1), got '2'"),
    (("epsW=0.000001", "epsW=-1"), 2, "epsW: a learning rate must be >= 0, got '-1'"),
    (("momB=0.9", "momB=-0.1"), 5, "momB: a momentum must be in [0, 1)"),
])
def test_params_out_of_range_is_file_line(tiny, edit, line, says):
    tmp, layers, _, common = tiny
    _, params = write_net(tmp / "bad", TINY_LAYERS, TINY_PARAMS.replace(*edit))
    status, _, err = cli([layers, params, *common, "--data-path", tmp / "no-such-data"])
    assert status == 2 and one_line(err).startswith(f"convnet-train: {params}:{line}: ")
    assert says in err


def chain_layers(n):
    """n ReLU layers in a chain, written last layer first (the topological sort recursed once
    per layer)."""
    sections = ["[data]\ntype=data\ndataIdx=0\nchannels=3\nimgSize=32\n",
                "[labels]\ntype=data\ndataIdx=1\n"]
    sections += [f"[n{i}]\ntype=neuron\nneuron=relu\ninputs={f'n{i - 1}' if i else 'data'}\n"
                 for i in range(n)]
    sections += [f"[fc10]\ntype=fc\ninputs=n{n - 1}\noutputs=10\ninitW=0.001\n",
                 "[probs]\ntype=softmax\ninputs=fc10\n",
                 "[logprob]\ntype=cost.logreg\ninputs=labels,probs\n"]
    return "\n".join(reversed(sections))


def test_a_3000_layer_chain_describes_without_recursion_error(tiny):
    tmp, _, _, common = tiny
    layers, params = write_net(tmp / "chain", chain_layers(3000), TINY_PARAMS)
    status, out, err = cli([layers, params, "--describe", *common])
    assert status == 0 and "Traceback" not in err and "recursion" not in err, err
    assert re.search(r"^n2999\s+neuron", out, re.M)


@pytest.mark.parametrize("edit, params, says", [
    (("dataIdx=1", "dataIdx=5"), TINY_PARAMS,
     "dataIdx=5: the data providers give 0: the images, 1: the"),
    (("type=cost.logreg\ninputs=labels,probs\n", "type=neuron\nneuron=relu\ninputs=probs\n"),
     TINY_PARAMS.split("[logprob]")[0], "the net has no cost.logreg layer"),
])
def test_net_convnet_train_cannot_run_fails_at_describe(tiny, edit, params, says):
    tmp, _, _, common = tiny
    layers, params = write_net(tmp / "odd", TINY_LAYERS.replace(*edit), params)
    status, _, err = cli([layers, params, "--describe", *common])
    assert status == 2 and re.match(rf"convnet-train: {re.escape(layers)}:\d+: ", one_line(err))
    assert says in err


# ------------------------------------------------------------------ small ones

def test_utf8_bom_in_a_cfg_is_accepted(tiny):
    tmp, _, _, common = tiny
    layers, params = write_net(tmp / "bom", "\ufeff" + TINY_LAYERS, "\ufeff" + TINY_PARAMS)
    status, out, err = cli([layers, params, "--describe", *common])
    assert status == 0 and "fc10" in out, err


def test_a_10_mb_bad_value_is_not_echoed_whole(tiny):
    tmp, _, params, common = tiny
    layers, _ = write_net(tmp / "long", TINY_LAYERS.replace("initW=0.001",
                                                            "initW=" + "x" * 10_000_000), "")
    status, _, err = cli([layers, params, "--describe", *common])
    line = one_line(err)
    assert status == 2 and len(line) < 400 and "(10,000,006 characters)" not in line
    assert "... (10,000,000 characters)" in line


# ------------------------------------------------------------------ 10: sizes

def test_a_net_too_large_for_memory_prints_the_table_before_allocating(tiny):
    """filters=100000000 (18.6 GiB of float64 once allocated): under RLIMIT_AS of 3 GiB the
    memory check refuses it first, with the table (exit 1)."""
    tmp, _, _, common = tiny
    conv = TINY_LAYERS.replace("[fc10]\ntype=fc\ninputs=data", "[conv1]\ntype=conv\ninputs=data"
                               "\nfilters=100000000\nfilterSize=5\nchannels=3\n\n[fc10]\n"
                               "type=fc\ninputs=conv1")
    layers, params = write_net(tmp / "huge", conv, TINY_PARAMS + "\n[conv1]\nepsW=0.001\n"
                               "epsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0\n")
    status, _, err = cli([layers, params, *common, "--save-path", tmp / "run"], prelude=LIMIT)
    assert status == 1 and "Traceback" not in err, err
    assert err.startswith("convnet-train: out of memory on this machine (checked before "
                          "allocating"), err
    assert re.search(r"^conv1\s+conv\s+100000000x28x28\s", err, re.M) and "--mini 4" in err


def test_a_device_as_cfg_is_refused_at_the_stated_maximum(tiny):
    status, _, err = cli(["/dev/zero", tiny[2], "--describe", *tiny[3]], prelude=LIMIT)
    assert status == 2 and "larger than 16 MiB, the most a cfg file may be" in one_line(err)


def test_gzip_bomb_as_an_idx_file_is_refused_at_the_stated_maximum(tmp_path, tiny):
    """300 MiB of zeros in 300 KB of gzip as the Fashion-MNIST training images."""
    data = tmp_path / "fashion"
    data.mkdir()
    for key, name in FASHION_FILES.items():
        shape = (4, 28, 28) if "images" in key else (4,)
        write_idx(data / name, np.zeros(shape, np.uint8))
    bomb = data / (FASHION_FILES["train_images"] + ".gz")
    os.remove(data / FASHION_FILES["train_images"])
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(b"\0\0\x08\x03" + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        block = bytes(1 << 20)
        for _ in range(300):
            f.write(block)
    status, _, err = cli([tiny[1], tiny[2], "--data-provider", "fashion-mnist", "--data-path",
                          data, "--mini", "4", "--epochs", "1"], prelude=LIMIT)
    line = one_line(err)
    assert status == 2 and f"{bomb}: holds more than 256 MiB unpacked" in line, err


def test_forged_checkpoint_array_is_refused_before_it_is_allocated(tiny):
    """A checkpoint whose .npz member declares 10^9 float32 (4 GB) in a few bytes, its sha256
    recomputed so the digest holds: refused by the size check under a 3 GiB address space."""
    run = train_run(tiny)
    npz_path, json_path = checkpoint_paths(run, 5)
    with zipfile.ZipFile(npz_path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    name = sorted(members)[0]
    header = members[name][:10 + int.from_bytes(members[name][8:10], "little")]
    shape = re.search(rb"'shape': \(([^)]*)\)", header)
    forged = header.replace(shape.group(0), b"'shape': (1000000000,)")
    pad = len(header) - len(forged)  # keep the header's length (its size field)
    members[name] = forged.replace(b"\n", b" " * pad + b"\n") + members[name][len(header):]
    with zipfile.ZipFile(npz_path, "w") as z:
        for member, raw in members.items():
            z.writestr(member, raw)
    record = json.loads(open(json_path).read())
    record["sha256"] = hashlib.sha256(open(npz_path, "rb").read()).hexdigest()
    with open(json_path, "w") as f:
        json.dump(record, f)
    status, _, err = cli(["--load-file", run, "--test-only", *tiny[3]], prelude=LIMIT)
    assert status == 2 and "Traceback" not in err, err
    assert "declares shape (1000000000,)" in err and "none of its checkpoints" in err


# ------------------------------------------------------------------ 13: classes

def test_more_outputs_than_classes_is_an_error_before_training(tiny):
    tmp, _, params, common = tiny
    layers, _ = write_net(tmp / "wide", TINY_LAYERS.replace("outputs=10", "outputs=20"), "")
    status, out, err = cli([layers, params, *common, "--save-path", tmp / "run"])
    line = one_line(err)
    assert status == 2 and "has 20 outputs, but the data set cifar has 10 classes" in line
    assert re.match(rf"convnet-train: {re.escape(layers)}:\d+: ", line)
    assert "epoch" not in out and load_latest_checkpoint(tmp / "run") is None


def test_show_preds_of_a_net_with_more_outputs_than_names(tiny, tmp_path):
    """A run trained before the check above (forged: the cfg saved in its checkpoint widened
    to 20 outputs, the weights with it): --show-preds draws 'class K' for the names it lacks
    (it raised IndexError)."""
    pytest.importorskip("matplotlib")
    run = train_run(tiny)
    step, arrays, state = load_latest_checkpoint(run)
    state["layers_cfg"] = state["layers_cfg"].replace("outputs=10", "outputs=20")
    for key in list(arrays):
        arrays[key] = np.concatenate([arrays[key], arrays[key]], axis=-1)
    for ext in ("json", "npz"):
        os.remove(run / f"ckpt-{step:09d}.{ext}")
    save_checkpoint(run, step, arrays, state)
    status, out, err = cli([run, "--show-preds", *tiny[3][:4], "--num-preds", "4", "--out",
                            tmp_path / "png"], module="convnet.apps.show")
    assert status == 0 and "Traceback" not in err, err
    assert (tmp_path / "png" / "preds.png").is_file()


def test_show_prints_warnings_as_its_own_lines(tiny, tmp_path):
    """A torn last metrics line (a crash mid-write) is skipped with a warning: one
    'convnet-show: warning:' line, not Python's file:line: UserWarning and source line."""
    pytest.importorskip("matplotlib")
    run = train_run(tiny)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"epoch": 2, "ba')
    status, out, err = cli([run, "--show-cost"], module="convnet.apps.show", cwd=tmp_path)
    assert status == 0 and "Traceback" not in err, err
    assert err.strip() and all(line.startswith("convnet-show: warning: ")
                               for line in err.strip().splitlines()), err
