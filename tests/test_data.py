"""Data providers: real Fashion-MNIST, idx validation, CIFAR pickles (restricted unpickler),
batch ranges, deterministic shuffles, crops, flips and multiview patches."""

import gzip
import os
import pickle

import numpy as np
import pytest

from convnet.data.common import DataError, parse_range
from convnet.data.datasets import (FASHION_DEFAULT_PATH, FASHION_LABEL_NAMES, read_cifar_pickle,
                                   write_cifar_batch, write_cifar_meta, write_idx)
from convnet.data.provider import Provider, make_provider

FASHION_PRESENT = os.path.isfile(os.path.join(FASHION_DEFAULT_PATH, "train-images-idx3-ubyte.gz"))
needs_fashion = pytest.mark.skipif(
    not FASHION_PRESENT,
    reason=f"Fashion-MNIST is not installed in {FASHION_DEFAULT_PATH} "
           f"(apt-get install dataset-fashion-mnist)")


# ----------------------------------------------------------------------------- helpers

def _read_idx_labels(path):
    """The labels of an idx1 file, read independently of convnet.data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    count = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, np.uint8, offset=8, count=count).astype(np.int64)


def _read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def _write_fashion(folder, rng, train=60, test=10, size=8, gz=True):
    """A tiny Fashion-MNIST-shaped data set; returns its arrays."""
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(os.path.join(folder, name + suffix), array)
    return arrays


def _position_images(n, channels, size):
    """uint8 images whose pixel (c, r, col) holds c*size*size + r*size + col: crops are legible."""
    grid = np.arange(channels * size * size, dtype=np.uint8).reshape(channels, size, size)
    return np.broadcast_to(grid, (n, channels, size, size)).copy()


def _id_provider(n=37, size=6, inner_size=None, flip=None, seed=3):
    """Synthetic provider whose label i marks image i (labels 0..n-1, one class per image)."""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64)
    return Provider("synthetic", images, labels, images[:5], labels[:5],
                    [str(i) for i in range(n)], inner_size=inner_size, flip=flip, seed=seed)


def _write_cifar10(folder, rng, per_batch=12, protocol=4):
    os.makedirs(folder, exist_ok=True)
    data = {}
    for n in range(1, 7):
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        name = "test_batch" if n == 6 else f"data_batch_{n}"
        write_cifar_batch(os.path.join(folder, name), images.reshape(per_batch, -1), labels,
                          protocol=protocol)
        data[n] = (images, labels)
    write_cifar_meta(os.path.join(folder, "batches.meta"),
                     ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                      "ship", "truck"], protocol=protocol)
    return data


# ----------------------------------------------------------------------------- real Fashion-MNIST

@pytest.fixture(scope="module")
def fashion():
    if not FASHION_PRESENT:
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DEFAULT_PATH}")
    return make_provider("fashion-mnist", inner_size=24, seed=11)


@needs_fashion
def test_fashion_real_shapes_counts_and_balance(fashion):
    assert fashion.name == "fashion-mnist"
    assert (fashion.num_train, fashion.num_test) == (60000, 10000)
    assert fashion.num_classes == 10 and fashion.label_names == FASHION_LABEL_NAMES
    assert fashion.image_shape == (1, 24, 24)
    assert fashion.mean.shape == (1, 28, 28) and fashion.mean.dtype == np.float32
    assert np.array_equal(np.bincount(fashion.train_labels, minlength=10), [6000] * 10)
    assert np.array_equal(np.bincount(fashion.test_labels, minlength=10), [1000] * 10)
    x, labels, batch_idx = next(fashion.train_batches(0, 128))
    assert x.shape == (128, 1, 24, 24) and x.dtype == np.float32 and x.flags.c_contiguous
    assert labels.shape == (128,) and labels.dtype == np.int64 and batch_idx == 0
    assert fashion.num_train_batches(128) == 469


@needs_fashion
def test_fashion_real_labels_and_pixels_match_files(fashion):
    train_labels = _read_idx_labels(os.path.join(FASHION_DEFAULT_PATH, "train-labels-idx1-ubyte.gz"))
    test_labels = _read_idx_labels(os.path.join(FASHION_DEFAULT_PATH, "t10k-labels-idx1-ubyte.gz"))
    test_images = _read_idx_images(os.path.join(FASHION_DEFAULT_PATH, "t10k-images-idx3-ubyte.gz"))
    assert np.array_equal(fashion.train_labels, train_labels)
    x, labels = next(fashion.test_batches(50))
    assert np.array_equal(labels, test_labels[:50])
    # 0..255 scale minus the centre crop of the mean image: adding it back gives the pixels
    assert np.array_equal(x + fashion.cropped_mean, test_images[:50, None, 2:26, 2:26])


@needs_fashion
def test_fashion_real_holdout_batch_6_as_validation():
    provider = make_provider("fashion-mnist", train_range="1-5", test_range="6")
    train_labels = _read_idx_labels(os.path.join(FASHION_DEFAULT_PATH, "train-labels-idx1-ubyte.gz"))
    assert (provider.num_train, provider.num_test) == (50000, 10000)
    assert provider.image_shape == (1, 28, 28)
    assert np.array_equal(provider.train_labels, train_labels[:50000])
    assert np.array_equal(provider.test_labels, train_labels[50000:])
    all_test = np.concatenate([labels for _, labels in provider.test_batches(999)])
    assert np.array_equal(all_test, train_labels[50000:])


@needs_fashion
def test_fashion_real_epoch_yields_all_60000_images(fashion):
    seen = 0
    for x, labels, _ in fashion.train_batches(1, 128):
        seen += len(labels)
    assert seen == 60000  # its speed belongs to benchmarks, not to a timed test


# ----------------------------------------------------------------------------- ranges

@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]), ("6", [6]), ("1,3,5", [1, 3, 5]), ("1-2,7", [1, 2, 7]),
    (" 2 - 3 ", [2, 3]), (4, [4]), ([2, 1], [2, 1]), ((1, 6), [1, 6]),
])
def test_parse_range_accepts(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "5-3", "0", "1-", "-2", "1,,2", "1-2-3", "1,1",
                                  "1-3,2", [], [1.5], None, 2.0, True])
def test_parse_range_rejects(text):
    with pytest.raises(ValueError, match="batch range"):
        parse_range(text)


def test_make_provider_rejects_batches_past_the_last(tmp_path, rng):
    _write_fashion(tmp_path, rng)
    with pytest.raises(ValueError, match="batch 8 does not exist"):
        make_provider("fashion-mnist", path=tmp_path, test_range="8")
    with pytest.raises(ValueError, match="unknown data set"):
        make_provider("mnist", path=tmp_path)


def test_fashion_synthetic_range_split_in_file_order(tmp_path, rng):
    arrays = _write_fashion(tmp_path, rng, train=66, test=9)
    train_images = arrays["train-images-idx3-ubyte"]
    provider = make_provider("fashion", path=tmp_path, train_range="2,4", test_range="6-7")
    expected_train = np.concatenate([train_images[11:22], train_images[33:44]])
    assert np.array_equal(provider.train_images[:, 0], expected_train)
    assert np.array_equal(provider.test_images[:, 0],
                          np.concatenate([train_images[55:66], arrays["t10k-images-idx3-ubyte"]]))
    assert (provider.num_train, provider.num_test) == (22, 20)
    assert np.allclose(provider.mean[0], expected_train.mean(axis=0), atol=1e-4)


# ----------------------------------------------------------------------------- determinism

def _epoch(provider, epoch, batch_size, start_batch=0):
    return [(x, labels, b) for x, labels, b in provider.train_batches(epoch, batch_size,
                                                                      start_batch)]


def test_train_batches_same_seed_epoch_batch_identical():
    a = _epoch(_id_provider(inner_size=4), 2, 8)
    b = _epoch(_id_provider(inner_size=4), 2, 8)
    assert [bi for _, _, bi in a] == list(range(5))
    for (xa, la, _), (xb, lb, _) in zip(a, b):
        assert np.array_equal(xa, xb) and np.array_equal(la, lb)


def test_train_batches_epoch_is_a_permutation_with_partial_last_batch():
    provider = _id_provider(n=37)
    batches = _epoch(provider, 0, 8)
    assert [len(labels) for _, labels, _ in batches] == [8, 8, 8, 8, 5]
    order = np.concatenate([labels for _, labels, _ in batches])
    assert sorted(order) == list(range(37))
    assert np.array_equal(order, np.random.default_rng([3, 0]).permutation(37))
    assert provider.num_train_batches(8) == 5 and provider.num_train_batches(37) == 1
    # without crop or flip a batch is exactly its images minus the mean
    for x, labels, _ in batches:
        assert np.array_equal(x + provider.mean, provider.train_images[labels].astype(np.float32))


def test_train_batches_different_epoch_or_seed_changes_order():
    provider = _id_provider()
    order0 = np.concatenate([l for _, l, _ in _epoch(provider, 0, 10)])
    order1 = np.concatenate([l for _, l, _ in _epoch(provider, 1, 10)])
    other = np.concatenate([l for _, l, _ in _epoch(_id_provider(seed=4), 0, 10)])
    assert not np.array_equal(order0, order1)
    assert not np.array_equal(order0, other)


def test_train_batches_start_batch_resumes_exactly():
    provider = _id_provider(inner_size=4)
    full = _epoch(provider, 5, 6)
    for start in (0, 1, 3, len(full) - 1, len(full)):
        resumed = _epoch(_id_provider(inner_size=4), 5, 6, start_batch=start)
        assert [b for _, _, b in resumed] == list(range(start, len(full)))
        for (xr, lr, br), (xf, lf, bf) in zip(resumed, full[start:]):
            assert br == bf and np.array_equal(lr, lf) and np.array_equal(xr, xf)
    with pytest.raises(ValueError, match="start_batch"):
        next(provider.train_batches(0, 6, start_batch=len(full) + 1))
    with pytest.raises(ValueError, match="batch_size"):
        next(provider.train_batches(0, 0))


# ----------------------------------------------------------------------------- crops and flips

def _crop_origin(crop, size):
    """(top, left, flipped) of a crop of a _position_images image, checking it is a window."""
    h, w = crop.shape[1:]
    top, first = divmod(int(crop[0, 0, 0]), size)
    _, last = divmod(int(crop[0, 0, -1]), size)
    flipped = last < first
    left = last if flipped else first
    rows = (top + np.arange(h))[None, :, None]
    cols = (left + np.arange(w))[None, None, :]
    if flipped:
        cols = cols[:, :, ::-1]
    channels = np.arange(crop.shape[0])[:, None, None]
    assert np.array_equal(crop, channels * size * size + rows * size + cols)
    return top, left, flipped


def test_train_crops_in_bounds_and_flips_mirror():
    size, inner = 9, 5
    images = _position_images(40, 3, size)
    labels = np.arange(40) % 3
    provider = Provider("synthetic", images, labels, images[:4], labels[:4], ["a", "b", "c"],
                        inner_size=inner, seed=7)
    assert provider.flip and provider.image_shape == (3, inner, inner)
    assert np.array_equal(provider.cropped_mean, images[0, :, 2:7, 2:7])
    origins = []
    for epoch in range(3):
        for x, _, _ in provider.train_batches(epoch, 16):
            crops = np.rint(x + provider.cropped_mean).astype(np.int64)
            origins += [_crop_origin(c, size) for c in crops]
    tops, lefts, flips = map(np.array, zip(*origins))
    assert tops.min() == 0 and tops.max() == size - inner
    assert lefts.min() == 0 and lefts.max() == size - inner
    assert 0.3 < flips.mean() < 0.7
    assert len(set(zip(tops, lefts))) > 10


def test_train_flip_without_crop_and_no_augmentation_by_default():
    images = _position_images(12, 1, 6)
    labels = np.zeros(12, np.int64)
    plain = Provider("s", images, labels, images, labels, ["x"], seed=1)
    assert not plain.flip and plain.image_shape == (1, 6, 6)
    x, _, _ = next(plain.train_batches(0, 12))
    assert np.array_equal(x, np.zeros_like(x))  # every image equals the mean
    flipping = Provider("s", images, labels, images, labels, ["x"], flip=True, seed=1)
    x, _, _ = next(flipping.train_batches(0, 12))
    restored = x + flipping.mean
    mirrored = [np.array_equal(r, images[0, :, :, ::-1]) for r in restored]
    unchanged = [np.array_equal(r, images[0]) for r in restored]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert any(mirrored) and any(unchanged)
    no_flip = Provider("s", images, labels, images, labels, ["x"], inner_size=4, flip=False)
    for x, _, _ in no_flip.train_batches(0, 12):
        assert not any(_crop_origin(np.rint(c + no_flip.cropped_mean).astype(int), 6)[2]
                       for c in x)


def test_inner_size_validation():
    images = _position_images(3, 1, 6)
    labels = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="inner_size"):
        Provider("s", images, labels, images, labels, ["x"], inner_size=7)
    full = Provider("s", images, labels, images, labels, ["x"], inner_size=6)
    assert not full.crop and full.image_shape == (1, 6, 6)


def test_test_batches_centre_crop_in_order():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 3, 10, 10), dtype=np.uint8)
    test = rng.integers(0, 256, (23, 3, 10, 10), dtype=np.uint8)
    labels = np.arange(23) % 4
    provider = Provider("s", train, labels[:20], test, labels, list("abcd"), inner_size=7)
    batches = list(provider.test_batches(10))
    assert [len(l) for _, l in batches] == [10, 10, 3]
    x = np.concatenate([x for x, _ in batches])
    assert np.array_equal(np.concatenate([l for _, l in batches]), labels)
    # centre of a 10-pixel side for a 7-pixel crop starts at (10 - 7) // 2 = 1
    expected = test[:, :, 1:8, 1:8].astype(np.float32) - train.mean(0)[:, 1:8, 1:8]
    assert np.allclose(x, expected, atol=1e-4)


def test_test_views_corners_centre_and_mirrors():
    images = _position_images(5, 2, 8)
    labels = np.arange(5)
    provider = Provider("s", images, labels, images, labels, list("abcde"), inner_size=5)
    (views, got_labels), = list(provider.test_views(8))
    assert views.shape == (10, 5, 2, 5, 5) and np.array_equal(got_labels, labels)
    origins = [_crop_origin(np.rint(views[v, 0] + provider.cropped_mean).astype(int), 8)
               for v in range(10)]
    assert origins[:5] == [(0, 0, False), (0, 3, False), (3, 0, False), (3, 3, False),
                           (1, 1, False)]
    assert origins[5:] == [(t, l, True) for t, l, _ in origins[:5]]
    centre, _ = next(provider.test_batches(8))
    assert np.array_equal(views[4], centre)
    with pytest.raises(ValueError, match="multiview"):
        next(Provider("s", images, labels, images, labels, list("abcde")).test_views(4))


# ----------------------------------------------------------------------------- idx validation

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_synthetic_round_trip(tmp_path, rng, gz):
    arrays = _write_fashion(tmp_path, rng, gz=gz)
    provider = make_provider("fashion-mnist", path=tmp_path)
    assert provider.image_shape == (1, 8, 8) and not provider.flip
    assert np.array_equal(provider.train_images[:, 0], arrays["train-images-idx3-ubyte"])
    assert np.array_equal(provider.test_labels, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_missing_files_say_how_to_install(tmp_path, rng):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        make_provider("fashion-mnist", path=tmp_path / "absent")
    _write_fashion(tmp_path, rng)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\] is missing.*--data-path"):
        make_provider("fashion-mnist", path=tmp_path)


def _message(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_truncated_idx_names_file(tmp_path, rng, gz):
    _write_fashion(tmp_path, rng, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    raw = open(tmp_path / name, "rb").read()
    open(tmp_path / name, "wb").write(raw[: len(raw) - 7])
    with pytest.raises(DataError) as info:
        make_provider("fashion-mnist", path=tmp_path)
    assert name in _message(info)


def test_fashion_truncated_payload_inside_valid_gzip(tmp_path, rng):
    _write_fashion(tmp_path, rng)
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated") as info:
        make_provider("fashion-mnist", path=tmp_path)
    _message(info)


def test_fashion_bad_magic_names_file(tmp_path, rng):
    _write_fashion(tmp_path, rng, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    raw = bytearray(open(path, "rb").read())
    raw[3] = 0x03  # claims 3 dimensions
    open(path, "wb").write(bytes(raw))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: bad idx magic"):
        make_provider("fashion-mnist", path=tmp_path)


def test_fashion_label_out_of_range_and_count_mismatch(tmp_path, rng):
    arrays = _write_fashion(tmp_path, rng, gz=False)
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[17] = 10
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: label 10 out of range"):
        make_provider("fashion-mnist", path=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"][:-1])
    with pytest.raises(DataError, match="59 labels for 60 images"):
        make_provider("fashion-mnist", path=tmp_path)


def test_fashion_trailing_bytes_rejected(tmp_path, rng):
    _write_fashion(tmp_path, rng, gz=False)
    with open(tmp_path / "t10k-images-idx3-ubyte", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: 2 unexpected bytes"):
        make_provider("fashion-mnist", path=tmp_path)


# ----------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_synthetic_round_trip(tmp_path, rng, protocol):
    data = _write_cifar10(tmp_path, rng, protocol=protocol)
    provider = make_provider("cifar", path=tmp_path, inner_size=24, seed=2)
    assert provider.label_names[0] == "airplane" and provider.num_classes == 10
    assert (provider.num_train, provider.num_test) == (60, 12)
    assert provider.image_shape == (3, 24, 24) and provider.mean.shape == (3, 32, 32)
    assert np.array_equal(provider.train_images, np.concatenate([data[n][0] for n in range(1, 6)]))
    assert np.array_equal(provider.train_labels, np.concatenate([data[n][1] for n in range(1, 6)]))
    assert np.array_equal(provider.test_labels, data[6][1])
    x, labels, _ = next(provider.train_batches(0, 16))
    assert x.shape == (16, 3, 24, 24) and labels.dtype == np.int64
    x, _ = next(provider.test_batches(12))
    assert np.allclose(x + provider.cropped_mean, data[6][0][:, :, 4:28, 4:28])


def test_cifar10_ranges_read_only_needed_files(tmp_path, rng):
    data = _write_cifar10(tmp_path, rng)
    os.remove(tmp_path / "data_batch_5")  # not asked for, so never read
    provider = make_provider("cifar10", path=tmp_path, train_range="1-2", test_range="3")
    assert np.array_equal(provider.test_images, data[3][0])
    assert provider.image_shape == (3, 32, 32) and not provider.flip
    with pytest.raises(DataError, match="data_batch_5: missing"):
        make_provider("cifar", path=tmp_path)


def test_cifar100_layout(tmp_path, rng):
    train = rng.integers(0, 256, (25, 3072), dtype=np.uint8)
    train_labels = rng.integers(0, 100, 25)
    test = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    write_cifar_batch(tmp_path / "train", train, train_labels, label_key="fine_labels")
    write_cifar_batch(tmp_path / "test", test, [1, 2, 3, 99], label_key="fine_labels")
    write_cifar_meta(tmp_path / "meta", [f"class{i}" for i in range(100)], key="fine_label_names")
    provider = make_provider("cifar100", path=tmp_path, train_range="1-4", test_range="5-6")
    assert provider.num_classes == 100 and provider.label_names[99] == "class99"
    assert np.array_equal(provider.train_images.reshape(20, -1), train[:20])
    assert np.array_equal(provider.test_labels, np.concatenate([train_labels[20:], [1, 2, 3, 99]]))


def test_cifar_needs_path():
    with pytest.raises(DataError, match="--data-path"):
        make_provider("cifar")


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _WritesFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_RunsCommand, _WritesFile])
@pytest.mark.parametrize("where", ["top", "data", "labels", "meta"])
def test_cifar_malicious_pickle_refused_and_not_executed(tmp_path, rng, payload, where):
    _write_cifar10(tmp_path, rng, per_batch=4)
    marker = tmp_path / "pwned"
    evil = payload(marker)
    batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    target = tmp_path / "data_batch_2"
    if where == "top":
        obj = evil
    elif where == "data":
        obj = {**batch, b"data": evil}
    elif where == "labels":
        obj = {**batch, b"labels": [0, 1, evil, 3]}
    else:
        obj, target = {b"label_names": [evil]}, tmp_path / "batches.meta"
    with open(target, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    with pytest.raises(DataError, match="refused") as info:
        make_provider("cifar", path=tmp_path)
    assert str(target) in _message(info)
    assert not marker.exists()


def test_cifar_truncated_pickle_names_file(tmp_path, rng):
    _write_cifar10(tmp_path, rng, per_batch=4)
    path = tmp_path / "data_batch_3"
    raw = open(path, "rb").read()
    for cut in (1, len(raw) // 2, len(raw) - 1):
        open(path, "wb").write(raw[:cut])
        with pytest.raises(DataError, match="data_batch_3: truncated or malformed") as info:
            make_provider("cifar", path=tmp_path)
        _message(info)
    open(path, "wb").write(raw + b"junk")
    with pytest.raises(DataError, match="data_batch_3: unexpected bytes"):
        make_provider("cifar", path=tmp_path)


def test_cifar_label_out_of_range_and_bad_data(tmp_path, rng):
    _write_cifar10(tmp_path, rng, per_batch=4)
    images = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    write_cifar_batch(tmp_path / "data_batch_4", images, [0, 10, 2, 3])
    with pytest.raises(DataError, match="data_batch_4: label 10 out of range 0..9"):
        make_provider("cifar", path=tmp_path)
    write_cifar_batch(tmp_path / "data_batch_4", images, [0, 1, 2])
    with pytest.raises(DataError, match="data_batch_4: 3 labels for 4 images"):
        make_provider("cifar", path=tmp_path)
    with open(tmp_path / "data_batch_4", "wb") as f:
        pickle.dump({b"data": images[:, :100], b"labels": [0, 1, 2, 3]}, f)
    with pytest.raises(DataError, match="data_batch_4: 'data' must be a uint8 N x 3072"):
        make_provider("cifar", path=tmp_path)
    with open(tmp_path / "data_batch_4", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(DataError, match="data_batch_4: expected a dict"):
        make_provider("cifar", path=tmp_path)


def test_read_cifar_pickle_allows_plain_containers(tmp_path):
    path = tmp_path / "plain"
    obj = {b"a": [1, 2.5, "s", b"b", None, True], "k": {"n": (1, 2)},
           b"arr": np.arange(6, dtype=np.float32).reshape(2, 3)}
    for protocol in (2, 4, 5):
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
        back = read_cifar_pickle(path)
        assert back[b"a"] == obj[b"a"] and back["k"] == obj["k"]
        assert np.array_equal(back[b"arr"], obj[b"arr"]) and back[b"arr"].dtype == np.float32
