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
    left_out: list = field(default_factory=list)          # [(relative path, why)] not read


def printable(name):
    """A path as text that can be written anywhere: undecodable bytes as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(name):
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class _Walk:
    """Files under SRC, each read once: folder links are followed, but never into SRC, a split
    or a class folder, nor into a folder already walked (a link to a parent, a second link to
    one folder), and only regular files are taken (not FIFOs, sockets or devices, which would
    block or never end)."""

    def __init__(self, root):
        self.root, self.files, self.left_out = root, {}, []
        self.reserved = {os.path.realpath(root)}  # walked only as themselves
        self.folders = set()

    def class_folders(self, rel, stray):
        """[(class name, relative path)] of SRC/rel's sub-folders, reserved before any class is
        walked; SRC/rel's loose files go to `stray`."""
        found = []
        base = os.path.join(self.root, rel) if rel else self.root
        self.reserved.add(os.path.realpath(base))
        for name in sorted(os.listdir(base)):
            path, rel_path = os.path.join(base, name), os.path.join(rel, name) if rel else name
            if not os.path.isdir(path):
                stray.append(printable(rel_path))
                continue
            if not _is_utf8(name):
                raise PrepareError(f"{printable(path)}: a class folder whose name is not valid "
                                   "UTF-8; rename it (class names are labels)")
            self.reserved.add(os.path.realpath(path))
            found.append((name, rel_path))
        return found

    def files_under(self, rel, top=True):
        found = []
        self._walk(rel, found, top)
        return found

    def _walk(self, rel, found, top):
        path = os.path.join(self.root, rel)
        real = os.path.realpath(path)
        if real in self.folders or (not top and real in self.reserved):
            self.left_out.append((printable(rel), "a link to a folder already included"))
            return
        self.folders.add(real)
        for name in sorted(os.listdir(path)):
            rel_name = os.path.join(rel, name)
            full = os.path.join(path, name)
            if not _is_utf8(name):
                self.left_out.append((printable(rel_name), "its name is not valid UTF-8"))
            elif os.path.isdir(full):
                self._walk(rel_name, found, False)
            elif not os.path.isfile(full):
                why = "a broken link" if os.path.islink(full) else "not a regular file"
                self.left_out.append((rel_name, why))
            elif os.path.realpath(full) in self.files:
                self.left_out.append((rel_name, f"the same file as "
                                                f"{self.files[os.path.realpath(full)]}"))
            else:
                self.files[os.path.realpath(full)] = rel_name
                found.append(rel_name)


def scan_source(src, test_fraction=0.1, seed=0):
    """Read SRC's layout: class folders, or train/ and val/ (test/, validation/) with them."""
    if not os.path.isdir(src):
        raise PrepareError(f"{src}: not a folder")
    subfolders = {n for n in os.listdir(src) if os.path.isdir(os.path.join(src, n))}
    train_name = "train" if "train" in subfolders else None
    test_names = [n for n in ("val", "validation", "test") if n in subfolders]
    stray, walk = [], _Walk(src)
    if train_name and test_names:
        if len(test_names) > 1:
            raise PrepareError(f"{src}: holds {' and '.join(test_names)}; keep one test folder")
        for name in sorted(os.listdir(src)):
            if name not in (train_name, test_names[0]):
                stray.append(printable(name) + ("/" if os.path.isdir(os.path.join(src, name))
                                                else ""))
        train_folders = walk.class_folders(train_name, stray)
        test_folders = walk.class_folders(test_names[0], stray)
        train_classes = {name: walk.files_under(rel) for name, rel in train_folders}
        test_classes = {name: walk.files_under(rel) for name, rel in test_folders}
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
        classes = {name: walk.files_under(rel) for name, rel in walk.class_folders("", stray)}
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
    source.left_out = walk.left_out
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
