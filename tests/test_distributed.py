"""Issue 17: data parallelism over MPI ranks (mpiexec, 2-3 local ranks, CPU backend).

N ranks follow the 1-rank run up to the order of summation (float64, dropout and noisy ReLU on,
rtol 1e-12), with uneven shards and across a resume at another world size; rank 0 alone
writes, and reads the checkpoint for every rank; a rank that fails, or is killed, ends the job
with a message. Every mpiexec has a generous hang guard (a timeout that only fails a hang)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convnet.training.checkpoint import load_latest_checkpoint, read_metrics
from test_reliability import (DROPOUT_LAYERS, DROPOUT_PARAMS, REPO, subprocess_env, write_cifar,
                              write_net)

pytest.importorskip("mpi4py", reason="the [mpi] extra (mpi4py, mpich) is not installed")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec next to Python or on PATH (pip install mpich)", allow_module_level=True)

HANG_GUARD = 600  # seconds: only a hung job gets near it
WORKER = os.path.join(REPO, "tests", "mpi_worker.py")
CLI = [sys.executable, "-m", "convnet.apps.cli"]


def mpiexec(*ranks, cwd=None, wait=True, env=None):
    """Run one command per group of ranks: ranks are (n, [argv], {options}) or (n, [argv])."""
    cmd = [MPIEXEC]
    for i, (n, argv, *opts) in enumerate(ranks):
        cmd += [":"] * bool(i) + ["-n", str(n)]
        if opts and opts[0].get("wdir"):
            cmd += ["-wdir", str(opts[0]["wdir"])]
        cmd += [str(a) for a in argv]
    proc = subprocess.Popen(cmd, cwd=cwd, env={**subprocess_env(), **(env or {})},
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=HANG_GUARD)
    return proc.returncode, out, err


def train(world, data, out, *options):
    """The worker's training run on `world` ranks (1: a plain process); its saved arrays."""
    argv = [sys.executable, WORKER, "train", data, out, *options]
    if world == 1:
        done = subprocess.run(argv, env=subprocess_env(), cwd=os.getcwd(), capture_output=True,
                              text=True, timeout=HANG_GUARD)
        status, err = done.returncode, done.stderr
    else:
        status, _, err = mpiexec((world, argv))
    assert status == 0, err
    with np.load(out) as saved:
        return {k: saved[k] for k in saved.files}


SCORES = ("epoch", "batch", "step", "train_cost", "test_cost", "top1_error", "top5_error")


def assert_same_run(a, b):
    """The same weights, momenta and last test record (but its wall-clock fields)."""
    ra, rb = (json.loads(str(x.pop("record"))) for x in (a, b))
    assert [ra[k] for k in SCORES] == pytest.approx([rb[k] for k in SCORES], rel=1e-12)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12 * abs(b[name]).max(),
                                   err_msg=name)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """128 training images (batches 1-2 of 64) and a test batch of 64."""
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=64)


def test_two_ranks_of_64_take_the_step_one_rank_of_128_takes(cifar, tmp_path):
    one = train(1, cifar, tmp_path / "one.npz", "--mini", "128", "--epochs", "1")
    two = train(2, cifar, tmp_path / "two.npz", "--mini", "128", "--epochs", "1")
    per_layer = train(2, cifar, tmp_path / "buckets.npz", "--mini", "128", "--epochs", "1",
                      "--bucket-bytes", "1")  # each layer's gradients reduced as it finishes
    for name in set(two) - {"record"}:
        np.testing.assert_array_equal(per_layer[name], two[name], err_msg=name)
    assert not np.array_equal(one["param/fc10.w0"], 0)
    assert_same_run(two, one)


def test_ranks_and_cc2_replicas_take_the_one_process_step(cifar, tmp_path):
    """gpu=0,1,2 replicas (cuda-convnet2's data parallelism) alone and on 2 ranks: each rank's
    rows in 3 slices (minibatches of 100 and 28: 17/17/16 per rank, then 5/5/4), the run equal
    to one process without replicas."""
    one = train(1, cifar, tmp_path / "one.npz", "--mini", "100", "--epochs", "1")
    alone = train(1, cifar, tmp_path / "alone.npz", "--mini", "100", "--epochs", "1",
                  "--replicas", "3")
    both = train(2, cifar, tmp_path / "both.npz", "--mini", "100", "--epochs", "1",
                 "--replicas", "3")
    assert_same_run(alone, dict(one))
    assert_same_run(both, one)


def test_uneven_shards_three_ranks_minibatch_100(cifar, tmp_path):
    """Minibatches of 100 and 28 over 3 ranks: rows 34/33/33, then 10/9/9."""
    one = train(1, cifar, tmp_path / "one.npz", "--mini", "100", "--epochs", "1")
    three = train(3, cifar, tmp_path / "three.npz", "--mini", "100", "--epochs", "1",
                  "--bucket-bytes", "1")
    assert_same_run(three, one)


def test_a_run_saved_at_one_world_size_resumes_at_another(cifar, tmp_path):
    """Epoch 1 on 2 ranks, epoch 2 on 3 ranks, epoch 3 on 1: the run of 3 epochs on 1 rank."""
    straight = train(1, cifar, tmp_path / "straight.npz", "--mini", "50", "--epochs", "3")
    run = str(tmp_path / "run")
    for world, epochs in ((2, 1), (3, 2), (1, 3)):
        resume = ["--resume"] if epochs > 1 else []
        split = train(world, cifar, tmp_path / f"split{world}.npz", "--mini", "50", "--epochs",
                      str(epochs), "--run", run, *resume)
    assert load_latest_checkpoint(run)[0] == 3 * 3
    assert_same_run(split, straight)


@pytest.fixture
def net(tmp_path):
    return write_net(tmp_path / "net", DROPOUT_LAYERS, DROPOUT_PARAMS)


def cli_args(net, cifar, *extra):
    return [*CLI, *net, "--data-provider", "cifar", "--data-path", cifar, "--mini", "16",
            "--inner-size", "24", "--train-range", "1", "--test-range", "6",
            "--collective-timeout", "120", *extra]


def test_only_rank_0_writes_and_it_reads_the_checkpoint_for_every_rank(cifar, net, tmp_path):
    """Each rank in a folder of its own (no shared filesystem): the run folder appears in rank
    0's alone; resumed, rank 1, which has no checkpoint, gets rank 0's."""
    zero, one = tmp_path / "rank0", tmp_path / "rank1"
    zero.mkdir(), one.mkdir()
    args = cli_args(net, cifar, "--save-path", "run", "--epochs", "1")
    status, out, err = mpiexec((1, args, {"wdir": zero}), (1, args, {"wdir": one}))
    assert status == 0, err
    assert out.count("test error (top-1)") == 1  # rank 0 alone prints
    assert sorted(os.listdir(zero / "run")) == ["ckpt-000000004.json", "ckpt-000000004.npz",
                                                "metrics.jsonl"]
    assert not (one / "run").exists()
    resume = cli_args(net, cifar, "--load-file", "run", "--epochs", "2")
    status, out, err = mpiexec((1, resume, {"wdir": zero}), (1, resume, {"wdir": one}))
    assert status == 0, err
    assert "resumed at epoch 2 batch 0 (step 4)" in out
    assert [r["epoch"] for r in read_metrics(zero / "run")] == [1, 2]
    assert not (one / "run").exists()


def test_a_rank_that_fails_at_the_start_ends_the_job_naming_it(cifar, net, tmp_path):
    good = cli_args(net, cifar, "--epochs", "1")
    bad = cli_args(net, str(tmp_path / "missing"), "--epochs", "1")
    status, out, err = mpiexec((1, good), (1, bad))
    assert status != 0
    assert "convnet-train: rank 1 of 2:" in err and "missing" in err, err


def test_a_rank_that_raises_mid_run_ends_the_job_naming_it(cifar, net, tmp_path):
    """Rank 1 raises at step 2 while rank 0 waits in that step's allreduce."""
    args = cli_args(net, cifar, "--epochs", "1")
    failing = [sys.executable, WORKER, "fail-at-step", "2", "raise", *args[len(CLI):]]
    status, out, err = mpiexec((1, args), (1, failing))
    assert status != 0
    assert "convnet-train: rank 1 of 2: ZeroDivisionError: injected at step 2" in err, err
    assert "[rank 1] Traceback" in err


def test_ranks_whose_weights_differ_stop_at_the_checkpoint_naming_them(cifar, net, tmp_path):
    other = write_net(tmp_path / "other", DROPOUT_LAYERS,
                      DROPOUT_PARAMS.replace("epsW=0.0001", "epsW=0.0002"))
    run = ["--epochs", "1", "--save-path", tmp_path / "run"]
    status, out, err = mpiexec((2, cli_args(net, cifar, *run)), (1, cli_args(other, cifar, *run)))
    assert status == 1, err
    assert "the ranks' weights differ (ranks 0, 1 hold" in err and "rank 2 holds" in err, err
    assert not list((tmp_path / "run").glob("ckpt-*"))


def test_a_rank_that_is_killed_ends_the_job(cifar, net, tmp_path):
    args = cli_args(net, cifar, "--epochs", "1")
    killed = [sys.executable, WORKER, "fail-at-step", "2", "kill", *args[len(CLI):]]
    status, out, err = mpiexec((1, args), (1, killed))
    assert status != 0
    assert "signal 9" in out + err or "Killed" in out + err, out + err


def rank_pid(proc, rank, tag):
    """The pid of rank `rank` of the job mpiexec `proc` runs (the one whose environment holds
    CONVNET_TEST_JOB=tag), once it has started."""
    wanted = {f"PMI_RANK={rank}".encode(), f"CONVNET_TEST_JOB={tag}".encode()}
    while proc.poll() is None:
        for entry in Path("/proc").iterdir():
            try:
                env = set((entry / "environ").read_bytes().split(b"\0"))
                if wanted <= env and b"convnet.apps.cli" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except (OSError, ValueError):
                continue
        time.sleep(0.05)
    raise AssertionError(proc.communicate())


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 here")
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_batch_after_one_checkpoint(
        cifar, net, tmp_path):
    """SIGUSR1 (SLURM's --signal=USR1@120) to rank 1 alone: the flag goes through the step's
    allreduce, so both ranks save once at the same batch and exit 130."""
    run = tmp_path / "run"
    args = cli_args(net, cifar, "--epochs", "100000", "--save-path", run,
                    "--save-interval", "100000")
    tag = str(tmp_path)
    proc = mpiexec((2, args), wait=False, env={"CONVNET_TEST_JOB": tag})
    try:
        pid = rank_pid(proc, 1, tag)
        while not (run / "metrics.jsonl").exists() and proc.poll() is None:
            time.sleep(0.05)  # past the start: training
        os.kill(pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopping: writing a checkpoint after this batch" in err
    stopped = [line.split() for line in out.splitlines() if line.startswith("stopped at epoch")]
    assert len(stopped) == 1, out  # rank 0 prints it
    epoch, batch = int(stopped[0][3]), int(stopped[0][5].rstrip(";"))
    step, _, state = load_latest_checkpoint(run)
    assert (state["epoch"], state["batch"]) == (epoch, batch) and step == 4 * (epoch - 1) + batch


def test_a_sharded_test_scores_and_gathers_what_one_process_does(cifar, net, tmp_path):
    """--test-only --multiview-test --test-out, and --write-features, on 3 ranks (the 64 test
    images in minibatches of 16 split 6/5/5): the same errors, and rank 0 writes the
    probabilities and the features of every image in the single-process order."""
    run = tmp_path / "run"
    status, _, err = mpiexec((1, cli_args(net, cifar, "--epochs", "1", "--save-path", run)))
    assert status == 0, err
    outs = {}
    for world in (1, 3):
        outs[world] = tmp_path / f"probs{world}"
        args = cli_args(net, cifar, "--load-file", run, "--test-only", "--multiview-test",
                        "--test-out", outs[world])
        status, out, err = mpiexec((world, args))
        assert status == 0, err
        outs[world] = (out.splitlines()[-1], np.load(f"{outs[world]}.npy"),
                       np.load(f"{outs[world]}.labels.npy"))
    (line1, probs1, labels1), (line3, probs3, labels3) = outs[1], outs[3]
    assert line1.startswith("test cost") and line1 == line3
    np.testing.assert_array_equal(labels3, labels1)
    np.testing.assert_allclose(probs3, probs1, rtol=1e-5, atol=1e-7)
    features = {}
    for world in (1, 3):
        folder = tmp_path / f"features{world}"
        args = cli_args(net, cifar, "--load-file", run, "--write-features", "fc32",
                        "--feature-path", folder)
        status, out, err = mpiexec((world, args))
        assert status == 0, err
        assert sorted(os.listdir(folder)) == ["features.npy", "labels.npy", "meta.json"]
        features[world] = np.load(folder / "features.npy"), np.load(folder / "labels.npy")
    np.testing.assert_array_equal(features[3][1], features[1][1])
    # float32 sums over other minibatch sizes: agreement to float32's rounding of the largest
    np.testing.assert_allclose(features[3][0], features[1][0], rtol=1e-5,
                               atol=1e-5 * abs(features[1][0]).max())


def test_a_stalled_rank_ends_the_job_after_the_collective_timeout(cifar, net, tmp_path):
    """Rank 1 stopped (SIGSTOP) mid-training: rank 0's watchdog names the collective it waits
    in and aborts the job. (The timeout is long enough for the ranks' start to differ by it on
    a loaded machine: the first collective waits for the slower one to build its net.)"""
    args = cli_args(net, cifar, "--epochs", "100000", "--save-path", tmp_path / "run")
    args[args.index("--collective-timeout") + 1] = "30"
    tag = str(tmp_path)
    proc = mpiexec((2, args), wait=False, env={"CONVNET_TEST_JOB": tag})
    try:
        pid = rank_pid(proc, 1, tag)
        while not (tmp_path / "run" / "metrics.jsonl").exists() and proc.poll() is None:
            time.sleep(0.05)
        os.kill(pid, signal.SIGSTOP)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "convnet-train: rank 0 of 2: the collective" in err, err
    assert "has waited more than 30 s (--collective-timeout)" in err, err
