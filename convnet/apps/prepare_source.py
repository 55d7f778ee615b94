"""convnet-prepare's plan: what SRC holds (class folders, or train/ and val/ with them; what is
left out) and the batches it becomes (training images shuffled, then the test images), each with
the digest that tells a rerun whether a finished batch is still the one it would make."""
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..data.prepared import FORMAT_VERSION


class PrepareError(Exception):
    """SRC or DST cannot be used; the message names the folder or file."""


@dataclass
class Source:
    """What SRC holds: class names, (relative path, label) per split, and what was left out."""
    label_names: list
    train: list
    test: list
    split_folders: bool
    empty_classes: list = field(default_factory=list)     # relative folder paths
    stray_files: list = field(default_factory=list)       # files outside any class folder
    unknown_classes: list = field(default_factory=list)   # test class folders not in train


def _list_files(root, rel):
    """Files under root/rel (recursively, sorted), as paths relative to root."""
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, rel), followlinks=True):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root)
        found.extend(os.path.join(rel_folder, name) for name in sorted(files))
    return found


def _class_folders(root, rel, stray):
    """{class name: [files]} of root/rel's sub-folders; its loose files go to `stray`."""
    classes = {}
    base = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        rel_path = os.path.join(rel, name) if rel else name
        if os.path.isdir(path):
            classes[name] = _list_files(root, rel_path)
        else:
            stray.append(rel_path)
    return classes


def scan_source(src, test_fraction=0.1, seed=0):
    """Read SRC's layout: class folders, or train/ and val/ (test/, validation/) with them."""
    if not os.path.isdir(src):
        raise PrepareError(f"{src}: not a folder")
    subfolders = {n for n in os.listdir(src) if os.path.isdir(os.path.join(src, n))}
    train_name = "train" if "train" in subfolders else None
    test_names = [n for n in ("val", "validation", "test") if n in subfolders]
    stray = []
    if train_name and test_names:
        if len(test_names) > 1:
            raise PrepareError(f"{src}: holds {' and '.join(test_names)}; keep one test folder")
        for name in sorted(os.listdir(src)):
            if name not in (train_name, test_names[0]):
                stray.append(name + ("/" if os.path.isdir(os.path.join(src, name)) else ""))
        train_classes = _class_folders(src, train_name, stray)
        test_classes = _class_folders(src, test_names[0], stray)
        label_names = sorted(train_classes)
        index = {name: i for i, name in enumerate(label_names)}
        source = Source(label_names, [], [], True, stray_files=stray)
        for name, files in train_classes.items():
            source.train.extend((f, index[name]) for f in files)
        for name, files in test_classes.items():
            if name not in index:
                source.unknown_classes.append(os.path.join(test_names[0], name))
                source.stray_files.extend(files)
                continue
            source.test.extend((f, index[name]) for f in files)
        empty = [os.path.join(train_name, n) for n, f in train_classes.items() if not f]
        empty += [os.path.join(test_names[0], n) for n, f in test_classes.items() if not f]
        source.empty_classes = empty
    else:
        classes = _class_folders(src, "", stray)
        label_names = sorted(classes)
        source = Source(label_names, [], [], False, stray_files=stray)
        if not 0 <= test_fraction < 1:
            raise PrepareError(f"--test-fraction must be in [0, 1), got {test_fraction}")
        for label, name in enumerate(label_names):
            files = classes[name]
            if not files:
                source.empty_classes.append(name)
                continue
            held = min(int(round(test_fraction * len(files))), max(len(files) - 1, 0))
            order = np.random.default_rng([seed, label]).permutation(len(files))
            chosen = set(order[:held].tolist())
            for i, f in enumerate(files):
                (source.test if i in chosen else source.train).append((f, label))
        source.test.sort(key=lambda e: (e[1], e[0]))
    if not label_names:
        raise PrepareError(f"{src}: no class folders (expected one folder per class, or "
                           f"train/ and val/ each holding them)")
    return source


@dataclass
class BatchPlan:
    number: int
    split: str
    entries: list  # [(relative path, label)]


def plan_batches(source, images_per_batch, seed=0):
    """Training images shuffled with `seed` into batches 1..K, then test images K+1.."""
    if images_per_batch < 1:
        raise PrepareError(f"--images-per-batch must be >= 1, got {images_per_batch}")
    train = list(source.train)
    order = np.random.default_rng(seed).permutation(len(train))
    train = [train[i] for i in order]
    plans = []
    for split, entries in (("train", train), ("test", source.test)):
        for start in range(0, len(entries), images_per_batch):
            plans.append(BatchPlan(len(plans) + 1, split,
                                   entries[start:start + images_per_batch]))
    return plans


def batch_digest(plan, size, quality):
    text = json.dumps([FORMAT_VERSION, size, quality, plan.split, plan.entries])
    return hashlib.sha256(text.encode()).hexdigest()
