"""Lint what ptxas made of csrc/: the VIMNMX3 miscompile of commit 1a7b91c, register spills, and
the instructions the conv engines' kernels must contain.

    python tools/sass_lint.py [BINARY] [--json FILE] [--jit-archs 100,103] [--allow-spill RE]

BINARY: convnet/_C*.so (default: the one `import convnet._C` finds), a fatbin or a cubin.
Exit 0: clean; 1: a miscompile, a spill or an unanswered question; 2: cannot lint. Tools:
cuobjdump and nvdisasm from the PyPI wheels nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm
(site-packages/nvidia/cu13/bin/, else PATH), ptxas beside nvcc. Linted: every embedded cubin
(sm_75/80/86/89/90), and the embedded PTX (compute_100) compiled by nvcc's ptxas for each
architecture `nvcc --list-gpu-arch` names above the newest cubin, from the PTX's own up
(sm_100/103/110/120/121 for CUDA 13.0): those GPUs JIT it (with the driver's ptxas; nvcc's is
the nearest stand-in CI has).

The miscompile (ptxas V13.0.88, sm_90; the same for sm_100 and 103): maxpool_backward's
unrolled trip count max(~lo, -OW, ~hi) came out as

    UIADD3  UR4, -UR7, URZ, URZ        UR4 = -OW
    VIMNMX3 R9, R9, UR7, R14, !PT      max(~lo, OW, ~hi): reads OW where -OW was meant
    VIMNMX  R14, R14, UR4, !PT         max(~hi, -OW): the same chain, reading -OW correctly

Rule "vimnmx3-negation-swap" (fails): a VIMNMX3 reads X (R or UR); one of the 24 straight-line
instructions before it wrote N = -X (IADD3/UIADD3 of -X and zeros, IMAD of -X or X * -1), X and
N unchanged since; the VIMNMX3 does not read N; and one of the 8 after it, a min/max of the same
kind (signedness; min or max), reads N and one of the VIMNMX3's other operands. All four
unrolled backward loops of pool.cu without `#pragma unroll 1` show exactly this on sm_90, 100
and 103 (1 to 14 instructions from negation to VIMNMX3). The sibling is what tells the bug from
code that merely needs X and -X: without it ("vimnmx3-near-negation") the VIMNMX3 is printed as
a suspect, not failed. Older SASS has no VIMNMX3, so only sm_90 and newer are disassembled.

Rule "missing-instruction" (fails): on sm_90 and newer, every kernel REQUIRED names holds the
instructions listed there (conv_mma.cuh's TF32 kernels HMMA.1688.F32.TF32, its BF16 ones
HMMA.16816.F32.BF16, both LDSM and LDGSTS; conv_gemm.cuh's FP32 engine LDGSTS: the cp.async
pipelines); the report counts the kernels each pattern matched.

Spills: -warn-spills only warns, and a cubin's resource usage (cuobjdump -res-usage) gives its
stack frame, which holds local arrays as well as spills (dropout's random_normal_kernel: 40
bytes, no spill). So a function without a frame has not spilled; for the JIT targets ptxas -v
on the shipped PTX gives `N bytes spill stores, N bytes spill loads`; a shipped function with a
frame goes to ptxas -v again, on the shipped PTX for sm_90, else by recompiling its csrc/*.cu
for that architecture with CMakeLists.txt's flags (NVCC_FLAGS), which must reproduce the shipped
registers and frame, or the lint fails rather than guess.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Instructions a kernel must contain on sm_90 and newer (rule "missing-instruction"): the
# tensor-core kernels of csrc/conv_mma.cuh, by precision (0: TF32, 1: BF16).
MMA_KERNEL = r"convmma::mma_gemm_kernel<.*\(convmma::Precision\)"
REQUIRED = ((MMA_KERNEL + "0", ("HMMA.1688.F32.TF32", "LDSM", "LDGSTS")),
            (MMA_KERNEL + "1", ("HMMA.16816.F32.BF16", "LDSM", "LDGSTS")),
            (r"convgemm::implicit_gemm_kernel<", ("LDGSTS",)))
NVCC_FLAGS = ("-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17", "-DCONVNET_WITH_CUDA")
BEFORE, AFTER = 24, 8  # instruction windows of the miscompile rule
ANON = re.compile(r"_GLOBAL__N__[0-9a-f]+_\d+_(\w+?)_cu_")  # an anonymous namespace's file


class LintError(Exception):
    """The lint cannot run (a tool or the binary is missing, a command failed)."""


# ---- tools ------------------------------------------------------------------------------------

def find_tool(name):
    """A CUDA binary: the PyPI wheels' site-packages/nvidia/*/bin first, then PATH."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    for root in sorted(r for r in roots if r and os.path.isdir(os.path.join(r, "nvidia"))):
        for hit in sorted(Path(root, "nvidia").glob(f"*/bin/{name}")):
            if os.access(hit, os.X_OK):
                return str(hit)
    if name == "ptxas" and shutil.which("nvcc"):  # nvcc's own ptxas, not another toolkit's
        beside = Path(shutil.which("nvcc")).resolve().parent / "ptxas"
        if beside.exists():
            return str(beside)
    found = shutil.which(name)
    if not found:
        raise LintError(f"{name} not found (pip install nvidia-cuda-{name}, or put it on PATH)")
    return found


def run(cmd, cwd=None):
    """stdout + stderr of a command that must succeed."""
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise LintError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): "
                        f"{(p.stderr or p.stdout).strip()[-2000:]}")
    return p.stdout + p.stderr


def jit_archs(above):
    """sm_N for every compute_N above `above` (the newest shipped cubin) that nvcc lists: the
    GPUs that JIT our PTX."""
    out = run([shutil.which("nvcc") or "nvcc", "--list-gpu-arch"])
    return sorted({int(n) for n in re.findall(r"compute_(\d+)", out) if int(n) > above})


def demangle(names):
    names, lines = list(names), []
    if names and shutil.which("c++filt"):
        lines = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                               text=True).stdout.splitlines()
    return dict(zip(names, lines if len(lines) == len(names) else names))


def short_name(demangled):
    """'void ns::k<(anonymous namespace)::T>(args)' -> 'ns::k<T>' for the summary table."""
    s = re.sub(r"^void ", "", demangled.replace("(anonymous namespace)::", ""))
    depth = 0
    for i in range(len(s) - 1, -1, -1):  # drop the parameter list: the last top-level (...)
        depth += {")": 1, "(": -1}.get(s[i], 0)
        if depth == 0 and s[i] == "(":
            return s[:i]
    return s


def label(mangled, demangled):
    """'conv.cu implicit_gemm_kernel<...>': an anonymous namespace's file, then the short name."""
    stem = ANON.search(mangled)
    return f"{stem.group(1) + '.cu ' if stem else ''}{short_name(demangled)}"


# ---- SASS -------------------------------------------------------------------------------------

INSTR = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:(@!?U?P[T0-9]+)\s+)?([A-Z0-9_.]+)\s*(.*?)\s*;")
REG = re.compile(r"^[-~|]*(U?R\d+)")
ZERO = {"RZ", "URZ", "0x0"}
PRED = re.compile(r"^!?U?P(T|\d+)$")
NO_DEST = ("ST", "RED", "BRA", "EXIT", "BAR", "BSSY", "BSYNC", "RET", "CALL", "NOP", "WARPSYNC",
           "MEMBAR", "DEPBAR", "YIELD", "JMP", "CCTL", "ERRBAR", "UTMA", "SYNCS", "ELECT")


def parse_sass(text):
    """{mangled function: [instruction dict, or None at a label (a join point)]} of nvdisasm."""
    funcs, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^\.text\.(\S+):\s*$", line)
        if m:
            current = funcs.setdefault(m.group(1), [])
        elif current is not None and re.match(r"^\.L\w*:", line.strip()):
            current.append(None)
        elif current is not None and INSTR.match(line):
            addr, guard, opcode, rest = INSTR.match(line).groups()
            current.append({"addr": int(addr, 16), "op": opcode,
                            "ops": [o.strip() for o in rest.split(",")] if rest else [],
                            "text": " ".join(filter(None, (guard, opcode, rest)))})
    return funcs


def reg(operand):
    m = REG.match(operand)
    return m.group(1) if m else None


def writes(ins):
    """Registers an instruction writes (a wide destination counts its next register too)."""
    if ins is None or not ins["ops"] or ins["op"].startswith(NO_DEST):
        return set()
    r = reg(ins["ops"][0])
    if r is None or ins["ops"][0].startswith(("-", "~", "|")):
        return set()
    if "WIDE" in ins["op"] or ins["op"].endswith(".64") or ins["ops"][0].endswith(".64"):
        prefix, n = re.match(r"(U?R)(\d+)", r).groups()
        return {r, f"{prefix}{int(n) + 1}"}
    return {r}


def sources(ins):
    """Source operands, predicates (PT, !PT, P0 ...) left out."""
    return [o for o in ins["ops"][1:] if not PRED.match(o)]


def negation(ins):
    """(N, X) when the instruction computes N = -X, else None."""
    if ins is None or not ins["ops"]:
        return None
    base, dest, src = ins["op"].split(".")[0], reg(ins["ops"][0]), sources(ins)
    negs = [o for o in src if o.startswith("-") and reg(o)]
    if base in ("IADD3", "UIADD3") and len(negs) == 1 and len(src) == 3:
        if all(o in ZERO for o in src if o is not negs[0]):
            return dest, reg(negs[0])
    if base in ("IMAD", "UIMAD") and len(src) == 3:
        a, b, c = (o.split(".")[0] for o in src)
        if (a in ZERO or b in ZERO) and c.startswith("-") and reg(c):
            return dest, reg(c)
        x = a if b == "-0x1" else b if a == "-0x1" else None
        if c in ZERO and x and reg(x):
            return dest, reg(x)
    return None


def minmax_kind(ins):
    if ins is None or ins["op"].split(".")[0] not in ("VIMNMX", "VIMNMX3", "IMNMX", "UIMNMX"):
        return None
    return (tuple(sorted(set(ins["op"].split(".")[1:]) - {"REUSE"})), ins["ops"][-1])


def minmax_regs(ins):
    return {reg(o) for o in sources(ins) if reg(o)}


def check_vimnmx3(code):
    """[(rule, instruction index, detail)] of one function's instructions (from parse_sass)."""
    found = []
    for i, ins in enumerate(code):
        if ins is None or ins["op"].split(".")[0] != "VIMNMX3":
            continue
        srcs, kind = minmax_regs(ins), minmax_kind(ins)
        for x in sorted(srcs):
            for j in range(i - 1, max(-1, i - 1 - BEFORE), -1):
                if code[j] is None or x in writes(code[j]):
                    break  # a join point, or X is another value before here
                neg = negation(code[j])
                if not neg or neg[1] != x:
                    continue
                n = neg[0]
                if n in srcs or any(n in writes(code[t]) for t in range(j + 1, i)):
                    break
                rule = "vimnmx3-near-negation"
                detail = (f"reads {x} while +0x{code[j]['addr']:04x} {code[j]['text']} "
                          f"set {n} = -{x}")
                for k in range(i + 1, min(len(code), i + 1 + AFTER)):
                    sib = code[k]
                    if sib is None:
                        break
                    shared = (srcs - {x}) & minmax_regs(sib)
                    if (minmax_kind(sib) == kind and n in minmax_regs(sib) and shared
                            and not any(shared & writes(code[t]) for t in range(i, k))):
                        rule = "vimnmx3-negation-swap"
                        detail += (f"; +0x{sib['addr']:04x} {sib['text']} of the same chain "
                                   f"reads {n}: {x} was meant to be {n}")
                        break
                    if n in writes(sib):
                        break
                found.append((rule, i, detail))
                break
    return found


# ---- resource usage ---------------------------------------------------------------------------

def parse_ptxas_v(text, arch=None):
    """{(arch, function): {"regs", "stack", "spill_stores", "spill_loads"}} from ptxas -v."""
    out, func = {}, None
    for line in text.splitlines():
        if m := re.search(r"Compiling entry function '\S+' for 'sm_(\d+)'", line):
            arch = int(m.group(1))
        if m := re.search(r"Function properties for (\S+)", line):
            func = out.setdefault((arch, m.group(1)), {"regs": None})
        if func is None:
            continue
        if m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill "
                          r"loads", line):
            func.update(zip(("stack", "spill_stores", "spill_loads"), map(int, m.groups())))
        if m := re.search(r"Used (\d+) registers", line):
            func["regs"] = int(m.group(1))
    return out


def parse_res_usage(text):
    """{function: (registers, stack bytes)} from cuobjdump -res-usage of one cubin."""
    return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"Function (\S+?):\s*\n\s*REG:(\d+) STACK:(\d+)", text)}


def normalized(mangled):
    """The name without its anonymous-namespace hashes (they may change with the source path)."""
    return re.sub(r"_GLOBAL__N__[0-9a-f]+_(\d+_\w+?_cu)_[0-9a-f]+", r"_GLOBAL__N__\1", mangled)


def cuda_sources(source_dir):
    cmake = Path(source_dir, "CMakeLists.txt") if source_dir else None
    names = re.findall(r"csrc/\w+\.cu\b", cmake.read_text()) if cmake and cmake.exists() else []
    return [Path(source_dir, n) for n in dict.fromkeys(names)]


def ptxas_v(ptxas, src, arch):
    """ptxas -v of a PTX file, or of a csrc/*.cu compiled by nvcc with CMakeLists.txt's flags."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.cubin")
        if Path(src).suffix == ".ptx":
            return parse_ptxas_v(run([ptxas, "-v", f"-arch=sm_{arch}", str(src), "-o", out]))
        return parse_ptxas_v(run([shutil.which("nvcc") or "nvcc", "-cubin", f"-arch=sm_{arch}",
                                  *NVCC_FLAGS, "-I", str(Path(src).parent), "-Xptxas", "-v",
                                  str(src), "-o", out]))


# ---- the lint ---------------------------------------------------------------------------------

def extract(binary, workdir):
    """The embedded cubins and PTX: ([(arch, cubin)], [(arch, ptx)])."""
    if not str(binary).endswith(".cubin"):
        run([find_tool("cuobjdump"), "-xelf", "all", "-xptx", "all",
             str(Path(binary).resolve())], cwd=workdir)
    files = [Path(binary)] if str(binary).endswith(".cubin") else sorted(Path(workdir).iterdir())
    found = {".cubin": [], ".ptx": []}
    for f in files:
        m = re.search(r"sm_(\d+)\.(cubin|ptx)$", f.name)
        if not m:
            raise LintError(f"{f}: no sm_NN in the name, architecture unknown")
        found[f.suffix].append((int(m.group(1)), f))
    if not found[".cubin"]:
        raise LintError(f"{binary} embeds no cubin (a CPU-only build?)")
    return found[".cubin"], found[".ptx"]


def lint(binary, jit=None, source_dir=ROOT, jobs=2, allow_spill=()):
    """The report of one binary (a JSON-ready dict; format_summary prints it). jit: the PTX-JIT
    architectures (None: those nvcc lists above the newest cubin; each PTX is compiled for those
    at or above its own); source_dir: the tree of csrc/."""
    cuobjdump, nvdisasm, ptxas = (find_tool(t) for t in ("cuobjdump", "nvdisasm", "ptxas"))
    kernels, sass, problems, start = {}, {}, [], time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        cubins, ptxs = extract(binary, tmp)
        jit = jit_archs(max(a for a, _ in cubins)) if jit is None else list(jit)

        def shipped(arch, cubin):
            usage = parse_res_usage(run([cuobjdump, "-res-usage", str(cubin)]))
            code = parse_sass(run([nvdisasm, "-c", str(cubin)])) if arch >= 90 else {}
            return arch, {f: {"regs": r, "stack": st, "how": "cubin"}
                          for f, (r, st) in usage.items()}, code

        def jitted(arch, ptx, i):
            out = Path(tmp, f"jit{i}.sm_{arch}.cubin")
            usage = parse_ptxas_v(run([ptxas, "-v", f"-arch=sm_{arch}", str(ptx), "-o", str(out)]))
            return arch, {f: dict(u, how="ptxas -v on the PTX") for (_, f), u in usage.items()
                          if u.get("regs") is not None}, parse_sass(run([nvdisasm, "-c", str(out)]))

        tasks = [pool.submit(shipped, a, c) for a, c in cubins]
        tasks += [pool.submit(jitted, a, p, i) for a in jit for i, (pa, p) in enumerate(ptxs)
                  if a >= pa]
        for task in tasks:
            arch, usage, code = task.result()
            kernels.update({(arch, f): u for f, u in usage.items()})
            sass.update({(arch, f): c for f, c in code.items()})
        seconds = {"cubins and PTX-JIT": round(time.monotonic() - start, 1)}
        resolve_stacks(kernels, ptxs, ptxas, cuda_sources(source_dir), pool, problems)
        seconds["stack frames"] = round(time.monotonic() - start - seconds["cubins and PTX-JIT"], 1)
    names = demangle(sorted({f for _, f in kernels} | {f for _, f in sass}))
    version = re.findall(r"V\d+\.\d+\.\d+", run([ptxas, "--version"])) or ["?"]
    digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()
    report = {"binary": str(binary), "sha256": digest, "ptxas": version[0],
              "shipped": sorted({a for a, _ in cubins}), "ptx": sorted({a for a, _ in ptxs}),
              "jit": sorted(jit) if ptxs else [], "seconds": seconds, "kernels": [],
              "vimnmx3": {}, "suspects": []}
    for (arch, f), u in sorted(kernels.items()):
        report["kernels"].append({"arch": arch, "kernel": f, "name": names[f], **u})
        if (u.get("spill_stores") or u.get("spill_loads")) and not any(
                re.search(p, f"sm_{arch}:{names[f]}") for p in allow_spill):
            problems.append({"rule": "spill", "arch": arch, "kernel": f, "detail":
                             f"{u['spill_stores']} bytes spill stores, {u['spill_loads']} bytes "
                             f"spill loads ({u['how']})"})
    for (arch, f), code in sorted(sass.items()):
        count = sum(1 for ins in code if ins and ins["op"].startswith("VIMNMX3"))
        report["vimnmx3"][arch] = report["vimnmx3"].get(arch, 0) + count
        for rule, i, detail in check_vimnmx3(code):
            hit = {"rule": rule, "arch": arch, "kernel": f, "addr": code[i]["addr"],
                   "instr": code[i]["text"], "detail": detail}
            (problems if rule == "vimnmx3-negation-swap" else report["suspects"]).append(hit)
    report["required"] = {}
    for (arch, f), code in sorted(sass.items()):
        ops = {ins["op"] for ins in code if ins}
        for pattern, needed in REQUIRED:
            if re.search(pattern, names[f]):
                report["required"][pattern] = report["required"].get(pattern, 0) + 1
                missing = [n for n in needed if not any(op.startswith(n) for op in ops)]
                if missing:
                    problems.append({"rule": "missing-instruction", "arch": arch, "kernel": f,
                                     "detail": f"no {', '.join(missing)} in its SASS"})
    for hit in problems + report["suspects"]:
        hit["name"] = names.get(hit["kernel"], hit["kernel"])
    report["findings"] = problems
    return report


def resolve_stacks(kernels, ptxs, ptxas, sources, pool, problems):
    """Spills of the shipped functions that have a stack frame, from ptxas -v: on the shipped
    PTX of their own architecture, else on the csrc/*.cu named by their anonymous namespace (or
    on every source when none is)."""
    todo = [(a, f) for (a, f), u in kernels.items() if u["how"] == "cubin" and u["stack"]]
    asks = set()
    for arch, f in todo:
        kernels[(arch, f)].update(spill_stores=None, spill_loads=None)
        own = [p for a, p in ptxs if a == arch and f".entry {f}(" in p.read_text()]
        stem = ANON.search(f)
        hinted = [s for s in sources if stem and s.stem == stem.group(1)]
        asks.update((path, arch) for path in (own[:1] or hinted or sources))
    answers = {}
    for path, usage in pool.map(lambda key: (key[0], ptxas_v(ptxas, *key)), sorted(asks)):
        answers.update({(a, normalized(f)): (path, u) for (a, f), u in usage.items()})
    for arch, f in todo:
        k, (path, u) = kernels[(arch, f)], answers.get((arch, normalized(f)), (None, {}))
        if (u.get("regs"), u.get("stack")) != (k["regs"], k["stack"]):
            why = (f"ptxas on {path.name} gave {u.get('regs')} registers and a {u.get('stack')}-"
                   f"byte frame: are NVCC_FLAGS still CMakeLists.txt's?") if path else (
                   "no csrc/*.cu to recompile holds it")
            problems.append({"rule": "unresolved", "arch": arch, "kernel": f, "detail":
                             f"{k['regs']} registers and a {k['stack']}-byte stack frame, a spill "
                             f"or a local array: {why}"})
            continue
        k.update(spill_stores=u["spill_stores"], spill_loads=u["spill_loads"],
                 how=f"cubin, ptxas -v on {'the PTX' if path.suffix == '.ptx' else path.name}")


def format_summary(report):
    archs = sorted({k["arch"] for k in report["kernels"]})
    rows = {}
    for k in report["kernels"]:
        cell = str(k["regs"])
        if k.get("spill_stores") or k.get("spill_loads"):
            cell += f" S{k['spill_stores']}/{k['spill_loads']}"
        elif k.get("stack"):
            cell += "*" if k.get("spill_stores") == 0 else "?"
        rows.setdefault(label(k["kernel"], k["name"]), {})[k["arch"]] = cell
    width = min(96, max(map(len, rows), default=6))
    out = [f"sass_lint {report['binary']} (sha256 {report['sha256'][:12]}), ptxas "
           f"{report['ptxas']}: cubins sm_{' '.join(map(str, report['shipped']))}; compute_"
           f"{' '.join(map(str, report['ptx'])) or '-'} PTX JIT-compiled for sm_"
           f"{' '.join(map(str, report['jit'])) or '-'}",
           "registers per kernel; S<stores>/<loads>: spilled bytes; *: stack frame, no spill",
           "kernel".ljust(width) + "".join(f"{'sm_' + str(a):>12}" for a in archs)]
    out += [name[:width].ljust(width) + "".join(f"{cells.get(a, '-'):>12}" for a in archs)
            for name, cells in sorted(rows.items())]
    out.append("VIMNMX3 instructions: " + ", ".join(
        f"sm_{a} {n}" for a, n in sorted(report["vimnmx3"].items())))
    out.append("kernels checked for their instructions: " + ", ".join(
        f"{n} of {p}" for p, n in report.get("required", {}).items()))
    for kind, hits in (("suspect, not failing", report["suspects"]), ("FAIL", report["findings"])):
        for h in hits:
            where = f" +0x{h['addr']:04x} {h['instr']}" if "addr" in h else ""
            out.append(f"{kind} {h['rule']}: sm_{h['arch']} {label(h['kernel'], h['name'])}"
                       f"{where}: {h['detail']}")
    spills = sum(1 for k in report["kernels"] if k.get("spill_stores") or k.get("spill_loads"))
    waived = spills - sum(1 for h in report["findings"] if h["rule"] == "spill")
    out.append(f"result: {'FAIL' if report['findings'] else 'ok'}: {len(report['kernels'])} "
               f"kernel builds, {spills} spilling{f' ({waived} waived)' if waived else ''}, "
               f"{len(report['findings'])} problems ({sum(report['seconds'].values()):.0f} s)")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("binary", nargs="?", help="convnet/_C*.so, a fatbin or a *.sm_NN.cubin")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--jit-archs", help="comma-separated, e.g. 100,120 ('' for none); default: "
                                       "every arch nvcc --list-gpu-arch names above the newest "
                                       "shipped cubin")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))  # CI has 2 cores
    p.add_argument("--source-dir", default=str(ROOT), help="the tree holding CMakeLists.txt")
    p.add_argument("--allow-spill", action="append", default=[], metavar="REGEX",
                   help="waive spills whose 'sm_<arch>:<demangled kernel>' matches (repeatable)")
    args = p.parse_args(argv)
    jit = None if args.jit_archs is None else [int(a) for a in args.jit_archs.split(",") if a]
    try:
        binary = args.binary
        if not binary:
            import importlib.util
            spec = importlib.util.find_spec("convnet._C")
            if spec is None or not spec.origin:
                raise LintError("convnet._C is not built (pip install -e .); or pass its path")
            binary = spec.origin
        report = lint(binary, jit, args.source_dir, args.jobs, args.allow_spill)
    except LintError as error:
        print(f"sass_lint: cannot lint: {error}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(format_summary(report))
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
