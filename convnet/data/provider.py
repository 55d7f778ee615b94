"""Data providers: Fashion-MNIST (idx files) and CIFAR-10/100 (python batches).

A provider holds its images as uint8 arrays (N, C, H, W) in memory, loaded once, and turns
them into float32 NCHW batches on demand, the way cuda-convnet's CIFAR providers did:

* Pixel values stay on cuda-convnet's 0..255 scale; the mean image of the training images
  (per pixel, float32 (C, H, W)) is subtracted. No division by 255 or by a std.
* With ``inner_size`` smaller than the stored image size, training batches are random
  ``inner_size`` x ``inner_size`` crops, each image flipped left-right with probability 1/2
  (per image); test batches are the centre crop. The mean subtracted from a crop is the
  centre crop of the mean image (cuda-convnet's CroppedCIFARDataProvider did exactly this).
* Without ``inner_size`` nothing is cropped and nothing is flipped unless ``flip=True``.

Batches are deterministic: epoch ``e`` visits the training images in the order of
``np.random.default_rng([seed, e]).permutation(num_train)``, and batch ``b`` of that epoch
draws its crops and flips from ``np.random.default_rng([seed, e, b])``. A run resumed at
``start_batch`` therefore sees exactly the batches it would have seen without the stop.

Batch numbering follows cuda-convnet's ``--train-range`` / ``--test-range``:

* CIFAR-10: 1-5 are ``data_batch_1`` .. ``data_batch_5``, 6 is ``test_batch``.
  CIFAR-100: the ``train`` file is split in file order into batches 1-5, ``test`` is 6.
* Fashion-MNIST: the 60,000 training images in file order are batches 1-6 (10,000 each),
  the 10,000 test images are batch 7. ``--train-range 1-5 --test-range 6`` holds out
  training batch 6 as a validation set.
"""

import gzip
import os
import pickle

import numpy as np

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
NUM_MULTIVIEW = 10  # 4 corners + centre, and their mirror images


class DataError(Exception):
    """A data set is missing, truncated, malformed or unsafe. The message names the file."""


# ----------------------------------------------------------------------------- ranges

def parse_range(text):
    """Batch numbers from "a-b", "a", "a,b,c" (or a mix: "1-3,5"), an int, or a list of ints."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        numbers = [int(text)]
    elif isinstance(text, (list, tuple)):
        if not text or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               for v in text):
            raise ValueError(f"batch range {text!r}: expected a non-empty list of integers")
        numbers = [int(v) for v in text]
    elif isinstance(text, str):
        numbers = []
        for part in text.replace(" ", "").split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise ValueError(f"batch range {text!r}: expected 'a-b', 'a' or 'a,b,c' "
                                 f"with positive integers, got {part!r}")
            lo, hi = int(first), int(last) if dash else int(first)
            if hi < lo:
                raise ValueError(f"batch range {text!r}: {part!r} ends before it starts")
            numbers.extend(range(lo, hi + 1))
    else:
        raise ValueError(f"batch range {text!r}: expected a string or a list of integers")
    for n in numbers:
        if n < 1:
            raise ValueError(f"batch range {text!r}: batch numbers start at 1, got {n}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"batch range {text!r}: a batch appears more than once")
    return numbers


def _split_points(count, parts):
    """Boundaries that cut `count` items in file order into `parts` near-equal batches."""
    return [k * count // parts for k in range(parts + 1)]


# ----------------------------------------------------------------------------- Fashion-MNIST

def _read_maybe_gzip(folder, name):
    """Bytes of folder/name or folder/name.gz (the plain file wins); DataError if absent."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            try:
                if candidate.endswith(".gz"):
                    with gzip.open(path, "rb") as f:
                        return path, f.read()
                with open(path, "rb") as f:
                    return path, f.read()
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"{path}: cannot read ({exc})") from None
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
    try:
        from numpy._core import multiarray, numeric  # NumPy 2
    except ImportError:  # NumPy 1
        from numpy.core import multiarray, numeric

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
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: labels are not a list of integers") from None
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


# ----------------------------------------------------------------------------- the provider

class Provider:
    """Serves float32 NCHW batches (mean-subtracted, 0..255 scale) from uint8 images in memory.

    train_images/test_images: uint8 (N, C, H0, W0); labels int64 (N,).
    """

    def __init__(self, name, train_images, train_labels, test_images, test_labels, label_names,
                 inner_size=None, flip=None, seed=0):
        if int(seed) < 0:
            raise ValueError(f"provider {name}: seed must be >= 0, got {seed}")
        self.name = name
        self.label_names = list(label_names)
        self.num_classes = len(self.label_names)
        self.train_images, self.train_labels = train_images, train_labels
        self.test_images, self.test_labels = test_images, test_labels
        self.num_train, self.num_test = len(train_images), len(test_images)
        self.seed = int(seed)
        channels, height, width = train_images.shape[1:]
        self.stored_shape = (channels, height, width)
        if inner_size is not None and not (1 <= int(inner_size) <= min(height, width)):
            raise ValueError(f"provider {name}: inner_size must be in 1..{min(height, width)}, "
                             f"got {inner_size}")
        self.inner_size = None if inner_size is None or (int(inner_size) == height == width) \
            else int(inner_size)
        self.crop = self.inner_size is not None
        self.flip = self.crop if flip is None else bool(flip)
        crop_h, crop_w = (self.inner_size, self.inner_size) if self.crop else (height, width)
        self.image_shape = (channels, crop_h, crop_w)
        # mean of the training images per pixel; cropped batches subtract its centre crop
        self.mean = train_images.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.center = ((height - crop_h) // 2, (width - crop_w) // 2)
        top, left = self.center
        self.cropped_mean = np.ascontiguousarray(
            self.mean[:, top:top + crop_h, left:left + crop_w])

    # --- helpers

    def num_train_batches(self, batch_size):
        return -(-self.num_train // _check_batch_size(batch_size))

    def num_test_batches(self, batch_size):
        return -(-self.num_test // _check_batch_size(batch_size))

    def _to_float(self, crops):
        x = crops.astype(np.float32)
        x -= self.cropped_mean
        return x

    def _gather(self, images, index, tops, lefts, flips):
        """Crops of images[index] at (tops, lefts), mirrored where flips: uint8 (N, C, h, w)."""
        _, crop_h, crop_w = self.image_shape
        rows = tops[:, None] + np.arange(crop_h)                          # (N, h)
        cols = np.where(flips[:, None], crop_w - 1 - np.arange(crop_w), np.arange(crop_w))
        cols = lefts[:, None] + cols                                      # (N, w)
        channels = np.arange(self.image_shape[0])
        return images[index[:, None, None, None], channels[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]

    # --- training

    def epoch_order(self, epoch):
        """The permutation of training images that epoch `epoch` visits."""
        if int(epoch) < 0:
            raise ValueError(f"provider {self.name}: epoch must be >= 0, got {epoch}")
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_train)

    def train_batches(self, epoch, batch_size, start_batch=0):
        """Yield (x float32 NCHW, labels int64, batch_idx) for batches start_batch.. of `epoch`."""
        count = self.num_train_batches(batch_size)
        if not 0 <= int(start_batch) <= count:
            raise ValueError(f"provider {self.name}: start_batch must be in 0..{count}, "
                             f"got {start_batch}")
        order = self.epoch_order(epoch)
        _, stored_h, stored_w = self.stored_shape
        _, crop_h, crop_w = self.image_shape
        for batch_idx in range(int(start_batch), count):
            index = order[batch_idx * batch_size:(batch_idx + 1) * batch_size]
            n = len(index)
            rng = np.random.default_rng([self.seed, int(epoch), batch_idx])
            # always drawn in this order, so turning flips on or off leaves the crops alone
            tops = rng.integers(0, stored_h - crop_h + 1, size=n)
            lefts = rng.integers(0, stored_w - crop_w + 1, size=n)
            flips = rng.random(n) < 0.5
            if not self.crop:
                tops[:] = 0
                lefts[:] = 0
            if not self.flip:
                flips[:] = False
            if self.crop or self.flip:
                crops = self._gather(self.train_images, index, tops, lefts, flips)
            else:
                crops = self.train_images[index]
            yield self._to_float(crops), self.train_labels[index].copy(), batch_idx

    # --- testing

    def test_batches(self, batch_size):
        """Yield (x, labels) over the test images in order: centre crop, no flip."""
        _check_batch_size(batch_size)
        top, left = self.center
        _, crop_h, crop_w = self.image_shape
        for start in range(0, self.num_test, batch_size):
            crops = self.test_images[start:start + batch_size, :, top:top + crop_h,
                                     left:left + crop_w]
            yield self._to_float(crops), self.test_labels[start:start + batch_size].copy()

    def test_views(self, batch_size):
        """Yield (x float32 (10, N, C, h, w), labels): cuda-convnet's multiview test patches.

        Views 0-4 are the four corner crops and the centre crop, views 5-9 their mirror images;
        average the softmax over axis 0. Needs inner_size smaller than the stored images.
        """
        _check_batch_size(batch_size)
        if not self.crop:
            raise ValueError(f"provider {self.name}: multiview testing needs inner_size "
                             f"smaller than the stored {self.stored_shape[1:]} images")
        _, stored_h, stored_w = self.stored_shape
        _, crop_h, crop_w = self.image_shape
        corners = [(0, 0), (0, stored_w - crop_w), (stored_h - crop_h, 0),
                   (stored_h - crop_h, stored_w - crop_w), self.center]
        for start in range(0, self.num_test, batch_size):
            images = self.test_images[start:start + batch_size]
            views = np.empty((NUM_MULTIVIEW, len(images)) + self.image_shape, np.float32)
            for v, (top, left) in enumerate(corners):
                views[v] = images[:, :, top:top + crop_h, left:left + crop_w]
                views[v + 5] = views[v, :, :, :, ::-1]
            views -= self.cropped_mean
            yield views, self.test_labels[start:start + batch_size].copy()


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _join(batches, numbers):
    images = np.concatenate([batches[n][0] for n in numbers])
    labels = np.concatenate([batches[n][1] for n in numbers])
    return images, labels


def make_provider(name, path=None, train_range=None, test_range=None, inner_size=None, seed=0,
                  flip=None, **options):
    """A Provider for "fashion-mnist" or "cifar" ("cifar10" / "cifar100" are aliases), or an
    ImageProvider for "image" (a folder made by convnet-prepare; see convnet/imagedata.py).

    train_range/test_range: cuda-convnet batch ranges (see parse_range); defaults are train 1-6,
    test 7 for Fashion-MNIST and train 1-5, test 6 for CIFAR. flip: None means flip exactly
    when cropping (cuda-convnet's convention). options (color_noise, workers, decoder) are the
    image provider's.
    """
    key = str(name).lower()
    if key in ("image", "images", "jpeg"):
        from .image_provider import ImageProvider

        return ImageProvider(path, train_range, test_range, inner_size, seed=seed, flip=flip,
                             **options)
    if options:
        raise ValueError(f"data set {name!r}: {', '.join(sorted(options))} apply to the image "
                         f"provider only")
    if key in ("fashion-mnist", "fashion_mnist", "fashion"):
        key, last, default_train, default_test = "fashion-mnist", 7, "1-6", "7"
    elif key in ("cifar", "cifar10", "cifar-10", "cifar100", "cifar-100"):
        key, last, default_train, default_test = "cifar", 6, "1-5", "6"
    else:
        raise ValueError(f"unknown data set {name!r}: expected 'fashion-mnist', 'cifar' or "
                         f"'image'")
    train = parse_range(default_train if train_range is None else train_range)
    test = parse_range(default_test if test_range is None else test_range)
    for label, numbers in (("train", train), ("test", test)):
        for n in numbers:
            if n > last:
                raise ValueError(f"{label} range: batch {n} does not exist; {key} has "
                                 f"batches 1-{last}")
    if key == "fashion-mnist":
        batches = load_fashion_batches(path)
        label_names = FASHION_LABEL_NAMES
    else:
        batches, label_names = load_cifar_batches(path, sorted(set(train) | set(test)))
    train_images, train_labels = _join(batches, train)
    test_images, test_labels = _join(batches, test)
    return Provider(key, train_images, train_labels, test_images, test_labels, label_names,
                    inner_size=inner_size, flip=flip, seed=seed)
