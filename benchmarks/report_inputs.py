"""Readers of what a GPU run leaves besides the benchmark rows, for report.py's merge: pytest's
junit XML (counts per op), compute-sanitizer logs (clean or not, and why), a training run's
metrics.jsonl, and the image-pipeline benchmark's JSON.

    junit_counts(xml_text)        passed / failed / skipped, and per_op (test_<op>_... names)
    sanitizer_status(log, ...)    "clean" | "N errors" | "incomplete: ..."
    train_summary(metrics_text)   the final test error of a training run's metrics.jsonl
    pipeline_line(doc)            one line from bench_pipeline.py's JSON (rates, waits)
"""
import json
import re
import xml.etree.ElementTree as ET


# ---- pytest's junit XML ------------------------------------------------------------------------

def op_of_test(name):
    """The op a test checks, from its name test_<op>_...: 'test_conv_forward[x]' -> 'conv'.
    A leading 'cuda_' or 'gpu_' after 'test_' is skipped; names that are not test_* (collection
    errors) group under '(collection)'."""
    base = name.split("[", 1)[0]
    if not base.startswith("test_"):
        return "(collection)"
    words = [w for w in base[len("test_"):].split("_") if w]
    while len(words) > 1 and words[0] in ("cuda", "gpu"):
        words = words[1:]
    return words[0] if words else "(unnamed)"


def junit_counts(xml_text):
    """{"passed", "failed", "skipped", "per_op": {op: {"passed", "failed", "skipped"}}}.

    A test with a <failure> or <error> (a failing teardown included) counts once as failed;
    <skipped> (xfail too) counts as skipped; anything else passed. The nameless entry pytest
    writes for a test cut short by an interrupt is not counted."""
    root = ET.fromstring(xml_text)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    per_op = {}
    for case in root.iter("testcase"):
        if not case.get("name"):
            continue  # the stub pytest writes for a test cut short by an interrupt
        tags = {child.tag for child in case}
        outcome = ("failed" if tags & {"failure", "error"} else
                   "skipped" if "skipped" in tags else "passed")
        counts[outcome] += 1
        op = per_op.setdefault(op_of_test(case.get("name", "")),
                               {"passed": 0, "failed": 0, "skipped": 0})
        op[outcome] += 1
    counts["per_op"] = dict(sorted(per_op.items()))
    return counts


# ---- compute-sanitizer logs --------------------------------------------------------------------

_ERROR_SUMMARY = re.compile(r"ERROR SUMMARY:\s*(\d+)\s+errors?")
_RACE_SUMMARY = re.compile(
    r"RACECHECK SUMMARY:\s*(\d+)\s+hazards?\s+displayed\s*\((\d+)\s+errors?,\s*(\d+)\s+warnings?\)")


def sanitizer_status(log_text, tests=None, rc=None):
    """(status, detail) of one compute-sanitizer run over pytest.

    status: "clean" when the tool's summary says 0 errors AND the tests ran to their end under
    it (a target that crashed or was killed can print a clean summary over nothing);
    "N errors" when it found some; "incomplete: why" otherwise.
    tests: junit_counts of the pytest run under the tool (None if no XML was written);
    rc: the step's exit status (124/137: killed at its time limit)."""
    detail = {"rc": rc}
    errors = [int(m) for m in _ERROR_SUMMARY.findall(log_text or "")]
    races = [tuple(int(v) for v in m) for m in _RACE_SUMMARY.findall(log_text or "")]
    if races:
        detail["hazards"] = sum(r[0] for r in races)
        detail["race_errors"] = sum(r[1] for r in races)
        detail["race_warnings"] = sum(r[2] for r in races)
    if errors:
        detail["errors"] = sum(errors)
    if tests is not None:
        detail["tests"] = {k: tests[k] for k in ("passed", "failed", "skipped")}
    found = max(detail.get("errors", 0), detail.get("race_errors", 0))
    if found:
        return f"{found} errors", detail
    if not errors and not races:
        why = "killed at its time limit" if rc in (124, 137) else "no sanitizer summary"
        return f"incomplete: {why}", detail
    if rc in (124, 137):
        return "incomplete: killed at its time limit", detail
    if tests is None:
        return "incomplete: the tests under it wrote no report", detail
    if tests["passed"] + tests["failed"] == 0:
        return "incomplete: no test ran under it", detail
    return "clean", detail


# ---- training run ------------------------------------------------------------------------------

def train_summary(metrics_text):
    """The last test record of a run's metrics.jsonl: final top-1 / top-5 test error, epoch."""
    last, records = None, 0
    for line in (metrics_text or "").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "top1_error" in record:
            last, records = record, records + 1
    if last is None:
        return {"final_test_error": None, "test_records": 0}
    summary = {"final_test_error": last.get("top1_error"), "test_records": records}
    for key in ("top5_error", "test_cost", "epoch", "step", "elapsed_s", "images_per_s"):
        if key in last:
            summary[key] = last[key]
    return summary


# ---- the image pipeline -----------------------------------------------------------------------

def _img_rate(x):
    return f"{x:,.0f}" if isinstance(x, (int, float)) else "-"


def _widest(rates):
    """The rate at the largest worker count of {workers: img/s} (keys are strings after JSON)."""
    if not isinstance(rates, dict) or not rates:
        return None, None
    workers = max(rates, key=lambda k: int(k))
    return int(workers), rates[workers]


def pipeline_line(doc):
    """One line from bench_pipeline.py's JSON: per decoder the one-core rate and the best
    all-cores rate of the uint8 stage (threads or processes), then each simulated training
    step's wait fractions (whole loop; within epochs, without each epoch's first batch)."""
    machine = doc.get("machine") or {}
    parts = []
    for name, row in (doc.get("decoders") or {}).items():
        best = None
        for kind in ("threads", "processes"):
            workers, rate = _widest(row.get(f"pipeline_uint8_{kind}"))
            if isinstance(rate, (int, float)) and (best is None or rate > best[2]):
                best = (kind, workers, rate)
        text = f"{name} one core {_img_rate(row.get('one_core'))} img/s"
        if best:
            text += f", {best[1]} {best[0]} {_img_rate(best[2])} img/s"
        parts.append(text)
    sims = [f"{_img_rate(s.get('target_images_per_s'))} img/s step waits "
            f"{100 * s['wait_fraction']:.1f}% ({100 * s['wait_fraction_within_epochs']:.1f}% "
            f"within epochs), reached {_img_rate(s.get('images_per_s'))}"
            for s in doc.get("simulated_training") or []
            if isinstance(s.get("wait_fraction"), (int, float))
            and isinstance(s.get("wait_fraction_within_epochs"), (int, float))]
    line = (f"pipeline ({machine.get('cores', '?')} cores, batch {doc.get('batch')}, "
            f"{doc.get('inner_size')} crops): " + ("; ".join(parts) or "no decoder measured"))
    if sims:
        line += "; simulated training: " + "; ".join(sims)
    return line
