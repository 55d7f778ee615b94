"""Run a Python command with convnet's GPU half on the CPU emulator.

    python tools/kernel_emulator/run.py -m pytest -q -m cuda tests     # the cuda tests (CI)
    python tools/kernel_emulator/run.py --module PATH -m pytest ...     # a module built elsewhere

Builds the emulated convnet._C (emulator.py; cached in build/emulator), then runs
`python ARGS` with CONVNET_EMULATED_C naming it and site/ first on PYTHONPATH, whose
sitecustomize puts the CuPy stand-in (cupy_standin/) and the emulated module in place, in that
process and in the Python processes it starts. CONVNET_SMALL_SHAPES=1 is set too, so tests skip
or shrink the shapes the emulator would take minutes on (as under compute-sanitizer).
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import emulator  # noqa: E402


def environment(module):
    env = dict(os.environ, CONVNET_EMULATED_C=str(module), CONVNET_SMALL_SHAPES="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE / "site"), str(emulator.ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def main(argv):
    module = None
    if argv[:1] == ["--module"]:
        module, argv = argv[1], argv[2:]
    if module is None:
        module = emulator.build()
    return subprocess.call([sys.executable, *argv], env=environment(module))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
