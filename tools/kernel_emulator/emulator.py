"""Build csrc/conv.cu and csrc/local.cu for the CPU emulator (libemu.so) and call them.

    python tools/kernel_emulator/emulator.py CSRC OUT_DIR     # builds OUT_DIR/libemu.so

build() copies the conv sources into OUT_DIR/src, rewrites every kernel launch
`kernel<<<grid, block, smem, stream>>>(args);` into `emu::launch(grid, block, smem, stream)([&] {
kernel(args); });` and compiles them with g++ against include/cuda_runtime.h and emu.cpp.
Emulator wraps the library with ctypes; see README.md.
"""
import argparse
import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
UNITS = ("conv.cu", "local.cu")
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.+?)>>>\((.*?)\);", re.S)
OPS = tuple(f"{kind}_{pass_}" for kind in ("conv", "local")
            for pass_ in ("forward", "backward_data", "backward_filter"))
ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}
GUARDS = {"after": 0, "before": 1}  # where an allocation's protected page is


def build(csrc, out_dir, cxx="g++", opt="-O1", jobs=2):
    """Build out_dir/libemu.so from the kernels in csrc; returns its path."""
    csrc, out_dir = Path(csrc), Path(out_dir)
    src = out_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for path in [csrc / "conv.h", *csrc.glob("*.cuh"), *(csrc / unit for unit in UNITS)]:
        text = LAUNCH.sub(r"emu::launch(\2)([&] { \1(\3); });", path.read_text())
        if "<<<" in text:
            raise RuntimeError(f"{path}: a kernel launch the emulator could not rewrite")
        (src / path.name).write_text(text)
    flags = [*opt.split(), "-std=c++17", "-fPIC", f"-I{HERE / 'include'}", f"-I{src}", "-Wall",
             "-Wno-unknown-pragmas", "-Wno-unused-function"]
    compiles = [([*flags, "-x", "c++", "-c", str(src / unit)], out_dir / f"{unit}.o")
                for unit in UNITS] + [([*flags, "-c", str(HERE / "emu.cpp")], out_dir / "emu.o")]
    running = []
    for args, obj in compiles:  # at most `jobs` compilers at a time
        if len(running) >= jobs:
            _wait(running.pop(0))
        running.append(subprocess.Popen([cxx, *args, "-o", str(obj)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    for proc in running:
        _wait(proc)
    library = out_dir / "libemu.so"
    _wait(subprocess.Popen([cxx, "-shared", "-o", str(library), *(str(o) for _, o in compiles)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return library


def _wait(proc):
    output = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(f"{' '.join(proc.args)} failed:\n{output}")


class Emulator:
    """libemu.so through ctypes. Each op takes NumPy float32 arrays and returns a new array."""

    def __init__(self, library):
        lib = self.lib = ctypes.CDLL(str(library))
        lib.emu_alloc.restype = ctypes.c_void_p
        lib.emu_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int]
        lib.emu_free.argtypes = [ctypes.c_void_p]
        lib.emu_error.restype = ctypes.c_char_p
        lib.emu_config.argtypes = [ctypes.c_int] * 3
        lib.emu_set_occupancy.argtypes = [ctypes.c_int]
        lib.emu_live_allocations.restype = ctypes.c_long
        lib.emu_launches_run.restype = ctypes.c_long
        lib.emu_blocks_run.restype = ctypes.c_long
        lib.emu_fastdiv_check.restype = ctypes.c_long
        lib.emu_fastdiv_check.argtypes = [ctypes.c_int] * 3
        for op in OPS:
            getattr(lib, f"emu_{op}").argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 11

    def configure(self, order="shuffled", seed=0, sms=2):
        """Thread order within a block, its seed, and the SM count the kernels see."""
        self.lib.emu_config(ORDERS[order], seed, sms)

    def run(self, op, a, b, out_shape, dims, guard="after"):
        """op(a, b) -> out for ConvShape dims (N, C, H, W, F, fs, OH, OW, stride, padding, groups).
        Every buffer sits against a protected page (guard "after" or "before" it); `out` starts as
        NaN. Raises ValueError for a rejected shape or setting, RuntimeError for other errors."""
        buffers = []
        try:
            for shape in (a.shape, b.shape, out_shape):
                buffers.append(self._buffer(shape, GUARDS[guard]))
            buffers[0][1][...] = a
            buffers[1][1][...] = b
            rc = getattr(self.lib, f"emu_{op}")(*(ptr for ptr, _ in buffers), *dims)
            if rc:
                raise (ValueError if rc == 1 else RuntimeError)(self.lib.emu_error().decode())
            return buffers[2][1].copy()
        finally:
            for ptr, _ in buffers:
                self.lib.emu_free(ptr)

    def _buffer(self, shape, guard):
        """(address, float32 view) of NaN-filled memory against a protected page."""
        size = int(np.prod(shape))
        ptr = self.lib.emu_alloc(max(size, 1) * 4, guard)
        if not ptr:
            raise MemoryError(f"emu_alloc of {size} floats failed")
        view = np.ctypeslib.as_array((ctypes.c_float * max(size, 1)).from_address(ptr))
        return ptr, view[:size].reshape(shape)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csrc", help="the csrc folder with conv.cu, local.cu, conv.h and *.cuh")
    parser.add_argument("out_dir", help="where src/, the objects and libemu.so are written")
    parser.add_argument("--cxx", default="g++", help="the C++ compiler (default g++)")
    parser.add_argument("--opt", default="-O1", help="optimisation flag (default -O1)")
    args = parser.parse_args(argv)
    print(build(args.csrc, args.out_dir, args.cxx, args.opt))


if __name__ == "__main__":
    sys.exit(main())
