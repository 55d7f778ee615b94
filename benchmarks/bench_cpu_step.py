"""The CPU backend's training step against the same net in PyTorch on the CPU.

    python benchmarks/bench_cpu_step.py [--cfg layers/fashion] [--steps 30] [--out FILE]

Builds the net of LAYERS.cfg on the NumPy backend and its twin in PyTorch (conv, max-pool with
cuda-convnet's ceil sizes, ReLU, dropout, fc, softmax cross-entropy, SGD with momentum and weight
decay), times whole training steps (forward, backward, update) on the same batch size,
alternating the two so both see the same machine state, and prints the medians and their
ratio. Supports the layer types of the Fashion and CIFAR demo nets (conv, pool, fc, dropout,
softmax, cost.logreg; neurons relu/ident).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from convnet.engine.net import Net  # noqa: E402


def torch_twin(net):
    """A torch.nn.Module computing the same function as `net` (same layer order)."""
    import torch
    from torch import nn

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.ops = []
            self.mods = nn.ModuleList()
            for layer in net.layers:
                kind = layer.type
                if kind == "conv":
                    fs, stride, pad, groups, _ = layer.geometry[0]
                    (shape,) = [net[s].out_shape for s in layer.inputs]
                    m = nn.Conv2d(shape[0], layer.out_shape[0], fs, stride, pad, groups=groups)
                elif kind == "fc":
                    m = nn.Linear(int(np.prod(net[layer.inputs[0]].out_shape)), layer.cfg["outputs"])
                elif kind == "pool":
                    c = layer.cfg
                    cls = nn.MaxPool2d if c["pool"] == "max" else nn.AvgPool2d
                    m = cls(c["sizeX"], c["stride"], ceil_mode=True)
                elif kind == "dropout":
                    m = nn.Dropout(1 - layer.pcfg["keep"])
                elif kind in ("data", "softmax", "cost.logreg"):
                    continue
                else:
                    raise ValueError(f"bench_cpu_step: no PyTorch twin for layer type {kind}")
                self.mods.append(m)
                self.ops.append((m, layer.neuron[0] == "relu", kind == "fc"))

        def forward(self, x):
            for m, relu, flatten in self.ops:
                x = m(x.flatten(1) if flatten else x)
                if relu:
                    x = torch.relu(x)
            return x

    return Twin()


def time_steps(step, count):
    times = []
    for _ in range(count):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", default="layers/fashion")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--mini", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="BLAS threads of both (default: all cores)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    blas_threads = {k: str(args.threads)
                    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if any(os.environ.get(k) != v for k, v in blas_threads.items()):
        # NumPy's BLAS reads its thread count once, at import: start again with it set
        os.execve(sys.executable, [sys.executable, __file__] + sys.argv[1:],
                  {**os.environ, **blas_threads})
    import torch

    torch.set_num_threads(args.threads)
    net = Net.from_cfg(args.cfg + ".cfg", args.cfg + "-params.cfg", seed=0)
    data_shape = net.data_layers[0].out_shape
    classes = net[net.cost_layers[0].inputs[1]].out_shape[0]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.mini,) + data_shape) * 60).astype(np.float32)
    labels = rng.integers(0, classes, args.mini)

    twin = torch_twin(net)
    opt = torch.optim.SGD(twin.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)
    tx, tl = torch.from_numpy(x), torch.from_numpy(labels)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(twin(tx), tl)
        loss.backward()
        opt.step()

    counter = iter(range(10**9))

    def ours_step():
        net.train_step({0: x, 1: labels}, next(counter), 0.0)

    for f in (ours_step, torch_step):  # warm-up
        time_steps(f, 3)
    ours, theirs = [], []
    for _ in range(args.steps // 5):  # interleave in rounds of 5 steps
        ours += time_steps(ours_step, 5)
        theirs += time_steps(torch_step, 5)
    result = {"net": args.cfg, "mini": args.mini, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "numpy": np.__version__,
              "ours_ms": 1000 * statistics.median(ours), "torch_ms": 1000 * statistics.median(theirs)}
    result["ratio_vs_torch"] = result["ours_ms"] / result["torch_ms"]
    print(f"{args.cfg} batch {args.mini}, {args.threads} threads: convnet numpy "
          f"{result['ours_ms']:.1f} ms/step, PyTorch CPU {result['torch_ms']:.1f} ms/step, "
          f"ratio {result['ratio_vs_torch']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
