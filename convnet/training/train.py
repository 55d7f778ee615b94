"""The training loop: SGD over a provider's batches, tests, checkpoints and metrics.jsonl.

What a checkpoint holds and how it is checked and put back is saved_run.py's; the files are
checkpoint.py's."""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any, TextIO

import numpy as np

from ..backend import numpy_backend as host  # the tests' sums are made on the host
from ..engine.layers import LogregCostLayer
from ..engine.net import Net
from ..parallel import SingleProcess
from .checkpoint import (CheckpointError, MetricsLog, checkpoint_paths, load_latest_checkpoint,
                         save_checkpoint)
from .distributed import (GradientBuckets, disagreeing_ranks, gather_rows, reduce_stats,
                          shard, share_checkpoint)
from .progress import DEFAULT_LOG_INTERVAL, Progress, inform
from .replicas import ReplicaStep
from .saved_run import check_checkpoint, param_arrays, restore_arrays

WEIGHT_CHECK_EVERY = 50  # steps between NaN/Inf checks of every weight (and at each save/test)
ONE = SingleProcess()


class TrainingStopped(Exception):
    """Training cannot go on (NaN/Inf); the last good checkpoint is kept."""


def evaluate(net: Net, provider, batch_size: int, cost_name: str, multiview: bool = False,
             test_out: str | None = None, comm=ONE, out: TextIO | None = None,
             log_interval: float | None = DEFAULT_LOG_INTERVAL) -> dict[str, Any]:
    """Test cost, top-1 and top-k error (fractions) over the provider's test batches.

    k is the cost layer's topk (cuda-convnet2's key; 5 by default, fewer with fewer classes).
    The result keeps the key top5_error for the top-k error, as every run's metrics.jsonl has
    it, and says which k in "topk".

    multiview: score the softmax averaged over the provider's 10 views of each image (4 corners
    + centre, and their mirrors), as the paper. test_out: save the probabilities scored (float32
    (N, classes)) to this .npy file and the labels (int64) to <FILE>.labels.npy.
    comm: the ranks of a data-parallel job (convnet/parallel) each score their rows of every
    batch; the totals are summed, and rank 0 writes test_out.
    out, log_interval: where the progress goes (None: nowhere) and how often (see Progress).
    """
    bar = Progress("multiview test" if multiview else "test",
                   provider.num_test_batches(batch_size), out, log_interval)
    with bar:
        if multiview or test_out:
            return evaluate_probabilities(net, provider, batch_size, cost_name, multiview,
                                          test_out, comm, bar)
        totals = {"cost": 0.0, "top1": 0.0, "top5": 0.0, "cases": 0}
        for batch in shard(comm, provider.test_batches(batch_size)):
            if batch is not None:
                net.forward({0: batch[0], 1: batch[1]}, train=False)
                for key, value in net[cost_name].stats.items():
                    totals[key] += value
            bar.update(totals["cases"] - bar.images, totals["cost"] / max(totals["cases"], 1))
        return test_record(comm, totals, net[cost_name].topk)


def test_record(comm, totals, topk):
    """evaluate()'s record from the totals of (cost, top1, top5, cases), summed over the ranks."""
    cost, top1, top5, cases = comm.allreduce([totals[k] for k in ("cost", "top1", "top5",
                                                                  "cases")])
    n = max(cases, 1)
    return {"test_cost": float(cost / n), "top1_error": float(top1 / n),
            "top5_error": float(top5 / n), "topk": topk}


def evaluate_probabilities(net, provider, batch_size, cost_name, multiview, test_out, comm=ONE,
                           bar=None):
    """evaluate() from the softmax feeding `cost_name`, averaged over the views of each image."""
    probs_layer = net[cost_name].inputs[1]
    if multiview:
        batches = provider.test_views(batch_size)
    else:
        batches = ((x[None], labels) for x, labels in provider.test_batches(batch_size))
    totals = {"cost": 0.0, "top1": 0.0, "top5": 0.0, "cases": 0}
    all_probs, all_labels = [], []
    classes = None
    for batch in shard(comm, batches, views=True):
        if batch is None:  # none of this batch's rows are this rank's
            all_probs.append(None)
            all_labels.append(np.zeros(0, np.int64))
            if bar is not None:
                bar.update(0, totals["cost"] / max(totals["cases"], 1))
            continue
        views, labels = batch
        total = None
        for view in views:
            probs = net.forward({0: view, 1: labels}, train=False)[probs_layer]
            probs = np.asarray(net.B.to_numpy(probs), np.float64)
            total = probs if total is None else total + probs
        probs = total / len(views)
        labels = np.asarray(labels, np.int64)
        nll, wrong1, wrongk = host.logreg_forward(probs, labels, net[cost_name].topk)
        totals["cost"] += float(nll.sum())
        totals["top1"] += float(wrong1.sum())
        totals["top5"] += float(wrongk.sum())
        totals["cases"] += len(labels)
        classes = probs.shape[1]
        all_probs.append(probs.astype(np.float32))
        all_labels.append(labels)
        if bar is not None:
            bar.update(len(labels), totals["cost"] / totals["cases"])
    if test_out:
        classes = max(c for c in comm.allgather(classes) if c is not None)
        all_probs = [np.zeros((0, classes), np.float32) if p is None else p for p in all_probs]
        probs, labels = gather_rows(comm, all_probs), gather_rows(comm, all_labels)
        if comm.rank == 0:
            stem = test_out[:-4] if test_out.endswith(".npy") else test_out
            np.save(stem + ".npy", probs)
            np.save(stem + ".labels.npy", labels)
    return test_record(comm, totals, net[cost_name].topk)


class StopRequest:
    """SIGINT/SIGTERM/SIGUSR1 set a flag; the loop checkpoints at the next batch boundary and
    exits (in a data-parallel job, every rank at the batch where the first rank saw it)."""
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1")
                    if hasattr(signal, name))

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.old = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the handler may run while the main thread is inside a print to
        # stderr, and a buffered stream entered twice raises "reentrant call"
        os.write(sys.stderr.fileno(), b"\nstopping: writing a checkpoint after this batch "
                 b"(Ctrl-C again to abort)\n")

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


class Trainer:
    """Runs `net` on `provider`, saving into `run_dir` (None: no checkpoints, no metrics)."""

    def __init__(self, net: Net, provider, run_dir: str | None = None, epochs: int = 1,
                 batch_size: int = 128, test_freq: int = 0, save_interval: float = 600.0,
                 cost_name: str | None = None, saved_config: dict | None = None,
                 out: TextIO | None = None, comm=ONE) -> None:
        """comm: the ranks of a data-parallel job (convnet/parallel); only rank 0 writes files
        and prints, and rank 0's run_dir decides whether the job saves (every rank takes part
        in a save's checks)."""
        self.net, self.provider, self.run_dir, self.comm = net, provider, run_dir, comm
        self.epochs, self.batch_size, self.test_freq = epochs, batch_size, test_freq
        self.save_interval = save_interval
        self.cost_name = cost_name or self.default_cost(net)
        self.saved_config = saved_config or {}
        self.out = out or sys.stdout
        if comm.rank:
            self.out = open(os.devnull, "w")
        self.multiview, self.test_out = False, None  # see evaluate()
        self.log_interval = DEFAULT_LOG_INTERVAL  # progress lines when out is not a terminal
        self.epoch, self.batch, self.step, self.elapsed = 1, 0, 0, 0.0
        self.since_test = [0.0, 0, 0]  # train cost sum, cases, batches since the last test
        self.stopped = False  # set when SIGINT/SIGTERM ended run() early (after a checkpoint)
        self.last_saved_step = None
        self.metrics = MetricsLog(run_dir) if run_dir and comm.rank == 0 else None
        self.saves = comm.bcast(run_dir is not None)  # rank 0's say: saves are collective
        self.on_test = []  # callables given each test record (e.g. the TensorBoard writer)
        self.last_batch = None  # this rank's rows of the last step: saves check their cost on it
        self.flags = {}  # the last step's stop/save flags, the same on every rank
        # cuda-convnet2's replicas (gpu=0,1): the minibatch in slices and passes, each update
        # reduced over the ranks when it is due; else buckets reduced during backward
        self.replica_step = ReplicaStep(net, comm) if net.schedule.rmax > 1 else None
        self.buckets = GradientBuckets(net, comm) if comm.world > 1 and \
            self.replica_step is None else None

    @staticmethod
    def default_cost(net):
        logreg = [layer.name for layer in net.cost_layers if isinstance(layer, LogregCostLayer)]
        if not logreg:
            raise ValueError("the net has no cost.logreg layer to report errors with")
        return logreg[0]

    # ------------------------------------------------------------ checkpoints
    def resume(self, found: tuple[int, dict, dict] | None = None) -> bool:
        """Continue from `found` (step, arrays, state), by default run_dir's newest good
        checkpoint; False when there is none. A checkpoint that does not fit the net or the
        minibatch size is a CheckpointError naming the file, the layers and the shapes. In a
        data-parallel job `found` is the same on every rank, and rank 0 alone reads run_dir."""
        if found is None and self.saves:
            found = share_checkpoint(self.comm, None if self.comm.rank else
                                     load_latest_checkpoint(self.run_dir, check=check_checkpoint))
        if found is None:
            return False
        step, arrays, state = found
        where = checkpoint_paths(self.run_dir or ".", step)[0]
        per_epoch = self.provider.num_train_batches(self.batch_size)
        saved_mini = state.get("minibatch")
        if state["batch"] and saved_mini is not None and saved_mini != self.batch_size:
            raise CheckpointError(f"{where}: saved at batch {state['batch']} of epoch "
                                  f"{state['epoch']} with minibatches of {saved_mini}; resuming "
                                  f"that epoch with {self.batch_size} would see some images "
                                  f"twice and skip others: resume with --mini {saved_mini}")
        if state["batch"] > per_epoch:
            raise CheckpointError(f"{where}: saved at batch {state['batch']} of epoch "
                                  f"{state['epoch']}, but minibatches of {self.batch_size} make "
                                  f"{per_epoch} per epoch; resume with the minibatch size it "
                                  f"was saved with")
        try:
            restore_arrays(self.net, arrays)
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        self.epoch, self.batch = state["epoch"], state["batch"]
        self.step, self.elapsed = state["step"], state["elapsed_s"]
        self.since_test = list(state.get("since_test", [0.0, 0, 0]))
        self.last_saved_step = step
        if self.metrics and self.run_dir and "metrics_records" in state and \
                os.path.abspath(self.metrics.run_dir) == os.path.abspath(self.run_dir):
            # records written after this checkpoint describe work the resumed run redoes
            aside = self.metrics.keep_first(state["metrics_records"], step)
            if aside:
                inform(f"metrics.jsonl: the records newer than the checkpoint of step {step} are "
                    f"moved to {aside}", self.out)
        return True

    def save(self) -> None:
        if not self.saves:
            return
        self.check_weights()  # a checkpoint never holds NaN or Inf,
        self.check_saved_cost()  # nor weights whose cost already overflows
        arrays = param_arrays(self.net)
        differ = disagreeing_ranks(self.comm, arrays)
        if differ:
            raise TrainingStopped(f"step {self.step}: the ranks' weights differ ({differ}); not "
                                  f"saved; {self.kept()}")
        self.last_save = time.monotonic()
        if self.comm.rank:  # rank 0 writes; a failed write there ends the job
            self.last_saved_step = self.step
            return
        state = {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                 "minibatch": self.batch_size, "elapsed_s": self.elapsed,
                 "since_test": list(self.since_test), **self.saved_config}
        if self.metrics:
            state["metrics_records"] = self.metrics.count
        save_checkpoint(self.run_dir, self.step, arrays, state)
        self.last_saved_step = self.step  # only once it is written: a failed write keeps the last

    # ------------------------------------------------------------ the loop
    def progress(self):
        per_epoch = self.provider.num_train_batches(self.batch_size)
        return ((self.epoch - 1) + self.batch / per_epoch) / self.epochs

    def test(self, train_cost, images, seconds):
        self.check_weights()
        result = evaluate(self.net, self.provider, self.batch_size, self.cost_name,
                          multiview=self.multiview, test_out=self.test_out, comm=self.comm,
                          out=self.progress_out(), log_interval=self.log_interval)
        record = {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                  "train_cost": train_cost, **result, "cost_layer": self.cost_name, "elapsed_s": round(self.elapsed, 3),
                  "images_per_s": round(images / seconds, 1) if seconds > 0 else None}
        inform(f"epoch {self.epoch} batch {self.batch}: train cost {train_cost:.4f}  "
            f"test cost {result['test_cost']:.4f}  top-1 error {result['top1_error']:.4f}  "
            f"top-{result['topk']} error {result['top5_error']:.4f}  "
            f"({record['images_per_s']} img/s)", self.out)
        if self.metrics:
            self.metrics.append(record)
        for callback in self.on_test:
            callback(record)
        if not math.isfinite(result["test_cost"]):  # never saved: the last good one stays
            raise TrainingStopped(
                f"step {self.step} (epoch {self.epoch}, batch {self.batch}): the test cost is "
                f"{result['test_cost']}; {self.first_non_finite() or self.largest_output()}; "
                f"try smaller learning rates; {self.kept()}")
        return record

    def kept(self):
        return (f"the last good checkpoint (step {self.last_saved_step}) is kept"
                if self.run_dir and self.last_saved_step is not None else "nothing was saved")

    def check_finite(self, stats):
        """Stop when a cost of this step is NaN/Inf, naming the first layer that went bad."""
        for name, layer_stats in stats.items():
            cost = layer_stats["cost"]
            if not math.isfinite(cost):
                bad = self.first_non_finite() or ("every output and weight is finite, but the "
                                                  f"cost overflowed ({self.largest_output()})")
                raise TrainingStopped(
                    f"step {self.step} (epoch {self.epoch}, batch {self.batch + 1}): the cost of "
                    f"'{name}' is {cost}; {bad}; try smaller learning rates; {self.kept()}")

    def check_saved_cost(self):
        """Stop when the weights about to be saved give a non-finite cost on the last minibatch
        (finite but diverged weights: the next resume would start from them)."""
        if self.last_batch is None:
            return
        self.net.forward(self.last_batch, train=False)
        for name, layer_stats in reduce_stats(self.comm, self.net.cost_stats())[0].items():
            if not math.isfinite(layer_stats["cost"]):
                raise TrainingStopped(
                    f"step {self.step} (epoch {self.epoch}, batch {self.batch}): the weights "
                    f"give the cost of '{name}' {layer_stats['cost']} on the last minibatch; "
                    f"{self.first_non_finite() or self.largest_output()}; not saved: try "
                    f"smaller learning rates; {self.kept()}")

    def check_weights(self):
        """Stop when any weight or momentum is NaN/Inf (a gradient or an update blew up)."""
        xp = self.net.B.xp
        for layer, p in self.net.owned_params():
            with self.net.dev.on(layer.gpu):
                finite = bool(xp.isfinite(p.value).all()) and bool(xp.isfinite(p.velocity).all())
            if not finite:
                raise TrainingStopped(
                    f"step {self.step} (epoch {self.epoch}, batch {self.batch}): "
                    f"{self.first_non_finite()}; a gradient or update overflowed: try smaller "
                    f"learning rates; {self.kept()}")

    def first_non_finite(self):
        """Where NaN/Inf first appears, walking the layers in net order and looking at each
        layer's weights and momenta, then its output: 'the weights W of layer X hold ...' or
        'the output of layer X holds ...'; None when everything is finite."""
        acts = getattr(self.net, "acts", {})
        for layer in self.net.layers:
            with self.net.dev.on(layer.gpu):
                found = self.non_finite_in(layer, acts.get(layer.name))
            if found:
                return found
        return None

    def largest_output(self):
        """'the largest output is X, in layer L': where a finite net is heading to overflow
        (the data layers' pixels left out: they are the input, not the overflow)."""
        acts = getattr(self.net, "acts", {})
        size, where = 0.0, None
        inputs = {layer.name for layer in self.net.data_layers}
        for layer in self.net.layers:
            out = None if layer.name in inputs else acts.get(layer.name)
            if out is not None and out.dtype.kind == "f" and out.size:
                with self.net.dev.on(layer.gpu):
                    top = float(self.net.B.xp.abs(out).max())
                if top > size:
                    size, where = top, layer.name
        return f"the largest output is {size:.3g}, in layer '{where}'" if where else "no outputs"

    def non_finite_in(self, layer, out):
        xp = self.net.B.xp
        for p in layer.params:
            for what, value in (("weights", p.value), ("momentum of", p.velocity)):
                if value is not None and not bool(xp.isfinite(value).all()):
                    return f"the {what} {p.name} of layer '{layer.name}' hold NaN or Inf"
        if out is not None and out.dtype.kind == "f" and not bool(xp.isfinite(out).all()):
            return f"the output of layer '{layer.name}' holds NaN or Inf"
        return None

    def run(self) -> dict[str, Any] | None:
        """Train until `epochs`; returns the last test record (or None if nothing ran)."""
        self.last_save = time.monotonic()
        per_epoch = self.provider.num_train_batches(self.batch_size)
        record, since_test = None, self.since_test  # cost sum, cases, batches
        started = time.monotonic()
        with StopRequest() as stop:
            while self.epoch <= self.epochs:
                batches = self.provider.train_batches(self.epoch, self.batch_size, self.batch)
                with Progress(f"epoch {self.epoch}", per_epoch, self.progress_out(),
                              self.log_interval, initial=self.batch) as bar:
                    for x, labels, index in batches:
                        tick = time.monotonic()
                        stats = self.train_batch(x, labels, stop)
                        self.step, self.batch = self.step + 1, index + 1
                        since_test[0] += stats[self.cost_name]["cost"]
                        since_test[1] += len(labels)
                        since_test[2] += 1
                        self.elapsed += time.monotonic() - tick
                        bar.update(len(labels), since_test[0] / max(since_test[1], 1))
                        if self.step % WEIGHT_CHECK_EVERY == 0:
                            self.check_weights()
                        if (self.test_freq and since_test[2] >= self.test_freq
                                and self.batch < per_epoch):
                            record = self.test_since(since_test, started)
                            since_test[:], started = [0.0, 0, 0], time.monotonic()
                            self.save()
                        elif self.flags["save"]:
                            self.save()
                        if self.flags["stop"]:
                            bar.close()
                            self.save()
                            self.stopped = True
                            inform(f"stopped at epoch {self.epoch} batch {self.batch}; resume with "
                                f"--load-file {self.run_dir}" if self.run_dir else "stopped",
                                self.out)
                            return record
                if since_test[2]:
                    record = self.test_since(since_test, started)
                    since_test[:], started = [0.0, 0, 0], time.monotonic()
                self.epoch, self.batch = self.epoch + 1, 0
                self.save()
        return record

    def train_batch(self, x, labels, stop):
        """One step on this rank's rows of the minibatch (x, labels): forward, the costs and
        flags summed over the ranks (the NaN/Inf check sees the sums), backward, the gradients
        averaged, the update. Returns the summed cost statistics (Net.train_step's, on one
        process)."""
        if len(labels) < self.comm.world:  # known to every rank: they all stop here
            raise ValueError(f"a minibatch of {len(labels)} image(s) leaves some of the "
                             f"{self.comm.world} ranks without one: choose --mini (and the "
                             f"training set) so every minibatch has at least one image per rank")
        lo, hi = self.comm.rows(len(labels))
        self.last_batch = {0: x[lo:hi], 1: labels[lo:hi]}
        if self.replica_step is not None:
            return self.replica_batch(x, labels, stop)
        self.net.row0 = lo
        self.net.forward(self.last_batch, train=True, step=self.step)
        stats, self.flags = reduce_stats(
            self.comm, self.net.cost_stats(), stop=stop.requested,
            save=time.monotonic() - self.last_save >= self.save_interval)
        self.check_finite(stats)
        if self.buckets is None:
            self.net.backward()
        else:  # the gradients are reduced as backward finishes them
            self.buckets.begin(hi - lo, len(labels))
            self.net.backward(on_layer=self.buckets.layer_done)
            self.buckets.finish()
        self.net.update(self.progress())
        return stats

    def replica_batch(self, x, labels, stop):
        """train_batch for a net with replicas: each rank checks its own passes' costs before
        their updates (ReplicaStep), and the costs summed over the ranks after the step."""
        stats = self.replica_step({0: x, 1: labels}, self.step, self.progress(),
                                  check=self.check_finite)
        stats, self.flags = reduce_stats(
            self.comm, stats, stop=stop.requested,
            save=time.monotonic() - self.last_save >= self.save_interval)
        self.check_finite(stats)
        return stats

    def test_since(self, since_test, started):
        cost_sum, cases, _ = since_test
        return self.test(cost_sum / max(cases, 1), cases, time.monotonic() - started)

    def progress_out(self):
        """Where progress goes: rank 0's out (the other ranks show none)."""
        return None if self.comm.rank else self.out
