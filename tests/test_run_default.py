"""convnet-train without --save-path saves in runs/<net>-<YYYYmmdd-HHMMSS> under the current
folder and says where; convnet-show and --load-file work on that folder."""
import os
import time

from convnet.apps import cli, show
from convnet.training.checkpoint import has_committed_checkpoints, read_metrics
from convnet.training.run_folder import new_run_folder
from test_reliability import TINY_LAYERS, TINY_PARAMS, write_cifar, write_net


def test_the_folder_is_named_after_the_net_and_the_time(tmp_path):
    now = time.mktime((2026, 12, 2, 21, 5, 9, 0, 0, -1))
    assert new_run_folder("layers/fashion.cfg", now=now) == os.path.join("runs",
                                                                         "fashion-20261202-210509")
    assert new_run_folder("/x/layers-18pct.cfg", str(tmp_path), now).endswith(
        "18pct-20261202-210509")
    (tmp_path / "18pct-20261202-210509").mkdir()
    assert new_run_folder("layers-18pct.cfg", str(tmp_path), now).endswith("-210509-2")


def test_a_run_without_save_path_writes_a_folder_show_and_resume_use(tmp_path, capsys):
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS, name="tiny")
    common = ["--data-provider", "cifar", "--data-path", str(cifar), "--mini", "8",
              "--train-range", "1", "--backend", "numpy"]
    assert cli.main([layers, params, "--epochs", "1"] + common) == 0
    out = capsys.readouterr().out
    made = os.listdir("runs")
    assert len(made) == 1 and made[0].startswith("tiny-"), made
    run = os.path.join("runs", made[0])
    assert f"convnet-train: saving the run in {run} (no --save-path given)" in out
    assert has_committed_checkpoints(run) and len(read_metrics(run)) == 1
    assert not os.path.exists(os.path.join(run, "convnet.lock"))

    assert show.main([run, "--show-cost", "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "cost.png").is_file()
    assert cli.main(["--load-file", run, "--epochs", "2"] + common) == 0
    out = capsys.readouterr().out
    assert "saving the run in" not in out and "resumed at epoch 2" in out
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert os.listdir("runs") == made  # resumed in place, no second folder


def test_reading_commands_make_no_run_folder(tmp_path, capsys):
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    assert cli.main([layers, params, "--describe", "--data-provider", "cifar"]) == 0
    assert not os.path.exists("runs")


def test_a_refused_run_leaves_no_folder_and_names_none(tmp_path, capsys):
    layers, params = write_net(tmp_path / "net", TINY_LAYERS.replace("outputs=10", "outputs=0"),
                               TINY_PARAMS)
    assert cli.main([layers, params, "--data-provider", "cifar", "--backend", "numpy"]) == 2
    captured = capsys.readouterr()
    assert "saving the run in" not in captured.out
    assert os.listdir("runs") == [] if os.path.exists("runs") else True
