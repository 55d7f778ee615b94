"""Kernel microbenchmarks: validate, then time, every op of the contract (convnet/backend/
contract.py; workloads.EXCUSED says which have no case of their own, and why) on AlexNet's (and
Fashion's, CIFAR's) shapes, against the device's measured peaks and cuDNN or PyTorch in the same
run.

    python benchmarks/bench_kernels.py [--out FILE] [--quick] [--only PATTERN] [--skip PATTERN]
        [--list] [--ab] [--batch N]

Writes DESIGN.md's JSON ("Reports from a GPU": device, commit, date, torch, cudnn_tf32, peak,
rows) and prints a short aligned table last. See benchmarks/README.md for what each figure means.

Rows are named by the contract op (`contract_op`, e.g. conv_backward_filter) and, for reading,
by `op` and `pass` (conv, bwd_filter; report.split_op); case ids are op.pass.layer.

--ab times kernel algorithms side by side in the same run: after a conv row, the same case again
under each other algorithm the kernels can run it with (csrc/conv.h's list, asked through
convnet.backend.algos.supported), as rows whose layer reads `<layer>@<algo>` and whose `variant`
names it. The plain row runs the algorithm convnet.backend.algos chooses.

Robustness: the GPU work runs in a worker process; this (parent) process never touches the GPU.
A worker reports each case as one JSON line as soon as it is done. When a case crashes the
worker (a segfault, an illegal address that poisons the CUDA context) or hangs past
--case-timeout, the parent records that case as failed and starts a fresh worker at the next
case, so one op's failure never loses the other rows. The report is rewritten after every case.
"""
import argparse
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import report  # noqa: E402
import workloads  # noqa: E402
from convnet.backend import algos  # noqa: E402

EXIT_CONTEXT_LOST = 3


# ---- the worker (owns the GPU) -----------------------------------------------------------------

class Emitter:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8")

    def __call__(self, **event):
        self.f.write(json.dumps(event, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())


def configure_torch(torch):
    """cuDNN autotuning on and TF32 off for convolutions and matrix products.

    Uses the fp32_precision API where this torch has it (2.9+), and only it: torch refuses a
    mix of the legacy allow_tf32 flags and the new API. Returns (description, cudnn_tf32)."""
    torch.backends.cudnn.benchmark = True
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        done = []
        targets = [(torch.backends, "fp32_precision"),
                   (torch.backends.cuda.matmul, "fp32_precision"),
                   (torch.backends.cudnn, "fp32_precision"), (conv, "fp32_precision"),
                   (getattr(torch.backends.cudnn, "rnn", None), "fp32_precision")]
        names = ["backends", "cuda.matmul", "cudnn", "cudnn.conv", "cudnn.rnn"]
        for (obj, attr), name in zip(targets, names):
            if obj is None or not hasattr(obj, attr):
                continue
            try:
                setattr(obj, attr, "ieee")
                done.append(name)
            except Exception:
                pass
        conv_tf32 = getattr(conv, "fp32_precision", None) != "ieee"
        return (f"fp32_precision='ieee' on {', '.join(done)}; cudnn.benchmark=True",
                conv_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return ("cudnn.allow_tf32=False, cuda.matmul.allow_tf32=False; cudnn.benchmark=True",
            bool(torch.backends.cudnn.allow_tf32))


def import_backends():
    """(cuda backend, reference) modules; each assembled from its parts (cuda_conv + cuda_ops;
    numpy_* + philox) when the backend module itself is missing."""
    import importlib

    def assemble(whole, parts):
        try:
            return importlib.import_module(f"convnet.backend.{whole}")
        except ModuleNotFoundError as e:
            if e.name != f"convnet.backend.{whole}":
                raise  # the module exists but something it imports does not
        import types

        namespace = types.SimpleNamespace()
        for part in parts:
            mod = importlib.import_module(f"convnet.backend.{part}")
            for name in dir(mod):
                if not name.startswith("_"):
                    setattr(namespace, name, getattr(mod, name))
        return namespace

    cb = assemble("cuda_backend", ("cuda_conv", "cuda_ops"))
    ref = assemble("numpy_backend", ("numpy_conv", "numpy_pool", "numpy_norm", "numpy_neuron",
                                     "numpy_dropout", "numpy_cost", "numpy_update", "philox"))
    return cb, ref


def worker(args, cases):
    emit = Emitter(args.events)
    import cupy

    from bench_cases import Context, run_case
    import gpu_timing

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    # the kernel emulator's CuPy stand-in has neither the SM count nor the L2 size
    meta = {"device": name, "sm_count": props.get("multiProcessorCount", 1),
            "l2_bytes": props.get("l2CacheSize", 50 << 20), "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}
    torch = None
    try:
        import torch as _torch

        if _torch.cuda.is_available():
            torch = _torch
            meta["torch"] = torch.__version__.split("+")[0]
            meta["torch_full"] = torch.__version__
            meta["cudnn"] = torch.backends.cudnn.version()
            meta["torch_precision"], meta["cudnn_tf32"] = configure_torch(torch)
        else:
            meta["torch_note"] = "torch imported but sees no GPU: ratios omitted"
    except Exception as e:
        meta["torch_note"] = f"torch unavailable ({type(e).__name__}: {e}): ratios omitted"
    emit(type="meta", **meta)

    if not args.no_peaks:
        peak = {}
        try:
            tflops, detail = gpu_timing.fma_peak_tflops(cupy, meta["sm_count"], args.quick)
            peak.update(fp32_tflops=round(tflops, 2), fp32_source="fma_kernel", **detail)
        except Exception as e:
            peak["fma_error"] = f"{type(e).__name__}: {e}"[:300]
        if torch is not None:
            try:
                tflops, err = gpu_timing.torch_sgemm_tflops(torch, quick=args.quick)
                peak.update(torch_sgemm_tflops=round(tflops, 2), torch_sgemm_rel_err=err)
                if "fp32_tflops" not in peak:
                    peak.update(fp32_tflops=round(tflops, 2), fp32_source="torch_sgemm")
            except Exception as e:
                peak["sgemm_error"] = f"{type(e).__name__}: {e}"[:300]
        try:
            peak.update(copy_gbps=round(gpu_timing.copy_gbps(cupy, quick=args.quick), 1),
                        copy_source="cudaMemcpyAsync D2D 1 GiB, bytes read + written")
        except Exception as e:
            peak["copy_error"] = f"{type(e).__name__}: {e}"[:300]
        emit(type="peak", **peak)
        release(cupy, torch)

    try:
        cb, ref = import_backends()
    except Exception as e:
        emit(type="setup_error", error=f"importing the backends: {type(e).__name__}: {e}"[:400])
        return 0
    ctx = Context(cupy, cb, ref, torch, l2_bytes=meta["l2_bytes"], quick=args.quick)
    for index in range(args.start, len(cases)):
        case = cases[index]
        if time.time() > args.deadline:
            emit(type="out_of_time", index=index)
            return 0
        emit(type="start", index=index, id=case.id)
        try:
            raw = run_case(case, ctx)
        except Exception as e:  # run_case catches its own; this is a last resort
            traceback.print_exc()
            raw = {**case.names(), "status": f"error: {type(e).__name__}: {e}"[:400]}
        if case.params.get("algo"):
            raw["variant"] = f"algo={case.params['algo']}"
        emit(type="row", index=index, id=case.id, **raw)
        if raw.get("status", "").startswith("error"):
            if not context_alive(cupy):
                emit(type="context_lost", index=index)
                return EXIT_CONTEXT_LOST
        release(cupy, torch)
    emit(type="done")
    return 0


def context_alive(cupy):
    try:
        cupy.cuda.runtime.deviceSynchronize()
        a = cupy.arange(16, dtype=cupy.float32)
        return float((a * 2).sum()) == 240.0
    except Exception:
        return False


def release(cupy, torch):
    try:
        cupy.get_default_memory_pool().free_all_blocks()
        if torch is not None:
            torch.cuda.empty_cache()
    except Exception:
        pass


# ---- the parent (never touches the GPU) --------------------------------------------------------

def gpu_name():
    """The first GPU's name from nvidia-smi (the parent never touches CUDA itself)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except Exception:
        pass
    return "gpu"


def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except Exception:
        pass
    return os.environ.get("CONVNET_COMMIT") or "unknown"


class Run:
    """The parent's view of the whole benchmark: cases, events so far, workers started."""

    def __init__(self, args, cases):
        self.args, self.cases = args, cases
        self.meta, self.peak, self.raws = {}, {}, {}
        self.failures = {}  # index -> status for cases that killed or hung a worker
        self.notes = []
        self.date = datetime.date.today().isoformat()
        self.commit = git_commit()

    def absorb(self, events_path):
        with open(events_path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        meta, peak, raws = report.rows_from_events(lines)
        self.meta.update(meta)
        self.peak.update(peak)
        for raw in raws:
            self.raws[raw["index"]] = raw
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events

    def document(self, complete):
        rows = []
        for i, case in enumerate(self.cases):
            if i in self.raws:
                rows.append(report.finalize_row(self.raws[i], self.peak))
            elif i in self.failures:
                rows.append(report.finalize_row(
                    {**case.names(), "status": self.failures[i]}, self.peak))
            elif complete:
                rows.append(report.finalize_row(
                    {**case.names(), "status": "not run: out of time"}, self.peak))
        m = self.meta
        doc = {"device": m.get("device", "unknown"), "commit": self.commit, "date": self.date,
               "torch": m.get("torch"), "cudnn_tf32": m.get("cudnn_tf32"),
               "peak": self.peak, "rows": rows}
        if "cudnn" in m:
            doc["cudnn"] = m["cudnn"]
        if "torch_precision" in m:
            doc["torch_precision"] = m["torch_precision"]
        doc["bench"] = {k: m[k] for k in ("sm_count", "l2_bytes", "cupy", "cuda_runtime",
                                          "torch_full", "torch_note") if k in m}
        doc["bench"].update(quick=self.args.quick, only=self.args.only, skip=self.args.skip,
                            batch=self.args.batch, complete=complete,
                            timing=("median of CUDA-event times after warm-up; inputs rotated "
                                    "over sets covering 3x L2, or L2 flushed before each call "
                                    "for small inputs"))
        if self.notes:
            doc["bench"]["notes"] = self.notes
        return doc

    def write(self, complete=False):
        report.write_json(self.args.out, self.document(complete))


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_workers(run, args):
    """Start workers until every case has a row, a worker crash costing only its case."""
    base = os.path.join(args.work, os.path.splitext(os.path.basename(args.out))[0])
    deadline = time.time() + args.time_budget
    start, worker_no, peaks_done = 0, 0, False
    while start < len(run.cases):
        if time.time() > deadline - 5:
            run.notes.append("stopped: time budget spent")
            return
        worker_no += 1
        events = f"{base}-events-{worker_no}.jsonl"
        log = f"{base}-worker-{worker_no}.log"
        open(events, "w").close()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--events", events,
               "--start", str(start), "--deadline", str(deadline - 10)]
        if args.quick:
            cmd.append("--quick")
        if args.only:
            cmd += ["--only", args.only]
        if args.skip:
            cmd += ["--skip", args.skip]
        if args.ab:
            cmd.append("--ab")
        if args.batch != workloads.BATCH:
            cmd += ["--batch", str(args.batch)]
        if peaks_done:
            cmd.append("--no-peaks")
        rc, why, evs = watch_worker(run, args, cmd, events, log, deadline)
        kinds = [e.get("type") for e in evs]
        peaks_done = peaks_done or "peak" in kinds
        run.write()
        if "done" in kinds:
            return
        if "out_of_time" in kinds:
            run.notes.append("stopped: time budget spent")
            return
        if "setup_error" in kinds:
            err = [e for e in evs if e.get("type") == "setup_error"][-1]["error"]
            for i in range(start, len(run.cases)):
                run.failures[i] = f"error: {err}"
            return
        started = [e["index"] for e in evs if e.get("type") == "start"]
        finished = {e["index"] for e in evs if e.get("type") == "row"}
        crashed = [i for i in started if i not in finished]
        if crashed:
            i = crashed[-1]
            if why == "deadline":
                run.failures[i] = "not run: time budget spent (killed mid-case)"
                run.notes.append("stopped: time budget spent")
                return
            cause = why or f"worker died (rc {rc})"
            run.failures[i] = f"error: {cause}: {tail(log, 300).strip()[-300:]}"
            print(f"[bench] {run.cases[i].id}: {run.failures[i]}", flush=True)
            start = i + 1
        elif started:
            start = max(started) + 1  # the worker stopped after a case (context lost)
        else:
            # died before its first case (measuring the peaks, or importing): retry once
            # without the peaks, then give up on every remaining case
            msg = f"worker died before its first case (rc {rc}): {tail(log, 300).strip()}"
            run.notes.append(msg[:400])
            print(f"[bench] {msg}", flush=True)
            if why == "deadline":
                return
            if not peaks_done:
                peaks_done = True
                continue
            for i in range(start, len(run.cases)):
                run.failures[i] = "error: " + msg[:300]
            return
        run.write()


def watch_worker(run, args, cmd, events, log, deadline):
    """Run one worker, absorbing its events as they come; kill it when a case hangs or the
    time is up. Returns (exit status, why it was killed or None, all its events)."""
    current, since, why, seen = None, time.time(), None, 0
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                evs = run.absorb(events)
                rows = False
                for event in evs[seen:]:
                    if event.get("type") == "start":
                        current, since = event["index"], time.time()
                    elif event.get("type") == "row":
                        current, rows = None, True
                        print_row_line(run, event)
                seen = len(evs)
                if rows:
                    run.write()
                limit = args.case_timeout if current is not None else 3 * args.case_timeout
                if time.time() - since > limit:
                    why = f"hung: killed after {limit:.0f} s"
                elif time.time() > deadline:
                    why = "deadline"
                if why:
                    proc.kill()
                    break
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            run.absorb(events)
            raise
        proc.wait()
    evs = run.absorb(events)
    for event in evs[seen:]:
        if event.get("type") == "row":
            print_row_line(run, event)
    return proc.returncode, why, evs


def print_row_line(run, event):
    row = report.finalize_row(event, run.peak)
    rate = (f"{row['tflops']} TF/s" if "tflops" in row else
            f"{row['gbps']} GB/s" if "gbps" in row else "")
    ratio = f" x{row['ratio_vs_cudnn']} vs twin" if "ratio_vs_cudnn" in row else ""
    print(f"[bench] {event.get('id')}: {row['status']} {row.get('ms', '')} ms {rate}{ratio}",
          flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None,
                   help="JSON report (default benchmarks/results/<date>-<device>.json)")
    p.add_argument("--work", default=None,
                   help="folder for the workers' event streams and logs (default: --out's "
                        "folder, or a temporary one when --out is not given)")
    p.add_argument("--quick", action="store_true", help="fewer cases and iterations")
    p.add_argument("--only", default=None,
                   help="comma-separated patterns of case ids (op.pass.layer) or contract ops "
                        "(conv_forward); fnmatch or substring")
    p.add_argument("--skip", default=None,
                   help="comma-separated patterns, as --only's, of cases to leave out")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--batch", type=int, default=workloads.BATCH,
                   help="the batch of every case (default %(default)s; weights keep their "
                        "shapes): a smaller one for the kernel emulator")
    p.add_argument("--ab", action="store_true",
                   help="also time conv cases under every other algorithm that can run them, as "
                        "extra rows <layer>@<algo> (the dy-along-f GEMMs on bwd_filter, "
                        "Winograd on every stride-1 conv pass)")
    p.add_argument("--time-budget", type=float, default=600.0,
                   help="seconds for the whole benchmark; cases left over are 'not run'")
    p.add_argument("--case-timeout", type=float, default=120.0,
                   help="a case running longer is killed and reported as hung")
    # internal: the worker process
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--events", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    p.add_argument("--no-peaks", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def ab_variants(case):
    """The algorithms --ab adds after `case` (a conv or local op): every one the kernels can run
    it with, but the one the plain row runs."""
    layer, op = case.params.get("layer"), case.contract_op
    if op not in algos.OPS or layer is None or not algos.names_of_algorithms():
        return []
    chosen = algos.choose(op, layer.conv_shape)
    return [a for a in algos.supported(op, layer.conv_shape) if a != chosen]


def with_variants(cases):
    """cases, each followed by one copy per algorithm of ab_variants (layer `<layer>@<algo>`)."""
    out = []
    for case in cases:
        out.append(case)
        for algo in ab_variants(case):
            out.append(dataclasses.replace(case, layer=f"{case.layer}@{algo}",
                                           params={**case.params, "algo": algo}))
    return out


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    # a timeout's SIGINT or SIGTERM ends the run cleanly, the report written (also when the
    # shell that started us left SIGINT ignored)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    cases = workloads.select(workloads.all_cases(args.batch), args.quick, args.only, args.skip)
    if args.ab:
        cases = with_variants(cases)
    if args.list:
        for case in cases:
            print(f"{case.id:40s} {case.contract_op:26s} {case.work_kind:5s} {case.work:>16,d}  "
                  f"{case.shape}")
        if not (args.quick or args.only or args.skip):  # the whole list: ops without a case
            for op, why in workloads.EXCUSED.items():
                print(f"# {op} has no case of its own: {why}")
        return 0
    if args.worker:
        sys.path.insert(0, ROOT)
        return worker(args, cases)
    if not cases:
        print(f"bench_kernels: no case matches --only {args.only!r} --skip {args.skip!r}",
              file=sys.stderr)
        return 2
    if args.out is None:
        args.out = os.path.join(HERE, "results", f"{datetime.date.today().isoformat()}-"
                                f"{report.device_slug(gpu_name())}.json")
        args.work = args.work or tempfile.mkdtemp(prefix="bench_kernels-")
    args.out = os.path.abspath(args.out)
    args.work = os.path.abspath(args.work or os.path.dirname(args.out))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    run = Run(args, cases)
    try:
        run_workers(run, args)
    except KeyboardInterrupt:
        run.notes.append("interrupted")
    run.write(complete=True)
    doc = run.document(complete=True)
    print(f"device {doc['device']}  peak {json.dumps(doc['peak'])}")
    print(report.format_table(doc["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
