"""The paper's two-tower AlexNet (layers/alexnet-2gpu.cfg) against the one-GPU grouped net
(layers/alexnet.cfg) on the cuda backend: training-step times, time in cross-device copies
against compute, bytes copied per step.

    python benchmarks/bench_twogpu.py [--mini 128] [--iters 20] [--gpu 0,1] [--out FILE]

The towers go on GPUs 0 and 1 when the machine has two (peer copies), else both on GPU 0
(--gpu 0,0: a stream per tower, device-to-device copies). A step is forward, backward and update
on one batch; it is timed with CUDA events on the caller's stream (each pass's fence makes the
towers' streams start after it and it wait for them), after a warm-up, the median of --iters.
copy_ms is the same step's copies replayed alone (same arrays, devices, streams and calls): what
they cost on their own, an upper bound on what they add to the step, since in the step they can
overlap the other tower's compute; compute_ms is the step less that. Before timing, the bytes the
engine counted are checked against what `convnet-train --describe` lists.
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import gpu_timing  # noqa: E402
import report  # noqa: E402
from convnet.engine.describe import cross_device_edges, table  # noqa: E402
from convnet.engine.devices import parse_gpus  # noqa: E402
from convnet.engine.net import Net  # noqa: E402


def build(name, gpus):
    base = os.path.join(ROOT, "layers", name)
    return Net.from_cfg(base + ".cfg", base + "-params.cfg", backend="cuda", gpus=gpus)


def time_steps(net, data, clock, iters):
    steps = iter(range(10**9))
    return gpu_timing.measure(lambda i: net.train_step(data, next(steps), 0.0), 1, clock,
                              min_iters=iters, max_ms=60_000.0)


def replay_copies(net):
    """The last step's copies again, alone: each activation to its consumer's device, and (where
    the step sent a gradient back) an array of its size back to the producer's device."""
    with net.dev.fenced():
        for (src, dst), nbytes in net.copied.items():
            p, c = net[src].gpu, net[dst].gpu
            there = net.dev.copy(net.acts[src], p, c, None)
            if nbytes["backward"]:
                net.dev.copy(there, c, p, net.dev.record(c))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mini", type=int, default=128, help="batch size (the paper's 128)")
    p.add_argument("--iters", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--gpu", default=None, help="physical GPUs of the two towers (default 0,1 "
                                               "with two GPUs, else 0,0)")
    p.add_argument("--out", default=None, help="JSON file (default results/<date>-<device>-"
                                               "twogpu.json)")
    args = p.parse_args(argv)
    import cupy

    runtime = cupy.cuda.runtime
    gpus = parse_gpus(args.gpu or ("0,1" if runtime.getDeviceCount() > 1 else "0,0"))
    name = runtime.getDeviceProperties(gpus[0])["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    two, one = build("alexnet-2gpu", gpus), build("alexnet", gpus[:1])
    rng = np.random.default_rng(0)
    data = {0: (rng.standard_normal((args.mini,) + two.data_layers[0].out_shape) * 50)
            .astype(np.float32), 1: rng.integers(0, 1000, args.mini)}
    data = {k: one.B.asarray(v, v.dtype) for k, v in data.items()}  # on GPU 0, outside the steps

    two.train_step(data, 0, 0.0)
    described = {(s, d): {"forward": f, "backward": b}
                 for s, d, _, _, f, b in cross_device_edges(two, args.mini)}
    if two.copied != described:
        print(f"bench_twogpu: the engine copied {two.copied}, --describe lists {described}",
              file=sys.stderr)
        return 1
    clock = gpu_timing.CupyClock(cupy)
    t_one = time_steps(one, data, clock, args.iters)
    t_two = time_steps(two, data, clock, args.iters)
    t_copy = gpu_timing.measure(lambda i: replay_copies(two), 1, clock, min_iters=args.iters)

    nbytes = sum(e["forward"] + e["backward"] for e in two.copied.values())
    peer = None if gpus[0] == gpus[1] else bool(runtime.deviceCanAccessPeer(*gpus[:2]))
    result = {
        "device": name, "date": datetime.date.today().isoformat(), "gpus": list(gpus),
        "gpu_count": runtime.getDeviceCount(), "mini": args.mini, "peer_access": peer,
        "one_gpu_step_ms": t_one.ms, "two_tower_step_ms": t_two.ms,
        "two_tower_vs_one_gpu": t_two.ms / t_one.ms,
        "copy_ms": t_copy.ms, "compute_ms": t_two.ms - t_copy.ms,
        "copy_fraction": t_copy.ms / t_two.ms,
        "copy_bytes_per_step": nbytes, "copy_gbps": nbytes / t_copy.ms / 1e6,
        "edges": [{"edge": f"{s} -> {d}", "gpus": f"{two[s].gpu} -> {two[d].gpu}",
                   "forward_bytes": e["forward"], "backward_bytes": e["backward"]}
                  for (s, d), e in two.copied.items()],
        "timing": {"one_gpu": t_one.as_dict(), "two_tower": t_two.as_dict(),
                   "copies": t_copy.as_dict()},
    }
    gpu_text = ",".join(map(str, gpus))
    print(f"AlexNet training step, batch {args.mini}, {name}, --gpu {gpu_text}:")
    print(table([
        ("", "ms", "share"),
        ("one-GPU grouped net", f"{t_one.ms:.2f}", ""),
        ("two-tower net", f"{t_two.ms:.2f}", f"{result['two_tower_vs_one_gpu']:.2f}x"),
        ("  its copies, alone", f"{t_copy.ms:.2f}", f"{result['copy_fraction']:.1%}"),
        ("  compute (the rest)", f"{result['compute_ms']:.2f}", ""),
    ], right_from=1))
    print(f"copied per step: {nbytes:,} bytes over {len(result['edges'])} edges, "
          f"{result['copy_gbps']:.0f} GB/s alone")
    print(table([("edge", "gpus", "forward bytes", "backward bytes")] + [
        (e["edge"], e["gpus"], f"{e['forward_bytes']:,}", f"{e['backward_bytes']:,}")
        for e in result["edges"]], right_from=2))
    out = args.out or os.path.join(HERE, "results", f"{result['date']}-"
                                   f"{report.device_slug(name)}-twogpu.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    report.write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
