"""Build convnet._C for the CPU emulator: every kernel in csrc/ and the same pybind11 bindings.

    python tools/kernel_emulator/emulator.py [--out DIR]     # prints the module's path

build() copies csrc into OUT/src, rewrites every kernel launch
`kernel<<<grid, block, smem, stream>>>(args);` into
`emu::launch(grid, block, smem, stream)([&] { kernel(args); });` (with `.of(kernel)` before
the lambda where smem is not 0), and compiles each unit with g++
against include/ (the CUDA stand-in) and emu.cpp (the scheduler). Objects are cached by the
hash of their text, so a rebuild after one change (or a planted bug) recompiles one unit.
Controls(path) reaches the emulator's knobs in the built module through ctypes. See README.md.
"""
import argparse
import ctypes
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = ROOT / "build" / "emulator"
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.+?)>>>\((.*?)\);", re.S)
ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}
DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+(?:\s+\w+)*?)\s+"
                            r"(\w+)\s*\[\s*\]\s*;")
# A kernel's definition, up to the brace that opens its body (launch bounds nest parentheses
# two deep: __launch_bounds__(Cfg::THREADS, (built_min_blocks<Cfg, Op>())))
_PARENS = r"\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)"
KERNEL = re.compile(r"(__global__\s+void\s+(?:__launch_bounds__\s*" + _PARENS +
                    r"\s*)?(\w+)\s*\([^{;]*\)\s*\{)")


def _launch(m):
    """One launch; with dynamic shared memory (a third configuration argument other than 0) it
    names its kernel, whose cudaFuncSetAttribute limit the launch then checks."""
    kernel, config, args = m.groups()
    depth, parts, start = 0, [], 0
    for i, ch in enumerate(config):  # the arguments, split at the top level's commas
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(config[start:i])
            start = i + 1
    parts.append(config[start:])
    named = f".of({kernel})" if len(parts) >= 3 and parts[2].strip() != "0" else ""
    return f"emu::launch({config}){named}([&] {{ {kernel}({args}); }});"


def rewrite(text, name="source"):
    """`text` with every `kernel<<<...>>>(args);` turned into an emulator launch, each
    `extern __shared__` array into the launch's dynamic shared memory, and every kernel's body
    opened by EMU_KERNEL_ENTRY (which records that it ran: kernel_map.py)."""
    text = LAUNCH.sub(_launch, text)
    if "<<<" in text:
        raise RuntimeError(f"{name}: a kernel launch the emulator could not rewrite")
    text = DYNAMIC_SHARED.sub(r"\1* \2 = reinterpret_cast<\1*>(emu::dynamic_shared());", text)
    text, kernels = KERNEL.subn(r'\1 EMU_KERNEL_ENTRY("\2");', text)
    if kernels != text.count("__global__"):
        raise RuntimeError(f"{name}: a __global__ function the emulator could not instrument")
    return text


def kernel_names(csrc=ROOT / "csrc"):
    """The name of every kernel defined in csrc (the .cu files and their headers)."""
    return sorted({m.group(2) for path in sorted([*Path(csrc).glob("*.cu"),
                                                  *Path(csrc).glob("*.cuh")])
                   for m in KERNEL.finditer(path.read_text())})


def _flags(src, opt):
    return [*opt.split(), "-std=c++17", "-fPIC", f"-I{HERE / 'include'}", f"-I{src}", "-Wall",
            "-Wno-unknown-pragmas", "-Wno-unused-function", "-Wno-unused-variable"]


def _module_flags():
    import pybind11

    return [f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}",
            "-fvisibility=hidden", "-DCONVNET_WITH_CUDA", '-DCONVNET_CUDA_ARCHITECTURES="emulated"']


def build(csrc=ROOT / "csrc", out_dir=DEFAULT_OUT, units=None, module=True, cxx="g++",
          opt="-O1", jobs=2, cache=None):
    """Build the emulated convnet._C from csrc (module=True: csrc/*.cu and bindings.cpp), or a
    shared library of `units` (.cu files, e.g. tools' test kernels) with emu.cpp. Returns its
    path. `cache` (default out_dir/obj) holds objects by content hash."""
    csrc, out_dir = Path(csrc), Path(out_dir)
    src = out_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else out_dir / "obj"
    cache.mkdir(parents=True, exist_ok=True)
    headers = sorted([*csrc.glob("*.h"), *csrc.glob("*.cuh")])
    units = sorted(csrc.glob("*.cu")) if units is None else [Path(u) for u in units]
    for path in [*headers, *units]:
        text = rewrite(path.read_text(), str(path))
        target = src / path.name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    flags = _flags(src, opt) + (_module_flags() if module else [])
    compiles = [(src / u.name, ["-x", "c++"]) for u in units]
    compiles.append((HERE / "emu.cpp", []))
    if module:
        compiles.append((csrc / "bindings.cpp", []))
    objects, pending = [], []
    for path, lang in compiles:
        texts = [path.read_text(), *(h.read_text() for h in _headers(path, [src, HERE / "include"]))]
        # the key leaves out where the sources were copied: builds of other trees share objects
        args = [a.replace(str(src), "SRC") for a in flags]
        key = hashlib.sha256("\0".join([cxx, *args, *lang, *texts]).encode()).hexdigest()[:20]
        obj = cache / f"{path.stem}-{key}.o"
        objects.append(obj)
        if not obj.exists():
            pending.append(([cxx, *flags, *lang, "-c", str(path), "-o", f"{obj}.tmp"], obj))
    running = []
    try:
        for args, obj in pending:  # at most `jobs` compilers at a time
            if len(running) >= jobs:
                _finish(*running.pop(0))
            running.append((subprocess.Popen(args, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True), obj))
        while running:
            _finish(*running.pop(0))
    finally:
        for proc, _ in running:  # after a failure: let the others end before raising
            proc.communicate()
    name = "_C" + sysconfig.get_config_var("EXT_SUFFIX") if module else "libemu.so"
    library = out_dir / name
    _finish(subprocess.Popen([cxx, "-shared", "-o", f"{library}.tmp", *map(str, objects)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
            library)
    return library


INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def _headers(path, dirs, seen=None):
    """The project headers `path` includes, directly or not (sorted): what its object's key
    covers, so a change to one header rebuilds only the units that include it."""
    seen = set() if seen is None else seen
    for name in INCLUDE.findall(path.read_text()):
        for d in dirs:
            header = d / name
            if header.is_file() and header not in seen:
                seen.add(header)
                _headers(header, dirs, seen)
                break
    return sorted(seen)


def _finish(proc, target):
    output = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(f"{' '.join(proc.args)} failed:\n{output}")
    Path(f"{target}.tmp").replace(target)  # never a half-written object or library


def load(path, name="convnet._C"):
    """Import the emulated module at `path` under `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(path):
    """The emulated module at `path` as convnet._C (before convnet is imported), configured from
    CONVNET_EMU_ORDER (shuffled), CONVNET_EMU_SEED (0), CONVNET_EMU_SMS (2),
    CONVNET_EMU_DEVICES (2, the logical devices) and CONVNET_EMU_ARCH (90: sm_90, what the
    compute-capability query answers)."""
    if "convnet" in sys.modules:
        raise RuntimeError("emulator.install must run before convnet is imported")
    sys.modules["convnet._C"] = module = load(path)
    controls = Controls(path)
    controls.configure(os.environ.get("CONVNET_EMU_ORDER", "shuffled"),
                       int(os.environ.get("CONVNET_EMU_SEED", "0")),
                       int(os.environ.get("CONVNET_EMU_SMS", "2")))
    controls.lib.emu_set_device_count(int(os.environ.get("CONVNET_EMU_DEVICES", "2")))
    controls.lib.emu_set_compute_capability(int(os.environ.get("CONVNET_EMU_ARCH", "90")))
    return module


class Controls:
    """The emulator's knobs inside a built module or library (the same loaded copy)."""

    def __init__(self, path):
        lib = self.lib = ctypes.CDLL(str(path))
        lib.emu_config.argtypes = [ctypes.c_int] * 3
        for name in ("emu_set_occupancy", "emu_set_device_count", "emu_set_compute_capability"):
            getattr(lib, name).argtypes = [ctypes.c_int]
        for name in ("emu_live_allocations", "emu_launches_run", "emu_blocks_run"):
            getattr(lib, name).restype = ctypes.c_long
        lib.emu_fastdiv_check.restype = ctypes.c_long
        lib.emu_fastdiv_check.argtypes = [ctypes.c_int] * 3
        lib.emu_alloc.restype = ctypes.c_void_p
        lib.emu_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int]
        lib.emu_free.argtypes = [ctypes.c_void_p]
        lib.emu_kernels_seen.restype = ctypes.c_char_p

    def configure(self, order="shuffled", seed=0, sms=2):
        """Block and thread order (forward, reverse, shuffled), its seed, the SM count."""
        self.lib.emu_config(ORDERS[order], seed, sms)

    def set_occupancy(self, blocks_per_sm):
        """What the occupancy query answers (< 1: it fails); before the first conv launch."""
        self.lib.emu_set_occupancy(blocks_per_sm)

    def set_compute_capability(self, cc):
        """What the compute-capability query answers, 10 * major + minor (75: sm_75)."""
        self.lib.emu_set_compute_capability(cc)

    def launches(self):
        return self.lib.emu_launches_run()

    def blocks(self):
        return self.lib.emu_blocks_run()

    def kernels_seen(self):
        """The kernels entered since the last call ("name" or "name[ALPHA=4]": emu.cpp's
        kernel_key), and forget them."""
        return self.lib.emu_kernels_seen().decode().splitlines()

    def live_allocations(self):
        """cudaMalloc'd workspaces not yet freed."""
        return self.lib.emu_live_allocations()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="build folder")
    parser.add_argument("--opt", default="-O1", help="g++ optimisation flags (default -O1)")
    args = parser.parse_args(argv)
    print(build(out_dir=args.out, opt=args.opt))


if __name__ == "__main__":
    sys.exit(main())
