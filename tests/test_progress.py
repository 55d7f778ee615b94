"""Progress (convnet/training/progress.py): a bar with the running cost and images/s on a
terminal, one log line every --log-interval seconds otherwise, on training, tests, multiview
tests and feature writing; every line through the `convnet` logger."""
import io
import logging

import pytest

from convnet.apps.cli import main
from convnet.training.progress import Progress
from test_reliability import TINY_LAYERS, TINY_PARAMS, write_cifar, write_net


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_pipe_gets_log_lines_with_cost_and_images_per_second():
    out = io.StringIO()
    with Progress("epoch 1", 3, out, interval=0) as bar:
        for _ in range(3):
            bar.update(8, cost=2.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[-1].startswith("epoch 1: 3/3 batches, cost 2.5000, ")
    assert lines[-1].endswith(" img/s")


def test_a_long_interval_keeps_a_pipe_quiet_and_none_out_is_silent():
    out = io.StringIO()
    with Progress("test", 50, out, interval=3600) as bar:
        for _ in range(50):
            bar.update(8, cost=1.0)
    assert out.getvalue() == ""
    with Progress("test", 2, None, interval=0) as bar:  # no out: nowhere to write
        bar.update(8, cost=1.0)
    assert bar.bar is None


def test_the_bar_postfix_carries_the_cost_and_rate(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    out = Terminal()
    bar = Progress("epoch 1", 4, out, interval=0)
    assert bar.bar is not None
    bar.update(8, cost=0.1234)
    postfix = bar.bar.postfix
    bar.close()
    assert "cost 0.1234" in postfix and "img/s" in postfix, postfix


@pytest.fixture
def tiny(tmp_path):
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    return [layers, params, "--data-provider", "cifar", "--data-path", str(cifar), "--mini",
            "8", "--train-range", "1", "--backend", "numpy", "--epochs", "1",
            "--log-interval", "0"]


def test_training_and_its_test_log_progress_lines_and_the_logger_sees_them(tiny, tmp_path,
                                                                           capsys):
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("convnet").addHandler(handler)
    try:
        assert main(tiny + ["--save-path", str(tmp_path / "run")]) == 0
    finally:
        logging.getLogger("convnet").removeHandler(handler)
    out = capsys.readouterr().out.splitlines()
    train = [line for line in out if line.startswith("epoch 1: ")]
    test = [line for line in out if line.startswith("test: ")]
    assert [line.split(",")[0] for line in train] == [f"epoch 1: {k}/5 batches"
                                                      for k in range(1, 6)], out
    assert all(" cost " in line and line.endswith(" img/s") for line in train + test), out
    assert test and test[-1].startswith("test: 5/5 batches, cost "), out
    final = [line for line in out if line.startswith("test error (top-1)")]
    assert final and final[0] in seen  # the console's lines are the logger's records
    assert any(line.startswith("epoch 1 batch 5: train cost") for line in seen)


def test_multiview_test_and_feature_writing_show_progress(tiny, tmp_path, capsys):
    cropped = list(tiny)
    layers = (tmp_path / "net" / "net.cfg").read_text().replace("imgSize=32", "imgSize=24")
    (tmp_path / "net" / "crop.cfg").write_text(layers)
    cropped[0] = str(tmp_path / "net" / "crop.cfg")
    assert main(cropped + ["--test-only", "--multiview-test", "--inner-size", "24"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("multiview test: 5/5 batches, cost ") for line in out), out
    assert main(tiny + ["--write-features", "fc10", "--feature-path",
                        str(tmp_path / "feats")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("features of fc10: 5/5 batches, ") and line.endswith("img/s")
               for line in out), out


def test_log_interval_below_zero_is_one_line(tiny, capsys):
    assert main(tiny + ["--log-interval", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "convnet-train: error: --log-interval must be >= 0 seconds, got -1.0"
