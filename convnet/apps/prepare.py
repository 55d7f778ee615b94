"""`convnet-prepare SRC DST`: a folder of labelled images -> batches of 256x256 JPEGs + meta.

SRC holds one folder per class (images may sit in sub-folders of a class folder), or `train/`
and `val/` (or `test/`, `validation/`), each with the same class folders. Labels are the class
folder names in sorted order. Every image is rescaled so that its short side is `--size` (256,
as the paper), centre-cropped to size x size, and stored as a JPEG (`--quality`).

DST receives (see ``BatchFiles`` in convnet/imagedata.py for the reader):

    data_batch_N.bin   the JPEGs of batch N, concatenated
    data_batch_N.npz   its index, written last (its presence marks a finished batch):
                       offsets int64 (n+1) into the .bin, labels int64 (n), files (n, the
                       source paths relative to SRC), digest (what the batch was made from),
                       report (JSON: what was converted or skipped), and the sums the meta
                       needs: pixel_sum uint64 (size, size, 3), rgb_sum (3,), rgb_outer (3, 3),
                       rgb_count
    meta.json          label names, image size, the train and test batch numbers, the RGB
                       covariance's eigenvalues (descending) and eigenvectors (columns), for the
                       paper's PCA colour lighting; 0..255 pixel scale
    mean.npy           the mean training image, float32 (3, size, size) (CHW, 0..255, RGB),
                       taken over the images as resized, before JPEG encoding
    report.json        every image converted (greyscale, CMYK, palette, alpha, 16-bit, PNG/GIF/
    report.txt         BMP..., upscaled) or skipped (corrupt, truncated, not an image ...), empty
                       class folders and stray files: counted and listed; nothing is dropped
                       silently

Batches 1..K hold the training images (shuffled with `--seed`), K+1.. the test images (in
class order). Without a val/ folder, `--test-fraction` of each class is held out for testing.
Batches are converted in parallel by `--workers` processes (default: every core); each batch is
written to temporary files and renamed, so a rerun after an interruption skips the finished
batches (and redoes a batch only if its list of source files or the options changed).
"""
import argparse
import hashlib
import io
import json
import os
import signal
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

FORMAT_NAME = "convnet-image-batches"
FORMAT_VERSION = 1
META_FILE, MEAN_FILE = "meta.json", "mean.npy"
REPORT_JSON, REPORT_TEXT = "report.json", "report.txt"
SPLIT_NAMES = {"train": "train", "val": "test", "validation": "test", "test": "test"}
PCA_STRIDE = 4  # the PCA uses every 4th pixel of every 4th row of each training image
EXIT_BAD_INPUT = 2
IMAGE_SIGNATURES = ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


class PrepareError(Exception):
    """SRC or DST cannot be used; the message names the folder or file."""


class SkipImage(Exception):
    """An image that cannot be stored: `kind` is a short key for the report's counts."""

    def __init__(self, kind, reason):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def batch_paths(dst, number):
    return (os.path.join(dst, f"data_batch_{number}.bin"),
            os.path.join(dst, f"data_batch_{number}.npz"))


# ----------------------------------------------------------------------------- one image

def _is_16bit(im):
    """True when the file stores 16 bits per sample (Pillow may still open it as 8-bit RGB)."""
    if im.mode.startswith("I;16"):
        return True
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else (
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else "")
        if "16" in rawmode:
            return True
    return False


def _to_rgb(im, changes):
    """`im` as 8-bit RGB; each conversion is appended to `changes`."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 0..65535 -> 0..255
        changes.append(f"{'16' if mode != 'I' else '32'}-bit greyscale -> 8-bit RGB")
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.asarray(im).astype(np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        changes.append("32-bit float greyscale -> 8-bit RGB")
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode == "P" and "transparency" in im.info) or (
        mode in ("L", "RGB") and "transparency" in im.info)
    if mode in ("P", "PA"):
        changes.append("palette -> RGB")
    elif mode in ("1",):
        changes.append("1-bit -> RGB")
    elif mode in ("L", "LA", "La"):
        changes.append("greyscale -> RGB")
    elif mode not in ("RGB", "RGBA", "RGBa"):
        changes.append(f"{mode} -> RGB")
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        changes.append("alpha removed (composited on white)")
        return white.convert("RGB")
    return im if mode == "RGB" else im.convert("RGB")


def convert_image(path, size=256, quality=90):
    """(JPEG bytes, uint8 (size, size, 3) pixels, [changes]) for one image file, or SkipImage.

    The short side is rescaled to `size` (bicubic; large JPEGs are first reduced by the
    decoder's DCT scaling, which keeps both sides >= size), then the centre is cropped.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise SkipImage("unreadable", f"cannot read: {exc.strerror or exc}") from None
    if not raw:
        raise SkipImage("not-an-image", "empty file")
    changes = []
    fmt = "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw))
            fmt = im.format or "image"
            frames = getattr(im, "n_frames", 1)
            sixteen = _is_16bit(im)
            if fmt == "JPEG":
                im.draft(None, (size, size))
            im.load()
    except Image.DecompressionBombError as exc:
        raise SkipImage("too-large", f"too many pixels ({exc})") from None
    except UnidentifiedImageError:
        known = next((name for magic, name in IMAGE_SIGNATURES if raw.startswith(magic)), None)
        if known:
            raise SkipImage("corrupt", f"corrupt {known}: starts like one, but cannot be "
                                       f"read") from None
        raise SkipImage("not-an-image", "not an image Pillow can read") from None
    except Exception as exc:  # truncated and corrupt files raise many different types
        raise SkipImage("corrupt", f"truncated or corrupt {fmt}: {exc}") from None
    width, height = im.size
    if width < 1 or height < 1:
        raise SkipImage("corrupt", f"{fmt} of size {width}x{height}")
    if fmt != "JPEG":
        changes.append(f"{fmt} -> JPEG")
    if frames > 1:
        changes.append(f"first frame of an animation ({frames} frames)")
    if sixteen and not im.mode.startswith("I;16"):
        changes.append("16-bit -> 8-bit")
    try:
        im = _to_rgb(im, changes)
    except Exception as exc:
        raise SkipImage("corrupt", f"cannot convert {fmt} mode {im.mode} to RGB: {exc}") from None
    short = min(width, height)
    if short < size:
        changes.append(f"upscaled: short side {short} < {size}")
    if (width, height) != (size, size):
        left, top = (width - short) / 2.0, (height - short) / 2.0
        im = im.resize((size, size), Image.Resampling.BICUBIC,
                       box=(left, top, left + short, top + short))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), np.asarray(im), changes


# ----------------------------------------------------------------------------- the plan

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


# ----------------------------------------------------------------------------- one batch

def _write_atomic(path, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def convert_batch(src, dst, plan, size, quality):
    """Convert one planned batch and write its .bin then its .npz index; returns a summary."""
    started = time.monotonic()
    blobs, labels, files, converted, skipped = [], [], [], [], []
    pixel_sum = np.zeros((size, size, 3), np.uint64)
    rgb_sum, rgb_outer, rgb_count = np.zeros(3), np.zeros((3, 3)), 0
    for rel, label in plan.entries:
        try:
            jpeg, pixels, changes = convert_image(os.path.join(src, rel), size, quality)
        except SkipImage as skip:
            skipped.append({"file": rel, "kind": skip.kind, "reason": skip.reason})
            continue
        blobs.append(jpeg)
        labels.append(label)
        files.append(rel)
        if changes:
            converted.append({"file": rel, "changes": changes})
        pixel_sum += pixels
        sample = pixels[::PCA_STRIDE, ::PCA_STRIDE].reshape(-1, 3).astype(np.float64)
        rgb_sum += sample.sum(axis=0)
        rgb_outer += sample.T @ sample
        rgb_count += len(sample)
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    bin_path, index_path = batch_paths(dst, plan.number)
    _write_atomic(bin_path, lambda f: f.writelines(blobs))
    report = {"converted": converted, "skipped": skipped}
    arrays = {
        "format_version": np.int64(FORMAT_VERSION),
        "offsets": offsets, "labels": np.asarray(labels, np.int64),
        "files": np.asarray(files, dtype=str) if files else np.zeros(0, "U1"),
        "digest": np.asarray(batch_digest(plan, size, quality)),
        "split": np.asarray(plan.split), "report": np.asarray(json.dumps(report)),
        "pixel_sum": pixel_sum, "rgb_sum": rgb_sum, "rgb_outer": rgb_outer,
        "rgb_count": np.int64(rgb_count),
    }
    _write_atomic(index_path, lambda f: np.savez(f, **arrays))
    return {"number": plan.number, "stored": len(blobs), "converted": len(converted),
            "skipped": len(skipped), "seconds": time.monotonic() - started}


def read_index(dst, number):
    """A finished batch's index as a dict of arrays, or None if it is missing or broken."""
    bin_path, index_path = batch_paths(dst, number)
    try:
        with np.load(index_path, allow_pickle=False) as z:
            index = {k: z[k] for k in z.files}
        if os.path.getsize(bin_path) != int(index["offsets"][-1]):
            return None
        return index
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------- the whole run

def _clean_leftovers(dst, plans):
    """Remove temporary files of an interrupted run and batches the plan no longer has."""
    wanted = {os.path.basename(p) for plan in plans for p in batch_paths(dst, plan.number)}
    for name in os.listdir(dst):
        stale_batch = name.startswith("data_batch_") and name.endswith((".bin", ".npz")) \
            and name not in wanted
        if ".tmp-" in name or stale_batch:
            os.remove(os.path.join(dst, name))


def _progress(total, done, enabled):
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, initial=done, unit="img", desc="convnet-prepare",
                    file=sys.stderr, smoothing=0.1)
    return None


def prepare(src, dst, size=256, quality=90, images_per_batch=1000, test_fraction=0.1,
            workers=None, seed=0, progress=None, out=None):
    """Convert SRC into DST (see the module doc). Returns the report dict."""
    out = out or sys.stdout
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    if not 8 <= size <= 4096:
        raise PrepareError(f"--size must be in 8..4096, got {size}")
    if not 1 <= quality <= 100:
        raise PrepareError(f"--quality must be in 1..100, got {quality}")
    if os.path.commonpath([src, dst]) == src:
        raise PrepareError(f"{dst}: DST must not be inside SRC")
    source = scan_source(src, test_fraction, seed)
    plans = plan_batches(source, images_per_batch, seed)
    os.makedirs(dst, exist_ok=True)
    _clean_leftovers(dst, plans)
    # META_FILE is rewritten at the end: remove it now so an unfinished DST is never mistaken
    # for a finished one
    for name in (META_FILE,):
        if os.path.exists(os.path.join(dst, name)):
            os.remove(os.path.join(dst, name))

    todo, done_images = [], 0
    for plan in plans:
        index = read_index(dst, plan.number)
        if index is not None and str(index["digest"]) == batch_digest(plan, size, quality):
            done_images += len(plan.entries)
        else:
            todo.append(plan)
    total = sum(len(p.entries) for p in plans)
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    print(f"convnet-prepare: {total} images ({len(source.train)} train, {len(source.test)} "
          f"test) in {len(source.label_names)} classes -> {len(plans)} batches; "
          f"{len(plans) - len(todo)} already done, {len(todo)} to convert with "
          f"{min(workers, max(len(todo), 1))} processes", file=out, flush=True)
    show = progress if progress is not None else (sys.stderr.isatty() and not os.environ.get("CI"))
    bar = _progress(total, done_images, show)
    started = time.monotonic()
    finished = 0
    try:
        if workers == 1 or len(todo) <= 1:
            for plan in todo:
                summary = convert_batch(src, dst, plan, size, quality)
                finished += 1
                _report_progress(summary, finished, len(todo), bar, out, len(plan.entries))
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                                       initializer=_ignore_sigint)
            try:
                futures = {pool.submit(convert_batch, src, dst, plan, size, quality): plan
                           for plan in todo}
                for future in as_completed(futures):
                    summary = future.result()
                    finished += 1
                    _report_progress(summary, finished, len(todo), bar, out,
                                     len(futures[future].entries))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"\nconvnet-prepare: interrupted after {finished} of {len(todo)} batches; run the "
              f"same command again to convert the rest", file=out, flush=True)
        raise
    if bar is not None:
        bar.close()
    elapsed = time.monotonic() - started
    if todo:
        converted_images = sum(len(p.entries) for p in todo)
        print(f"convnet-prepare: converted {converted_images} images in {elapsed:.1f} s "
              f"({converted_images / max(elapsed, 1e-9):.0f} images/s)", file=out, flush=True)
    return finish(src, dst, source, plans, size, quality, out)


def _report_progress(summary, finished, count, bar, out, images):
    if bar is not None:
        bar.update(images)
        return
    print(f"  batch {summary['number']}: {summary['stored']} stored, {summary['converted']} "
          f"converted, {summary['skipped']} skipped ({finished}/{count})", file=out, flush=True)


def finish(src, dst, source, plans, size, quality, out):
    """Mean image, RGB PCA, meta.json and the report, from the finished batches' indexes."""
    pixel_sum = np.zeros((size, size, 3), np.uint64)
    rgb_sum, rgb_outer, rgb_count = np.zeros(3), np.zeros((3, 3)), 0
    converted, skipped, batches = [], [], {}
    num = {"train": 0, "test": 0}
    for plan in plans:
        index = read_index(dst, plan.number)
        if index is None:
            raise PrepareError(f"{batch_paths(dst, plan.number)[1]}: missing or damaged after "
                               f"conversion")
        report = json.loads(str(index["report"]))
        converted += report["converted"]
        skipped += report["skipped"]
        stored = len(index["labels"])
        batches[str(plan.number)] = {"split": plan.split, "images": stored}
        num[plan.split] += stored
        if plan.split == "train":
            pixel_sum += index["pixel_sum"]
            rgb_sum += index["rgb_sum"]
            rgb_outer += index["rgb_outer"]
            rgb_count += int(index["rgb_count"])
    report = build_report(src, dst, source, converted, skipped, num)
    with open(os.path.join(dst, REPORT_JSON), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(dst, REPORT_TEXT), "w", encoding="utf-8") as f:
        f.write(report_text(report))
    print(report_summary(report), file=out, flush=True)
    if num["train"] == 0:
        raise PrepareError(f"{src}: no usable training image (see {dst}/{REPORT_TEXT})")

    mean = (pixel_sum.astype(np.float64) / num["train"]).transpose(2, 0, 1).astype(np.float32)
    mean_rgb = rgb_sum / rgb_count
    covariance = rgb_outer / rgb_count - np.outer(mean_rgb, mean_rgb)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    # a fixed sign per eigenvector: its largest component is positive
    signs = np.sign(eigenvectors[np.abs(eigenvectors).argmax(axis=0), np.arange(3)])
    eigenvectors = eigenvectors * np.where(signs == 0, 1, signs)
    np.save(os.path.join(dst, MEAN_FILE), mean)
    train_numbers = [p.number for p in plans if p.split == "train" and batches[str(p.number)]["images"]]
    test_numbers = [p.number for p in plans if p.split == "test" and batches[str(p.number)]["images"]]
    meta = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "image_size": size, "channels": 3, "quality": quality,
        "label_names": source.label_names, "num_classes": len(source.label_names),
        "train_batches": train_numbers, "test_batches": test_numbers,
        "num_train": num["train"], "num_test": num["test"], "batches": batches,
        "mean_file": MEAN_FILE, "mean_layout": "float32 (3, size, size): CHW, RGB, 0..255",
        "rgb_mean": mean_rgb.tolist(),
        "rgb_eigenvalues": np.maximum(eigenvalues, 0).tolist(),
        "rgb_eigenvectors": eigenvectors.tolist(),
        "pca_note": "covariance of RGB pixel values on the 0..255 scale (every "
                    f"{PCA_STRIDE}th pixel of every {PCA_STRIDE}th row of each training "
                    "image); eigenvalues descending, eigenvectors are the columns",
        "pca_pixels": int(rgb_count),
        "source": src,
    }
    _write_atomic(os.path.join(dst, META_FILE),
                  lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return report


# ----------------------------------------------------------------------------- the report

def build_report(src, dst, source, converted, skipped, num):
    changes = {}
    for entry in converted:
        for change in entry["changes"]:
            key = change.split(":")[0].split(" (")[0]
            changes[key] = changes.get(key, 0) + 1
    kinds = {}
    for entry in skipped:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    return {
        "source": src, "destination": dst,
        "counts": {
            "found": len(source.train) + len(source.test),
            "stored": num["train"] + num["test"], "stored_train": num["train"],
            "stored_test": num["test"], "converted": len(converted), "skipped": len(skipped),
            "conversions": dict(sorted(changes.items())),
            "skipped_by_kind": dict(sorted(kinds.items())),
            "empty_class_folders": len(source.empty_classes),
            "files_outside_class_folders": len(source.stray_files),
        },
        "converted": sorted(converted, key=lambda e: e["file"]),
        "skipped": sorted(skipped, key=lambda e: e["file"]),
        "empty_class_folders": source.empty_classes,
        "files_outside_class_folders": source.stray_files,
        "test_classes_not_in_train": source.unknown_classes,
    }


def report_summary(report):
    c = report["counts"]
    parts = [f"{c['stored']} images stored ({c['stored_train']} train, {c['stored_test']} test)",
             f"{c['converted']} converted", f"{c['skipped']} skipped"]
    if c["empty_class_folders"]:
        parts.append(f"{c['empty_class_folders']} empty class folders")
    if c["files_outside_class_folders"]:
        parts.append(f"{c['files_outside_class_folders']} files outside class folders (ignored)")
    return (f"convnet-prepare: {', '.join(parts)}; details in "
            f"{os.path.join(report['destination'], REPORT_TEXT)}")


def report_text(report):
    c = report["counts"]
    lines = [f"convnet-prepare report: {report['source']} -> {report['destination']}", "",
             f"image files found      {c['found']}",
             f"stored                 {c['stored']}  ({c['stored_train']} train, "
             f"{c['stored_test']} test)",
             f"converted              {c['converted']}"]
    lines += [f"  {key:<30} {n}" for key, n in c["conversions"].items()]
    lines.append(f"skipped                {c['skipped']}")
    lines += [f"  {key:<30} {n}" for key, n in c["skipped_by_kind"].items()]
    lines.append(f"empty class folders    {c['empty_class_folders']}")
    lines.append(f"files outside classes  {c['files_outside_class_folders']}  (ignored)")
    if report["skipped"]:
        lines += ["", "skipped files:"]
        lines += [f"  {e['file']}: {e['reason']}" for e in report["skipped"]]
    if report["converted"]:
        lines += ["", "converted files:"]
        lines += [f"  {e['file']}: {'; '.join(e['changes'])}" for e in report["converted"]]
    for title, key in (("empty class folders", "empty_class_folders"),
                       ("files outside class folders (not used)", "files_outside_class_folders"),
                       ("test class folders with no training folder (not used)",
                        "test_classes_not_in_train")):
        if report[key]:
            lines += ["", f"{title}:"] + [f"  {name}" for name in report[key]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the command

def build_parser():
    p = argparse.ArgumentParser(
        prog="convnet-prepare",
        description="Convert a folder of labelled images (one folder per class, or train/ and "
                    "val/ with class folders) into batches of JPEGs for --data-provider image.")
    p.add_argument("src", metavar="SRC", help="the image folder")
    p.add_argument("dst", metavar="DST", help="the output folder (rerun to resume)")
    p.add_argument("--size", type=int, default=256, help="stored image size (default 256)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    p.add_argument("--images-per-batch", type=int, default=1000,
                   help="images per batch file (default 1000)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="without a val/ folder: fraction of each class held out (default 0.1)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training shuffle")
    p.add_argument("--progress", type=int, choices=(0, 1), default=None,
                   help="progress bar (default: when stderr is a terminal)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        print(f"convnet-prepare: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        prepare(args.src, args.dst, size=args.size, quality=args.quality,
                images_per_batch=args.images_per_batch, test_fraction=args.test_fraction,
                workers=args.workers, seed=args.seed,
                progress=None if args.progress is None else bool(args.progress))
    except PrepareError as exc:
        print(f"convnet-prepare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
