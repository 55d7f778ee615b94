"""The training loop: SGD over a provider's batches, tests, checkpoints and metrics.jsonl."""
import math
import os
import signal
import sys
import time

import numpy as np

from .checkpoint import MetricsLog, load_latest_checkpoint, save_checkpoint


class TrainingStopped(Exception):
    """Training cannot go on (NaN/Inf); the last good checkpoint is kept."""


def param_arrays(net):
    arrays = {}
    for p in net.unique_params():
        arrays[f"param/{p.name}"] = np.asarray(net.B.to_numpy(p.value))
        arrays[f"momentum/{p.name}"] = np.asarray(net.B.to_numpy(p.velocity))
    return arrays


def restore_arrays(net, arrays):
    """Put checkpointed weights and momenta back; a mismatch names every layer and shape."""
    problems = []
    for p in net.unique_params():
        for kind, target in (("param", "value"), ("momentum", "velocity")):
            value = arrays.get(f"{kind}/{p.name}")
            if value is None:
                problems.append(f"{p.name}: missing from the checkpoint")
            elif tuple(value.shape) != p.shape:
                problems.append(f"{p.name}: checkpoint {tuple(value.shape)} vs net {p.shape}")
            else:
                getattr(p, target)[...] = net.B.asarray(value, net.dtype)
    if problems:
        raise ValueError("the checkpoint does not match the net: " + "; ".join(sorted(set(problems))))


def evaluate(net, provider, batch_size, cost_name):
    """Test cost, top-1 and top-5 error (fractions) over the provider's test batches."""
    totals = {"cost": 0.0, "top1": 0.0, "top5": 0.0, "cases": 0}
    for x, labels in provider.test_batches(batch_size):
        net.forward({0: x, 1: labels}, train=False)
        for key, value in net[cost_name].stats.items():
            totals[key] += value
    n = max(totals["cases"], 1)
    return {"test_cost": totals["cost"] / n, "top1_error": totals["top1"] / n,
            "top5_error": totals["top5"] / n}


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next batch boundary and exits."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.old = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: writing a checkpoint after this batch (Ctrl-C again to abort)",
              file=sys.stderr)

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


class Trainer:
    """Runs `net` on `provider`, saving into `run_dir` (None: no checkpoints, no metrics)."""

    def __init__(self, net, provider, run_dir=None, epochs=1, batch_size=128, test_freq=0,
                 save_interval=600.0, cost_name=None, saved_config=None, out=None):
        self.net, self.provider, self.run_dir = net, provider, run_dir
        self.epochs, self.batch_size, self.test_freq = epochs, batch_size, test_freq
        self.save_interval = save_interval
        self.cost_name = cost_name or self.default_cost(net)
        self.saved_config = saved_config or {}
        self.out = out or sys.stdout
        self.epoch, self.batch, self.step, self.elapsed = 1, 0, 0, 0.0
        self.metrics = MetricsLog(run_dir) if run_dir else None
        self.on_test = []  # callables given each test record (e.g. the TensorBoard writer)

    @staticmethod
    def default_cost(net):
        from .layers import LogregCostLayer

        logreg = [layer.name for layer in net.cost_layers if isinstance(layer, LogregCostLayer)]
        if not logreg:
            raise ValueError("the net has no cost.logreg layer to report errors with")
        return logreg[0]

    # ------------------------------------------------------------ checkpoints
    def resume(self):
        """Continue from run_dir's newest good checkpoint; False when there is none."""
        found = load_latest_checkpoint(self.run_dir) if self.run_dir else None
        if found is None:
            return False
        _, arrays, state = found
        restore_arrays(self.net, arrays)
        self.epoch, self.batch = state["epoch"], state["batch"]
        self.step, self.elapsed = state["step"], state["elapsed_s"]
        return True

    def save(self):
        if not self.run_dir:
            return
        state = {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                 "elapsed_s": self.elapsed, **self.saved_config}
        save_checkpoint(self.run_dir, self.step, param_arrays(self.net), state)
        self.last_save = time.monotonic()

    # ------------------------------------------------------------ the loop
    def progress(self):
        per_epoch = self.provider.num_train_batches(self.batch_size)
        return ((self.epoch - 1) + self.batch / per_epoch) / self.epochs

    def test(self, train_cost, images, seconds):
        result = evaluate(self.net, self.provider, self.batch_size, self.cost_name)
        record = {"epoch": self.epoch, "batch": self.batch, "step": self.step,
                  "train_cost": train_cost, **result, "elapsed_s": round(self.elapsed, 3),
                  "images_per_s": round(images / seconds, 1) if seconds > 0 else None}
        print(f"epoch {self.epoch} batch {self.batch}: train cost {train_cost:.4f}  "
              f"test cost {result['test_cost']:.4f}  top-1 error {result['top1_error']:.4f}  "
              f"top-5 error {result['top5_error']:.4f}  ({record['images_per_s']} img/s)",
              file=self.out, flush=True)
        if self.metrics:
            self.metrics.append(record)
        for callback in self.on_test:
            callback(record)
        return record

    def check_finite(self, stats):
        cost = stats[self.cost_name]["cost"]
        if not math.isfinite(cost):
            bad = self.first_non_finite()
            raise TrainingStopped(f"step {self.step}: the cost of '{self.cost_name}' is {cost}"
                                  f"{'; first non-finite: ' + bad if bad else ''}; the last good "
                                  "checkpoint is kept")

    def first_non_finite(self):
        xp = self.net.B.xp
        for layer in self.net.layers:
            out = self.net.acts.get(layer.name)
            if out is not None and out.dtype.kind == "f" and not bool(xp.isfinite(out).all()):
                return f"output of layer '{layer.name}'"
            for p in layer.params:
                if not bool(xp.isfinite(p.value).all()):
                    return f"weights {p.name}"
        return None

    def run(self):
        """Train until `epochs`; returns the last test record (or None if nothing ran)."""
        self.last_save = time.monotonic()
        per_epoch = self.provider.num_train_batches(self.batch_size)
        record, since_test = None, [0.0, 0, 0]  # cost sum, cases, batches
        started = time.monotonic()
        with StopRequest() as stop:
            while self.epoch <= self.epochs:
                batches = self.provider.train_batches(self.epoch, self.batch_size, self.batch)
                for x, labels, index in self.progress_bar(batches, per_epoch):
                    tick = time.monotonic()
                    stats = self.net.train_step({0: x, 1: labels}, self.step, self.progress())
                    self.check_finite(stats)
                    self.step, self.batch = self.step + 1, index + 1
                    since_test[0] += stats[self.cost_name]["cost"]
                    since_test[1] += len(labels)
                    since_test[2] += 1
                    self.elapsed += time.monotonic() - tick
                    if self.test_freq and since_test[2] >= self.test_freq and self.batch < per_epoch:
                        record = self.test_since(since_test, started)
                        self.save()
                        since_test, started = [0.0, 0, 0], time.monotonic()
                    elif time.monotonic() - self.last_save >= self.save_interval:
                        self.save()
                    if stop.requested:
                        self.save()
                        print(f"stopped at epoch {self.epoch} batch {self.batch}; resume with "
                              f"--load-file {self.run_dir}" if self.run_dir else "stopped",
                              file=self.out)
                        return record
                if since_test[2]:
                    record = self.test_since(since_test, started)
                    since_test, started = [0.0, 0, 0], time.monotonic()
                self.epoch, self.batch = self.epoch + 1, 0
                self.save()
        return record

    def test_since(self, since_test, started):
        cost_sum, cases, _ = since_test
        return self.test(cost_sum / max(cases, 1), cases, time.monotonic() - started)

    def progress_bar(self, batches, total):
        if not (hasattr(self.out, "isatty") and self.out.isatty()) or os.environ.get("CI"):
            return batches
        from tqdm import tqdm

        return tqdm(batches, total=total, initial=self.batch, desc=f"epoch {self.epoch}",
                    unit="batch", leave=False, file=self.out)
