"""convnet-train end to end on small data: CIFAR nets on synthetic CIFAR batches, resume,
metrics.jsonl, checkpoints, and a params edit taking effect on resume."""
import json
import os
import types

import numpy as np
import pytest

from convnet.apps.cli import main
from convnet.data.datasets import write_cifar_batch, write_cifar_meta
from convnet.engine.net import Net
from convnet.training.checkpoint import load_latest_checkpoint, read_metrics, save_checkpoint
from convnet.training.train import Trainer

LAYERS_DIR = os.path.join(os.path.dirname(__file__), "..", "layers")
CIFAR_NETS = ["cifar10-80sec", "cifar10-18pct", "cifar10-conv-local-11pct"]


@pytest.fixture
def cifar_dir(tmp_path):
    """Six CIFAR-10 python batches of 40 images each: classes differ in mean colour."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar"
    folder.mkdir()
    for b in range(1, 7):
        labels = rng.integers(0, 10, 40)
        images = rng.integers(0, 256, (40, 3, 32, 32)).astype(np.float64)
        images[:, 0] = np.clip(images[:, 0] * 0.5 + labels[:, None, None] * 12, 0, 255)
        name = "test_batch" if b == 6 else f"data_batch_{b}"
        write_cifar_batch(folder / name, images.astype(np.uint8).reshape(40, -1), labels.tolist())
    write_cifar_meta(folder / "batches.meta", [f"class{i}" for i in range(10)])
    return folder


def train(cfg, cifar_dir, run_dir, *extra, params=None):
    base = os.path.join(LAYERS_DIR, cfg)
    return main([base + ".cfg", params or base + "-params.cfg", "--data-provider", "cifar",
                 "--data-path", str(cifar_dir), "--save-path", str(run_dir), "--mini", "16",
                 *extra])


@pytest.mark.parametrize("cfg", CIFAR_NETS)
def test_train_cifar_nets_a_few_steps(cfg, cifar_dir, tmp_path, capsys):
    run = tmp_path / "run"
    # conv-local-11pct's data layer declares imgSize=24: it trains on 24x24 crops by itself
    assert train(cfg, cifar_dir, run, "--epochs", "1", "--train-range", "1-2") == 0
    out = capsys.readouterr().out
    assert "test error (top-1)" in out
    (record,) = read_metrics(run)
    for key in ("epoch", "batch", "train_cost", "test_cost", "top1_error", "top5_error",
                "elapsed_s", "images_per_s"):
        assert key in record
    assert 0 <= record["top1_error"] <= 1 and 0 <= record["top5_error"] <= record["top1_error"]
    assert np.isfinite(record["train_cost"]) and record["epoch"] == 1 and record["batch"] == 5
    step, arrays, state = load_latest_checkpoint(run)
    assert step == 5 and state["epoch"] == 2 and state["batch"] == 0


def test_train_resume_continues_counts_and_reads_edited_params(cifar_dir, tmp_path, capsys):
    run = tmp_path / "run"
    params = tmp_path / "params.cfg"
    original = open(os.path.join(LAYERS_DIR, "cifar10-80sec-params.cfg")).read()
    params.write_text(original)
    assert train("cifar10-80sec", cifar_dir, run, "--epochs", "1", params=str(params)) == 0
    _, arrays1, _ = load_latest_checkpoint(run)
    # stop, set every learning rate and momentum to zero, resume for one more epoch: the
    # weights must not move, which shows the params file was re-read
    frozen = original.replace("epsW=0.001", "epsW=0").replace("epsB=0.002", "epsB=0")
    params.write_text(frozen.replace("momW=0.9", "momW=0").replace("momB=0.9", "momB=0"))
    assert main([str(params), "--load-file", str(run), "--epochs", "2", "--data-provider",
                 "cifar", "--data-path", str(cifar_dir), "--mini", "16"]) == 0
    out = capsys.readouterr().out
    assert "resumed at epoch 2 batch 0" in out
    step, arrays2, state = load_latest_checkpoint(run)
    assert state["epoch"] == 3 and step == 2 * 13  # 5 batches of 40 images in minibatches of 16
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for name in arrays1:
        if name.startswith("param/"):
            np.testing.assert_array_equal(arrays1[name], arrays2[name], err_msg=name)
    # a run already at its last epoch does nothing more
    assert main(["--load-file", str(run), "--epochs", "2", "--data-provider", "cifar",
                 "--data-path", str(cifar_dir), "--mini", "16"]) == 0
    assert len(read_metrics(run)) == 2


def test_train_exact_resume_matches_a_straight_run(cifar_dir, tmp_path):
    """Two epochs straight == one epoch, stop, resume, one epoch: bit-identical weights."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train("cifar10-18pct", cifar_dir, straight, "--epochs", "2") == 0
    assert train("cifar10-18pct", cifar_dir, split, "--epochs", "1") == 0
    base = os.path.join(LAYERS_DIR, "cifar10-18pct")
    assert main([base + "-params.cfg", "--load-file", str(split), "--epochs", "2",
                 "--data-provider", "cifar", "--data-path", str(cifar_dir), "--mini", "16"]) == 0
    _, a, sa = load_latest_checkpoint(straight)
    _, b, sb = load_latest_checkpoint(split)
    assert sa["step"] == sb["step"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_train_load_file_without_checkpoint_is_an_error_unless_it_is_the_save_path(
        cifar_dir, tmp_path, capsys):
    """--load-file of a folder holding no checkpoint trains nothing (issue 18, item 5: it
    warned and trained from scratch); --load-file DIR --save-path DIR starts there, saying so."""
    empty = tmp_path / "empty"
    empty.mkdir()
    base = os.path.join(LAYERS_DIR, "cifar10-80sec")
    common = [base + ".cfg", base + "-params.cfg", "--load-file", str(empty), "--epochs", "1",
              "--data-provider", "cifar", "--data-path", str(cifar_dir), "--mini", "16",
              "--train-range", "1"]
    assert main(common) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert load_latest_checkpoint(empty) is None
    assert main(common + ["--save-path", str(empty)]) == 0
    assert "holds no checkpoint yet: starting a new run there" in capsys.readouterr().out
    assert load_latest_checkpoint(empty) is not None


def test_train_test_only_and_flag_forms(cifar_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train("cifar10-80sec", cifar_dir, run, "--epochs=1", "--train-range=1") == 0
    capsys.readouterr()
    base = os.path.join(LAYERS_DIR, "cifar10-80sec")
    assert main([base + "-params.cfg", "--load-file", str(run), "--test-only=1",
                 "--data-provider", "cifar", "--data-path", str(cifar_dir)]) == 0
    out = capsys.readouterr().out
    assert "top-1 error" in out and "top-5 error" in out


def test_train_missing_fashion_data_is_one_line(tmp_path, capsys):
    base = os.path.join(LAYERS_DIR, "fashion")
    status = main([base + ".cfg", base + "-params.cfg", "--data-path", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "dataset-fashion-mnist" in err


def test_train_metrics_lines_are_json(cifar_dir, tmp_path):
    run = tmp_path / "run"
    assert train("cifar10-80sec", cifar_dir, run, "--epochs", "1", "--test-freq", "2",
                 "--train-range", "1-2") == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # after batches 2 and 4, and at the end of the epoch (batch 5 of 5)
    assert [json.loads(line)["batch"] for line in lines] == [2, 4, 5]


def test_train_resume_mid_epoch_needs_the_minibatch_it_was_saved_with(cifar_dir, tmp_path,
                                                                      capsys):
    """A checkpoint saved at batch 1 of an epoch with --mini 16: resuming that epoch with
    --mini 8 would see some images twice and skip others, so it is refused; 16 resumes."""
    run = tmp_path / "run"
    assert train("cifar10-80sec", cifar_dir, run, "--epochs", "1", "--train-range", "1") == 0
    step, arrays, state = load_latest_checkpoint(run)
    assert state["minibatch"] == 16
    save_checkpoint(str(run), step + 1, arrays, {**state, "step": step + 1, "batch": 1})
    base = os.path.join(LAYERS_DIR, "cifar10-80sec")
    resume = [base + "-params.cfg", "--load-file", str(run), "--epochs", "1",
              "--data-provider", "cifar", "--data-path", str(cifar_dir), "--train-range", "1"]
    capsys.readouterr()
    assert main(resume + ["--mini", "8"]) == 2
    err = capsys.readouterr().err
    assert "with minibatches of 16" in err and "resume with --mini 16" in err, err
    assert main(resume + ["--mini", "16"]) == 0


def test_the_overflow_message_names_a_layer_of_the_net_not_the_pixels():
    """Pixels on cuda-convnet's 0..255 scale outweigh small logits; the message names where the
    net's own outputs are largest (cc2's ImageNet files at --mini 3 named 'data' before)."""
    net = Net([dict(name="data", type="data", dataIdx=0, outputs=6),
               dict(name="labels", type="data", dataIdx=1),
               dict(name="fc", type="fc", inputs="data", outputs=3, initW=0.01, epsW=0.1,
                    epsB=0.1, momW=0.9, momB=0.9, wc=0.0),
               dict(name="probs", type="softmax", inputs="fc"),
               dict(name="cost", type="cost.logreg", inputs="labels,probs")])
    net.forward({0: np.full((2, 6), 200.0, np.float32), 1: np.array([0, 1])})
    line = Trainer.largest_output(types.SimpleNamespace(net=net))
    assert "in layer 'fc'" in line, line
