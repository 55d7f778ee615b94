"""tools/kernel_emulator/sanitize_subset.py: the sanitizer subset covers every kernel the cuda
suite runs with few, fast tests, and its check names what went stale."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "sanitize_subset", ROOT / "tools" / "kernel_emulator" / "sanitize_subset.py")
sanitize_subset = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sanitize_subset)


def record(kernels, seconds=1.0, outcome="passed", emulator_only=False):
    return {"kernels": kernels, "seconds": seconds, "outcome": outcome,
            "emulator_only": emulator_only}

MAP = {"kernels": ["a", "b", "gemm"],
       "tests": {"t::slow_all": record(["a", "b", "gemm[Op=F]", "gemm[Op=D]"], seconds=30),
                 "t::fast_a": record(["a", "gemm[Op=F]"], seconds=0.1),
                 "t::fast_b": record(["b"], seconds=0.1),
                 "t::fast_d": record(["gemm[Op=D]", "a"], seconds=0.2),
                 "t::counts_launches": record(["b", "gemm[Op=X]"], emulator_only=True),
                 "t::failing": record(["gemm[Op=Y]"], outcome="failed"),
                 "t::skipped": record([], outcome="skipped")}}


def test_choose_covers_every_kernel_with_the_fast_tests():
    chosen = sanitize_subset.choose(MAP)
    assert chosen == ["t::fast_a", "t::fast_b", "t::fast_d"]
    assert sanitize_subset.problems(MAP, chosen) == []


def test_a_redundant_pick_is_dropped():
    m = {"kernels": ["a", "b", "c"], "tests": {"t::a": record(["a"], seconds=0.1),
                                               "t::abc": record(["a", "b", "c"], seconds=0.5)}}
    assert sanitize_subset.choose(m) == ["t::abc"]  # t::a first (fastest per kernel), then not


def test_problems_name_the_untested_kernel_the_stale_test_and_the_missing_kernel():
    m = {**MAP, "kernels": [*MAP["kernels"], "lonely"]}
    found = sanitize_subset.problems(m, ["t::fast_a", "t::fast_b", "t::failing",
                                         "t::counts_launches"])
    assert len(found) == 3, found
    assert "no passing cuda test runs: lonely" in found[0]
    assert "t::failing, t::counts_launches" in found[1]
    assert found[2].endswith("runs none of these kernels: gemm[Op=D]")


def test_the_cli_writes_then_checks(tmp_path, capsys):
    path, subset = tmp_path / "map.json", tmp_path / "subset.txt"
    path.write_text(json.dumps(MAP))
    assert sanitize_subset.main(["write", str(path), "--subset", str(subset)]) == 0
    assert sanitize_subset.read_subset(subset) == ["t::fast_a", "t::fast_b", "t::fast_d"]
    assert sanitize_subset.main(["check", str(path), "--subset", str(subset)]) == 0
    subset.write_text(subset.read_text().replace("t::fast_b\n", ""))
    assert sanitize_subset.main(["check", str(path), "--subset", str(subset)]) == 1
    assert "runs none of these kernels: b" in capsys.readouterr().err


def test_the_committed_subset_names_tests_that_exist():
    """Each entry's file and function exist (CI's check against a kernel map does the rest)."""
    subset = sanitize_subset.read_subset()
    assert subset
    for nodeid in subset:
        file, name = nodeid.split("::", 1)
        text = (ROOT / file).read_text()
        assert f"def {name.split('[', 1)[0]}(" in text, nodeid
