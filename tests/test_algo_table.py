"""convnet.backend.algos (the table of conv algorithms and its checks) and
benchmarks/algo_table.py (the table filled from a GPU report's --ab rows)."""
import json

import pytest

from convnet import _C
from convnet.backend import algos
from test_bench_report import load

algo_table = load("algo_table")
workloads = load("workloads")

CONV3 = next(layer for layer in workloads.CONV_LAYERS if layer.label == "alexnet-conv3")
CONV1 = next(layer for layer in workloads.CONV_LAYERS if layer.label == "alexnet-conv1")


def row(layer, pass_, ms, status="ok", rel_err=1e-6, tol=1e-4):
    return {"op": "conv", "pass": pass_, "layer": layer, "status": status, "ms": ms,
            "rel_err": rel_err, "tol": tol}


def test_the_fastest_valid_row_wins_and_only_exceptions_are_kept():
    conv3 = algos.shape_key(CONV3.conv_shape)
    conv1 = algos.shape_key(CONV1.conv_shape)
    rows = [row("alexnet-conv3", "fwd", 1.0), row("alexnet-conv3@winograd4", "fwd", 0.6),
            row("alexnet-conv3@winograd2", "fwd", 0.5, rel_err=1e-3),     # outside its tol
            row("alexnet-conv3", "bwd_filter", 1.0),
            row("alexnet-conv3@winograd2", "bwd_filter", 0.1, status="error: boom"),
            row("alexnet-conv1", "bwd_filter", 1.0),
            row("alexnet-conv1@gemm_dy_along_f", "bwd_filter", 1.5),
            {"op": "lrn", "pass": "fwd", "layer": "alexnet-rnorm1", "status": "ok", "ms": 0.1}]
    old = {"conv_backward_filter": {conv1: "gemm_dy_along_f"}}   # the plain row ran that
    found = algo_table.winners(rows, old)
    assert found == {("conv_forward", conv3): "winograd4",
                     ("conv_backward_filter", conv3): "gemm",
                     ("conv_backward_filter", conv1): "gemm_dy_along_f"}
    assert algo_table.updated(old, found) == {
        "conv_backward_filter": {conv1: "gemm_dy_along_f"}, "conv_forward": {conv3: "winograd4"}}
    found[("conv_backward_filter", conv1)] = "gemm"    # the default winning drops the entry
    assert algo_table.updated(old, found) == {"conv_forward": {conv3: "winograd4"}}


def test_the_table_is_written_and_then_chosen(tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"rows": [row("alexnet-conv3", "fwd", 1.0),
                                           row("alexnet-conv3@winograd2", "fwd", 0.7)]}))
    out = tmp_path / "algos.json"
    assert algo_table.main([str(report), "--out", str(out)]) == 0
    monkeypatch.setattr(algos, "_table", algos.load_table(str(out)))
    assert algos.choose("conv_forward", CONV3.conv_shape) == "winograd2"
    assert algos.choose("conv_backward_filter", CONV3.conv_shape) == algos.DEFAULT
    assert algos.choose("conv_forward", CONV1.conv_shape) == algos.DEFAULT


@pytest.mark.parametrize("table, message", [
    ({"conv_sideways": {}}, "unknown op 'conv_sideways'"),
    ({"conv_forward": {"1,2,3": "gemm"}}, "key '1,2,3' is not N,C,H,W"),
    ({"conv_forward": {",".join(["1"] * 11): "fastest"}}, "unknown algorithm 'fastest'"),
])
def test_a_bad_table_is_refused_naming_the_file_and_entry(tmp_path, table, message):
    path = tmp_path / "algos.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        algos.load_table(str(path))


def test_the_shipped_table_loads_and_the_kernels_list_every_algorithm():
    algos.load_table()
    assert algos.names_of_algorithms() == tuple(_C.conv_algorithms)
    assert algos.DEFAULT == _C.conv_algorithms[0]
    assert set(_C.conv_algorithms) == {"gemm", "gemm_dy_along_f", "gemm_dy_along_f_fill",
                                       "winograd2", "winograd4", "mma_tf32", "mma_bf16"}
    assert dict(zip(_C.conv_algorithms, _C.conv_algorithm_precisions)) == {
        "gemm": "fp32", "gemm_dy_along_f": "fp32", "gemm_dy_along_f_fill": "fp32",
        "winograd2": "fp32", "winograd4": "fp32", "mma_tf32": "tf32", "mma_bf16": "bf16"}


def test_ab_rows_are_every_other_algorithm_the_kernels_can_run():
    bench_kernels = load("bench_kernels")
    cases = {(c.layer, c.pass_): c for c in workloads.conv_cases()}
    mma = ["mma_tf32", "mma_bf16"]  # every conv and local pass
    assert bench_kernels.ab_variants(cases[("alexnet-conv3", "fwd")]) == [
        "winograd2", "winograd4", *mma]
    assert bench_kernels.ab_variants(cases[("fashion-conv2", "fwd")]) == ["winograd2", *mma]
    assert bench_kernels.ab_variants(cases[("alexnet-conv2", "fwd")]) == mma  # planes > 1 GiB
    assert bench_kernels.ab_variants(cases[("alexnet-conv1", "bwd_filter")]) == [
        "gemm_dy_along_f", "gemm_dy_along_f_fill", *mma]                          # stride 4
    assert bench_kernels.ab_variants(cases[("alexnet-conv3", "bwd_data")]) == [
        "winograd2", "winograd4", *mma]
    rows = bench_kernels.with_variants([cases[("alexnet-conv3", "fwd")]])
    assert [(r.layer, r.params.get("algo")) for r in rows] == [
        ("alexnet-conv3", None), ("alexnet-conv3@winograd2", "winograd2"),
        ("alexnet-conv3@winograd4", "winograd4"), ("alexnet-conv3@mma_tf32", "mma_tf32"),
        ("alexnet-conv3@mma_bf16", "mma_bf16")]
