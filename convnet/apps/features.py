"""A layer's activations written to disk (convnet-train --write-features) and read back
(convnet-retrieve). Rebuilding a saved run's net is training/saved_run.py's load_run.

A feature folder (``convnet-train ... --write-features LAYER --feature-path P``) holds:

    P/features.npy   float32 (N, D): LAYER's test-mode output for image i of the range, flattened
    P/labels.npy     int64 (N,): the images' labels
    P/meta.json      written last (its presence marks a complete folder):
                     {"format": 1, "layer", "layer_shape", "num", "dim", "label_names",
                      "provider", "data_path", "test_range", "batches", "inner_size",
                      "run", "step"}

Row i is image i of the data range (``test_range``: the provider's test batches, in file order,
centre crop, no flip), so ``make_provider(provider, data_path, test_range=test_range)
.test_images[i]`` is the image again (``source_images`` does exactly that).
"""
import json
import os

import numpy as np

from ..data import make_provider, parse_range
from ..engine.layers import DataLayer
from ..parallel import SingleProcess
from ..training.distributed import shard
from ..training.progress import DEFAULT_LOG_INTERVAL, Progress, inform

FORMAT = 1
FEATURES_FILE, LABELS_FILE, META_FILE = "features.npy", "labels.npy", "meta.json"
DEFAULT_TEST_BATCHES = {"fashion-mnist": "7", "cifar": "6"}


class FeatureError(ValueError):
    """A feature folder is missing or malformed; the message names the file."""


# ----------------------------------------------------------------------------- writing

def write_features(net, provider, layer, path, batch_size=128, source=None, out=None,
                   comm=SingleProcess(), log_interval=DEFAULT_LOG_INTERVAL):
    """Run the net in test mode over the provider's test images and save `layer`'s outputs.

    Writes batch by batch into a memory-mapped .npy, so memory holds one batch, not the set.
    `source` adds to meta.json what finds the images again (data_path, test_range,
    inner_size, run, step). Returns the folder's path. comm: in a data-parallel job each rank
    runs its rows of every batch, and rank 0 gathers and writes them. The progress goes to
    `out` (a bar, or a line every `log_interval` seconds; see Progress).
    """
    if layer not in net.by_name:
        raise ValueError(f"--write-features: unknown layer '{layer}' (layers: "
                         f"{', '.join(l.name for l in net.layers)})")
    shape = net[layer].out_shape
    if not shape:
        raise ValueError(f"--write-features: layer '{layer}' has no output (a cost or label "
                         "layer)")
    if not path:
        raise ValueError("--write-features needs --feature-path P (a folder to write)")
    dim, count = int(np.prod(shape)), provider.num_test
    if comm.rank == 0:
        with Progress(f"features of {layer}", provider.num_test_batches(batch_size), out,
                      log_interval) as bar:
            write_feature_arrays(path, dim, count, counted(
                rows(net, layer, provider, batch_size, dim, comm), bar))
    else:
        for _ in rows(net, layer, provider, batch_size, dim, comm):
            pass
        return path
    source = dict(source or {})
    test_range = source.get("test_range")
    meta = {"format": FORMAT, "layer": layer, "layer_shape": list(shape), "num": count,
            "dim": dim, "label_names": provider.label_names, "provider": provider.name,
            "data_path": os.path.abspath(source["data_path"]) if source.get("data_path") else None,
            "test_range": test_range,
            "batches": parse_batches(provider.name, test_range),
            "inner_size": source.get("inner_size"),
            "run": os.path.abspath(source["run"]) if source.get("run") else None,
            "step": source.get("step")}
    with open(os.path.join(path, META_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    if out is not None and not meta["run"]:
        inform("note: no --load-file, so these are the features of untrained weights", out)
    if out is not None:
        inform(f"wrote {count:,} x {dim:,} features of layer '{layer}' (test range "
            f"{','.join(map(str, meta['batches']))} of {provider.name}) to {path}", out)
    return path


def rows(net, layer, provider, batch_size, dim, comm):
    """(features float32 (n, dim), labels) of each test batch; in a data-parallel job each rank
    runs its rows and rank 0 gets the whole batch (the others: None)."""
    raw = isinstance(net[layer], DataLayer)
    for batch in shard(comm, provider.test_batches(batch_size)):
        value, y = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
        if batch is not None:
            x, y = batch
            # a data layer's output is the (mean-subtracted) input itself: no need to run it
            value = x if raw else net.B.to_numpy(net.forward({0: x, 1: y}, train=False)[layer])
            value = np.asarray(value, np.float32).reshape(len(y), dim)
        parts = comm.gather((value, y))
        yield None if parts is None else tuple(np.concatenate(p) for p in zip(*parts))


def counted(batches, bar):
    """`batches` of (features, labels), each counted on `bar` as it passes."""
    for value, y in batches:
        bar.update(len(y))
        yield value, y


def write_feature_arrays(path, dim, count, batches):
    """features.npy and labels.npy from `batches` of (features, labels), written as they come
    into memory-mapped files (meta.json, the folder's commit, is removed until it is rewritten)."""
    os.makedirs(path, exist_ok=True)
    meta_path = os.path.join(path, META_FILE)
    if os.path.exists(meta_path):
        os.remove(meta_path)  # uncommitted until the arrays are complete again
    features = np.lib.format.open_memmap(os.path.join(path, FEATURES_FILE), mode="w+",
                                         dtype=np.float32, shape=(count, dim))
    labels = np.lib.format.open_memmap(os.path.join(path, LABELS_FILE), mode="w+",
                                       dtype=np.int64, shape=(count,))
    start = 0
    for value, y in batches:
        features[start:start + len(y)] = value
        labels[start:start + len(y)] = y
        start += len(y)
    features.flush()
    labels.flush()


def parse_batches(provider_name, test_range):
    return parse_range(test_range if test_range is not None
                       else DEFAULT_TEST_BATCHES.get(provider_name, "1"))


# ----------------------------------------------------------------------------- reading

class FeatureSet:
    """A feature folder opened for reading: .features is memory-mapped (N, D) float32."""

    def __init__(self, path):
        self.path = os.fspath(path)
        meta_path = os.path.join(self.path, META_FILE)
        if not os.path.isdir(self.path):
            raise FeatureError(f"feature folder {self.path} does not exist")
        try:
            with open(meta_path, encoding="utf-8") as f:
                self.meta = json.load(f)
        except FileNotFoundError:
            raise FeatureError(f"{meta_path}: missing (not a feature folder, or its writing "
                               "did not finish)") from None
        except (OSError, ValueError) as e:
            raise FeatureError(f"{meta_path}: unreadable ({e})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise FeatureError(f"{meta_path}: not a format-{FORMAT} feature file")
        self.features = self._load(FEATURES_FILE, 2)
        self.labels = self._load(LABELS_FILE, 1)
        if len(self.labels) != len(self.features):
            raise FeatureError(f"{self.path}: {len(self.labels)} labels for "
                               f"{len(self.features)} feature rows")
        self.label_names = list(self.meta.get("label_names") or [])
        self.layer = self.meta.get("layer")

    def _load(self, name, ndim):
        file = os.path.join(self.path, name)
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FeatureError(f"{file}: missing") from None
        except (OSError, ValueError) as e:
            raise FeatureError(f"{file}: unreadable ({e})") from None
        if array.ndim != ndim:
            raise FeatureError(f"{file}: expected {ndim} dimensions, found shape {array.shape}")
        return array

    def __len__(self):
        return len(self.features)

    def source_images(self):
        """uint8 (N, C, H, W) images of the rows, loaded again from the data set."""
        meta = self.meta
        rng = meta.get("test_range")
        provider = make_provider(meta["provider"], meta.get("data_path"),
                                 train_range=rng, test_range=rng)
        if provider.num_test != len(self):
            raise FeatureError(f"{self.path}: {len(self)} rows, but test range "
                               f"{rng} of {meta['provider']} has {provider.num_test} images")
        return provider.test_images
