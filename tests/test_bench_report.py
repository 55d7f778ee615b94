"""The GPU report's plumbing, without a GPU: FLOP/byte counting of the benchmark cases, the
row arithmetic (TFLOP/s, GB/s, fraction of peak, ratio to cuDNN), the junit / sanitizer /
training parsers, the merged report's shape (DESIGN.md "Reports from a GPU"), the timing
statistics, and that benchmarks/gpu_run.sh parses."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


report = load("report")
report_inputs = load("report_inputs")
workloads = load("workloads")
gpu_timing = load("gpu_timing")

DESIGN_KEYS = {"device", "commit", "date", "torch", "cudnn_tf32", "peak", "cuda_passed",
               "cuda_failed", "cuda_skipped", "per_op", "sanitizer", "rows"}


# ---- counting --------------------------------------------------------------------------------

def alexnet(name):
    return next(layer for layer in workloads.ALEXNET_CONVS if layer.name == name)


@pytest.mark.parametrize("name, out, flops", [
    ("conv1", 55, 26_986_291_200),   # 2 * 128 * 96 * 55*55 * 3 * 11*11
    ("conv2", 27, 57_330_892_800),   # 2 * 128 * 256 * 27*27 * 48 * 5*5 (groups 2)
    ("conv3", 13, 38_277_218_304),   # 2 * 128 * 384 * 13*13 * 256 * 3*3
    ("conv4", 13, 28_707_913_728),   # 2 * 128 * 384 * 13*13 * 192 * 3*3 (groups 2)
    ("conv5", 13, 19_138_609_152),   # 2 * 128 * 256 * 13*13 * 192 * 3*3 (groups 2)
])
def test_conv_flops_alexnet_minimum_work(name, out, flops):
    layer = alexnet(name)
    assert (layer.OH, layer.OW) == (out, out)
    assert layer.flops() == flops
    cases = [c for c in workloads.all_cases() if c.layer == f"alexnet-{name}" and c.op == "conv"]
    assert cases and all(c.work == flops and c.work_kind == "flops" for c in cases)
    assert {c.contract_op for c in cases} <= {"conv_forward", "conv_backward_data",
                                              "conv_backward_filter"}


def test_conv_output_size_is_cuda_convnets_ceil():
    from convnet.backend import numpy_conv, numpy_pool

    assert workloads.conv_output_size(10, 3, 4, 0) == 3  # 1 + ceil(7/4); floor would give 2
    assert workloads.pool_output_size(56, 3, 2, 0) == 28  # 1 + ceil(53/2)
    for img in range(5, 40):
        for fs, stride, pad in ((3, 1, 1), (5, 2, 2), (11, 4, 0), (3, 3, 0)):
            assert (workloads.conv_output_size(img, fs, stride, pad)
                    == numpy_conv.conv_output_size(img, fs, stride, pad))
        assert (workloads.pool_output_size(img, 3, 2, 0)
                == numpy_pool.pool_output_size(img, 3, 2, 0))


def test_conv_shapes_of_the_three_nets():
    shapes = {layer.label: (layer.x_shape, layer.w_shape, layer.y_shape)
              for layer in workloads.CONV_LAYERS}
    assert shapes["alexnet-conv2"] == ((128, 96, 27, 27), (256, 48, 5, 5), (128, 256, 27, 27))
    assert shapes["alexnet-conv5"] == ((128, 384, 13, 13), (256, 192, 3, 3), (128, 256, 13, 13))
    assert shapes["fashion-conv1"] == ((128, 1, 28, 28), (32, 1, 5, 5), (128, 32, 28, 28))
    assert shapes["fashion-conv2"] == ((128, 32, 14, 14), (64, 32, 5, 5), (128, 64, 14, 14))
    assert shapes["cifar-conv1"] == ((128, 3, 32, 32), (64, 3, 5, 5), (128, 64, 32, 32))


def test_memory_bound_cases_minimum_bytes():
    by_id = {c.id: c for c in workloads.all_cases()}
    s = 128 * 96 * 55 * 55            # AlexNet's conv1 output, 37,171,200 floats
    pooled = 128 * 96 * 27 * 27
    assert by_id["lrn.fwd.alexnet-rnorm1"].work == 2 * s * 4
    assert by_id["lrn.bwd.alexnet-rnorm1"].work == 3 * s * 4
    assert by_id["neuron.bwd.alexnet-relu1"].work == 3 * s * 4
    assert by_id["maxpool.fwd.alexnet-pool1"].work == (s + pooled) * 4 == 184_516_608
    assert by_id["maxpool.bwd.alexnet-pool1"].work == (2 * s + pooled) * 4
    assert by_id["sgd_update.update.alexnet-fc7"].work == 5 * 4 * 4096 * 4096
    big = by_id["dropout.fwd.64MiB"]
    assert big.params["shape"] == (4096, 4096) and 4 * 4096 * 4096 >= 64 << 20
    assert big.work == 4096 * 4096 * (4 + 4 + 1)
    # softmax + logreg forward, one case until both were timed alone
    assert by_id["softmax.fwd.alexnet-fc8"].work == 2 * 128 * 1000 * 4
    assert by_id["logreg.fwd.alexnet-fc8"].work == 128 * 1000 * 4 + 128 * 4 + 3 * 128 * 4
    assert by_id["softmax_logreg.bwd.alexnet-fc8"].work == 2 * 128 * 1000 * 4 + 128 * 4
    assert by_id["logreg.bwd.alexnet-fc8"].work == 128 * 4 + 128 * 4 + 128 * 1000 * 4
    assert by_id["dropout.bwd.64MiB"].work == big.work  # dy and the mask read, dx written
    assert by_id["avgpool.bwd.cifar-pool2"].work == (128 * 32 * 16 * 16 + 128 * 32 * 8 * 8) * 4
    assert by_id["crop.fwd.alexnet-data"].work == 2 * 128 * 3 * 224 * 224 * 4  # the window
    assert by_id["maxnorm.update.alexnet-fc7"].work == 4 * 4096 * 4096  # w read, inside the ball
    assert all(c.work_kind == "bytes" for c in by_id.values()
               if c.op not in ("conv", "local", "fc", "conv_forward_bias_relu"))


def test_fc_and_local_flops():
    by_id = {c.id: c for c in workloads.all_cases()}
    assert by_id["fc.fwd.alexnet-fc6"].work == 2 * 128 * 9216 * 4096
    assert by_id["fc.bwd_filter.alexnet-fc8"].work == 2 * 128 * 4096 * 1000
    local3 = by_id["local.fwd.cifar-local3"]
    assert local3.params["layer"].w_shape == (6, 6, 64, 64, 3, 3)
    assert local3.work == 2 * 128 * 64 * 6 * 6 * 64 * 3 * 3


def test_case_list_covers_the_brief_and_ids_are_unique():
    cases = workloads.all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert {"conv", "neuron", "lrn", "maxpool", "dropout", "softmax_logreg",
            "sgd_update"} <= {c.op for c in cases}  # the ops of the first report, and more
    passes = {}
    for c in cases:
        if c.op == "conv":
            passes.setdefault(c.layer, set()).add(c.pass_)
    for first in ("alexnet-conv1", "fashion-conv1", "cifar-conv1"):
        assert passes[first] == {"fwd", "bwd_filter"}  # a data layer's input needs no gradient
    for name in ("alexnet-conv2", "alexnet-conv3", "alexnet-conv4", "alexnet-conv5",
                 "fashion-conv2"):
        assert passes[name] == {"fwd", "bwd_data", "bwd_filter"}
    assert all(c.work > 0 for c in cases)


def test_select_quick_and_only():
    cases = workloads.all_cases()
    quick = workloads.select(cases, quick=True)
    assert 0 < len(quick) < len(cases) and all(c.quick for c in quick)
    fwd = workloads.select(cases, only="conv.fwd.*")
    assert len(fwd) == 8 and all(c.op == "conv" and c.pass_ == "fwd" for c in fwd)
    assert [c.id for c in workloads.select(cases, only="lrn")] == [
        "lrn.fwd.alexnet-rnorm1", "lrn.bwd.alexnet-rnorm1"]
    both = workloads.select(cases, only="lrn, sgd")
    assert {c.op for c in both} == {"lrn", "sgd_update"}
    assert workloads.select(cases, only="nothing-matches") == []


# ---- rows ------------------------------------------------------------------------------------

def raw_row(**extra):
    row = {"op": "conv", "pass": "fwd", "layer": "alexnet-conv1", "shape": "s",
           "work_kind": "flops", "work": 26_986_291_200, "status": "ok", "ms": 2.0}
    row.update(extra)
    return row


def test_finalize_row_compute_bound_rate_fraction_and_ratio():
    row = report.finalize_row(raw_row(twin_ms=1.6, twin="conv2d", rel_err=1e-7),
                              {"fp32_tflops": 50.0, "copy_gbps": 3000.0})
    assert row["tflops"] == pytest.approx(13.49, rel=1e-3)  # 26.99 GFLOP in 2 ms
    assert row["frac_peak"] == pytest.approx(13.49 / 50.0, rel=1e-2)
    assert row["ratio_vs_cudnn"] == pytest.approx(1.25)        # ours 2.0 ms / cuDNN 1.6 ms
    assert row["twin"] == "conv2d" and row["rel_err"] == 1e-7
    assert "gbps" not in row
    assert [k for k in row][:4] == ["op", "pass", "layer", "shape"]


def test_finalize_row_memory_bound_without_twin_omits_ratio():
    row = report.finalize_row(raw_row(op="lrn", work_kind="bytes", work=297_369_600, ms=0.1),
                              {"fp32_tflops": 50.0, "copy_gbps": 3000.0})
    assert row["gbps"] == pytest.approx(2973.7, rel=5e-4)  # 4 significant digits
    assert row["frac_peak"] == pytest.approx(0.991, rel=1e-3)
    assert "ratio_vs_cudnn" not in row and "tflops" not in row


def test_finalize_row_without_peaks_has_no_fraction():
    row = report.finalize_row(raw_row(), {})
    assert "tflops" in row and "frac_peak" not in row


def test_finalize_row_failed_or_untimed_rows_carry_no_figures():
    failed = report.finalize_row(raw_row(status="failed: validation: rel_err 0.3 > tol 1e-4",
                                         ms=None, rel_err=0.3, twin_ms=1.0),
                                 {"fp32_tflops": 50.0})
    assert failed["status"].startswith("failed")
    assert not {"ms", "tflops", "frac_peak", "ratio_vs_cudnn"} & failed.keys()
    assert failed["rel_err"] == 0.3
    untimed = report.finalize_row(raw_row(ms=0.0), {"fp32_tflops": 50.0})
    assert untimed["status"].startswith("error") and "tflops" not in untimed


def test_rows_from_events_last_row_wins_and_cut_lines_are_skipped():
    lines = [json.dumps({"type": "meta", "device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"}),
             json.dumps({"type": "peak", "fp32_tflops": 51.2, "copy_gbps": 3010}),
             json.dumps({"type": "start", "index": 0}),
             json.dumps({"type": "row", "index": 0, **raw_row(ms=3.0)}),
             json.dumps({"type": "row", "index": 2, **raw_row(layer="b")}),
             json.dumps({"type": "row", "index": 0, **raw_row(ms=2.0)}),
             '{"type": "row", "index": 5, "op": "co']
    meta, peak, raws = report.rows_from_events(lines)
    assert meta == {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"}
    assert peak == {"fp32_tflops": 51.2, "copy_gbps": 3010}
    assert [r["index"] for r in raws] == [0, 2] and raws[0]["ms"] == 2.0


def test_finalize_row_leaves_out_the_ratio_of_a_twin_outside_our_tolerance():
    peak = {"fp32_tflops": 50.0}
    outside = report.finalize_row(raw_row(twin_ms=0.4, twin_rel_err=9.6e-3, tol=2e-4), peak)
    assert "ratio_vs_cudnn" not in outside and outside["twin_ms"] == 0.4
    assert outside["twin_outside_tol"] is True and "0.0096 > tol 0.0002" in outside["twin_note"]
    assert "tflops" in outside                      # our own figures stay
    at_tol = report.finalize_row(raw_row(twin_ms=1.6, twin_rel_err=2e-4, tol=2e-4), peak)
    assert at_tol["ratio_vs_cudnn"] == 1.25 and "twin_outside_tol" not in at_tol
    nan = report.finalize_row(raw_row(twin_ms=1.6, twin_rel_err=float("nan"), tol=2e-4), peak)
    assert nan["twin_outside_tol"] is True and "ratio_vs_cudnn" not in nan
    unmeasured = report.finalize_row(raw_row(twin_ms=1.6, tol=2e-4), peak)  # no twin_rel_err
    assert unmeasured["ratio_vs_cudnn"] == 1.25


H100_REPORT = BENCH / "results" / "2026-11-22-nvidia-h100-80gb-hbm3.json"


def test_refinalize_the_committed_h100_report_drops_inaccurate_twins_ratios():
    committed = json.loads(H100_REPORT.read_text())
    key = lambda r: (r["op"], r["pass"], r["layer"])  # noqa: E731
    before = {key(r): r for r in committed["rows"]}
    conv2 = before[("conv", "bwd_filter", "alexnet-conv2")]
    assert conv2["ratio_vs_cudnn"] == 5.46 and conv2["twin_rel_err"] > conv2["tol"]
    fixed = report.refinalize(committed)
    assert committed["rows"][4]["ratio_vs_cudnn"] == 5.46          # the input is not changed
    after = {key(r): r for r in fixed["rows"]}
    assert after.keys() == before.keys()
    marked = {k for k, r in after.items() if r.get("twin_outside_tol")}
    assert marked == {("conv", "bwd_filter", "alexnet-conv2"),
                      ("conv", "bwd_filter", "fashion-conv2")}  # 9.62e-3 and 5.2e-3 > 2e-4
    row = after[("conv", "bwd_filter", "alexnet-conv2")]
    assert "ratio_vs_cudnn" not in row and row["twin_ms"] == 0.4052
    assert row["tflops"] == 25.91 and row["frac_peak"] == 0.397 and row["ms"] == 2.213
    kept = [k for k in before if "ratio_vs_cudnn" in before[k] and k not in marked]
    assert len(kept) == 28                      # 32 rows: one failed, sgd has no twin
    for k in kept:  # accurate twins keep the committed ratio, our figures unchanged
        assert after[k]["ratio_vs_cudnn"] == before[k]["ratio_vs_cudnn"], k
        assert after[k].get("tflops", after[k].get("gbps")) == before[k].get(
            "tflops", before[k].get("gbps")), k
    assert report.refinalize(fixed) == fixed                       # applying it twice is a no-op
    text = report.format_summary(fixed)
    line = next(ln for ln in text.splitlines() if "bwd_filter  alexnet-conv2" in ln)
    assert "5.46" not in text and "twin>tol" in line
    assert "outside our tolerance: conv.bwd_filter.alexnet-conv2" in text


def test_report_cli_table_applies_the_twin_rule_to_an_old_report():
    out = subprocess.run([sys.executable, str(BENCH / "report.py"), "table", str(H100_REPORT)],
                         capture_output=True, text=True, check=True).stdout
    lines = {ln.split()[2]: ln for ln in out.splitlines() if ln.startswith("conv  ")
             and ln.split()[1] == "bwd_filter"}
    assert "5.46" not in out and "twin>tol" in lines["alexnet-conv2"]
    assert "2.05" not in lines["fashion-conv2"] and "twin>tol" in lines["fashion-conv2"]
    assert "3.17" in lines["alexnet-conv3"]                       # an accurate twin keeps it


# ---- junit, sanitizer, training ----------------------------------------------------------------

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="8">
 <testcase classname="tests.test_cuda_conv" name="test_conv_forward_matches_reference[alexnet-conv1]" time="1"/>
 <testcase classname="tests.test_cuda_conv" name="test_conv_forward_matches_reference[batch1]" time="1"/>
 <testcase classname="tests.test_cuda_conv" name="test_conv_backward_data_poisoned" time="1">
  <failure message="assert">rel err 0.5</failure></testcase>
 <testcase classname="tests.test_cuda_norm" name="test_cuda_lrn_forward" time="1"/>
 <testcase classname="tests.test_cuda_pool" name="test_maxpool_backward_ties" time="1">
  <failure message="x"/><error message="teardown"/></testcase>
 <testcase classname="tests.test_cuda_dropout" name="test_dropout_mask_matches_philox" time="0">
  <skipped message="no GPU"/></testcase>
 <testcase classname="tests.test_cuda_dropout" name="test_dropout_forward_xfail" time="0">
  <skipped type="pytest.xfail" message="known"/></testcase>
 <testcase classname="" name="tests.test_cuda_broken" time="0">
  <error message="collection failure"/></testcase>
 <testcase time="0.000" />
</testsuite></testsuites>"""


def test_junit_counts_and_per_op_grouping():
    counts = report_inputs.junit_counts(JUNIT)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (3, 3, 2)
    assert counts["per_op"] == {
        "(collection)": {"passed": 0, "failed": 1, "skipped": 0},
        "conv": {"passed": 2, "failed": 1, "skipped": 0},
        "dropout": {"passed": 0, "failed": 0, "skipped": 2},
        "lrn": {"passed": 1, "failed": 0, "skipped": 0},
        "maxpool": {"passed": 0, "failed": 1, "skipped": 0},
    }


def test_junit_with_a_single_testsuite_root():
    xml = ('<testsuite name="pytest"><testcase name="test_sgd_update_in_place"/>'
           '<testcase name="test_softmax_logreg_backward[1]"/></testsuite>')
    counts = report_inputs.junit_counts(xml)
    assert counts["passed"] == 2 and set(counts["per_op"]) == {"sgd", "softmax"}


def test_op_of_test_names():
    assert report_inputs.op_of_test("test_conv_backward_filter[alexnet-conv2-groups2]") == "conv"
    assert report_inputs.op_of_test("test_gpu_cuda_neuron_forward") == "neuron"
    assert report_inputs.op_of_test("tests/test_x.py") == "(collection)"


ALL_TESTS_PASS = {"passed": 40, "failed": 0, "skipped": 2, "per_op": {}}


def test_sanitizer_status_clean_and_errors():
    clean = "========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n"
    assert report_inputs.sanitizer_status(clean, ALL_TESTS_PASS, 0)[0] == "clean"
    bad = "========= Invalid __global__ write of size 4\n========= ERROR SUMMARY: 3 errors\n"
    status, detail = report_inputs.sanitizer_status(bad, ALL_TESTS_PASS, 1)
    assert status == "3 errors" and detail["errors"] == 3
    race = ("========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)\n")
    status, detail = report_inputs.sanitizer_status(race, ALL_TESTS_PASS, 0)
    assert status == "1 errors" and detail["race_warnings"] == 1
    quiet = "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n"
    assert report_inputs.sanitizer_status(quiet, ALL_TESTS_PASS, 0)[0] == "clean"


def test_sanitizer_status_is_not_clean_when_the_run_did_not_finish():
    clean = "========= ERROR SUMMARY: 0 errors\n"
    assert report_inputs.sanitizer_status("", None, 124)[0] == "incomplete: killed at its time limit"
    assert report_inputs.sanitizer_status("", ALL_TESTS_PASS, 0)[0].startswith("incomplete")
    assert report_inputs.sanitizer_status(clean, None, -11)[0].startswith("incomplete")  # crashed
    none_ran = {"passed": 0, "failed": 0, "skipped": 9, "per_op": {}}
    assert report_inputs.sanitizer_status(clean, none_ran, 0)[0] == "incomplete: no test ran under it"


def test_train_summary_takes_the_last_test_record():
    lines = [json.dumps({"epoch": 1, "top1_error": 0.2, "top5_error": 0.01, "step": 468}),
             "not json", json.dumps({"note": "resumed"}),
             json.dumps({"epoch": 2, "top1_error": 0.15, "top5_error": 0.005, "step": 936,
                         "images_per_s": 20000.0})]
    summary = report_inputs.train_summary("\n".join(lines))
    assert summary["final_test_error"] == 0.15 and summary["epoch"] == 2
    assert summary["test_records"] == 2 and summary["images_per_s"] == 20000.0
    assert report_inputs.train_summary("")["final_test_error"] is None


# ---- the merged report -----------------------------------------------------------------------

def bench_doc():
    peak = {"fp32_tflops": 51.2, "copy_gbps": 3010.0}
    rows = [report.finalize_row(raw_row(twin_ms=1.0), peak),
            report.finalize_row(raw_row(op="lrn", layer="alexnet-rnorm1", work_kind="bytes",
                                        work=446_054_400, ms=0.2, **{"pass": "bwd"}), peak)]
    return {"device": "NVIDIA H100 80GB HBM3", "commit": "abc1234", "date": "2026-11-23",
            "torch": "2.11.0", "cudnn_tf32": False, "peak": peak, "rows": rows,
            "torch_precision": "fp32_precision='ieee'"}


def test_merge_has_designs_shape():
    tests = report_inputs.junit_counts(JUNIT)
    merged = report.merge(bench_doc(), tests,
                          {"memcheck": ("clean", {"rc": 0}), "racecheck": ("2 errors", {})},
                          steps=[{"step": "build", "status": "ok"}],
                          train={"status": "finished", "final_test_error": 0.1},
                          device="ignored when the bench names it", commit="def5678")
    assert DESIGN_KEYS <= merged.keys()
    assert merged["device"] == "NVIDIA H100 80GB HBM3" and merged["commit"] == "def5678"
    assert (merged["cuda_passed"], merged["cuda_failed"], merged["cuda_skipped"]) == (3, 3, 2)
    assert merged["per_op"]["conv"] == {"passed": 2, "failed": 1, "skipped": 0}
    assert merged["sanitizer"] == {"memcheck": "clean", "racecheck": "2 errors",
                                   "initcheck": "not run", "synccheck": "not run"}
    assert merged["cudnn_tf32"] is False and merged["peak"]["copy_gbps"] == 3010.0
    assert merged["rows"][0]["ratio_vs_cudnn"] == 2.0 and "ratio_vs_cudnn" not in merged["rows"][1]
    assert merged["train"]["final_test_error"] == 0.1
    json.dumps(merged)  # serialisable as it is


def test_merge_with_every_input_missing_says_so():
    merged = report.merge(device="NVIDIA H100 80GB HBM3", date="2026-11-23")
    assert DESIGN_KEYS <= merged.keys()
    assert merged["cuda_passed"] is None and merged["rows"] == []
    assert merged["sanitizer"] == dict.fromkeys(report.SANITIZERS, "not run")
    assert merged["device"] == "NVIDIA H100 80GB HBM3"


def test_report_cli_merges_files_and_copies(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(bench_doc()))
    (tmp_path / "cuda.xml").write_text(JUNIT)
    (tmp_path / "memcheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    (tmp_path / "memcheck.xml").write_text(
        '<testsuite><testcase name="test_conv_forward_small"/></testsuite>')
    (tmp_path / "synccheck.log").write_text("========= ERROR SUMMARY: 1 error\n")
    steps = [{"step": "memcheck", "rc": 0, "seconds": 50, "status": "ok"},
             {"step": "racecheck", "rc": None, "seconds": 0, "status": "skipped: out of time"},
             {"step": "synccheck", "rc": 1, "seconds": 40, "status": "failed (rc 1)"}]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 3, "top1_error": 0.11}) + "\n")
    out = tmp_path / "2026-11-23-nvidia-h100-80gb-hbm3.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "merge", "--out", str(out),
         "--bench", str(tmp_path / "bench.json"), "--junit", str(tmp_path / "cuda.xml"),
         "--memcheck-log", str(tmp_path / "memcheck.log"),
         "--memcheck-junit", str(tmp_path / "memcheck.xml"),
         "--racecheck-log", str(tmp_path / "absent.log"),
         "--synccheck-log", str(tmp_path / "synccheck.log"),
         "--steps", str(tmp_path / "steps.jsonl"), "--commit", "abc1234",
         "--train-status", "stopped at its time budget",
         "--train-metrics", str(tmp_path / "metrics.jsonl"),
         "--copy-to", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(out.read_text())
    assert DESIGN_KEYS <= merged.keys()
    assert merged["sanitizer"]["memcheck"] == "clean"
    assert merged["sanitizer"]["racecheck"] == "not run (skipped: out of time)"
    assert merged["sanitizer"]["synccheck"] == "1 errors"
    assert merged["sanitizer"]["initcheck"] == "not run"
    assert merged["train"] == {"status": "stopped at its time budget", "final_test_error": 0.11,
                               "test_records": 1, "epoch": 3}
    assert (tmp_path / "results" / out.name).read_text() == out.read_text()
    assert "alexnet-conv1" in proc.stdout and "memcheck" in proc.stdout


TWOGPU = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-23", "gpus": [0, 0],
          "gpu_count": 1, "mini": 128, "peer_access": None, "one_gpu_step_ms": 20.0,
          "two_tower_step_ms": 23.0, "two_tower_vs_one_gpu": 1.15, "copy_ms": 1.5,
          "compute_ms": 21.5, "copy_fraction": 0.065, "copy_bytes_per_step": 137_000_000,
          "copy_gbps": 91.3, "edges": []}

# bench_pipeline.py --simulate --gpu --json, as written (worker counts are JSON strings)
PIPELINE = {"machine": {"cores": 16, "cpu": "x86_64", "load_average_at_start": [0.1, 0.2, 0.3],
                        "python": "3.12.3"},
            "batch": 128, "inner_size": 224, "prepare_images_per_s_all_cores": 1057.0,
            "decoders": {"simplejpeg": {"one_core": 1950.4,
                                        "pipeline_uint8_threads": {"1": 1800.0, "16": 8200.0},
                                        "pipeline_uint8_processes": {"1": 1700.0, "16": 14200.0},
                                        "pipeline_float_cpu": 3000.0},
                         "pillow": {"one_core": 1651.0,
                                    "pipeline_uint8_threads": {"1": 1600.0, "16": 1700.0},
                                    "pipeline_uint8_processes": {"1": 1500.0, "16": 900.0},
                                    "pipeline_float_cpu": 1200.0}},
            "feed": {"net_images_per_s": 9249, "cores_needed_at_one_core_rate": 5.0},
            "simulated_training": [
                {"step_ms": 13.84, "wait_fraction": 0.1234, "wait_fraction_within_epochs": 0.0987,
                 "batches_per_epoch": 15, "epochs": 20, "images_per_s": 7500.0,
                 "target_images_per_s": 9249},
                {"step_ms": 138.39, "wait_fraction": 0.016, "wait_fraction_within_epochs": 0.002,
                 "batches_per_epoch": 15, "epochs": 3, "images_per_s": 910.0,
                 "target_images_per_s": 925}]}


def test_merge_carries_twogpu_and_pipeline_and_summarises_them():
    merged = report.merge(bench_doc(), twogpu=TWOGPU, pipeline=PIPELINE)
    assert merged["twogpu"] == TWOGPU and merged["pipeline"] == PIPELINE
    assert DESIGN_KEYS <= merged.keys()
    lines = report.format_summary(merged).splitlines()
    two = [line for line in lines if line.startswith("twogpu")]
    assert two == ["twogpu (--gpu 0,0, batch 128): two towers 23.00 ms/step vs one GPU 20.00; "
                   "copies 1.50 ms alone (137,000,000 bytes/step)"]
    pipe = [line for line in lines if line.startswith("pipeline")]
    assert len(pipe) == 1
    assert pipe[0].startswith("pipeline (16 cores, batch 128, 224 crops): ")
    # per decoder: the one-core rate, then the best all-cores rate (processes beat threads for
    # simplejpeg, threads beat processes for pillow)
    assert "simplejpeg one core 1,950 img/s, 16 processes 14,200 img/s" in pipe[0]
    assert "pillow one core 1,651 img/s, 16 threads 1,700 img/s" in pipe[0]
    assert "9,249 img/s step waits 12.3% (9.9% within epochs), reached 7,500" in pipe[0]
    assert "925 img/s step waits 1.6% (0.2% within epochs), reached 910" in pipe[0]
    json.dumps(merged)

    bare = report.merge(bench_doc())  # neither step ran: no keys, no summary lines
    assert "twogpu" not in bare and "pipeline" not in bare
    assert not [line for line in report.format_summary(bare).splitlines()
                if line.startswith(("twogpu", "pipeline"))]


def test_pipeline_line_without_a_simulation_or_decoders():
    doc = {key: value for key, value in PIPELINE.items() if key != "simulated_training"}
    line = report_inputs.pipeline_line(doc)
    assert "simulated" not in line and "simplejpeg one core 1,950 img/s" in line
    assert report_inputs.pipeline_line({}) == ("pipeline (? cores, batch None, None crops): "
                                        "no decoder measured")


def test_report_cli_merges_twogpu_and_pipeline(tmp_path):
    (tmp_path / "twogpu.json").write_text(json.dumps(TWOGPU))
    (tmp_path / "pipeline.json").write_text(json.dumps(PIPELINE))
    out = tmp_path / "report.json"
    args = [sys.executable, str(BENCH / "report.py"), "merge", "--out", str(out),
            "--twogpu", str(tmp_path / "twogpu.json")]
    proc = subprocess.run(args + ["--pipeline", str(tmp_path / "pipeline.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(out.read_text())
    assert merged["twogpu"] == TWOGPU and merged["pipeline"] == PIPELINE
    assert "twogpu (--gpu 0,0" in proc.stdout and "pipeline (16 cores" in proc.stdout
    # gpu_run.sh always passes the path; a step that did not run leaves no file: no key
    proc = subprocess.run(args + ["--pipeline", str(tmp_path / "absent.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(out.read_text())
    assert "pipeline" not in merged and merged["twogpu"] == TWOGPU


def test_device_slug_names_report_files():
    assert report.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert report.device_slug("  ") == "unknown-gpu"


def test_format_table_aligns_columns():
    table = report.format_table(bench_doc()["rows"]).splitlines()
    assert table[0].split()[:4] == ["op", "pass", "layer", "ms"]
    assert "TF/s" in table[1] and "GB/s" in table[2]
    assert table[1].index("alexnet-conv1") == table[0].index("layer")


# ---- timing statistics, on a virtual clock -----------------------------------------------------

class VirtualClock:
    """Device time that advances only when the op 'runs': the statistics of measure() alone."""

    def __init__(self):
        self.now = 0.0

    def event(self):
        return self.now

    def elapsed(self, a, b):
        return b - a

    def sync(self):
        pass


def test_measure_median_rotation_and_batching():
    clock = VirtualClock()
    seen = []

    def run(i):  # set 3 is slow: the median must not care
        seen.append(i)
        clock.now += 5.0 if i == 3 else 2.0

    t = gpu_timing.measure(run, 4, clock, warmup=2, min_iters=20, min_ms=100, max_ms=10_000)
    assert t.ms == 2.0 and set(seen) == {0, 1, 2, 3}
    assert t.batch == 1 and t.iters >= 50  # 2 ms calls: at least 100 ms of them

    tiny = gpu_timing.measure(lambda i: setattr(clock, "now", clock.now + 2.0**-7), 1, clock,
                              warmup=1, min_iters=20, min_ms=10, max_ms=1000)
    assert tiny.batch == 128 and tiny.ms == 2.0**-7  # 1 ms batches of 7.8 us calls

    flushed = []
    slow = gpu_timing.measure(lambda i: setattr(clock, "now", clock.now + 400.0), 1, clock,
                              flush=lambda: flushed.append(1), min_iters=20, max_ms=3000)
    assert slow.batch == 1 and slow.iters == 7 and len(flushed) == 3 + 7  # capped by max_ms


def test_plan_sets_rotates_past_the_l2_or_flushes():
    cases = load("bench_cases")
    l2 = 50 << 20
    assert cases.plan_sets(1 << 20, l2) == (1, True)          # 1 MiB: flush before each call
    n, flush = cases.plan_sets(13 << 20, l2)
    assert not flush and n * (13 << 20) >= 3 * l2 and n <= 16
    assert cases.plan_sets(300 << 20, l2) == (2, False)       # already larger than the L2


# ---- the scripts -----------------------------------------------------------------------------

def test_gpu_run_sh_parses():
    proc = subprocess.run(["bash", "-n", str(BENCH / "gpu_run.sh")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_bench_kernels_lists_its_cases_without_a_gpu():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_kernels.py"), "--list",
                           "--only", "conv.fwd"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 8 and lines[0].startswith("conv.fwd.alexnet-conv1")
    assert "26,986,291,200" in lines[0] and lines[0].split()[1] == "conv_forward"
