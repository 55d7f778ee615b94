"""Issue 18, items 1, 2, 4, 5 and 15: a run folder is never written by a command that reads it,
never mixed with another run, never lost to a mistyped option; a stop at any phase is exit 130.

Every test runs convnet-train as a subprocess on the tiny net and synthetic CIFAR batches and
asserts its exit status and that no traceback appears (helpers in run_helpers.py)."""
import json
import os
import signal
import socket
import warnings

import pytest

from convnet.training.checkpoint import load_latest_checkpoint, read_metrics
from run_helpers import (BLOCK_PRELUDE, cli, one_line, read_only_copy, snapshot, start,
                         tiny, train_run)
from test_reliability_stop import committed_steps, finish, wait_until

assert tiny  # a fixture, used by name


# ------------------------------------------------------------------ 1: reading writes nothing

def test_test_only_of_a_read_only_run_folder_works(tiny, tmp_path):
    run = train_run(tiny, epochs=2)
    with read_only_copy(run, tmp_path / "ro") as ro:
        status, out, err = cli(["--load-file", ro, "--test-only", *tiny[3]])
        assert status == 0 and "Traceback" not in err, err
        assert "test cost" in out


def test_show_of_a_read_only_run_draws_elsewhere_and_writes_nothing_into_it(tiny, tmp_path):
    pytest.importorskip("matplotlib")
    run = train_run(tiny, epochs=2)
    with read_only_copy(run, tmp_path / "ro") as ro:
        before = snapshot(ro)
        status, _, err = cli([ro, "--show-cost"], module="convnet.apps.show", cwd=tmp_path)
        assert status == 0 and "Traceback" not in err, err
        assert (tmp_path / "ro-figures" / "cost.png").is_file()  # RUN-figures, here
        status, _, err = cli([ro, "--show-cost", "--out", tmp_path / "png"],
                             module="convnet.apps.show")
        assert status == 0 and "Traceback" not in err, err
        assert (tmp_path / "png" / "cost.png").is_file() and snapshot(ro) == before
        status, _, err = cli([ro, "--show-cost", "--out", ro], module="convnet.apps.show")
        assert status == 2 and "give --out" in err and snapshot(ro) == before, err


def test_test_only_keeps_every_metrics_record_newer_than_its_checkpoint(tiny):
    """--test-only of a run whose newest checkpoint is older than its last records (it cut
    them: 1 -> 0 records) leaves every file of the run as it was."""
    run = train_run(tiny, epochs=3)
    for ext in ("json", "npz"):
        os.remove(run / f"ckpt-000000015.{ext}")  # the newest checkpoint is lost: step 10
    before = snapshot(run)
    for extra in (["--test-only"], ["--write-features", "fc10", "--feature-path",
                                    tiny[0] / "features"]):
        status, _, err = cli(["--load-file", run, *extra, *tiny[3]])
        assert status == 0 and "Traceback" not in err, err
        assert snapshot(run) == before


def test_resume_moves_records_newer_than_its_checkpoint_aside(tiny):
    """Resuming from step 10 of a run that tested at step 15: the third record is moved to a
    named file (it was deleted), and the resumed run writes its own third record."""
    run = train_run(tiny, epochs=3)
    records = read_metrics(run)
    for ext in ("json", "npz"):
        os.remove(run / f"ckpt-000000015.{ext}")
    status, out, err = cli(["--load-file", run, "--epochs", "3", *tiny[3]])
    assert status == 0 and "Traceback" not in err, err
    aside = run / "metrics.after-step-10.jsonl"
    assert f"moved to {aside}" in out
    assert [json.loads(line) for line in aside.read_text().splitlines()] == records[2:]
    assert read_metrics(run)[:2] == records[:2] and len(read_metrics(run)) == 3


def test_a_symlinked_metrics_log_is_not_written_through(tiny, tmp_path):
    tmp, layers, params, common = tiny
    target = tmp_path / "precious.txt"
    target.write_text("the user's own file\n")
    run = tmp_path / "linked"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(target)
    status, _, err = cli([layers, params, *common, "--save-path", run, "--epochs", "1"])
    assert status == 2 and "is a symbolic link" in one_line(err)
    assert target.read_text() == "the user's own file\n"
    assert load_latest_checkpoint(run) is None


# ------------------------------------------------------------------ 2: the seed

def test_seed_beyond_int64_is_refused_before_training(tiny):
    tmp, layers, params, common = tiny
    status, out, err = cli([layers, params, *common, "--save-path", tmp / "big",
                            "--seed", 2 ** 63])
    assert status == 2 and "--seed must be in 0..2^63-1" in one_line(err)
    assert not (tmp / "big").exists() and "epoch" not in out


def test_largest_seed_trains_and_resumes(tiny):
    run = train_run(tiny, "seeded", 1, "--seed", 2 ** 63 - 1)
    status, out, err = cli(["--load-file", run, "--epochs", "2", *tiny[3]])
    assert status == 0 and "Traceback" not in err, err
    assert load_latest_checkpoint(run)[2]["seed"] == 2 ** 63 - 1


# ------------------------------------------------------------------ 4: one writer

def test_second_writer_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken(tiny):
    tmp, layers, params, common = tiny
    run = tmp / "shared"
    first = start([layers, params, *common, "--save-path", run, "--epochs", "100000",
                   "--save-interval", "0"])
    try:
        assert wait_until(lambda: bool(committed_steps(run)), first)
        for second in ([layers, params, *common, "--save-path", run],
                       ["--load-file", run, *common, "--epochs", "100001"]):
            status, _, err = cli(second)
            line = one_line(err)
            assert status == 1 and "another run is writing this folder" in line, err
            assert f"host {socket.gethostname()}, pid {first.pid}" in line
        first.send_signal(signal.SIGKILL)
        finish(first)
    finally:
        first.kill()
    assert (run / "convnet.lock").exists()  # a dead run's lock file stays behind
    with warnings.catch_warnings():  # the npz of a save the kill cut short
        warnings.simplefilter("ignore")
        step, _, state = load_latest_checkpoint(run)
    status, out, err = cli(["--load-file", run, *common, "--epochs", state["epoch"] + 1])
    assert status == 0 and "Traceback" not in err, err
    assert "resumed at" in out and load_latest_checkpoint(run)[0] > step
    assert f"taking over the lock of a run that ended without releasing it (host " \
           f"{socket.gethostname()}, pid {first.pid})" in err
    assert not (run / "convnet.lock").exists()


# ------------------------------------------------------------------ 5: never mixed, never lost

def test_a_new_run_into_another_runs_folder_is_refused(tiny):
    tmp, layers, params, common = tiny
    run = train_run(tiny, epochs=1)
    before = snapshot(run)
    status, out, err = cli([layers, params, *common, "--save-path", run, "--epochs", "2"])
    assert status == 2 and "holds another run's checkpoints (newest step 5)" in one_line(err)
    assert snapshot(run) == before and "epoch" not in out
    other = train_run(tiny, "other", 1)
    status, _, err = cli(["--load-file", other, "--save-path", run, *common, "--epochs", "2"])
    assert status == 2 and "holds another run's checkpoints" in one_line(err)
    assert snapshot(run) == before


def test_load_file_of_a_missing_folder_is_an_error_and_creates_nothing(tiny):
    tmp, layers, params, common = tiny
    missing = tmp / "mistyped"
    status, out, err = cli([params, "--load-file", missing, *common])
    assert status == 2 and "--load-file" in one_line(err) and "does not exist" in err
    assert not missing.exists() and "epoch" not in out


def test_resume_or_start_form_says_which_it_did(tiny):
    tmp, layers, params, common = tiny
    run = tmp / "scheduled"
    form = [layers, params, *common, "--load-file", run, "--save-path", run]
    status, out, err = cli([*form, "--epochs", "1"])
    assert status == 0 and "Traceback" not in err, err
    assert f"{run} holds no checkpoint yet: starting a new run there" in out
    status, out, err = cli([*form, "--epochs", "2"])
    assert status == 0 and "Traceback" not in err, err
    assert f"resuming the run in {run} from its checkpoint of step 5" in out
    assert max(committed_steps(run)) == 10


# ------------------------------------------------------------------ 15: SIGTERM anywhere

def sigterm_in(tiny, target, args):
    """Start convnet-train with `target` blocking, SIGTERM it there: (status, stderr)."""
    marker = tiny[0] / f"in-{target.rsplit('.', 1)[-1]}"
    proc = start(args, prelude=BLOCK_PRELUDE.format(target=target, marker=str(marker)))
    try:
        assert wait_until(marker.exists, proc, timeout=120)
        proc.send_signal(signal.SIGTERM)
        status, _, err = finish(proc)
    finally:
        proc.kill()
    return status, err


def test_sigterm_during_test_only_exits_130(tiny):
    run = train_run(tiny)
    status, err = sigterm_in(tiny, "convnet.data.provider:Provider.test_batches",
                             ["--load-file", run, "--test-only", *tiny[3]])
    assert status == 130 and "interrupted" in one_line(err)


def test_sigterm_during_data_loading_exits_130(tiny):
    tmp, layers, params, common = tiny
    status, err = sigterm_in(tiny, "convnet.data.provider:load_cifar_batches",
                             [layers, params, *common, "--save-path", tmp / "new"])
    assert status == 130 and "interrupted" in one_line(err)
    assert not (tmp / "new").exists()


def test_sigterm_during_write_features_exits_130(tiny):
    run = train_run(tiny)
    status, err = sigterm_in(tiny, "convnet.data.provider:Provider.test_batches",
                             ["--load-file", run, "--write-features", "fc10", "--feature-path",
                              tiny[0] / "features", *tiny[3]])
    assert status == 130 and "interrupted" in one_line(err)
