import os
import sys

import numpy as np
import pytest

# Set by the emulated GPU run (tools/kernel_emulator/run.py) and the compute-sanitizer runs of
# benchmarks/gpu_run.sh: tests and cases marked `big` (AlexNet-sized shapes) are skipped there.
SMALL_SHAPES = bool(os.environ.get("CONVNET_SMALL_SHAPES"))


def pytest_collection_modifyitems(config, items):
    if not SMALL_SHAPES:
        return
    skip = pytest.mark.skip(reason="CONVNET_SMALL_SHAPES is set: a shape too large for the "
                                   "emulator or a sanitizer")
    for item in items:
        if "big" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cwd_outside_the_checkout(tmp_path_factory, monkeypatch):
    """Every test runs in a fresh empty folder of its own: a convnet-train without --save-path
    writes its run folder (runs/NET-TIME) there, not into the checkout. Tests reach the repo's
    files through their absolute paths (REPO, ROOT)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def rng(request):
    """A fresh random generator per test, seeded from the test's name and time, printed on failure."""
    import time
    seed = int(time.time_ns() % (2**32))
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def emulator_controls():
    """The kernel emulator's knobs and counters (tools/kernel_emulator/emulator.py's Controls) in
    the emulated convnet._C; the test is skipped on a GPU. The sanitizer subset leaves out the
    tests that use it (tools/kernel_emulator/sanitize_subset.py)."""
    path = os.environ.get("CONVNET_EMULATED_C")
    if not path:
        pytest.skip("needs the kernel emulator (its launch counters and device knobs)")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "kernel_emulator"))
    import emulator

    return emulator.Controls(path)
