"""The emulator's tensor-core and cp.async twins (csrc/mma.cuh) against NumPy, and planted bugs
of each kind it exists to catch, each of which must fail:

  - in csrc's own kernels, through the same cuda tests CI runs on the emulated GPU
    (tools/kernel_emulator/run.py): a missing __syncthreads (conv); in the tensor-core conv,
    TF32 operands left unrounded (the hardware truncates them), either cp.async pipeline
    waiting one slice short, BF16's 16-bit tiles read without a barrier, the launch without
    its opt-in to more than 48 KB of dynamic shared memory; an off-by-one window index
    (max-pool backward), a wrong shuffle lane (the top-k count of logreg);
  - in the small mma kernels of tools/kernel_emulator/test_kernels (until real kernels use
    mma.cuh): a missing cp.async wait, a wrong fragment index, a missing TF32 conversion.

Also compiles the mma kernels with nvcc for sm_80 and sm_90, so the PTX is known to assemble.
"""
import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_kernel_emulator import TOOLS, load_emulator

MMA_SOURCE = TOOLS / "test_kernels" / "mma_gemm.cu"


@pytest.fixture(scope="module")
def emulator():
    return load_emulator()


def tf32(x):
    """cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)


def bf16_bits(x):
    """Round to nearest even, to bfloat16 bits."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def mma_lib(emulator, tmp_path, source=None):
    """The mma test kernels built for the emulator (from a planted copy when `source` is given)."""
    folder = tmp_path / "kernels"
    folder.mkdir(exist_ok=True)
    unit = folder / MMA_SOURCE.name
    unit.write_text(source if source is not None else MMA_SOURCE.read_text())
    path = emulator.build(units=[unit], module=False, out_dir=tmp_path / "build",
                          cache=emulator.DEFAULT_OUT / "obj")
    return ctypes.CDLL(str(path))


def gemm_error(lib, kind, rng, m=32, n=16, k=48):
    """max |D - reference| / max |reference| for D = A B on the emulator: TF32 operands rounded
    as cvt.rna does, or BF16 ones, and FP32 accumulation; inf when D holds a NaN."""
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if kind == "bf16":
        a_in, b_in = bf16_bits(a), bf16_bits(b)
        want = from_bf16(a_in).astype(np.float64) @ from_bf16(b_in).astype(np.float64)
    else:
        a_in, b_in = a, b
        want = tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)
    d = np.full((m, n), np.nan, np.float32)
    error = ctypes.create_string_buffer(512)
    args = [ctypes.c_void_p(arr.ctypes.data) for arr in (a_in, b_in, d)]
    if lib.test_gemm(int(kind == "bf16"), *args, m, n, k, error, 512):
        raise RuntimeError(error.value.decode())
    if np.isnan(d).any():
        return np.inf
    return float(np.abs(d - want).max() / np.abs(want).max())


# FP32 accumulation of exact products over K = 48: a few float32 ulps of the largest sums
TOL = 1e-5


@pytest.mark.parametrize("kind", ["tf32", "bf16"])
def test_mma_twins_match_numpy(emulator, tmp_path, rng, kind):
    assert gemm_error(mma_lib(emulator, tmp_path), kind, rng) < TOL


@pytest.mark.parametrize("kind, old, new", [
    ("tf32", "cp_async_wait<0>();", ""),                           # a missing wait
    ("bf16", "cp_async_wait<0>();", ""),
    ("tf32", "tf32_a(lane, i).col]", "tf32_a(lane, i ^ 2).col]"),  # a wrong fragment index
    ("bf16", "ldmatrix<2, true>(b, &Bs[lane % 16][0]);",           # B not transposed
     "ldmatrix<2>(b, &Bs[lane % 16][0]);"),
    ("tf32", "a[i] = to_tf32(", "a[i] = __float_as_uint("),        # no cvt.rna: truncated
])
def test_planted_mma_bugs_fail(emulator, tmp_path, rng, kind, old, new):
    source = MMA_SOURCE.read_text()
    assert source.count(old) >= 1, f"the planted bug's pattern is gone: {old!r}"
    lib = mma_lib(emulator, tmp_path, source.replace(old, new))
    assert gemm_error(lib, kind, rng) > 10 * TOL


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_mma_kernels_compile_for_sm80_and_sm90(tmp_path):
    arches = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in (80, 90)]
    done = subprocess.run(["nvcc", "-std=c++17", *arches, f"-I{TOOLS.parents[1] / 'csrc'}", "-c",
                           str(MMA_SOURCE), "-o", str(tmp_path / "mma.o")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------------------------
# planted bugs in csrc's kernels, caught by the emulated cuda tests

PLANTED = [
    ("missing __syncthreads", "conv_gemm.cuh",
     "        __syncthreads();  // slice k0 landed for every thread; the previous slice's buffer",
     "        // slice k0 landed for every thread; the previous slice's buffer",
     "tests/test_conv.py", "conv_passes and cuda and forward"),
    ("TF32 pipeline waits one slice short", "conv_mma.cuh",
     "cp_async_wait<STAGES - 2>();\n            __syncthreads();",
     "cp_async_wait<STAGES - 1>();\n            __syncthreads();",
     "tests/test_precision.py", "mma_kernels and conv and forward and tf32"),
    ("BF16 pipeline waits one slice short", "conv_mma.cuh",
     "cp_async_wait<STAGES - 2>();  // this thread's", "cp_async_wait<STAGES - 1>();  //",
     "tests/test_precision.py", "mma_kernels and conv and forward and bf16"),
    ("BF16 tiles converted and read without a barrier", "conv_mma.cuh",
     "            __syncthreads();  // every thread's share", "            // every thread's share",
     "tests/test_precision.py", "mma_kernels and conv and forward and bf16"),
    ("no opt-in to 80 KB of shared memory", "conv_mma.cuh",
     "    if (shared > (48 << 10))  // a kernel", "    if (false)  // a kernel",
     "tests/test_precision.py", "mma_kernels and conv and forward and tf32"),
    ("TF32 fragments not rounded", "conv_mma.cuh",
     "return convnet::mma::to_tf32(__uint_as_float(bits));", "return bits;",
     "tests/test_precision.py", "mma_kernels and conv and forward and tf32"),
    ("off-by-one window index", "pool.cu", "c.hi = min(out - 1,", "c.hi = min(out,",
     "tests/test_pool.py", "maxpool and cuda"),
    ("wrong shuffle lane", "softmax.cu", "v += __shfl_xor_sync(0xffffffffu, v, offset);",
     "v += __shfl_xor_sync(0xffffffffu, v, offset ^ 1);", "tests/test_cost.py", "logreg and cuda"),
]


@pytest.mark.parametrize("what, unit, old, new, tests, select", PLANTED,
                         ids=[p[0].replace(" ", "_") for p in PLANTED])
def test_planted_kernel_bugs_fail_the_emulated_cuda_tests(emulator, tmp_path, what, unit, old,
                                                          new, tests, select):
    csrc = tmp_path / "csrc"
    shutil.copytree(emulator.ROOT / "csrc", csrc)
    text = (csrc / unit).read_text()
    assert text.count(old) == 1, f"{unit}: the planted bug's pattern is not there once: {old!r}"
    (csrc / unit).write_text(text.replace(old, new))
    module = emulator.build(csrc=csrc, out_dir=tmp_path / "build",
                            cache=emulator.DEFAULT_OUT / "obj")
    done = subprocess.run([sys.executable, str(TOOLS / "run.py"), "--module", str(module), "-m",
                           "pytest", "-x", "-q", "-p", "no:cacheprovider", tests, "-k", select],
                          cwd=emulator.ROOT, capture_output=True, text=True, timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 1 and " failed" in summary, f"{what} was not caught: {summary}"
