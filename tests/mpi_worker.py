"""What test_distributed.py starts on each rank under mpiexec (or alone, for the 1-rank run).

    python tests/mpi_worker.py train DATA OUT.npz --mini N --epochs E [--run DIR] [--resume]
                               [--bucket-bytes B] [--replicas R]
        a float64 net with nrelu noise and dropout on synthetic CIFAR (random crops, flips, a
        shuffled order), trained through Trainer; rank 0 writes the weights, momenta and the
        last test record to OUT.npz. --replicas R: cuda-convnet2's gpu=0,...,R-1 on conv1 (the
        layers after it inherit it) and on the cost layer.
    python tests/mpi_worker.py fail-at-step K kill|raise CLI-ARGS...
        convnet-train CLI-ARGS, this rank SIGKILLing itself (a rank the OOM killer takes) or
        raising (a bug on one rank) when it reaches step K.
"""
import argparse
import json
import os
import signal
import sys

import numpy as np

from convnet.apps import cli
from convnet.data import make_provider
from convnet.engine.net import Net
from convnet.parallel import connect
from convnet.training.saved_run import param_arrays
from convnet.training.train import Trainer

WEIGHTS = dict(epsW=0.01, epsB=0.02, momW=0.9, momB=0.9, wc=0.0005)
SPECS = [
    dict(name="data", type="data", dataIdx=0, channels=3, imgSize=24),
    dict(name="labels", type="data", dataIdx=1),
    dict(name="conv1", type="conv", inputs="data", filters=4, filterSize=5, stride=2,
         initW=0.05, neuron="nrelu", **WEIGHTS),
    dict(name="pool1", type="pool", inputs="conv1", pool="max", sizeX=3, stride=2),
    dict(name="fc16", type="fc", inputs="pool1", outputs=15, initW=0.05, neuron="relu",
         **WEIGHTS),
    dict(name="drop", type="dropout", inputs="fc16", keep=0.5),
    dict(name="fc10", type="fc", inputs="drop", outputs=10, initW=0.05, **WEIGHTS),
    dict(name="probs", type="softmax", inputs="fc10"),
    dict(name="logprob", type="cost.logreg", inputs="labels,probs", coeff=1),
]


def train(argv):
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--mini", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--run", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--bucket-bytes", type=int, default=None, help="1: a bucket per layer")
    p.add_argument("--replicas", type=int, default=1)
    args = p.parse_args(argv)
    comm = connect(timeout=300)
    provider = make_provider("cifar", args.data, "1-2", "6", inner_size=24, seed=5)
    gpus = ",".join(map(str, range(args.replicas)))
    specs = [dict(spec, gpu=gpus) if args.replicas > 1 and spec["name"] in ("conv1", "logprob")
             else spec for spec in SPECS]
    net = Net(specs, dtype=np.float64, seed=1)
    trainer = Trainer(net, provider, args.run, args.epochs, args.mini, comm=comm,
                      out=open(os.devnull, "w"))
    if args.bucket_bytes and trainer.buckets:
        trainer.buckets.bucket_bytes = args.bucket_bytes
    if args.resume:
        assert trainer.resume(), "no checkpoint to resume from"
    record = trainer.run()
    if comm.rank == 0:
        np.savez(args.out, **param_arrays(net), record=json.dumps(record))
    comm.close()


def fail_at_step(argv):
    step, how = int(argv[0]), argv[1]
    run_batch = Trainer.train_batch

    def train_batch(self, *a):
        if self.step == step and how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.step == step:
            raise ZeroDivisionError(f"injected at step {step}")
        return run_batch(self, *a)

    Trainer.train_batch = train_batch
    return cli.main(argv[2:])


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    sys.exit(train(rest) if mode == "train" else fail_at_step(rest))
