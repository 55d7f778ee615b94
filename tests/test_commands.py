"""The commands as a newcomer meets them: --version, `python -m convnet`, the shipped nets by
name (--list-nets) and the README's layers/... paths from any directory."""
import subprocess
import sys
from pathlib import Path

import pytest

import convnet
from convnet.apps import nets

ROOT = Path(__file__).resolve().parent.parent


def run(args, cwd):
    return subprocess.run([sys.executable, "-m", "convnet", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("command", ["train", "show", "retrieve", "prepare"])
def test_each_command_says_its_version(command, tmp_path):
    done = run([command, "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"convnet-{command} {convnet.__version__} (cuda-convnet)")


def test_python_m_convnet_without_a_command_is_usage_and_exit_2(tmp_path):
    done = run([], tmp_path)
    assert done.returncode == 2 and "python -m convnet {train,show,retrieve,prepare}" in done.stderr
    assert run(["frobnicate"], tmp_path).returncode == 2


def test_list_nets_names_every_shipped_pair(tmp_path):
    done = run(["train", "--list-nets"], tmp_path)
    assert done.returncode == 0, done.stderr
    names = {line.split()[0] for line in done.stdout.splitlines()[:-1]}
    want = {p.name[:-len("-params.cfg")] for p in (ROOT / "layers").glob("*-params.cfg")}
    assert names == want and "fashion" in names
    assert "The default demo" in done.stdout


@pytest.mark.parametrize("files", [["fashion"], ["layers/fashion.cfg", "layers/fashion-params.cfg"]])
def test_a_shipped_net_runs_from_any_directory(files, tmp_path):
    done = run(["train", *files, "--describe"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "857,738" in done.stdout  # fashion's parameter count


def test_a_file_of_that_name_here_wins_over_the_shipped_net(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = nets.expand(["layers/fashion.cfg", "p.cfg"])
    assert shipped == [str(nets.shipped_dir() / "fashion.cfg"), "p.cfg"]
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "fashion.cfg").write_text("[data]\ntype=data\n")
    assert nets.expand(["layers/fashion.cfg", "p.cfg"]) == ["layers/fashion.cfg", "p.cfg"]
    (tmp_path / "fashion").write_text("")
    assert nets.expand(["fashion"]) == ["fashion"]


def test_a_mistyped_name_is_still_a_missing_file(tmp_path):
    done = run(["train", "fashon", "--describe"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
