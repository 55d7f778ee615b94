"""Issue 9: stopping convnet-train loses nothing. Ctrl-C mid-epoch checkpoints, exits 130 and
resumes bit-identically; SIGKILL at random moments (most of them inside a checkpoint write),
again and again, never leaves a checkpoint that loads wrong, and the run still ends with the
weights and metrics of a run that was never killed.

Each test runs `python -m convnet.apps.cli` as a subprocess on synthetic CIFAR batches.
"""
import glob
import hashlib
import json
import os
import re
import signal
import time
import warnings

import numpy as np

from convnet.training.checkpoint import load_latest_checkpoint, read_metrics
from test_reliability import (DROPOUT_LAYERS, DROPOUT_PARAMS, TINY_LAYERS, TINY_PARAMS,
                              assert_same_checkpoint, comparable, start_train, write_cifar,
                              write_net)

RESUMED = re.compile(r"resumed at epoch (\d+) batch (\d+) \(step (\d+)\)")


def wait_until(condition, proc, timeout=60.0, poll=0.002):
    """Poll `condition()` until it holds (True) or `proc` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(poll)
    raise AssertionError("timed out waiting for the training process")


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_train_sigint_mid_epoch_checkpoints_exits_130_and_resumes_bit_identically(tmp_path):
    """Ctrl-C in the middle of epoch 1 of a net with dropout, random 24x24 crops with flips and
    a shuffled order: the run writes a checkpoint at the next batch boundary, says where it
    stopped and exits 130 with metrics.jsonl intact. Resumed (with neither --seed nor the
    layers file given again), it ends bit-identical to a run that was never stopped: weights,
    momenta and every metrics record but the wall-clock ones."""
    cifar = write_cifar(tmp_path / "cifar")  # 200 training images: 25 batches of 8
    layers, params = write_net(tmp_path / "net", DROPOUT_LAYERS, DROPOUT_PARAMS)
    options = ["--data-provider", "cifar", "--data-path", cifar, "--mini", "8", "--epochs", "2",
               "--inner-size", "24", "--test-freq", "4", "--backend", "numpy"]
    straight_dir, split_dir = tmp_path / "straight", tmp_path / "split"
    straight = start_train([layers, params, *options, "--seed", "3", "--save-path", straight_dir])
    split = start_train([layers, params, *options, "--seed", "3", "--save-path", split_dir])
    metrics = split_dir / "metrics.jsonl"
    assert wait_until(lambda: metrics.exists() and metrics.read_bytes().count(b"\n") >= 1, split)
    split.send_signal(signal.SIGINT)
    status, out, err = finish(split)
    assert status == 130, err
    assert "Traceback" not in err and "stopping: writing a checkpoint after this batch" in err
    stopped = re.search(r"stopped at epoch 1 batch (\d+); resume with --load-file (\S+)", out)
    assert stopped and stopped.group(2) == str(split_dir), out
    batch = int(stopped.group(1))
    assert 4 <= batch < 25  # mid-epoch

    step, _, state = load_latest_checkpoint(split_dir)
    assert (step, state["epoch"], state["batch"]) == (batch, 1, batch)
    assert metrics.read_bytes().endswith(b"\n")
    records = read_metrics(split_dir)
    assert records and all(r["step"] <= step for r in records)
    assert [r["batch"] for r in records] == list(range(4, batch + 1, 4))

    resumed = start_train([params, *options, "--load-file", split_dir])
    status, out, err = finish(resumed)
    assert status == 0, err
    assert RESUMED.search(out).groups() == ("1", str(batch), str(batch)), out
    assert finish(straight)[0] == 0
    final_step, arrays = assert_same_checkpoint(straight_dir, split_dir)
    assert final_step == 50 and any(name.startswith("momentum/") for name in arrays)
    assert comparable(read_metrics(split_dir)) == comparable(read_metrics(straight_dir))


def test_train_sigterm_stops_like_ctrl_c(tmp_path):
    """SIGTERM (a scheduler's stop) checkpoints at the next batch boundary and exits 130."""
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    run = tmp_path / "run"
    proc = start_train([layers, params, "--data-provider", "cifar", "--data-path", cifar,
                        "--mini", "8", "--epochs", "50", "--save-interval", "0", "--backend",
                        "numpy", "--save-path", run])
    assert wait_until(lambda: bool(committed_steps(run)), proc)
    proc.send_signal(signal.SIGTERM)
    status, out, err = finish(proc)
    assert status == 130 and "Traceback" not in err, err
    step, _, state = load_latest_checkpoint(run)
    assert f"stopped at epoch {state['epoch']} batch {state['batch']}" in out, out
    assert step == state["step"] >= 1 and not [n for n in os.listdir(run) if ".tmp-" in n]


def test_train_second_ctrl_c_aborts_at_once_with_one_line(tmp_path):
    """Ctrl-C, then Ctrl-C again while the stop checkpoint is being written (25 MB of weights
    and momenta, so the second one lands inside the write): exit 130 at once with one line, no
    traceback, no temp file left, and the newest checkpoint that loads is a good one."""
    cifar = write_cifar(tmp_path / "cifar")
    wide = KILL_LAYERS.replace("outputs=64", "outputs=1024").replace("fc64", "fc1024")
    layers, params = write_net(tmp_path / "net", wide, KILL_PARAMS.replace("fc64", "fc1024"))
    run = tmp_path / "run"
    proc = start_train([layers, params, "--data-provider", "cifar", "--data-path", cifar,
                        "--mini", "8", "--epochs", "50", "--save-interval", "0", "--backend",
                        "numpy", "--save-path", run])
    assert wait_until(lambda: bool(committed_steps(run)), proc)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr.readline() == "\n"  # the handler's message, written at once
    assert proc.stderr.readline().startswith("stopping: writing a checkpoint")
    proc.send_signal(signal.SIGINT)
    status, out, err = finish(proc)
    assert status == 130, err
    assert err.strip().splitlines() == ["convnet-train: interrupted; the last checkpoint is kept"]
    assert "stopped at" not in out  # it did not get to finish the stop checkpoint's batch
    assert load_latest_checkpoint(run)[0] >= 1
    assert not [n for n in os.listdir(run) if ".tmp-" in n]


# data -> fc64 (relu) -> fc10: 200K parameters, so each checkpoint (weights + momenta, ~1.6 MB,
# fsynced) takes most of a step and most kills land inside a checkpoint write.
KILL_LAYERS = DROPOUT_LAYERS.split("[conv1]")[0].replace("imgSize=24", "imgSize=32") + """\
[fc64]
type=fc
inputs=data
outputs=64
initW=0.001
neuron=relu

[fc10]
type=fc
inputs=fc64
outputs=10
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""
KILL_PARAMS = TINY_PARAMS + """
[fc64]
epsW=0.000001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004
"""
KILLS = 24
EPOCHS, STEPS_PER_EPOCH = 10, 25  # room for 24 kills even when a loaded machine lets a run go far


def committed_steps(run_dir):
    return [int(os.path.basename(p)[5:14]) for p in glob.glob(os.path.join(run_dir, "ckpt-*.json"))]


def newest_verified_step(run_dir):
    """The newest checkpoint whose files check out, verified here without convnet's loader:
    the .json parses, its state hashes to state_sha256, and the .npz hashes to sha256."""
    good = []
    for step in committed_steps(run_dir):
        base = os.path.join(run_dir, f"ckpt-{step:09d}")
        try:
            record = json.loads(open(base + ".json", "rb").read())
            npz = open(base + ".npz", "rb").read()
        except (OSError, ValueError):
            continue
        canonical = json.dumps(record["state"], sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(npz).hexdigest() == record["sha256"] and \
                hashlib.sha256(canonical.encode()).hexdigest() == record["state_sha256"]:
            good.append(step)
    return max(good, default=None)


def cut_short_writes(run_dir):
    """Files a save leaves behind when killed mid-write: temp files and .npz without .json."""
    names = set(os.listdir(run_dir)) if os.path.isdir(run_dir) else set()
    temps = [n for n in names if ".tmp-" in n]
    orphans = [n for n in names if n.endswith(".npz") and n[:-4] + ".json" not in names]
    return temps + orphans


def test_train_survives_repeated_sigkill_and_ends_like_an_unkilled_run(tmp_path):
    """SIGKILL convnet-train 24 times at random moments: 3 in 4 a few milliseconds after a new
    checkpoint appears (a checkpoint is written after every step, so these mostly land inside
    the next write), 1 in 4 anywhere from start-up on. After every kill metrics.jsonl reads line
    by line, and the next run resumes from exactly the newest checkpoint that verifies. The run
    then completes at the right step with the weights, momenta and metrics of a run that was
    never killed."""
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", KILL_LAYERS, KILL_PARAMS)
    options = ["--data-provider", "cifar", "--data-path", cifar, "--mini", "8", "--epochs",
               str(EPOCHS), "--save-interval", "0", "--test-freq", "5", "--backend", "numpy"]
    straight_dir, run = tmp_path / "straight", tmp_path / "run"
    straight = start_train([layers, params, *options, "--save-path", straight_dir])

    seed = int(time.time_ns() % 2**32)
    print(f"kill delays seed {seed}")
    rng = np.random.default_rng(seed)
    kills = cut_short = checked_resumes = 0
    completed = False
    while kills < KILLS:
        expected = newest_verified_step(run) if run.exists() else None
        proc = start_train([layers, params, *options, "--load-file", run, "--save-path", run])
        if kills % 4 == 3:
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            wait_until(lambda: max(committed_steps(run), default=-1) > (expected or -1), proc)
            time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        status, out, err = finish(proc)
        assert "Traceback" not in err, err
        resumed = RESUMED.search(out)
        if expected is None:
            assert resumed is None, out
        elif resumed:
            assert int(resumed.group(3)) == expected, (expected, out)
            checked_resumes += 1
        cut_short += bool(cut_short_writes(run))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a torn or bad line would warn or raise
            read_metrics(run)
        if status == 0:
            completed = True
            break
    print(f"{kills} kills survived, {cut_short} left a write cut short, "
          f"{checked_resumes} resumes checked")
    assert kills == KILLS and not completed, "the run finished before all the kills"
    assert cut_short >= 1 and checked_resumes >= KILLS // 2

    expected = newest_verified_step(run)
    status, out, err = finish(start_train([params, *options, "--load-file", run]))
    assert status == 0, err
    assert int(RESUMED.search(out).group(3)) == expected
    assert not cut_short_writes(run)  # the first save of the last run cleared the leftovers
    assert finish(straight)[0] == 0
    final_step, _ = assert_same_checkpoint(straight_dir, run)
    assert final_step == EPOCHS * STEPS_PER_EPOCH
    assert comparable(read_metrics(run)) == comparable(read_metrics(straight_dir))
