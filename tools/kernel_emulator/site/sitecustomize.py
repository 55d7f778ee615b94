"""Runs at the start of every Python process that has this folder on PYTHONPATH (run.py puts it
there): with CONVNET_EMULATED_C set, the CuPy stand-in comes first on sys.path and the emulated
module at that path becomes convnet._C, so the cuda backend runs on the CPU emulator, in the
process and in the Python processes it starts (a CLI test's subprocess included)."""
import os
import sys

if os.environ.get("CONVNET_EMULATED_C"):
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(_here, "..", "cupy_standin"))
    sys.path.insert(0, os.path.join(_here, ".."))
    import emulator

    emulator.install(os.environ["CONVNET_EMULATED_C"])
