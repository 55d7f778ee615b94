"""A model (not a measurement) of AlexNet's data-parallel step time against the worker count.

    python benchmarks/scaling.py [--layers layers/alexnet.cfg --params layers/alexnet-params.cfg]
                                 [--step-ms MS] [--markdown]

Inputs, each printed with the table:
  - gradient bytes: the net's own parameter shapes (the cfg files, through the engine), fp32;
  - the single-GPU step at 128 images: --step-ms, else the sum of the AlexNet kernel rows of the
    newest benchmarks/results/*.json that has them, labelled an estimate (a lower bound: the
    rows that failed or were not measured, such as the fc GEMMs, are missing from it);
  - ring all-reduce: 2 (N - 1) / N x bytes / bandwidth (latency terms left out), at NVLink
    (450 GB/s a direction, H100 SXM), 400 Gb/s and 100 Gb/s (InfiniBand NDR / EDR);
  - overlap: the reduction runs behind backward (2/3 of the step, the convs' backward being
    twice their forward): step = forward + max(backward, all-reduce); without overlap:
    step + all-reduce;
  - hybrid (Krizhevsky 2014, "one weird trick"): the convs data-parallel (their gradients
    all-reduced), the fc layers model-parallel: each worker's fc input (the last conv output,
    128 images) goes to every worker and its gradient comes back, and no fc gradient moves
    (the exchanges between the sharded fc layers, 4096 floats an image each, are left out).
Each worker takes 128 images (weak scaling: the global minibatch is 128 N).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convnet.apps.cli import ShapesOnlyNet  # noqa: E402
from convnet.engine.config import read_cfg  # noqa: E402
from convnet.engine.layers import FcLayer  # noqa: E402

# (link, bytes/s, worker counts): NVLink joins the 8 GPUs of one machine; networks join machines
BANDWIDTHS = [("NVLink 450 GB/s", 450e9, (1, 2, 4, 8)), ("400 Gb/s", 400e9 / 8, (2, 8, 16, 64)),
              ("100 Gb/s", 100e9 / 8, (2, 8, 16, 64))]
PER_WORKER = 128


def gradient_bytes(layers, params):
    """(all gradient bytes, the fc layers' share, the fc layers' input bytes per image), fp32."""
    net = ShapesOnlyNet(layer_sections=read_cfg(layers), param_sections=read_cfg(params),
                        params_file=params, backend="numpy")
    total = fc = 0
    for layer in net.layers:
        size = 4 * sum(int(np.prod(p.shape)) for p in layer.params if not p.shared)
        total += size
        fc += size if isinstance(layer, FcLayer) else 0
    first_fc = next(layer for layer in net.layers if isinstance(layer, FcLayer))
    fc_input = 4 * sum(int(np.prod(net[s].out_shape)) for s in first_fc.inputs)
    return total, fc, fc_input


def measured_step_ms(results=os.path.join(ROOT, "benchmarks", "results")):
    """(ms, where it came from) from the newest results file with AlexNet kernel rows."""
    for path in sorted(glob.glob(os.path.join(results, "*.json")), reverse=True):
        with open(path) as f:
            report = json.load(f)
        rows = [r for r in report.get("rows", []) if "alexnet" in str(r.get("layer"))
                and r.get("status") == "ok" and r.get("ms")]
        if rows:
            return (sum(r["ms"] for r in rows),
                    f"an estimate: the sum of the {len(rows)} AlexNet kernel rows measured in "
                    f"{os.path.relpath(path, ROOT)} ({report.get('device')}); a lower bound, "
                    f"the rows not measured there (the fc GEMMs among them) are missing")
    raise SystemExit("no AlexNet kernel rows in benchmarks/results: give --step-ms")


def ring(nbytes, workers, bandwidth):
    return 2 * (workers - 1) / workers * nbytes / bandwidth * 1e3 if workers > 1 else 0.0


def table(step_ms, total, fc, fc_input):
    forward, backward = step_ms / 3, 2 * step_ms / 3
    conv_bytes = total - fc
    rows = []
    for name, bw, workers in BANDWIDTHS:
        for n in workers:
            reduce_ms = ring(total, n, bw)
            # hybrid: conv gradients all-reduced; fc inputs all-gathered and their gradients
            # reduce-scattered: (N - 1) / N x N x 128 images' inputs each way
            exchange = 2 * (n - 1) * PER_WORKER * fc_input / bw * 1e3
            hybrid_ms = step_ms + ring(conv_bytes, n, bw) + exchange
            plain, overlapped = step_ms + reduce_ms, forward + max(backward, reduce_ms)
            rows.append((name, n, reduce_ms, plain, overlapped, hybrid_ms,
                         n * PER_WORKER / overlapped * 1e3, step_ms / overlapped))
    return rows


def render(rows, markdown):
    head = ("link", "workers", "all-reduce ms", "step ms, no overlap", "step ms, overlap",
            "hybrid step ms", "images/s (overlap)", "efficiency (overlap)")
    lines = []
    fmt = ["{}", "{}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:,.0f}", "{:.0%}"]
    body = [[f.format(v) for f, v in zip(fmt, row)] for row in rows]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        lines += ["  ".join(x.rjust(w) for x, w in zip(r, widths)) for r in [head, *body]]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default=os.path.join(ROOT, "layers", "alexnet.cfg"))
    p.add_argument("--params", default=os.path.join(ROOT, "layers", "alexnet-params.cfg"))
    p.add_argument("--step-ms", type=float, default=None,
                   help="the measured single-GPU step at 128 images (default: an estimate)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    total, fc, fc_input = gradient_bytes(args.layers, args.params)
    if args.step_ms is not None:
        step_ms, source = args.step_ms, "given (--step-ms)"
    else:
        step_ms, source = measured_step_ms()
    print(f"A MODEL, not a measurement. {os.path.relpath(args.layers, ROOT)}: {total / 1e6:.1f} MB "
          f"of fp32 gradients, {fc / 1e6:.1f} MB of them in fc layers; fc input "
          f"{fc_input / 1e3:.1f} kB per image; single-GPU step at {PER_WORKER} images "
          f"{step_ms:.2f} ms, {source}. {PER_WORKER} images per worker; ring all-reduce "
          f"2(N-1)/N x bytes / bandwidth, no latency term; overlap: forward (1/3 of the step) + "
          f"max(backward, all-reduce).\n")
    print(render(table(step_ms, total, fc, fc_input), args.markdown))


if __name__ == "__main__":
    main()
