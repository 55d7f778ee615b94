"""The data sets' files: Fashion-MNIST's idx files and CIFAR-10/100's python batches, read
(checked, into uint8 NCHW arrays by batch number) and written (for tests and tools). The batch
numbering and what a provider makes of the images are provider.py's."""
import gzip
import os
import pickle

import numpy as np

try:
    from numpy._core import multiarray, numeric  # NumPy 2
except ImportError:  # NumPy 1
    from numpy.core import multiarray, numeric

from .common import DataError

FASHION_DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"
FASHION_LABEL_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

CIFAR_IMAGE_SHAPE = (3, 32, 32)


def _split_points(count, parts):
    """Boundaries that cut `count` items in file order into `parts` near-equal batches."""
    return [k * count // parts for k in range(parts + 1)]



# ----------------------------------------------------------------------------- Fashion-MNIST

MAX_IDX_BYTES = 256 << 20  # Fashion-MNIST's largest idx file is 47 MB (45 MiB) unzipped


def _read_maybe_gzip(folder, name):
    """Bytes of folder/name or folder/name.gz (the plain file wins); DataError if absent, or
    if it holds more than MAX_IDX_BYTES (read up to that much: a gzip bomb never unpacks)."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            try:
                opener = gzip.open if candidate.endswith(".gz") else open
                with opener(path, "rb") as f:
                    raw = f.read(MAX_IDX_BYTES + 1)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"{path}: cannot read ({exc})") from None
            if len(raw) > MAX_IDX_BYTES:
                raise DataError(f"{path}: holds more than {MAX_IDX_BYTES >> 20} MiB "
                                f"{'unpacked ' if opener is gzip.open else ''}(the most an idx "
                                f"file may; Fashion-MNIST's largest is 45 MiB)")
            return path, raw
    raise DataError(
        f"Fashion-MNIST not found: {os.path.join(folder, name)}[.gz] is missing; "
        f"install it with `apt-get install dataset-fashion-mnist` or pass --data-path")


def parse_idx(path, raw, magic, ndim):
    """Parse an idx file's bytes (uint8 payload) into an array, checking magic and length."""
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: bad idx magic number 0x{found:08x}, expected 0x{magic:08x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims):
        raise DataError(f"{path}: idx dimensions {dims} contain a zero")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) < expected:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, dimensions {dims} need {expected}")
    if len(raw) > expected:
        raise DataError(f"{path}: {len(raw) - expected} unexpected bytes after the data "
                        f"(dimensions {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path, array):
    """Write a uint8 array as an idx file (gzipped when path ends in .gz). For tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim
    payload = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload + array.tobytes())


def _load_fashion_split(folder, images_key, labels_key):
    images_path, raw = _read_maybe_gzip(folder, FASHION_FILES[images_key])
    images = parse_idx(images_path, raw, IDX_IMAGES_MAGIC, 3)
    labels_path, raw = _read_maybe_gzip(folder, FASHION_FILES[labels_key])
    labels = parse_idx(labels_path, raw, IDX_LABELS_MAGIC, 1)
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images "
                        f"in {images_path}")
    if labels.max() >= len(FASHION_LABEL_NAMES):
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range "
                        f"0..{len(FASHION_LABEL_NAMES) - 1}")
    return images_path, images[:, None, :, :], labels.astype(np.int64)


def load_fashion_batches(path=None):
    """Fashion-MNIST as {batch number: (uint8 (N,1,H,W), int64 labels)}, batches 1-7."""
    folder = FASHION_DEFAULT_PATH if path is None else os.fspath(path)
    if not os.path.isdir(folder):
        raise DataError(f"Fashion-MNIST folder {folder} does not exist; install it with "
                        f"`apt-get install dataset-fashion-mnist` or pass --data-path")
    train_path, train_x, train_y = _load_fashion_split(folder, "train_images", "train_labels")
    test_path, test_x, test_y = _load_fashion_split(folder, "test_images", "test_labels")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{test_path}: images are {test_x.shape[2:]}, but the training "
                        f"images in {train_path} are {train_x.shape[2:]}")
    if len(train_x) < 6:
        raise DataError(f"{train_path}: {len(train_x)} images cannot make 6 training batches")
    cuts = _split_points(len(train_x), 6)
    batches = {k + 1: (train_x[cuts[k]:cuts[k + 1]], train_y[cuts[k]:cuts[k + 1]])
               for k in range(6)}
    batches[7] = (test_x, test_y)
    return batches



# ----------------------------------------------------------------------------- CIFAR pickles

def _latin1_encode(text, encoding):
    """Stand-in for _codecs.encode, which protocol-2 pickles from Python 3 use for bytes."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


def _numpy_pickle_globals():
    """The few globals a pickled numpy array refers to, under NumPy 1 and NumPy 2 names."""
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy._core", "numpy.core"):
        allowed[(package + ".multiarray", "_reconstruct")] = multiarray._reconstruct
        # protocol 5 pickles rebuild arrays with _frombuffer(buffer, dtype, shape, order)
        allowed[(package + ".numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays, dicts, lists, str, bytes, numbers: nothing else."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self._path}: refused: the pickle refers to {module}.{name}, "
                            f"which a CIFAR batch never contains") from None

    def persistent_load(self, pid):
        raise DataError(f"{self._path}: refused: the pickle uses persistent ids")


def read_cifar_pickle(path):
    """Load a CIFAR python batch/meta file with the restricted unpickler; a dict or DataError."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, path).load()
            trailing = f.read(1)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except Exception as exc:  # truncated or malformed pickles raise many different types
        raise DataError(f"{path}: truncated or malformed pickle "
                        f"({type(exc).__name__}: {exc})") from None
    if trailing:
        raise DataError(f"{path}: unexpected bytes after the pickle")
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def _get(d, key):
    """d[b'key'] or d['key'] (pickles written by Python 3 code may use str keys)."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def write_cifar_batch(path, data, labels, label_key="labels", batch_label="synthetic batch",
                      filenames=None, protocol=4):
    """Write a CIFAR python batch: a plain pickle of a dict with bytes keys.

    data: uint8 (N, 3072) channel-major (or (N, 3, 32, 32)); labels: N ints. label_key is
    "labels" (CIFAR-10) or "fine_labels" (CIFAR-100).
    """
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(len(data), -1)
    labels = [int(v) for v in labels]
    if filenames is None:
        filenames = [f"image_{i:05d}.png".encode() for i in range(len(data))]
    batch = {b"batch_label": batch_label.encode(), label_key.encode(): labels,
             b"data": data, b"filenames": filenames}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def write_cifar_meta(path, label_names, key="label_names", protocol=4):
    """Write a CIFAR meta file: {b'label_names': [bytes...]} (CIFAR-100: key='fine_label_names')."""
    meta = {key.encode(): [name.encode() for name in label_names]}
    with open(path, "wb") as f:
        pickle.dump(meta, f, protocol=protocol)


def _cifar_images_labels(path, batch, num_classes):
    data = _get(batch, "data")
    labels = _get(batch, "labels")
    if labels is None:
        labels = _get(batch, "fine_labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != int(np.prod(CIFAR_IMAGE_SHAPE)):
        found = (f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 N x 3072 array, found {found}")
    if labels is None:
        raise DataError(f"{path}: no 'labels' or 'fine_labels' entry")
    if len(data) == 0:
        raise DataError(f"{path}: the batch holds no images")
    try:
        raw = np.asarray(labels)
    except (TypeError, ValueError):
        raw = None
    if raw is None or raw.dtype.kind not in "iu":  # 3.7 or "3" is no class (once read as 3)
        found = f"{raw.dtype} values" if raw is not None else type(labels).__name__
        raise DataError(f"{path}: labels must be integers, found {found}")
    labels = raw.astype(np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(f"{path}: label {int(bad)} out of range 0..{num_classes - 1}")
    return data.reshape((len(data),) + CIFAR_IMAGE_SHAPE), labels


def _cifar_label_names(path, key):
    names = _get(read_cifar_pickle(path), key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: no '{key}' list")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar_batches(path, wanted):
    """CIFAR-10 or -100 batches `wanted` (numbers 1-6) as {number: (uint8 NCHW, int64 labels)}.

    Returns (batches, label_names). Only the files the wanted batches need are read.
    """
    if path is None:
        raise DataError("CIFAR needs --data-path: the folder with data_batch_1..5, test_batch "
                        "and batches.meta (CIFAR-10) or train, test and meta (CIFAR-100)")
    folder = os.fspath(path)
    if os.path.isfile(os.path.join(folder, "data_batch_1")) \
            or os.path.isfile(os.path.join(folder, "batches.meta")):
        names = _cifar_label_names(os.path.join(folder, "batches.meta"), "label_names")
        batches = {}
        for n in wanted:
            file = os.path.join(folder, "test_batch" if n == 6 else f"data_batch_{n}")
            batches[n] = _cifar_images_labels(file, read_cifar_pickle(file), len(names))
        return batches, names
    if os.path.isfile(os.path.join(folder, "train")) or os.path.isfile(os.path.join(folder, "meta")):
        names = _cifar_label_names(os.path.join(folder, "meta"), "fine_label_names")
        batches = {}
        if any(n <= 5 for n in wanted):
            file = os.path.join(folder, "train")
            images, labels = _cifar_images_labels(file, read_cifar_pickle(file), len(names))
            if len(images) < 5:
                raise DataError(f"{file}: {len(images)} images cannot make 5 training batches")
            cuts = _split_points(len(images), 5)
            for n in wanted:
                if n <= 5:
                    batches[n] = (images[cuts[n - 1]:cuts[n]], labels[cuts[n - 1]:cuts[n]])
        if 6 in wanted:
            file = os.path.join(folder, "test")
            batches[6] = _cifar_images_labels(file, read_cifar_pickle(file), len(names))
        return batches, names
    raise DataError(f"{os.path.join(folder, 'data_batch_1')}: missing (no CIFAR-10 batches "
                    f"or CIFAR-100 train/meta files in {folder}); pass --data-path")

