"""Turn raw measurements and a GPU session's logs into DESIGN.md's report ("Reports from a GPU").

Pure Python (no GPU, no third-party packages), so tests/test_bench_report.py runs it anywhere.

    split_op / contract_op_of     a row's names: contract op <-> op and pass (one rule)
    finalize_row(raw, peak)       one benchmark row: ms -> TFLOP/s or GB/s, frac_peak, ratio
    refinalize(report)            a finished report with the rules of finalize_row applied again
    merge(...)                    the whole report, with report_inputs.py's readers of the junit
                                  XML, sanitizer logs, metrics.jsonl and the pipeline's JSON
    format_table(rows)            the short aligned table printed last

CLI (benchmarks/gpu_run.sh calls it after every step, so a killed run still leaves a report):
    python benchmarks/report.py merge --out FILE [--bench bench.json] [--junit cuda-tests.xml]
        [--memcheck-log L --memcheck-junit X] ... (each of SANITIZERS: memcheck, racecheck,
        initcheck, synccheck)
        [--steps steps.jsonl] [--train-metrics metrics.jsonl --train-status S]
        [--twogpu twogpu.json] [--pipeline pipeline.json]
        [--device NAME] [--commit SHA] [--copy-to DIR]
    python benchmarks/report.py table FILE
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET

from report_inputs import junit_counts, pipeline_line, sanitizer_status, train_summary

SANITIZERS = ("memcheck", "racecheck", "initcheck", "synccheck")  # compute-sanitizer's tools

# ---- op names -----------------------------------------------------------------------------------
# A row names its op twice: `op` and `pass`, short and readable (conv, bwd_filter; the case id is
# op.pass.layer), and `contract_op`, the contract's `<op>_<pass>` (conv_backward_filter;
# convnet/backend/contract.py's OPS). One rule joins the two, so reports written before rows had
# `contract_op` get it when they are read (finalize_row).

PASS_SUFFIXES = (("_backward_filter", "bwd_filter"), ("_backward_data", "bwd_data"),
                 ("_backward", "bwd"), ("_forward", "fwd"))
# ops without a pass in their name
PASS_OF_WHOLE_OPS = {"sgd_update": "update", "maxnorm": "update", "random_normal": "draw",
                     "dropout_mask": "draw", "conv_forward_bias_relu": "fused"}
# old rows no rule names: the case timed two contract ops in one call (split since)
OLD_ROWS = {("softmax_logreg", "fwd"): "softmax_forward+logreg_forward"}


def split_op(contract_op):
    """'conv_backward_filter' -> ('conv', 'bwd_filter'); 'sgd_update' -> ('sgd_update',
    'update')."""
    for suffix, pass_ in PASS_SUFFIXES:
        if contract_op.endswith(suffix):
            return contract_op[:-len(suffix)], pass_
    return contract_op, PASS_OF_WHOLE_OPS.get(contract_op, "call")


def contract_op_of(row):
    """The contract op a row timed: its `contract_op`, else the one its op and pass name."""
    if row.get("contract_op"):
        return row["contract_op"]
    op, pass_ = row.get("op"), row.get("pass")
    if op is None:
        return None
    if (op, pass_) in OLD_ROWS:
        return OLD_ROWS[(op, pass_)]
    return op + dict((p, s) for s, p in PASS_SUFFIXES).get(pass_, "")


# ---- benchmark rows ---------------------------------------------------------------------------

ROW_KEYS = ("op", "pass", "layer", "shape", "contract_op")
# Figures finalize_row derives: a finished row fed back in (refinalize) gets them afresh.
DERIVED_KEYS = ("ratio_vs_cudnn", "twin_outside_tol", "twin_note")


def _sig(x, digits=4):
    """Round to `digits` significant digits (for readable JSON); None and non-finite pass."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def finalize_row(raw, peak):
    """One report row from a raw measurement.

    raw: op, pass, layer, shape, contract_op (worked out from op and pass when missing), status
    ("ok" when validated and timed), ms, work_kind ("flops" | "bytes"), work, and optionally
    twin_ms / twin (the cuDNN or PyTorch twin's median ms and what it was), plus free-form
    extras (rel_err, tol, iters, notes ...), kept as they are.
    peak: {"fp32_tflops": ..., "copy_gbps": ...} (either may be missing).

    A row that is not "ok" keeps its status and carries no timing figures. A twin whose own
    error against the reference is outside our tolerance (twin_rel_err > tol) did not meet the
    accuracy we are held to (a Winograd/FFT-style algorithm, TF32), so its time is no fair
    yardstick: the row keeps twin_ms but gets no ratio_vs_cudnn, and says why in
    twin_outside_tol / twin_note.
    """
    row = {k: raw.get(k) for k in ROW_KEYS}
    row["contract_op"] = contract_op_of(raw)
    row["status"] = raw.get("status", "error: no status")
    ms = raw.get("ms")
    extras = {k: v for k, v in raw.items()
              if k not in ROW_KEYS and k not in ("status", "ms", "work", "work_kind", "twin_ms",
                                                 "index", "type", "id")
              and k not in DERIVED_KEYS}
    if row["status"] != "ok" or not isinstance(ms, (int, float)) or not ms > 0:
        if row["status"] == "ok":
            row["status"] = f"error: no valid time (ms={ms!r})"
        row.update({k: v for k, v in extras.items() if k not in ("twin",)})
        return row
    row["ms"] = _sig(ms)
    seconds = ms * 1e-3
    kind, work = raw.get("work_kind"), raw.get("work")
    if kind == "flops" and work:
        tflops = work / seconds / 1e12
        row["tflops"] = _sig(tflops)
        if peak.get("fp32_tflops"):
            row["frac_peak"] = _sig(tflops / peak["fp32_tflops"], 3)
    elif kind == "bytes" and work:
        gbps = work / seconds / 1e9
        row["gbps"] = _sig(gbps)
        if peak.get("copy_gbps"):
            row["frac_peak"] = _sig(gbps / peak["copy_gbps"], 3)
    twin_ms = raw.get("twin_ms")
    if isinstance(twin_ms, (int, float)) and twin_ms > 0:
        if twin_outside_tol(raw):
            row["twin_outside_tol"] = True
            row["twin_note"] = (f"twin_rel_err {raw['twin_rel_err']:.3g} > tol {raw['tol']:.3g}: "
                                f"no ratio (the twin is less accurate than we must be)")
        else:
            row["ratio_vs_cudnn"] = _sig(ms / twin_ms, 3)
        row["twin_ms"] = _sig(twin_ms)
    else:
        extras.pop("twin", None)
    row.update(extras)
    return row


def twin_outside_tol(row):
    """True when the row's twin missed our own tolerance: twin_rel_err > tol (or is NaN)."""
    err, tol = row.get("twin_rel_err"), row.get("tol")
    if not (isinstance(err, (int, float)) and isinstance(tol, (int, float))):
        return False
    return not err <= tol


def refinalize(report):
    """The report with every row run through finalize_row again (a copy; the input is kept).

    Committed reports hold finished rows, without the raw work / work_kind: their tflops, gbps
    and frac_peak pass through as they are, while the derived twin fields (ratio_vs_cudnn,
    twin_outside_tol, twin_note) are worked out anew from ms, twin_ms, twin_rel_err and tol."""
    peak = report.get("peak") or {}
    return {**report, "rows": [finalize_row(row, peak) for row in report.get("rows") or []]}


def rows_from_events(lines):
    """(meta, peak, raw rows) of bench_kernels.py's event stream (JSON lines); the last row event
    of each case index wins, and lines cut short by a killed process are skipped."""
    raws = {}
    meta, peak = {}, {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed process
        kind = event.get("type")
        if kind == "row":
            raws[event["index"]] = event
        elif kind == "meta":
            meta.update({k: v for k, v in event.items() if k != "type"})
        elif kind == "peak":
            peak.update({k: v for k, v in event.items() if k != "type"})
    return meta, peak, [raws[i] for i in sorted(raws)]


def device_slug(name):
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (report file names)."""
    return re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-") or "unknown-gpu"


# ---- the whole report --------------------------------------------------------------------------

def merge(bench=None, tests=None, sanitizer=None, steps=None, train=None, device=None,
          commit=None, date=None, twogpu=None, pipeline=None):
    """DESIGN.md's report. Every input may be missing (a step that failed or never ran): the
    report then says so instead of inventing figures.

    bench: bench_kernels.py's JSON; tests: junit_counts of the cuda tests (None: no XML);
    sanitizer: {tool: (status, detail)} for tools of SANITIZERS;
    steps: [{"step", "status", "rc", "seconds", ...}]; train: {"status", ...} or None;
    twogpu: bench_twogpu.py's JSON or None; pipeline: bench_pipeline.py's JSON or None."""
    bench = bench or {}
    report = {
        "device": bench.get("device") or device or "unknown",
        "commit": commit or bench.get("commit") or "unknown",
        "date": date or bench.get("date") or datetime.date.today().isoformat(),
        "torch": bench.get("torch"),
        "cudnn_tf32": bench.get("cudnn_tf32"),
        "peak": bench.get("peak") or {},
    }
    if tests is None:
        report.update({"cuda_passed": None, "cuda_failed": None, "cuda_skipped": None,
                       "per_op": {}, "cuda_tests": "no junit report"})
    else:
        report.update({"cuda_passed": tests["passed"], "cuda_failed": tests["failed"],
                       "cuda_skipped": tests["skipped"], "per_op": tests["per_op"]})
    sanitizer = sanitizer or {}
    report["sanitizer"] = {tool: (sanitizer[tool][0] if tool in sanitizer else "not run")
                           for tool in SANITIZERS}
    details = {tool: sanitizer[tool][1] for tool in sanitizer if sanitizer[tool][1]}
    if details:
        report["sanitizer_detail"] = details
    report["rows"] = refinalize(bench)["rows"]
    for key in ("cudnn", "torch_precision", "bench"):
        if key in bench:
            report[key] = bench[key]
    if steps:
        report["steps"] = steps
    if train is not None:
        report["train"] = train
    if twogpu is not None:
        report["twogpu"] = twogpu
    if pipeline is not None:
        report["pipeline"] = pipeline
    return report


def format_table(rows):
    """A short aligned table of the rows: op, pass, layer, ms, rate, frac of peak, vs the twin,
    the contract op, status."""
    header = ("op", "pass", "layer", "ms", "rate", "frac", "vs_twin", "contract_op", "status")
    lines = [header]
    for r in rows:
        if "tflops" in r:
            rate = f"{r['tflops']:.2f} TF/s"
        elif "gbps" in r:
            rate = f"{r['gbps']:.0f} GB/s"
        else:
            rate = "-"
        ms = f"{r['ms']:.4g}" if isinstance(r.get("ms"), (int, float)) else "-"
        frac = f"{r['frac_peak']:.2f}" if isinstance(r.get("frac_peak"), (int, float)) else "-"
        ratio = (f"{r['ratio_vs_cudnn']:.2f}"
                 if isinstance(r.get("ratio_vs_cudnn"), (int, float))
                 else "twin>tol" if r.get("twin_outside_tol") else "-")
        status = str(r.get("status", ""))
        lines.append((str(r.get("op")), str(r.get("pass")), str(r.get("layer")), ms, rate, frac,
                      ratio, str(contract_op_of(r)), status[:60]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


def format_summary(report):
    """A few lines: device, tests, sanitizers, steps, train, twogpu, pipeline; then the table."""
    out = [f"device {report['device']}  commit {report['commit']}  date {report['date']}  "
           f"torch {report.get('torch')}  cudnn_tf32 {report.get('cudnn_tf32')}",
           f"peak {json.dumps(report.get('peak', {}))}",
           f"cuda tests: passed {report['cuda_passed']} failed {report['cuda_failed']} "
           f"skipped {report['cuda_skipped']}",
           f"sanitizer: {json.dumps(report['sanitizer'])}"]
    failing = {op: c for op, c in report.get("per_op", {}).items() if c.get("failed")}
    if failing:
        out.append(f"failing ops: {json.dumps(failing)}")
    for step in report.get("steps", []):
        out.append(f"step {step.get('step')}: {step.get('status')} ({step.get('seconds')} s)")
    if "train" in report:
        out.append(f"train: {json.dumps(report['train'])}")
    if "twogpu" in report:
        t = report["twogpu"]
        out.append(f"twogpu (--gpu {','.join(map(str, t['gpus']))}, batch {t['mini']}): "
                   f"two towers {t['two_tower_step_ms']:.2f} ms/step vs one GPU "
                   f"{t['one_gpu_step_ms']:.2f}; copies {t['copy_ms']:.2f} ms alone "
                   f"({t['copy_bytes_per_step']:,} bytes/step)")
    if "pipeline" in report:
        out.append(pipeline_line(report["pipeline"]))
    outside = [f"{r.get('op')}.{r.get('pass')}.{r.get('layer')}"
               for r in report.get("rows", []) if r.get("twin_outside_tol")]
    if outside:
        out.append("no x-cuDNN ratio where the twin is outside our tolerance: "
                   + ", ".join(outside))
    out.append(format_table(report.get("rows", [])))
    return "\n".join(out)


# ---- CLI ---------------------------------------------------------------------------------------

def _read(path):
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _junit_or_none(path):
    text = _read(path)
    if not text:
        return None
    try:
        return junit_counts(text)
    except ET.ParseError:
        return None


def _steps(path):
    steps = []
    for line in (_read(path) or "").splitlines():
        try:
            steps.append(json.loads(line))
        except ValueError:
            continue
    return steps


def write_json(path, data):
    """Write atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _json_or_none(path):
    try:
        return json.loads(_read(path) or "null")
    except ValueError:
        return None


def cmd_merge(args):
    bench = _json_or_none(args.bench)
    steps = _steps(args.steps)
    sanitizer = {}
    for tool in SANITIZERS:
        step = [s for s in steps if s.get("step") == tool]
        log_path = getattr(args, f"{tool}_log")
        if step and str(step[-1].get("status", "")).startswith("skipped"):
            sanitizer[tool] = (f"not run ({step[-1]['status']})", {})
        elif step or (log_path and os.path.exists(log_path)):
            rc = step[-1].get("rc") if step else None
            sanitizer[tool] = sanitizer_status(_read(log_path) or "",
                                               _junit_or_none(getattr(args, f"{tool}_junit")), rc)
    train = None
    if args.train_status:
        train = {"status": args.train_status, **train_summary(_read(args.train_metrics))}
    report = merge(bench, _junit_or_none(args.junit), sanitizer, steps, train,
                   device=args.device, commit=args.commit, date=args.date,
                   twogpu=_json_or_none(args.twogpu), pipeline=_json_or_none(args.pipeline))
    write_json(args.out, report)
    if args.copy_to:
        os.makedirs(args.copy_to, exist_ok=True)
        shutil.copy(args.out, os.path.join(args.copy_to, os.path.basename(args.out)))
    if not args.quiet:
        print(format_summary(report))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge a GPU session's outputs into one JSON report")
    m.add_argument("--out", required=True)
    m.add_argument("--bench")
    m.add_argument("--twogpu", help="bench_twogpu.py's JSON")
    m.add_argument("--pipeline", help="bench_pipeline.py's JSON")
    m.add_argument("--junit")
    for tool in SANITIZERS:
        m.add_argument(f"--{tool}-log")
        m.add_argument(f"--{tool}-junit")
    m.add_argument("--steps")
    m.add_argument("--train-metrics")
    m.add_argument("--train-status")
    m.add_argument("--device")
    m.add_argument("--commit")
    m.add_argument("--date")
    m.add_argument("--copy-to")
    m.add_argument("--quiet", action="store_true")
    t = sub.add_parser("table", help="print a report's summary and table")
    t.add_argument("file")
    args = p.parse_args(argv)
    if args.command == "merge":
        return cmd_merge(args)
    with open(args.file, encoding="utf-8") as f:
        report = refinalize(json.load(f))
    print(format_summary(report) if "sanitizer" in report else format_table(report["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
