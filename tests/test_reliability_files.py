"""Issue 18, item 3: a file error is one line with the right exit status (2: an option names a
path that cannot be used, found before anything runs; 1: a write failed mid-run), and the last
good checkpoint and every metrics record are kept. A full disk is injected (ENOSPC at the
checkpoint's .npz or .json write) and, where a tmpfs can be mounted, real."""
import os
import warnings

import pytest

from convnet.training.checkpoint import load_latest_checkpoint, read_metrics
from run_helpers import (ENOSPC_PRELUDE, cli, one_line, read_only_copy, small_tmpfs, snapshot,
                         tiny, train_run)

assert tiny  # a fixture, used by name


def assert_full_disk_kept_step_5(run, status, out, err):
    line = one_line(err)
    assert status == 1, err
    assert "No space left on device" in line and "last good checkpoint (step 5) is kept" in line
    with warnings.catch_warnings():  # the .npz of step 10 when its .json write failed
        warnings.simplefilter("ignore")
        assert load_latest_checkpoint(run)[0] == 5
    assert len(read_metrics(run)) == 2  # both tests' records: the second ran before its save
    assert not [n for n in os.listdir(run) if ".tmp-" in n]


@pytest.mark.parametrize("file", [".npz", ".json"])
def test_enospc_in_a_checkpoint_write_is_one_line_exit_1_keeping_the_last_one(tiny, file):
    """The second checkpoint's .npz (or .json, its commit mark) meets a full disk: one line
    naming the file, exit 1, step 5 kept; the run resumes from it."""
    tmp, layers, params, common = tiny
    run = tmp / "full"
    status, out, err = cli([layers, params, *common, "--save-path", run, "--epochs", "3"],
                           prelude=ENOSPC_PRELUDE.format(pattern=file, nth=2))
    assert_full_disk_kept_step_5(run, status, out, err)
    assert f"{run}/ckpt-000000010{file}" in err
    status, out, err = cli(["--load-file", run, *common, "--epochs", "3"])
    assert status == 0 and "resumed at epoch 2 batch 0 (step 5)" in out, err


def test_a_real_full_disk_is_one_line_exit_1(tiny, tmp_path):
    """A tmpfs with room for one checkpoint of the tiny net (246 KB) but not two."""
    tmp, layers, params, common = tiny
    with small_tmpfs(tmp_path / "small", "400k") as small:
        run = small / "run"
        status, out, err = cli([layers, params, *common, "--save-path", run, "--epochs", "3"])
        assert_full_disk_kept_step_5(run, status, out, err)


def test_read_only_save_path_is_refused_before_training(tiny, tmp_path):
    run = train_run(tiny)
    with read_only_copy(run, tmp_path / "ro") as ro:
        before = snapshot(ro)
        status, out, err = cli(["--load-file", ro, *tiny[3], "--epochs", "2"])
        assert status == 2 and "not writable" in one_line(err), err
        assert "epoch" not in out and snapshot(ro) == before


def test_save_path_naming_a_file_is_refused(tiny):
    tmp, layers, params, common = tiny
    (tmp / "a-file").write_text("keep me\n")
    status, _, err = cli([layers, params, *common, "--save-path", tmp / "a-file"])
    assert status == 2 and "is a file, not a folder" in one_line(err)
    assert (tmp / "a-file").read_text() == "keep me\n"


def test_feature_path_naming_a_file_is_refused_before_the_features_run(tiny):
    tmp, layers, params, common = tiny
    (tmp / "a-file").write_text("keep me\n")
    status, out, err = cli([layers, params, *common, "--write-features", "fc10",
                            "--feature-path", tmp / "a-file", "--data-path", tmp / "none"])
    assert status == 2 and "--feature-path" in one_line(err) and "is a file" in err
    assert (tmp / "a-file").read_text() == "keep me\n"


def test_metrics_log_that_is_a_folder_is_refused(tiny):
    tmp, layers, params, common = tiny
    run = tmp / "odd"
    (run / "metrics.jsonl").mkdir(parents=True)
    status, _, err = cli([layers, params, *common, "--save-path", run])
    assert status == 2 and "metrics.jsonl: is not a file" in one_line(err)
    assert load_latest_checkpoint(run) is None


def test_test_out_into_a_missing_folder_is_refused_before_the_test(tiny):
    """--data-path of a folder that does not exist: the refusal comes before any data is
    read (it came after the whole test had run)."""
    run = train_run(tiny)
    tmp, _, _, common = tiny
    status, out, err = cli(["--load-file", run, "--test-only", *common, "--data-path",
                            tmp / "none", "--test-out", tmp / "missing" / "probs.npy"])
    assert status == 2 and "--test-out" in one_line(err) and "does not exist" in err
    assert "test cost" not in out
