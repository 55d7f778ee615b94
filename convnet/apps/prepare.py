"""`convnet-prepare SRC DST`: a folder of labelled images -> batches of 256x256 JPEGs + meta.

SRC holds one folder per class (images may sit in sub-folders of a class folder), or `train/`
and `val/` (or `test/`, `validation/`), each with the same class folders. Labels are the class
folder names in sorted order. Every image is rescaled so that its short side is `--size` (256,
as the paper), centre-cropped to size x size, and stored as a JPEG (`--quality`).

DST receives the prepared-set format of convnet/data/prepared.py (data_batch_N.bin and .npz,
meta.json, mean.npy; the image provider reads it), and

    report.json        every image converted (greyscale, CMYK, palette, alpha, 16-bit, PNG/GIF/
    report.txt         BMP..., upscaled) or skipped (corrupt, truncated, not an image ...), empty
                       class folders and stray files: counted and listed; nothing is dropped
                       silently

Batches 1..K hold the training images (shuffled with `--seed`), K+1.. the test images (in
class order). Without a val/ folder, `--test-fraction` of each class is held out for testing.
Batches are converted in parallel by `--workers` processes (default: every core); each batch is
written to temporary files and renamed, so a rerun after an interruption skips the finished
batches (and redoes a batch only if its list of source files or the options changed).

The plan (what SRC holds, the batches) is prepare_source.py's, the conversion of an image and of
a batch prepare_images.py's; this file runs them and writes the mean, the PCA and the report.
"""
import json
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from ..data.prepared import (MEAN_FILE, META_FILE, TEMP_MARK, batch_paths, is_batch_file,
                             make_meta, read_index, write_meta)
from .options import CommandParser
from .prepare_images import PCA_STRIDE, convert_batch
from .prepare_source import PrepareError, batch_digest, plan_batches, printable, scan_source

REPORT_JSON, REPORT_TEXT = "report.json", "report.txt"
EXIT_BAD_INPUT = 2


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------- the whole run

def _clean_leftovers(dst, plans):
    """Remove temporary files of an interrupted run and batches the plan no longer has."""
    wanted = {os.path.basename(p) for plan in plans for p in batch_paths(dst, plan.number)}
    for name in os.listdir(dst):
        stale_batch = is_batch_file(name) and name not in wanted
        if TEMP_MARK in name or stale_batch:
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
    write_meta(dst, make_meta(
        size, quality, source.label_names, train_numbers, test_numbers, num["train"],
        num["test"], batches, mean_rgb.tolist(), np.maximum(eigenvalues, 0).tolist(),
        eigenvectors.tolist(),
        "covariance of RGB pixel values on the 0..255 scale (every "
        f"{PCA_STRIDE}th pixel of every {PCA_STRIDE}th row of each training "
        "image); eigenvalues descending, eigenvectors are the columns",
        int(rgb_count), src))
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
        "source": printable(src), "destination": printable(dst),
        "counts": {
            "found": len(source.train) + len(source.test),
            "stored": num["train"] + num["test"], "stored_train": num["train"],
            "stored_test": num["test"], "converted": len(converted), "skipped": len(skipped),
            "conversions": dict(sorted(changes.items())),
            "skipped_by_kind": dict(sorted(kinds.items())),
            "empty_class_folders": len(source.empty_classes),
            "files_outside_class_folders": len(source.stray_files),
            "left_out": len(source.left_out),
        },
        "converted": sorted(converted, key=lambda e: e["file"]),
        "skipped": sorted(skipped, key=lambda e: e["file"]),
        "empty_class_folders": source.empty_classes,
        "files_outside_class_folders": source.stray_files,
        "test_classes_not_in_train": source.unknown_classes,
        "left_out": [{"path": path, "why": why} for path, why in source.left_out],
    }


def report_summary(report):
    c = report["counts"]
    parts = [f"{c['stored']} images stored ({c['stored_train']} train, {c['stored_test']} test)",
             f"{c['converted']} converted", f"{c['skipped']} skipped"]
    if c["empty_class_folders"]:
        parts.append(f"{c['empty_class_folders']} empty class folders")
    if c["files_outside_class_folders"]:
        parts.append(f"{c['files_outside_class_folders']} files outside class folders (ignored)")
    if c["left_out"]:
        parts.append(f"{c['left_out']} links, special files or undecodable names left out")
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
    lines.append(f"left out               {c['left_out']}  (links to folders already read, "
                 f"special files, undecodable names)")
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
    if report["left_out"]:
        lines += ["", "left out (not read):"]
        lines += [f"  {e['path']}: {e['why']}" for e in report["left_out"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the command

def build_parser():
    p = CommandParser("convnet-prepare", "Convert a folder of labelled images (one folder per "
                      "class, or train/ and val/ with class folders) into batches of JPEGs for "
                      "--data-provider image.")
    a = p.add_argument
    a("src", metavar="SRC", help="the image folder")
    a("dst", metavar="DST", help="the output folder (rerun to resume)")
    a("--size", type=int, default=256, help="stored image size")
    a("--quality", type=int, default=90, help="JPEG quality 1-100")
    a("--images-per-batch", type=int, default=1000, help="images per batch file")
    a("--test-fraction", type=float, default=0.1,
      help="without a val/ folder: fraction of each class held out")
    a("--workers", type=int, default=None, help="processes (default: every core)")
    a("--seed", type=int, default=0, help="seed of the training shuffle")
    p.add_flag("--progress", default=None,
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
                progress=args.progress)
    except PrepareError as exc:
        print(f"convnet-prepare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
