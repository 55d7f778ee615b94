"""The conv and local CUDA kernels (csrc/conv.cu, csrc/local.cu), built with g++ for the CPU
emulator in tools/kernel_emulator, against the float64 NumPy reference (convnet.backend.numpy_conv):
no GPU needed, so CI checks the kernels' results on every run.

Every block's threads run in a freshly shuffled order between barriers (a missing __syncthreads
shows as a wrong result), every buffer sits against a protected page, before it or after it (an
out-of-bounds access raises), and every output starts as NaN (an element never written fails).
Inputs are standard-normal draws from the seeded `rng` fixture; the bound is on the relative error
max|got - ref| / max|ref|. What the emulator cannot check (warp-level code, timing, the GPU's
compiler): tools/kernel_emulator/README.md.
"""
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from convnet.backend import numpy_conv

ROOT = Path(__file__).resolve().parents[1]
REL_TOL = 1e-4

# (N, C, H, W, F, fs, stride, padding, groups), for conv and local
CASES = {
    "groups2_stride2_odd": (3, 4, 9, 8, 6, 3, 2, 1, 2),
    "groups3_rectangular": (5, 6, 10, 9, 9, 3, 1, 1, 3),
    "stride3_last_window_past_edge": (2, 3, 13, 11, 5, 5, 3, 0, 1),
    "11x11_stride4": (1, 2, 12, 12, 3, 11, 4, 0, 1),
    "channels17_padding2": (2, 17, 6, 5, 7, 3, 1, 2, 1),
    "65_filters_per_group_1x1": (1, 6, 5, 5, 130, 1, 1, 0, 2),
    "stride_above_filter_padding3": (2, 2, 4, 4, 3, 4, 5, 3, 1),
}
# and larger ones for conv only (the local kernels take far longer to emulate)
CONV_CASES = {**CASES,
              "100_filters_per_group_padding3": (3, 6, 15, 15, 300, 3, 2, 3, 3),
              "batch4_split_reduction": (4, 3, 32, 32, 64, 5, 1, 2, 1)}
# conv_backward_filter variants: tiles clamped at 120 filters per group; a long reduction.
BWDF_CASES = {"120_filters_per_group": (6, 4, 23, 23, 240, 3, 1, 1, 2),
              "long_reduction": (16, 2, 12, 12, 8, 5, 1, 2, 2)}
# Winograd (stride 1): partial output tiles, groups, a split reduction, and 5x5 filters (m = 2
# runs Winograd; m = 4 would need alpha 8 > 6 and stays direct).
WINOGRAD_CASES = {"partial_tiles": (2, 3, 7, 7, 4, 3, 1, 1, 1),
                  "groups2_13x13": (3, 6, 13, 13, 10, 3, 1, 1, 2),
                  "split_reduction": (12, 2, 14, 14, 3, 3, 1, 1, 1),
                  "5x5": (2, 3, 10, 12, 5, 5, 1, 2, 1)}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """tools/kernel_emulator's Emulator over a libemu.so built from csrc, once for this module."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: the kernel emulator is built with g++")
    spec = importlib.util.spec_from_file_location(
        "kernel_emulator", ROOT / "tools" / "kernel_emulator" / "emulator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    emulator = module.Emulator(module.build(ROOT / "csrc", tmp_path_factory.mktemp("emu")))
    emulator.lib.emu_set_occupancy(2)  # before the first launch: the kernels cache the answer
    return emulator


def check(emu, rng, op, case, guard="after", sms=2):
    """Run op (e.g. conv_forward) on the emulator, shuffled, and compare with numpy_conv."""
    n, c, h, w, f, fs, stride, padding, groups = case
    oh, ow = (numpy_conv.conv_output_size(size, fs, stride, padding) for size in (h, w))
    kind, pass_ = op.split("_", 1)
    w_shape = (f, c // groups, fs, fs) if kind == "conv" else (oh, ow, f, c // groups, fs, fs)
    x, weights, dy = (rng.standard_normal(shape, dtype=np.float32)
                      for shape in ((n, c, h, w), w_shape, (n, f, oh, ow)))
    arrays, size_arg, out_shape = {"forward": ((x, weights), (), dy.shape),
                                   "backward_data": ((dy, weights), ((h, w),), x.shape),
                                   "backward_filter": ((x, dy), (fs,), w_shape)}[pass_]
    want = getattr(numpy_conv, op)(*(a.astype(np.float64) for a in arrays), *size_arg, stride,
                                   padding, groups)
    emu.configure("shuffled", seed=int(rng.integers(1 << 31)), sms=sms)
    got = emu.run(op, *arrays, out_shape, (n, c, h, w, f, fs, oh, ow, stride, padding, groups),
                  guard)
    assert got.shape == want.shape
    unwritten = int(np.isnan(got).sum())
    assert unwritten == 0, f"{op} {case}: {unwritten} of {got.size} outputs never written"
    scale = float(np.max(np.abs(want), initial=0.0)) or 1.0
    err = float(np.max(np.abs(got - want), initial=0.0)) / scale
    assert err < REL_TOL, f"{op} {case} ({guard} guard, {sms} SMs): relative error {err:.3g}"
    assert emu.lib.emu_live_allocations() == 0, f"{op} {case}: workspace not freed"


@pytest.mark.parametrize("kind, case", [
    pytest.param(kind, case, id=f"{kind}-{name}")
    for kind, cases in (("conv", CONV_CASES), ("local", CASES)) for name, case in cases.items()])
def test_against_reference(emu, rng, kind, case):
    for pass_ in ("forward", "backward_data", "backward_filter"):
        for guard in ("after", "before"):
            check(emu, rng, f"{kind}_{pass_}", case, guard)


@pytest.mark.parametrize("case", BWDF_CASES.values(), ids=BWDF_CASES.keys())
@pytest.mark.parametrize("variant", ["new", "old", "waves"])
def test_backward_filter_variants(emu, rng, monkeypatch, variant, case):
    monkeypatch.setenv("CONVNET_CONV_BWDF", variant)
    for sms in (1, 20):  # few SMs: few splits of the reduction; many: more
        check(emu, rng, "conv_backward_filter", case, sms=sms)


@pytest.mark.parametrize("case", WINOGRAD_CASES.values(), ids=WINOGRAD_CASES.keys())
@pytest.mark.parametrize("m", ["2", "4"])
def test_winograd(emu, rng, monkeypatch, m, case):
    monkeypatch.setenv("CONVNET_CONV_WINOGRAD", m)
    winograd = not (m == "4" and case[5] == 5)
    for op in ("conv_forward", "conv_backward_filter"):
        launches = emu.lib.emu_launches_run()
        check(emu, rng, op, case, sms=3)
        # Winograd transforms, multiplies and transforms back: several launches, direct one.
        direct = emu.lib.emu_launches_run() - launches == 1
        assert direct is not winograd, f"{op} m={m} {case}: Winograd ran: {not direct}"


@pytest.mark.parametrize("env, dims, message", [
    ({}, (2, 3, 7, 7, 4, 3, 6, 5, 1, 0, 1), "output size 6x5 does not match"),
    ({}, (2, 3, 7, 7, 4, 3, 5, 5, 1, 0, 2), "divisible by groups"),
    ({"CONVNET_CONV_WINOGRAD": "3"}, (2, 3, 7, 7, 4, 3, 5, 5, 1, 0, 1), "must be off, 2 or 4"),
    ({"CONVNET_CONV_BWDF": "fast"}, (2, 3, 7, 7, 4, 3, 5, 5, 1, 0, 1), "must be new, old or waves"),
])
def test_rejects_bad_arguments(emu, monkeypatch, env, dims, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    op = "conv_backward_filter" if "CONVNET_CONV_BWDF" in env else "conv_forward"
    a = np.zeros(dims[:4], np.float32)
    with pytest.raises(ValueError, match=message):
        emu.run(op, a, a, (1,), dims)


def test_guard_page_catches_an_overrun(emu):
    """An input one element short: the kernel's read of the last pixel hits the guard page."""
    x = np.ones(2 * 3 * 7 * 7 - 1, np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(RuntimeError, match="memory fault"):
        emu.run("conv_forward", x, w, (2, 4, 5, 5), (2, 3, 7, 7, 4, 3, 5, 5, 1, 0, 1))


def test_fastdiv(emu, rng):
    """convgemm::FastDiv, the kernels' index division, against / and % near 0 and 2^31."""
    divisors = [*range(1, 100), *(1 << k for k in range(31)), *((1 << k) - 1 for k in range(2, 31)),
                *(int(d) for d in rng.integers(100, 1 << 30, 20))]
    for d in divisors:
        for start in (0, (1 << 31) - 20000):
            assert emu.lib.emu_fastdiv_check(d, start, 20000) == -1, f"FastDiv({d}) from {start}"
