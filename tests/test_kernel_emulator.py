"""The kernel emulator itself (tools/kernel_emulator): warp collectives against the CUDA
programming guide's definitions, atomics, the misuses it must stop with a message, guard pages,
and what the emulated GPU run (the cuda tests through run.py) cannot set per call: the SM count
that sizes the split reductions and which conv algorithm ran (its launches).

tests/test_mma_emulation.py covers the mma, ldmatrix and cp.async twins and the planted bugs;
what only a real GPU can catch is listed in tools/kernel_emulator/README.md. Needs g++ and
pybind11 (the `test` extra); skipped without them.
"""
import ctypes
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from convnet.backend import numpy_conv

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "kernel_emulator"
POISON = 0x7FC00000  # what a read from a lane outside the mask gets
REL_TOL = 1e-4


def load_emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: the kernel emulator is built with g++")
    pytest.importorskip("pybind11", reason="the emulated convnet._C is built with pybind11")
    spec = importlib.util.spec_from_file_location("kernel_emulator", TOOLS / "emulator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def emulator():
    return load_emulator()


@pytest.fixture(scope="module")
def warp_lib(emulator, tmp_path_factory):
    path = emulator.build(units=[TOOLS / "test_kernels" / "warp_ops.cu"], module=False,
                          out_dir=tmp_path_factory.mktemp("warp"))
    return ctypes.CDLL(str(path)), emulator.Controls(path)


@pytest.fixture(scope="module")
def module(emulator):
    """The emulated convnet._C under a private name, and its controls."""
    path = emulator.build()
    controls = emulator.Controls(path)
    controls.set_occupancy(2)  # before the first conv launch: the kernels cache the answer
    return emulator.load(path, "emulated._C"), controls


def call(lib, name, *args):
    error = ctypes.create_string_buffer(1024)
    rc = getattr(lib, name)(*args, error, len(error))
    return error.value.decode() if rc else None


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


# ----------------------------------------------------------------------------------------------
# warp collectives


def expected_warp_ops(threads):
    """Each thread's 12 results by the guide's definitions; POISON where the source lane is not
    in the mask (undefined on the GPU)."""
    rows = []
    for t in range(threads):
        lane, first = t % 32, t // 32 * 32
        lanes = min(32, threads - first)
        own = lambda src: 100 + src if src < lanes else POISON  # noqa: E731
        mask = (1 << lanes) - 1
        ballot = sum(1 << l for l in range(lanes) if l % 3 == 0) & mask
        half = [l for l in range(lanes) if (l < 16) == (lane < 16)]
        rows.append([
            own((lane * 7 + 3) % lanes),
            own(lane - 3) if lane >= 3 else 100 + lane,
            own(lane + 5) if lane % 16 + 5 < 16 else 100 + lane,
            own(lane ^ (9 % lanes)),
            ballot - (1 << 32) if ballot >= 1 << 31 else ballot,
            int(lanes > 17), 1, 0,
            lanes * (lanes - 1) // 2,
            max(l * 5 % 11 for l in range(lanes)),
            1 + 2 * (lanes - 1 - lane),
            len(half),
        ])
    return np.array(rows, dtype=np.int64).astype(np.uint32).view(np.int32)


@pytest.mark.parametrize("threads", [64, 52, 7])
@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_warp_ops_follow_the_cuda_definitions(warp_lib, threads, order):
    lib, controls = warp_lib
    controls.configure(order, seed=threads)
    out = np.full((threads, 12), -1, np.int32)
    assert call(lib, "test_warp_ops", ptr(out), threads) is None
    want = expected_warp_ops(threads)
    bad = np.argwhere(out != want)
    assert not len(bad), (f"{len(bad)} results differ; first: thread {bad[0][0]} result "
                          f"{bad[0][1]}: {out[tuple(bad[0])]} != {want[tuple(bad[0])]}")


def test_atomics_count_every_thread_of_every_block(warp_lib):
    lib, controls = warp_lib
    controls.configure("shuffled", seed=5)
    counter, total, top = np.zeros(1, np.int32), np.zeros(1, np.float32), np.zeros(1, np.uint32)
    assert call(lib, "test_atomics", ptr(counter), ptr(total), ptr(top), 9) is None
    assert counter[0] == 9 * 64 and total[0] == 9 * 64 * 0.5 and top[0] == 9 * 64 - 1


@pytest.mark.parametrize("which, message", [
    (0, "lane 3 of the mask exited without reaching it"),
    (1, "mask"),
    (2, "__syncthreads reached by 63 threads while 1 exited"),
    (3, "the mask names lane 20 but this warp has 20 threads"),
    (4, "wait for lanes that are at __syncthreads"),
])
def test_warp_misuse_stops_the_kernel_with_a_message(warp_lib, which, message):
    lib, controls = warp_lib
    controls.configure("shuffled", seed=which)
    out = np.zeros(64, np.int32)
    error = call(lib, "test_misuse", which, ptr(out))
    assert error is not None and message in error, error


# ----------------------------------------------------------------------------------------------
# conv through the emulated module: guard pages, SM counts, which algorithm ran


def run_conv(module, op, case, rng, sms=2, guard=0, algo="gemm"):
    """op on guarded, NaN-filled emulator buffers; (got, want) against numpy_conv in float64."""
    C, controls = module
    n, c, h, w, f, fs, stride, padding, groups = case
    oh, ow = (numpy_conv.conv_output_size(s, fs, stride, padding) for s in (h, w))
    x, weights, dy = (rng.standard_normal(s, dtype=np.float32)
                      for s in ((n, c, h, w), (f, c // groups, fs, fs), (n, f, oh, ow)))
    pass_ = op.split("_", 1)[1]
    arrays, size_arg, out_shape = {"forward": ((x, weights), (), dy.shape),
                                   "backward_data": ((dy, weights), ((h, w),), x.shape),
                                   "backward_filter": ((x, dy), (fs,), weights.shape)}[pass_]
    want = getattr(numpy_conv, op)(*(a.astype(np.float64) for a in arrays), *size_arg, stride,
                                   padding, groups)
    buffers = []
    try:
        for a in (*arrays, np.empty(out_shape, np.float32)):
            address = controls.lib.emu_alloc(a.nbytes, guard)
            view = np.ctypeslib.as_array((ctypes.c_float * a.size).from_address(address))
            view[...] = a.ravel() if len(buffers) < 2 else np.nan
            buffers.append((address, view))
        controls.configure("shuffled", seed=int(rng.integers(1 << 31)), sms=sms)
        getattr(C, op)(*(b[0] for b in buffers), n, c, h, w, f, fs, oh, ow, stride, padding,
                       groups, C.conv_algorithms.index(algo), 0)
        got = buffers[2][1].reshape(out_shape).copy()
    finally:
        for address, _ in buffers:
            controls.lib.emu_free(address)
    assert not np.isnan(got).any(), f"{op} {case}: outputs never written"
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    assert err < REL_TOL, f"{op} {case} ({sms} SMs): relative error {err:.3g}"
    assert controls.live_allocations() == 0, f"{op} {case}: workspace not freed"


@pytest.mark.parametrize("case", [(6, 4, 23, 23, 240, 3, 1, 1, 2), (16, 2, 12, 12, 8, 5, 1, 2, 2)],
                         ids=["120_filters_per_group", "long_reduction"])
@pytest.mark.parametrize("algo", ["gemm", "gemm_dy_along_f", "gemm_dy_along_f_fill"])
def test_backward_filter_algorithms_at_any_sm_count(module, rng, algo, case):
    for sms in (1, 20):  # few SMs: few splits of the reduction; many: more
        run_conv(module, "conv_backward_filter", case, rng, sms=sms, algo=algo)


@pytest.mark.parametrize("case", [(2, 3, 7, 7, 4, 3, 1, 1, 1), (2, 3, 10, 12, 5, 5, 1, 2, 1)],
                         ids=["3x3", "5x5"])
@pytest.mark.parametrize("algo", ["winograd2", "winograd4"])
def test_winograd_runs_where_it_can(module, rng, algo, case):
    """Winograd is several launches (transforms, products, the transform back); m=4 with 5x5
    filters (alpha 8 > 6) is refused, naming the rule."""
    controls = module[1]
    for op in ("conv_forward", "conv_backward_data", "conv_backward_filter"):
        if algo == "winograd4" and case[5] == 5:
            with pytest.raises(ValueError, match=f"{op}: algo winograd4: .*m \\+ fs - 1 <= 6"):
                run_conv(module, op, case, rng, sms=3, algo=algo)
            continue
        before = controls.launches()
        run_conv(module, op, case, rng, sms=3, algo=algo)
        assert controls.launches() - before > 1, f"{op} {algo} {case}: not Winograd"


@pytest.mark.parametrize("guard", [0, 1], ids=["after", "before"])
def test_guard_page_catches_an_overrun(module, guard):
    """A 2x3x7x7 input one element short: the read of its last pixel hits the guard page (or,
    against the page before it, the input shifted one element down reads the one before its
    start)."""
    C, controls = module
    size = 2 * 3 * 7 * 7 - 1
    x = controls.lib.emu_alloc(size * 4, guard)
    w = controls.lib.emu_alloc(4 * 3 * 3 * 3 * 4, 0)
    y = controls.lib.emu_alloc(2 * 4 * 5 * 5 * 4, 0)
    base = x if guard == 0 else x - 4
    try:
        with pytest.raises(RuntimeError, match="memory fault"):
            C.conv_forward(base, w, y, 2, 3, 7, 7, 4, 3, 5, 5, 1, 0, 1, 0, 0)  # algo 0: gemm
    finally:
        for address in (x, w, y):
            controls.lib.emu_free(address)


def test_fastdiv(module, rng):
    """convgemm::FastDiv, the kernels' index division, against / and % near 0 and 2^31."""
    lib = module[1].lib
    divisors = [*range(1, 100), *(1 << k for k in range(31)), *((1 << k) - 1 for k in range(2, 31)),
                *(int(d) for d in rng.integers(100, 1 << 30, 20))]
    for d in divisors:
        for start in (0, (1 << 31) - 20000):
            assert lib.emu_fastdiv_check(d, start, 20000) == -1, f"FastDiv({d}) from {start}"


def test_the_kernels_seen_name_each_instantiation_once_then_reset(module, rng):
    """What kernel_map.py records per test: each kernel with its template arguments but the
    tile shape (an argument of an anonymous namespace with its file), then nothing."""
    controls = module[1]
    controls.kernels_seen()
    run_conv(module, "conv_backward_data", (2, 3, 7, 7, 4, 3, 1, 1, 1), rng, algo="winograd2")
    seen = controls.kernels_seen()
    assert {"flip_filters_kernel", "input_transform_kernel[ALPHA=4]",
            "output_transform_kernel[ALPHA=4]", "implicit_gemm_kernel[Op=convwino::FwdOp]"
            } <= set(seen), seen
    run_conv(module, "conv_forward", (2, 3, 7, 7, 4, 3, 1, 1, 1), rng)
    assert controls.kernels_seen() == ["implicit_gemm_kernel[Op=ForwardOp in conv.cu]"]
    assert controls.kernels_seen() == []


def test_every_kernel_is_instrumented_or_the_build_stops(emulator):
    assert "flip_filters_kernel" in emulator.kernel_names()
    text = "template <int N>\n__global__ void __launch_bounds__(N, (f<N>()))\n    k(int a) {}\n"
    assert 'k(int a) { EMU_KERNEL_ENTRY("k");}' in emulator.rewrite(text)
    with pytest.raises(RuntimeError, match="odd.cu: a __global__ function the emulator could not"):
        emulator.rewrite("__global__ void k(S s = S{}) {}", "odd.cu")


def test_dynamic_shared_memory_is_the_launchs_and_a_launch_names_its_kernel_for_it(emulator):
    text = emulator.rewrite("extern __shared__ __align__(16) unsigned char smem[];\n"
                            "k<T, 4><<<grid, 256, bytes, stream>>>(a, b);\n"
                            "m<<<grid, 256, 0, stream>>>(a);\n")
    assert "unsigned char* smem = reinterpret_cast<unsigned char*>(emu::dynamic_shared());" in text
    assert "emu::launch(grid, 256, bytes, stream).of(k<T, 4>)([&] { k<T, 4>(a, b); });" in text
    assert "emu::launch(grid, 256, 0, stream)([&] { m(a); });" in text
