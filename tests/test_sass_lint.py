"""tools/sass_lint.py: the VIMNMX3 miscompile of commit 1a7b91c and register spills, in what
ptxas made of csrc/ (the shipped cubins and the PTX that newer GPUs JIT).

The rule and parser tests run anywhere. The others need nvcc and the PyPI tools
nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm (the `test` extra) and skip without them:
(b) csrc/pool.cu without its `#pragma unroll 1` lines, compiled for sm_90, must be flagged in
maxpool_backward; (c) a kernel that must spill must be flagged, through the shipped PTX and
through a recompile of its source; (a) the current build must lint clean. For (a),
CONVNET_SASS_LINT_REPORT may name the JSON of a lint run (.ci/run writes one), used when its
sha256 is the current _C's; otherwise the lint runs here (one to two minutes on 2 cores).
CONVNET_SASS_LINT_BINARY lints another build than the importable convnet._C.
"""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sass_lint", ROOT / "tools" / "sass_lint.py")
sass_lint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_lint)

# The trip count max(~lo, -OW, ~hi) as ptxas 13.0 emitted it for maxpool_backward<uint32_t>
# (sm_90): UR7 = OW, UR4 = -OW.
MISCOMPILED = """
.text._Z16maxpool_backwardv:
        /*0f00*/                   ULDC UR7, c[0x0][0x244] ;
        /*0f10*/                   LOP3.LUT R14, RZ, R5, RZ, 0x33, !PT ;
        /*0f20*/                   UIADD3 UR4, -UR7, URZ, URZ ;
        /*0f30*/                   LOP3.LUT R9, RZ, R4, RZ, 0x33, !PT ;
        /*0f40*/               @P3 VIADD R7, R7, 0x1 ;
        /*0f50*/                   IMAD.MOV.U32 R24, RZ, RZ, RZ ;
        /*0f60*/                   VIMNMX3 R9, R9, UR7, R14, !PT ;
        /*0f70*/               @P4 VIADD R7, R7, 0x1 ;
        /*0f80*/                   VIMNMX R14, R14, UR4, !PT ;
        /*0f90*/                   IMAD.IADD R15, R9, 0x1, -R14 ;
"""


def findings(sass):
    code = sass_lint.parse_sass(sass)["_Z16maxpool_backwardv"]
    return [(rule, code[i]["addr"]) for rule, i, _ in sass_lint.check_vimnmx3(code)]


def test_rule_flags_the_miscompile_of_1a7b91c():
    assert findings(MISCOMPILED) == [("vimnmx3-negation-swap", 0xF60)]
    sm100 = (MISCOMPILED.replace("UIADD3 UR4, -UR7", "UIADD3 UR4, UPT, UPT, -UR7")
             .replace("VIMNMX R14, R14", "VIMNMX R14, PT, PT, R14"))  # sm_100's operand lists
    assert findings(sm100) == [("vimnmx3-negation-swap", 0xF60)]


def test_rule_passes_correct_code_and_tells_a_suspect_from_the_pattern():
    assert findings(MISCOMPILED.replace("R9, R9, UR7, R14", "R9, R9, UR4, R14")) == []
    # X redefined after the negation: the VIMNMX3 reads a new value, not the negated one
    redefined = MISCOMPILED.replace("IMAD.MOV.U32 R24, RZ, RZ, RZ", "ULDC UR7, c[0x0][0x248]")
    assert findings(redefined) == []
    # a label (a join point) between negation and VIMNMX3 ends the straight line
    assert findings(MISCOMPILED.replace("        /*0f50*/", ".L_x_7:\n        /*0f50*/")) == []
    # no min/max of the same chain reading -X: printed as a suspect, not failed
    lone = MISCOMPILED.replace("VIMNMX R14, R14, UR4, !PT", "VIMNMX R14, R14, UR4, PT")
    assert findings(lone) == [("vimnmx3-near-negation", 0xF60)]


@pytest.mark.parametrize("text, expected", [
    ("UIADD3 UR4, -UR7, URZ, URZ", ("UR4", "UR7")),
    ("IADD3 R4, PT, PT, RZ, -R7, RZ", ("R4", "R7")),
    ("IMAD.MOV.U32 R3, RZ, RZ, -R2", ("R3", "R2")),
    ("IMAD R3, R2.reuse, -0x1, RZ", ("R3", "R2")),
    ("IADD3 R4, -R7, R2, RZ", None),           # R2 - R7, not a negation
    ("LOP3.LUT R9, RZ, R4, RZ, 0x33, !PT", None),  # ~R4
])
def test_negation_forms(text, expected):
    ins = sass_lint.parse_sass(f".text.f:\n /*0000*/ {text} ;\n")["f"][0]
    assert sass_lint.negation(ins) == expected


def test_parsers_of_ptxas_and_cuobjdump_output():
    ptxas = """ptxas info    : Compiling entry function '_Z1kv' for 'sm_80'
ptxas info    : Function properties for _Z1kv
    24 bytes stack frame, 24 bytes spill stores, 40 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 376 bytes cmem[0]
"""
    assert sass_lint.parse_ptxas_v(ptxas) == {(80, "_Z1kv"): {
        "regs": 128, "stack": 24, "spill_stores": 24, "spill_loads": 40}}
    res = " Function _Z1kv:\n  REG:36 STACK:40 SHARED:0 LOCAL:0 CONSTANT[0]:408 TEXTURE:0\n"
    assert sass_lint.parse_res_usage(res) == {"_Z1kv": (36, 40)}
    a = "_ZN39_GLOBAL__N__217006d7_7_conv_cu_47082c7d9ResidueOpE"
    assert sass_lint.normalized(a) == sass_lint.normalized(a.replace("217006d7", "0badf00d"))
    assert sass_lint.short_name("void (anonymous namespace)::k<float>(float*, int)") == "k<float>"


# ---- with the CUDA tools ----------------------------------------------------------------------

def tools_or_skip():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    try:
        for tool in ("cuobjdump", "nvdisasm", "ptxas"):
            sass_lint.find_tool(tool)
    except sass_lint.LintError as error:
        pytest.skip(f"{error} (the test extra installs nvidia-cuda-cuobjdump/-nvdisasm)")


def fatbin(src, out, arch=90, extra=()):
    code = f"[sm_{arch},compute_{arch}]" if arch >= 90 else f"sm_{arch}"
    subprocess.run(["nvcc", "-fatbin", *sass_lint.NVCC_FLAGS, *extra, "-I", str(src.parent),
                    f"-gencode=arch=compute_{arch},code={code}", str(src), "-o", str(out)],
                   check=True, capture_output=True)
    return out


def pool_source(tmp_path, keep_pragmas):
    text = (ROOT / "csrc" / "pool.cu").read_text()
    pragma = re.compile(r"^[ \t]*#pragma unroll 1[ \t]*\n", re.M)
    assert len(pragma.findall(text)) >= 2, "pool.cu lost its #pragma unroll 1 workaround"
    folder = tmp_path / ("fixed" if keep_pragmas else "planted")
    folder.mkdir()
    for header in ("common.cuh", "ops.h"):
        shutil.copy(ROOT / "csrc" / header, folder / header)
    (folder / "pool.cu").write_text(text if keep_pragmas else pragma.sub("", text))
    return folder / "pool.cu"


def test_planted_pool_miscompile_is_flagged(tmp_path):
    tools_or_skip()
    report = sass_lint.lint(fatbin(pool_source(tmp_path, False), tmp_path / "p.fatbin"),
                            jit=[100, 120], source_dir=None)
    if not report["vimnmx3"].get(90):
        pytest.skip(f"ptxas {report['ptxas']} emits no VIMNMX3 for the unrolled loops (the "
                    f"miscompile was seen with V13.0.88)")
    swaps = {(h["arch"], sass_lint.short_name(h["name"])) for h in report["findings"]
             if h["rule"] == "vimnmx3-negation-swap"}
    assert (90, "maxpool_backward_kernel<unsigned int>") in swaps
    assert (100, "maxpool_backward_kernel<unsigned int>") in swaps  # Blackwell's JIT too
    assert all("pool" in name for _, name in swaps)
    summary = sass_lint.format_summary(report)
    assert "FAIL vimnmx3-negation-swap: sm_90 pool.cu maxpool_backward_kernel<unsigned int>" \
        in summary and "VIMNMX3 R9, R9, UR7, R14, !PT" in summary
    fixed = sass_lint.lint(fatbin(pool_source(tmp_path, True), tmp_path / "f.fatbin"),
                           jit=[100], source_dir=None)
    assert fixed["findings"] == [] and fixed["vimnmx3"] == {90: 0, 100: 0}


SPILL = """// 32 values live at once (out may alias in, so every load stays before the first store)
// in a kernel held to 16 registers (ptxas raises that to 24): it must spill.
#ifndef LIVE
#define LIVE 32
#endif
__global__ void __maxnreg__(16) spill_kernel(const float* in, float* out, int n) {
    float v[LIVE];
#pragma unroll
    for (int i = 0; i < LIVE; ++i) v[i] = in[threadIdx.x + i * n];
#pragma unroll
    for (int i = 0; i < LIVE; ++i) out[threadIdx.x + i * n] = v[i] * v[(i * 7) % LIVE];
}
"""


def test_planted_spill_is_flagged_from_ptx_and_from_a_recompile(tmp_path):
    tools_or_skip()
    (tmp_path / "csrc").mkdir()
    src = tmp_path / "csrc" / "spill.cu"
    src.write_text(SPILL)
    (tmp_path / "CMakeLists.txt").write_text("set(CONVNET_SOURCES csrc/spill.cu)\n")
    report = sass_lint.lint(fatbin(src, tmp_path / "s90.fatbin"), jit=[100], source_dir=None)
    spills = {h["arch"]: h["detail"] for h in report["findings"] if h["rule"] == "spill"}
    assert set(spills) == {90, 100}           # the shipped sm_90 cubin and sm_100's JIT
    assert re.match(r"[1-9]\d* bytes spill stores", spills[90])
    assert "S" in sass_lint.format_summary(report).split("spill_kernel")[1].split("\n")[0]
    # sm_80: a cubin without PTX of its own; the lint recompiles the source to ask ptxas
    report = sass_lint.lint(fatbin(src, tmp_path / "s80.fatbin", 80), jit=[],
                            source_dir=tmp_path)
    assert [(h["rule"], h["arch"]) for h in report["findings"]] == [("spill", 80)]
    assert "ptxas -v on spill.cu" in report["findings"][0]["detail"]
    waived = sass_lint.lint(tmp_path / "s80.fatbin", jit=[], source_dir=tmp_path,
                            allow_spill=[r"^sm_80:.*spill_kernel"])
    assert waived["findings"] == []
    lost = sass_lint.lint(tmp_path / "s80.fatbin", jit=[], source_dir=None)
    assert [h["rule"] for h in lost["findings"]] == ["unresolved"]  # no source: no guess
    # built with other flags than the lint's recompile: its answer is not taken
    other = sass_lint.lint(fatbin(src, tmp_path / "o80.fatbin", 80, ["-DLIVE=40"]), jit=[],
                           source_dir=tmp_path)
    assert [h["rule"] for h in other["findings"]] == ["unresolved"]
    assert "NVCC_FLAGS" in other["findings"][0]["detail"]


def current_report():
    """The lint of the built convnet._C (or of CONVNET_SASS_LINT_BINARY, a build elsewhere)."""
    tools_or_skip()
    binary = os.environ.get("CONVNET_SASS_LINT_BINARY")
    if not binary:
        try:
            import convnet._C as C
        except ImportError as error:
            pytest.skip(f"convnet._C is not built: {error}")
        if not C.built_with_cuda:
            pytest.skip("convnet._C was built without CUDA")
        binary = C.__file__
    digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()
    saved = os.environ.get("CONVNET_SASS_LINT_REPORT")
    if saved and Path(saved).exists():
        report = json.loads(Path(saved).read_text())
        if report.get("sha256") == digest:
            return report
    return sass_lint.lint(binary)


@pytest.fixture(scope="module")
def current():
    return current_report()


def test_current_build_is_linted_for_every_architecture(current):
    assert {75, 80, 86, 89, 90} <= set(current["shipped"]) and current["ptx"] == [100]
    assert set(current["jit"]) == set(sass_lint.jit_archs(90))
    archs = {k["arch"] for k in current["kernels"]}
    assert archs == set(current["shipped"]) | set(current["jit"])
    assert all(isinstance(k["regs"], int) for k in current["kernels"])


def test_current_build_has_no_miscompile_pattern(current):
    bad = [h for h in current["findings"] if h["rule"].startswith("vimnmx3")]
    assert bad == [], sass_lint.format_summary(current)


def test_current_build_has_no_spill(current):
    bad = [f"sm_{h['arch']} {sass_lint.label(h['kernel'], h['name'])}: {h['detail']}"
           for h in current["findings"]
           if h["rule"] in ("spill", "unresolved")]
    assert bad == [], "\n".join(bad)


def test_current_build_has_the_conv_engines_instructions(current):
    """On sm_90 and the JIT targets, sass_lint's REQUIRED: conv_mma.cuh's kernels HMMA of their
    precision, LDSM and LDGSTS, conv_gemm.cuh's LDGSTS; each pattern matched."""
    for pattern, _ in sass_lint.REQUIRED:
        assert current["required"].get(pattern, 0) > 0, pattern
    bad = [f"sm_{h['arch']} {h['name']}: {h['detail']}" for h in current["findings"]
           if h["rule"] == "missing-instruction"]
    assert bad == [], "\n".join(bad)
