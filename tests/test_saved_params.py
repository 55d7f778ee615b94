"""Checkpoints carry the params file's text: a resume re-reads the params file when it is there
(cuda-convnet's edit-and-resume), else uses the saved text, and says which; convnet-show rebuilds
a moved run from the saved text."""
import os

import pytest

from convnet.apps import cli, show
from convnet.training.checkpoint import load_latest_checkpoint, save_checkpoint
from convnet.training.saved_run import check_resumable
from test_reliability import TINY_LAYERS, TINY_PARAMS, write_cifar, write_net


@pytest.fixture
def run(tmp_path, capsys):
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    common = ["--data-provider", "cifar", "--data-path", str(cifar), "--mini", "8",
              "--train-range", "1", "--backend", "numpy"]
    folder = str(tmp_path / "run")
    assert cli.main([layers, params, "--epochs", "1", "--save-path", folder] + common) == 0
    capsys.readouterr()
    return folder, params, common


def newest_state(folder):
    return load_latest_checkpoint(folder, check=check_resumable)[2]


def test_the_checkpoint_holds_the_params_text(run):
    folder, params, _ = run
    state = newest_state(folder)
    assert state["params_cfg"] == open(params).read()
    assert state["params_file"] == os.path.abspath(params)


def test_resume_rereads_an_edited_params_file_and_says_so(run, capsys):
    folder, params, common = run
    edited = TINY_PARAMS.replace("epsW=0.000001", "epsW=0.000002")
    with open(params, "w") as f:
        f.write(edited)
    assert cli.main(["--load-file", folder, "--epochs", "2"] + common) == 0
    out = capsys.readouterr().out
    assert f"params: re-reading {os.path.abspath(params)} (edit-and-resume)" in out, out
    assert newest_state(folder)["params_cfg"] == edited


def test_resume_without_the_params_file_uses_the_saved_text(run, capsys):
    folder, params, common = run
    os.remove(params)
    assert cli.main(["--load-file", folder, "--epochs", "2"] + common) == 0
    out = capsys.readouterr().out
    assert (f"params: {os.path.abspath(params)} is gone; using the copy saved in the "
            f"checkpoint") in out, out
    state = newest_state(folder)
    assert state["epoch"] == 3 and state["params_cfg"] == TINY_PARAMS


def test_show_preds_of_a_run_whose_params_file_is_gone(run, tmp_path, capsys):
    folder, params, common = run
    os.remove(params)
    assert show.main([folder, "--show-preds", "--num-preds", "4", "--out", str(tmp_path / "f"),
                      "--data-provider", "cifar", "--data-path", common[3],
                      "--backend", "numpy"]) == 0
    assert (tmp_path / "f" / "preds.png").is_file()


def test_an_older_checkpoint_without_the_text_and_without_the_file_is_one_line(run, capsys):
    folder, params, common = run
    step, arrays, state = load_latest_checkpoint(folder, check=check_resumable)
    del state["params_cfg"]
    save_checkpoint(folder, step + 1, arrays, dict(state, step=step + 1))
    os.remove(params)
    assert cli.main(["--load-file", folder, "--epochs", "2"] + common) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"convnet-train: error: {folder}: the run's params file "
                   f"{os.path.abspath(params)} is missing and its checkpoint holds no copy of "
                   f"it; pass the params file"), err
