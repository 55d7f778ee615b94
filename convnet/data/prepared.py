"""The prepared-set format: what `convnet-prepare SRC DST` writes and the `image` provider reads,
defined once for both.

DST holds:

    data_batch_N.bin   the JPEGs of batch N, concatenated
    data_batch_N.npz   its index, written after the .bin (its presence marks a finished batch):
                       format_version, offsets int64 (n+1) into the .bin, labels int64 (n), files
                       (n, the source paths relative to SRC), then what convnet-prepare keeps to
                       resume and to finish: digest (what the batch was made from), split, report
                       (JSON: what was converted or skipped), and the sums the meta needs:
                       pixel_sum uint64 (size, size, 3), rgb_sum (3,), rgb_outer (3, 3), rgb_count
    meta.json          written last (an unfinished DST has none): label names, image size, the
                       train and test batch numbers, the RGB covariance's eigenvalues (descending)
                       and eigenvectors (columns), for the paper's PCA colour lighting; 0..255
                       pixel scale (``make_meta``; ``NEEDED_META`` are the keys the reader needs)
    mean.npy           the mean training image, float32 (3, size, size) (CHW, 0..255, RGB),
                       taken over the images as resized, before JPEG encoding
    report.json        what convnet-prepare converted or skipped (apps/prepare.py)
    report.txt

Every file is written to a temporary name and renamed (``write_atomic``), so a reader never sees
half a file. ``BatchFiles`` opens a folder for reading, ``ImageSet`` holds some of its batches.
"""
import json
import os

import numpy as np

from .common import DataError, parse_range

FORMAT_NAME = "convnet-image-batches"
FORMAT_VERSION = 1
META_FILE, MEAN_FILE = "meta.json", "mean.npy"
MEAN_LAYOUT = "float32 (3, size, size): CHW, RGB, 0..255"
BATCH_PREFIX, BLOB_SUFFIX, INDEX_SUFFIX = "data_batch_", ".bin", ".npz"
TEMP_MARK = ".tmp-"
NEEDED_META = ("image_size", "label_names", "train_batches", "test_batches", "batches",
               "rgb_eigenvalues", "rgb_eigenvectors")


# ----------------------------------------------------------------------------- names

def batch_paths(folder, number):
    """(JPEGs, index) of batch `number`: folder/data_batch_N.bin and .npz."""
    stem = os.path.join(folder, f"{BATCH_PREFIX}{number}")
    return stem + BLOB_SUFFIX, stem + INDEX_SUFFIX


def index_of(bin_path):
    """The index file of a batch's .bin file."""
    return bin_path[:-len(BLOB_SUFFIX)] + INDEX_SUFFIX


def is_batch_file(name):
    """True for a batch's .bin or .npz file name (not a temporary one)."""
    return name.startswith(BATCH_PREFIX) and name.endswith((BLOB_SUFFIX, INDEX_SUFFIX))


# ----------------------------------------------------------------------------- writing

def write_atomic(path, write):
    """write(f) into a temporary file beside `path`, flushed to disk, then renamed to `path`."""
    tmp = f"{path}{TEMP_MARK}{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_batch(folder, number, blobs, labels, files, extra):
    """Batch `number`: the JPEG `blobs` into its .bin, then its index (with `extra` arrays)."""
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    bin_path, index_path = batch_paths(folder, number)
    write_atomic(bin_path, lambda f: f.writelines(blobs))
    arrays = {
        "format_version": np.int64(FORMAT_VERSION),
        "offsets": offsets, "labels": np.asarray(labels, np.int64),
        "files": np.asarray(files, dtype=str) if files else np.zeros(0, "U1"),
        **extra,
    }
    write_atomic(index_path, lambda f: np.savez(f, **arrays))


def read_index(folder, number):
    """A finished batch's index as a dict of arrays, or None if it is missing or broken."""
    bin_path, index_path = batch_paths(folder, number)
    try:
        with np.load(index_path, allow_pickle=False) as z:
            index = {k: z[k] for k in z.files}
        if os.path.getsize(bin_path) != int(index["offsets"][-1]):
            return None
        return index
    except (OSError, ValueError, KeyError, EOFError):
        return None


def make_meta(image_size, quality, label_names, train_batches, test_batches, num_train, num_test,
              batches, rgb_mean, rgb_eigenvalues, rgb_eigenvectors, pca_note, pca_pixels, source):
    """meta.json's dict. batches: {"N": {"split": "train"|"test", "images": n}}."""
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "image_size": image_size, "channels": 3, "quality": quality,
        "label_names": label_names, "num_classes": len(label_names),
        "train_batches": train_batches, "test_batches": test_batches,
        "num_train": num_train, "num_test": num_test, "batches": batches,
        "mean_file": MEAN_FILE, "mean_layout": MEAN_LAYOUT,
        "rgb_mean": rgb_mean,
        "rgb_eigenvalues": rgb_eigenvalues,
        "rgb_eigenvectors": rgb_eigenvectors,
        "pca_note": pca_note,
        "pca_pixels": pca_pixels,
        "source": source,
    }


def write_meta(folder, meta):
    """meta.json, the last file written: its presence marks a finished folder."""
    write_atomic(os.path.join(folder, META_FILE),
                 lambda f: f.write(json.dumps(meta, indent=1).encode()))


# ----------------------------------------------------------------------------- reading

class ImageSet:
    """The JPEGs of some prepared batches: memory-mapped bytes and labels. Image i lives in
    blob owners[i] (one per batch) at starts[i]:ends[i]."""

    def __init__(self, blobs, owners, starts, ends, labels, paths):
        self.blobs, self.owners = blobs, owners
        self.starts, self.ends, self.labels = starts, ends, labels
        self.paths = paths  # the .bin file of each blob, for error messages
        self.bases = np.searchsorted(owners, np.arange(len(blobs)))  # first image of each blob

    def __len__(self):
        return len(self.labels)

    def jpeg(self, i):
        return self.blobs[self.owners[i]][self.starts[i]:self.ends[i]].tobytes()

    def source_file(self, i):
        """The file image i was made from (read from its batch index only when asked)."""
        owner = self.owners[i]
        index_path = index_of(self.paths[owner])
        try:
            with np.load(index_path, allow_pickle=False) as z:
                return str(z["files"][i - self.bases[owner]])
        except (OSError, ValueError, KeyError, IndexError):
            return "source file unknown"

    def where(self, i):
        return f"{self.paths[self.owners[i]]}, image {i} ({self.source_file(i)})"


class BatchFiles:
    """A folder written by convnet-prepare: meta.json, mean.npy and data_batch_N.{bin,npz}."""

    def __init__(self, path):
        self.meta = self.read_meta(path)
        self.path = os.fspath(path)
        size = self.meta["image_size"]
        mean_path = os.path.join(self.path, self.meta.get("mean_file", MEAN_FILE))
        try:
            mean = np.load(mean_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{mean_path}: cannot read ({exc})") from None
        if mean.shape != (3, size, size) or mean.dtype != np.float32:
            raise DataError(f"{mean_path}: expected a float32 (3, {size}, {size}) mean image, "
                            f"found {mean.dtype} {mean.shape}")
        self.mean = mean

    @classmethod
    def read_meta(cls, path):
        """The folder's meta.json, checked (no image or batch file is read)."""
        if path is None:
            raise DataError("the image provider needs --data-path: a folder made by "
                            "`convnet-prepare SRC DST`")
        path = os.fspath(path)
        meta_path = os.path.join(path, META_FILE)
        if not os.path.isfile(meta_path):
            unfinished = os.path.isdir(path) and any(
                n.startswith(BATCH_PREFIX) for n in os.listdir(path))
            raise DataError(f"{meta_path}: missing; " + (
                "the conversion did not finish: run convnet-prepare again to complete it"
                if unfinished else f"make the folder with `convnet-prepare SRC {path}`"))
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"{meta_path}: cannot read ({exc})") from None
        return cls._check_meta(meta_path, meta)

    @staticmethod
    def _check_meta(where, meta):
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise DataError(f"{where}: not a convnet-prepare meta file")
        missing = [k for k in NEEDED_META if k not in meta]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}")
        values = np.asarray(meta["rgb_eigenvalues"], np.float64)
        vectors = np.asarray(meta["rgb_eigenvectors"], np.float64)
        if values.shape != (3,) or vectors.shape != (3, 3) or not np.all(np.isfinite(vectors)) \
                or not np.all(values >= 0):
            raise DataError(f"{where}: rgb_eigenvalues must be 3 numbers >= 0 and "
                            f"rgb_eigenvectors a 3x3 matrix")
        if not meta["label_names"]:
            raise DataError(f"{where}: no label names")
        return meta

    def numbers(self, text, default_key):
        """Batch numbers of a range (None: the meta's train or test batches), checked."""
        if text is None:
            numbers = list(self.meta[default_key])
        else:
            numbers = parse_range(text)
        known = {int(k) for k in self.meta["batches"]}
        for n in numbers:
            if n not in known:
                raise ValueError(f"batch {n} does not exist in {self.path}: it has batches "
                                 f"{min(known)}-{max(known)}" if known else
                                 f"{self.path} has no batches")
        return numbers

    def load(self, numbers):
        """An ImageSet over the batches `numbers` (in that order)."""
        blobs, owners, starts, ends, labels, paths = [], [], [], [], [], []
        classes = len(self.meta["label_names"])
        for n in numbers:
            bin_path, index_path = batch_paths(self.path, n)
            try:
                with np.load(index_path, allow_pickle=False) as z:
                    offsets, batch_labels = z["offsets"], z["labels"]
                size = os.path.getsize(bin_path)
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"{index_path}: cannot read the batch index ({exc})") from None
            count = len(batch_labels)
            if offsets.shape != (count + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) <= 0):
                raise DataError(f"{index_path}: offsets do not describe {count} images")
            if int(offsets[-1]) != size:
                raise DataError(f"{bin_path}: {size} bytes, but its index says "
                                f"{int(offsets[-1])}")
            if count and (batch_labels.min() < 0 or batch_labels.max() >= classes):
                raise DataError(f"{index_path}: a label is outside 0..{classes - 1}")
            if count == 0:
                continue
            owners.append(np.full(count, len(blobs), np.int32))
            blobs.append(np.memmap(bin_path, np.uint8, mode="r"))
            paths.append(bin_path)
            starts.append(offsets[:-1])
            ends.append(offsets[1:])
            labels.append(batch_labels.astype(np.int64))
        join = (lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype))
        return ImageSet(blobs, join(owners, np.int32), join(starts, np.int64),
                        join(ends, np.int64), join(labels, np.int64), paths)
