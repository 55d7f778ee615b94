"""The kernel benchmark against the op contract, without a GPU: every op of
convnet/backend/contract.py is benchmarked or excused (benchmarks/workloads.py's EXCUSED), rows
carry the contract's names, and every Bench family's make_set / ours / validate runs on the CPU,
NumPy standing in for CuPy and the NumPy backend for the cuda one, at batch 2: validation passes
on the right numbers and fails on numbers 1% off."""
import functools
import json
import types
from pathlib import Path

import numpy as np
import pytest

from convnet.backend import contract, numpy_backend
from test_bench_report import load

workloads = load("workloads")
bench_cases = load("bench_cases")
report = load("report")
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


# ---- the case list against the contract --------------------------------------------------------

def test_every_contract_op_is_benchmarked_or_excused():
    benchmarked = {c.contract_op for c in workloads.all_cases()}
    excused = set(workloads.EXCUSED)
    assert not benchmarked & excused, "excused ops that have a case after all"
    missing = set(contract.OPS) - benchmarked - excused
    assert not missing, f"contract ops with neither a case nor a reason in EXCUSED: {missing}"
    assert excused <= set(contract.OPS)
    assert all(len(why) > 40 for why in workloads.EXCUSED.values())


def test_every_case_has_a_bench_family_from_the_contract():
    ops = [op for family in bench_cases.FAMILIES for op in family.ops]
    assert len(ops) == len(set(ops)), "an op in two families"
    assert set(ops) <= set(contract.OPS)
    assert {c.contract_op for c in workloads.all_cases()} <= set(bench_cases.BENCHES)


def test_rows_are_named_by_the_contract_and_one_rule_joins_the_names():
    cases = workloads.all_cases()
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        names = case.names()
        assert report.split_op(case.contract_op) == (case.op, case.pass_)
        assert case.id == f"{names['op']}.{names['pass']}.{names['layer']}"
        old_style = {k: v for k, v in names.items() if k != "contract_op"}
        assert report.contract_op_of(old_style) == case.contract_op, case.id
    assert report.split_op("conv_backward_filter") == ("conv", "bwd_filter")
    assert report.split_op("sgd_update") == ("sgd_update", "update")
    with pytest.raises(ValueError, match="not an op of"):
        workloads.Case("conv_sideways", "x", "s", "flops", 1)


def test_old_reports_get_their_contract_ops_when_read():
    rows = [row for path in sorted(RESULTS.glob("*.json"))
            for row in json.loads(path.read_text()).get("rows") or []]
    assert rows, "no committed GPU report with rows"
    named = set(contract.OPS) | set(report.OLD_ROWS.values())
    for row in rows:
        assert "contract_op" not in row  # written before the field existed
        assert report.contract_op_of(row) in named, (row["op"], row["pass"])
        assert report.finalize_row(row, {})["contract_op"] == report.contract_op_of(row)
    assert report.contract_op_of({"op": "conv", "pass": "bwd_filter"}) == "conv_backward_filter"
    assert (report.contract_op_of({"op": "softmax_logreg", "pass": "fwd"})
            == "softmax_forward+logreg_forward")


def test_minimum_work_is_defined_once_per_op():
    assert set(workloads.TRAFFIC) <= set(contract.OPS)
    for case in workloads.all_cases():
        if case.work_kind == "flops":
            assert case.op in ("conv", "local", "fc", "conv_forward_bias_relu"), case.id
            assert case.work == case.params["layer"].flops()
        else:
            assert case.work_kind == "bytes" and case.contract_op in workloads.TRAFFIC, case.id
        assert case.work > 0
    with pytest.raises(ValueError, match="TRAFFIC needs"):
        workloads.min_bytes("neuron_forward", x=4)


def test_a_smaller_batch_changes_only_the_batch():
    full = {c.id: c for c in workloads.all_cases()}
    small = {c.id: c for c in workloads.all_cases(batch=2)}
    assert small.keys() == full.keys()
    fc6 = small["fc.fwd.alexnet-fc6"].params["layer"]
    assert (fc6.N, fc6.K, fc6.M) == (2, 9216, 4096)
    assert small["neuron.fwd.alexnet-relu1"].work * 64 == full["neuron.fwd.alexnet-relu1"].work
    assert small["sgd_update.update.alexnet-fc7"].work == full["sgd_update.update.alexnet-fc7"].work


def test_ab_variants_are_offered_for_every_op_with_algorithms_only():
    bench_kernels = load("bench_kernels")
    for case in workloads.all_cases():
        if not contract.OPS[case.contract_op].algorithms:
            assert bench_kernels.ab_variants(case) == [], case.id


# ---- every family on the CPU -------------------------------------------------------------------

class _Generator:
    def __init__(self, seed):
        self.g = np.random.default_rng(seed)

    def standard_normal(self, shape, dtype=np.float32):
        return self.g.standard_normal(shape, dtype=dtype)

    def randint(self, lo, hi, size):
        return self.g.integers(lo, hi, size=size)


class NumpyAsCupy:
    """The part of CuPy the Bench families use, on NumPy (a device read is a copy)."""
    random = types.SimpleNamespace(RandomState=_Generator)
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(deviceSynchronize=lambda: None))

    @staticmethod
    def asnumpy(a):
        return np.array(a)

    def __getattr__(self, name):
        return getattr(np, name)


class OnePercentOff:
    """The NumPy backend with `op`'s result (its first argument, for an op in place) 1% off."""

    def __init__(self, op):
        self.op = op

    def __getattr__(self, name):
        fn = getattr(numpy_backend, name)
        if name != self.op:
            return fn

        @functools.wraps(fn)  # the same signature: bench_base.call asks it about out=
        def wrong(*args, **kwargs):
            result = fn(*args, **kwargs)
            target = args[0] if result is None else result
            first = target[0] if isinstance(target, (list, tuple)) else target
            first *= first.dtype.type(1.01)
            return result

        return wrong


def smallest_cases(batch=2):
    """Per contract op, its case of least work at `batch`."""
    small = {}
    for case in workloads.all_cases(batch=batch):
        if case.contract_op not in small or case.work < small[case.contract_op].work:
            small[case.contract_op] = case
    return small


SMALL = smallest_cases()


def bench_of(case, cb=numpy_backend):
    ctx = bench_cases.Context(NumpyAsCupy(), cb, numpy_backend, l2_bytes=1 << 20)
    return bench_cases.BENCHES[case.contract_op](case, ctx)


@pytest.mark.parametrize("op", sorted(SMALL))
def test_bench_validates_on_the_cpu(op):
    bench = bench_of(SMALL[op])
    assert bench.set_bytes > 0
    sets = [bench.make_set(i) for i in range(2)]
    err = bench.validate(sets[0])
    assert 0 <= err <= bench.tol, (op, err)
    assert bench.out_of(sets[0]) is not None
    for s in sets:  # what the timing loop calls
        bench.ours(s)


def test_the_unfused_rows_compute_what_the_fused_op_does():
    """conv + bias + ReLU in three ops (the @unfused rows) validates and equals the fused op."""
    rows = [c for c in workloads.fused_conv_cases(batch=2) if c.layer == "alexnet-conv3"
            or c.layer == "alexnet-conv3@" + workloads.UNFUSED]
    assert [bool(c.params.get("unfused")) for c in rows] == [False, True]
    fused, unfused = (bench_of(c) for c in rows)
    s = fused.make_set(0)
    assert 0 <= unfused.validate(s) <= unfused.tol
    got = fused.ours(dict(s))
    np.testing.assert_array_equal(unfused.ours(dict(s)), got)
    assert (got >= 0).all() and (got == 0).any()


@pytest.mark.parametrize("op", sorted(SMALL))
def test_bench_validation_fails_on_numbers_one_percent_off(op):
    bench = bench_of(SMALL[op], OnePercentOff(op))
    with pytest.raises(bench_cases.ValidationFailed):
        bench.validate(bench.make_set(0))


def test_call_passes_out_and_options_only_where_taken():
    base = load("bench_base")
    seen = {}

    def with_out(x, out=None, algo=None):
        seen.update(out=out, algo=algo)
        return out

    out = np.zeros(3)
    assert base.call(with_out, 1, out=out, algo="gemm") is out and seen["algo"] == "gemm"
    base.NO_OUT.clear()
    assert base.call(lambda x: x + 1, 1, out=out, algo=None) == 2  # no out=, algo=None dropped
    assert base.NO_OUT == {"<lambda>"}
