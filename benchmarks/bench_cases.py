"""What each benchmark case runs: its inputs, our op, the check against the NumPy reference, and
its PyTorch twin. Used by bench_kernels.py inside a worker process that owns the GPU.

The families (one Bench class per op family, keyed here by the contract ops each times) live in
bench_cases_conv.py (conv, local, fc, bias), bench_cases_memory.py (neurons, normalizations,
pooling, sum, crop, dropout, random_normal, eltsum / eltmax / concat) and bench_cases_cost.py
(softmax, the costs, sum2, sgd_update, maxnorm); bench_base.py holds what they share.

run_case(case, ctx) -> raw row (see report.finalize_row). Order, for every case:
  1. allocate the input sets (one, plus a flush, for small inputs; else enough to cover the
     L2 several times) from a CuPy generator: random data, never zeros;
  2. validate: poison our output with NaN, run our op once on set 0, require every element
     finite, compare with the float64 NumPy reference by ||ours - ref|| / ||ref|| on images
     {0, 1, N-1} (per-image ops: the kernel still processed the whole batch) or on the whole
     result (batch reductions, with set 0 built from 3 images repeated so the reference needs
     only those 3); a failed check ends the case as "failed: ..." and nothing is timed;
  3. time our op (gpu_timing.measure);
  4. the twin through PyTorch, if present: run once and compare with our validated output
     (twin_rel_err: a conv twin far above 1e-5 would mean it ran in TF32), then time it.
"""
import math
import traceback

from bench_base import NO_OUT, Context, ValidationFailed, gpu_rel_err  # noqa: F401 (Context)
from bench_cases_conv import BiasBench, ConvBench, ConvBiasReluBench, FcBench
from bench_cases_cost import CostBench, MaxnormBench, SgdBench, SoftmaxBench, Sum2Bench
from bench_cases_memory import ActivationBench, CombineBench, DropoutBench, RandomNormalBench
from gpu_timing import CupyClock, TorchClock, measure

FAMILIES = (ConvBench, ConvBiasReluBench, FcBench, BiasBench, ActivationBench, DropoutBench,
            RandomNormalBench, CombineBench, SoftmaxBench, CostBench, Sum2Bench, SgdBench,
            MaxnormBench)
BENCHES = {op: family for family in FAMILIES for op in family.ops}  # contract op -> family


def plan_sets(set_bytes, l2_bytes, max_total=16 << 30):
    """(number of input sets, flush?): sets enough to cover 3x the L2 (2..16), or one set and
    an L2 flush before every call when even 16 sets would stay under 2x the L2."""
    if 16 * set_bytes < 2 * l2_bytes:
        return 1, True
    n = max(2, min(16, math.ceil(3 * l2_bytes / max(set_bytes, 1))))
    while n > 1 and n * set_bytes > max_total:
        n -= 1
    return n, False


def run_case(case, ctx):
    """The raw row of one case (status "ok", "failed: ...", or "error: ..." from the caller)."""
    raw = {**case.names(), "work_kind": case.work_kind, "work": case.work}
    NO_OUT.clear()
    stage = "setup"
    try:
        bench = BENCHES[case.contract_op](case, ctx)
        nsets, flush = plan_sets(bench.set_bytes, ctx.l2_bytes)
        sets = [bench.make_set(i) for i in range(nsets)]
        stage = "validate"
        try:
            raw["rel_err"] = float(f"{bench.validate(sets[0]):.3g}")
            raw["tol"] = bench.tol
        except ValidationFailed as e:
            raw["status"] = f"failed: validation: {e}"
            return raw
        stage = "time"
        t = measure(lambda i: bench.ours(sets[i]), nsets, CupyClock(ctx.cupy),
                    flush=ctx.cupy_flush() if flush else None, **ctx.timing)
        raw.update(t.as_dict())
        raw["status"] = "ok"
        if ctx.torch is not None and bench.twin_name:
            stage = "twin"
            try:
                twin_sets = [bench.twin_setup(s) for s in sets]
                first = bench.twin(twin_sets[0])
                if bench.twin_comparable:
                    raw["twin_rel_err"] = _round(gpu_rel_err(ctx.cupy, bench.out_of(sets[0]),
                                                             first))
                del first
                tt = measure(lambda i: bench.twin(twin_sets[i]), nsets, TorchClock(ctx.torch),
                             flush=ctx.torch_flush() if flush else None, **ctx.timing)
                raw["twin"] = bench.twin_name
                raw["twin_ms"] = tt.ms
            except Exception as e:  # the twin failing never costs our row
                traceback.print_exc()
                raw["twin_error"] = f"{type(e).__name__}: {e}"[:300]
            finally:
                twin_sets = None
        if NO_OUT:
            raw["notes"] = f"no out= on {', '.join(sorted(NO_OUT))}: allocates per call"
        return raw
    except ValidationFailed as e:
        raw["status"] = f"failed: {stage}: {e}"
        return raw
    except Exception as e:
        traceback.print_exc()  # into the worker's log
        raw["status"] = f"error: {stage}: {type(e).__name__}: {e}"[:400]
        return raw


def _round(x):
    return float(f"{x:.3g}") if isinstance(x, float) else x
