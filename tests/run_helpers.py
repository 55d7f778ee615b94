"""Helpers of the issue-18 run-folder tests (test_reliability_runs.py, test_reliability_files.py,
test_reliability_input.py): convnet-train or convnet-show as a subprocess, optionally with a few
lines of Python run first (a fault injected, a hook that blocks, a memory limit), and folders
made read-only or small where this machine lets a test mount one."""
import contextlib
import os
import shutil
import subprocess
import sys

import pytest

from test_reliability import (REPO, TINY_LAYERS, TINY_PARAMS, one_error_line, subprocess_env,
                              write_cifar, write_net)

PRELUDE_RUNNER = """\
import runpy, sys
exec(sys.argv.pop(1))
sys.argv[0] = sys.argv.pop(1)
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def command(args, module="convnet.apps.cli", prelude=None):
    """The argv running `module` with `args`, after `prelude` (Python source) if given."""
    args = [str(a) for a in args]
    if prelude is None:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, "-c", PRELUDE_RUNNER, prelude, module, *args]


def cli(args, module="convnet.apps.cli", prelude=None, **kw):
    """Run the command to its end: (exit status, stdout, stderr)."""
    kw.setdefault("cwd", os.getcwd())  # the test's own folder (conftest)
    done = subprocess.run(command(args, module, prelude), env=subprocess_env(),
                          capture_output=True, text=True, **kw)
    return done.returncode, done.stdout, done.stderr


def start(args, module="convnet.apps.cli", prelude=None):
    return subprocess.Popen(command(args, module, prelude), env=subprocess_env(), cwd=os.getcwd(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


one_line = one_error_line  # the one stderr line of a refused convnet-train


@pytest.fixture
def tiny(tmp_path):
    """CIFAR batches and the tiny net: (tmp_path, layers, params, the common options)."""
    cifar = write_cifar(tmp_path / "cifar")
    layers, params = write_net(tmp_path / "net", TINY_LAYERS, TINY_PARAMS)
    common = ["--data-provider", "cifar", "--data-path", str(cifar), "--mini", "8",
              "--train-range", "1", "--backend", "numpy"]
    return tmp_path, layers, params, common


def train_run(tiny, name="run", epochs=1, *extra):
    """A finished run of the tiny net (one checkpoint and one metrics record per epoch)."""
    tmp, layers, params, common = tiny
    run = tmp / name
    status, out, err = cli([layers, params, *common, "--save-path", run, "--epochs", epochs,
                            "--save-interval", "100000", *extra])
    assert status == 0, err
    return run


def snapshot(folder):
    """{name: bytes} of every file in `folder` (the run as the user has it)."""
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder))
            if (folder / n).is_file()}


def mount(args):
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextlib.contextmanager
def read_only_copy(folder, where):
    """`folder` copied to `where`, read-only to this user: chmod for a user, a read-only bind
    mount for root (whom permissions do not stop); skipped where neither is possible."""
    shutil.copytree(folder, where)
    if os.geteuid() != 0:
        for name in os.listdir(where):
            os.chmod(where / name, 0o444)
        os.chmod(where, 0o555)
        try:
            yield where
        finally:
            os.chmod(where, 0o755)
        return
    done = mount(["--bind", str(where), str(where)])
    if done.returncode != 0:
        pytest.skip(f"root cannot make a read-only folder here: mount --bind: {done.stderr}")
    try:
        done = mount(["-o", "remount,bind,ro", str(where)])
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr}")
        yield where
    finally:
        mount_off(where)


def mount_off(where):
    subprocess.run(["umount", str(where)], capture_output=True)


@contextlib.contextmanager
def small_tmpfs(where, size):
    """A tmpfs of `size` at `where`; skipped (with mount's reason) where it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    done = mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        mount_off(where)


# A prelude making the Nth file opened for writing by the checkpoint code whose name holds
# PATTERN fail at its first write with ENOSPC, as a full disk does.
ENOSPC_PRELUDE = """\
import builtins, errno, os
import convnet.training.checkpoint as ck
PATTERN, NTH, seen = {pattern!r}, {nth}, [0]
class Full:
    def __init__(self, f, name): self._f, self._name = f, name
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
    def __getattr__(self, attr): return getattr(self._f, attr)
    def __enter__(self): return self
    def __exit__(self, *exc): self._f.close()
def full_open(path, mode="r", *a, **k):
    f = builtins.open(path, mode, *a, **k)
    if "w" in mode and PATTERN in os.path.basename(str(path)):
        seen[0] += 1
        if seen[0] >= NTH:
            return Full(f, str(path))
    return f
ck.open = full_open
"""

# A prelude making MODULE:OWNER.ATTR (a function or method) create MARKER and then sleep: the
# command is then inside that phase (a test, data loading, features) as long as the test needs.
BLOCK_PRELUDE = """\
import importlib, time
module, path = {target!r}.split(":")
owner = importlib.import_module(module)
*owners, attr = path.split(".")
for name in owners:
    owner = getattr(owner, name)
def blocked(*a, **k):
    open({marker!r}, "w").close()
    time.sleep(600)
setattr(owner, attr, blocked)
"""

# A prelude limiting the address space: a regression that allocates instead of checking fails
# with MemoryError here instead of taking the machine down.
LIMIT_PRELUDE = """\
import resource
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
"""
