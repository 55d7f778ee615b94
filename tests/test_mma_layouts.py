"""csrc/mma.cuh's fragment layouts against an independent source: CuTe's own tables.

mma.cuh writes once, as functions of (lane, i), which lane holds which element of the tensor-core
fragments (mma.m16n8k8 TF32, mma.m16n8k16 BF16, their FP32 accumulators) and of ldmatrix's
registers; the emulator's twins compute with them and the kernels load fragments with them.
Here they are compared, element by element, with what CuTe's
MMA_Traits<SM80_16x8x8_F32TF32TF32F32_TN>, MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN> (ALayout,
BLayout, CLayout) and the ldmatrix copy atoms Copy_Traits<SM75_U32x{1,2,4}_LDSM_N> and
Copy_Traits<SM75_U16x{2,4,8}_LDSM_T> (SrcLayout, DstLayout) imply, and each table is checked
to own every element of its tile exactly once.

Both sides are small host programs in tools/kernel_emulator/cute_layouts/ that print JSON:
dump_layouts.cpp includes CuTe (the headers of PyPI's nvidia-cutlass, plus the CUDA toolkit's
headers, which CuTe includes; no GPU), dump_ours.cpp includes csrc/mma.cuh through the emulator's
CUDA stand-in. Both are built with g++ once per session. Everything is skipped without g++;
what needs CuTe is skipped without the nvidia-cutlass package (or CUTLASS_INCLUDE_DIR, a CUTLASS
include folder) or without the CUDA headers; mma.cuh's own bijection checks need only g++.
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tools" / "kernel_emulator" / "cute_layouts"

# atom name -> the names of its coordinates, in dump_*.cpp's order after (lane, i). MMA operands:
# (row, col) of A (m, k), B (k, n) or the accumulator (m, n). ldmatrix: element i is register i / 2,
# half i % 2; register j holds matrix j; (row, col) is element col of row `row` of that matrix,
# the row whose address lane 8 * matrix + row gives.
ATOMS = {
    **{name: ("row", "col") for name in
       ("tf32_a", "tf32_b", "tf32_acc", "bf16_a", "bf16_b", "bf16_acc")},
    **{f"ldmatrix_x{n}{t}": ("matrix", "row", "col") for t in ("", "_trans") for n in (1, 2, 4)},
}
# what mma.cuh calls each atom, for the messages
OURS = {"tf32_a": "tf32_a", "tf32_b": "tf32_b", "tf32_acc": "acc (m16n8k8)", "bf16_a": "bf16_a",
        "bf16_b": "bf16_b", "bf16_acc": "acc (m16n8k16)",
        **{f"ldmatrix_x{n}{t}": f"ldmatrix_elem(trans={bool(t)}) in ldmatrix<{n}>"
           for t in ("", "_trans") for n in (1, 2, 4)}}


def cutlass_include():
    """The folder holding cute/: CUTLASS_INCLUDE_DIR, else nvidia-cutlass's copy of the headers."""
    candidates = []
    if os.environ.get("CUTLASS_INCLUDE_DIR"):
        candidates.append(Path(os.environ["CUTLASS_INCLUDE_DIR"]))
    spec = importlib.util.find_spec("cutlass_library")  # finds it without importing it
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "source" / "include")
    for folder in candidates:
        if (folder / "cute" / "atom" / "mma_traits_sm80.hpp").is_file():
            return folder
    return None


def cuda_includes():
    """-I folders for cuda_runtime_api.h and cuda/std (CCCL: include/cccl since CUDA 13)."""
    roots = [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH")
             if os.environ.get(v)]
    roots.append(Path("/usr/local/cuda/include"))
    if shutil.which("nvcc"):  # where nvcc itself looks (it may be a wrapper script elsewhere)
        try:
            out = subprocess.run(
                ["nvcc", "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                capture_output=True, text=True, timeout=30)
            roots += [Path(p) for p in re.findall(r'-I"?([^"\s]+)', out.stderr + out.stdout)]
        except (OSError, subprocess.TimeoutExpired):
            pass
    for root in roots:
        if not (root / "cuda_runtime_api.h").is_file():
            continue
        for cccl in (root, root / "cccl"):
            if (cccl / "cuda" / "std" / "utility").is_file():
                return [root] if cccl == root else [root, cccl]
    return None


def build_and_run(source, exe, flags):
    compile_ = subprocess.run(
        ["nice", "g++", "-std=c++17", "-O0", *flags, str(source), "-o", str(exe)],
        capture_output=True, text=True, timeout=600)
    assert compile_.returncode == 0, f"g++ {source.name} failed:\n{compile_.stderr[-6000:]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{exe.name} failed: {run.stderr}"
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: the layout dumps are host programs built with g++")
    return tmp_path_factory.mktemp("mma_layouts")


@pytest.fixture(scope="module")
def ours(build_dir):
    """csrc/mma.cuh's tables: atom -> {"source", "tile", "values": [[lane, i, *coord], ...]}."""
    flags = ["-Wall", "-Werror", f"-I{ROOT / 'tools' / 'kernel_emulator' / 'include'}",
             f"-I{ROOT / 'csrc'}"]
    return build_and_run(HERE / "dump_ours.cpp", build_dir / "dump_ours", flags)


@pytest.fixture(scope="module")
def cute(build_dir):
    """CuTe's tables, in the same form."""
    include = cutlass_include()
    if include is None:
        pytest.skip("CuTe's headers not found: pip install nvidia-cutlass (or set "
                    "CUTLASS_INCLUDE_DIR to a CUTLASS include folder)")
    cuda = cuda_includes()
    if cuda is None:
        pytest.skip("the CUDA toolkit's headers (cuda_runtime_api.h, cuda/std), which CuTe "
                    "includes, not found (CUDA_HOME, /usr/local/cuda, nvcc's own)")
    flags = ["-w", f"-I{include}", *(f"-I{folder}" for folder in cuda)]
    return build_and_run(HERE / "dump_layouts.cpp", build_dir / "dump_layouts", flags)


@pytest.fixture
def tables(request, side):
    return request.getfixturevalue(side)


def element(atom, i):
    if atom.startswith("ldmatrix"):
        return f"element {i} (register {i // 2}, {'high' if i % 2 else 'low'} half)"
    if atom.startswith("bf16") and not atom.endswith("acc"):
        return f"element {i} (register {i // 2}, {'high' if i % 2 else 'low'} half)"
    return f"element {i} (register {i})"


def by_lane_element(table):
    got = {}
    for lane, i, *coord in table["values"]:
        assert (lane, i) not in got, f"lane {lane}, element {i} listed twice"
        got[lane, i] = tuple(coord)
    return got


@pytest.mark.parametrize("side", ["ours", "cute"])
def test_same_atoms(tables, side):
    assert sorted(tables) == sorted(ATOMS)


@pytest.mark.parametrize("atom", ATOMS)
def test_matches_cute(ours, cute, atom):
    cute, ours = cute[atom], ours[atom]
    names = ", ".join(ATOMS[atom])
    assert ours["tile"] == cute["tile"], f"{atom}: tile {ours['tile']} here, {cute['tile']} in CuTe"
    want, got = by_lane_element(cute), by_lane_element(ours)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, (
        f"{atom}: (lane, element) pairs only in {cute['source']}: {missing[:8]}; only in "
        f"mma.cuh's {OURS[atom]}: {extra[:8]}")
    wrong = [f"lane {lane}, {element(atom, i)}: mma.cuh's {OURS[atom]} gives ({names}) = "
             f"{got[lane, i]}, {cute['source']} gives {want[lane, i]}"
             for lane, i in sorted(want) if got[lane, i] != want[lane, i]]
    assert not wrong, (f"{atom}: {len(wrong)} of {len(want)} elements differ:\n"
                       + "\n".join(wrong[:12]))


@pytest.mark.parametrize("side", ["ours", "cute"])
@pytest.mark.parametrize("atom", ATOMS)
def test_bijection_onto_tile(tables, atom, side):
    table = tables[atom]
    tile = table["tile"]
    lanes = by_lane_element(table)
    size = 1
    for extent in tile:
        size *= extent
    per_lane = len(lanes) // 32
    assert {lane for lane, _ in lanes} == set(range(32)), f"{atom} ({table['source']}): lanes"
    assert set(lanes) == {(lane, i) for lane in range(32) for i in range(per_lane)}, (
        f"{atom} ({table['source']}): the lanes do not all hold elements 0..{per_lane - 1}")
    outside = [(key, c) for key, c in lanes.items()
               if len(c) != len(tile) or not all(0 <= x < n for x, n in zip(c, tile))]
    assert not outside, f"{atom} ({table['source']}): outside the tile {tile}: {outside[:8]}"
    owners = {}
    for key, c in sorted(lanes.items()):
        owners.setdefault(c, []).append(key)
    twice = {c: keys for c, keys in owners.items() if len(keys) > 1}
    assert not twice, (f"{atom} ({table['source']}): held more than once, as (lane, element): "
                       f"{dict(list(twice.items())[:8])}")
    assert len(owners) == size, (f"{atom} ({table['source']}): {size - len(owners)} of the "
                                 f"tile's {size} elements held by no lane")
