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
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from .common import NUM_MULTIVIEW, check_batch_size, parse_range
from .datasets import (CIFAR_IMAGE_SHAPE, FASHION_LABEL_NAMES, load_cifar_batches,
                       load_fashion_batches)
from .image_provider import DEFAULT_INNER_SIZE, ImageProvider
from .prepared import BatchFiles

FASHION_NAMES = ("fashion-mnist", "fashion_mnist", "fashion")
# the data sets by their names on the command line (--data-provider), aliases left out
PROVIDER_NAMES = ("fashion-mnist", "cifar", "image")
CIFAR_NAMES = ("cifar", "cifar10", "cifar-10", "cifar100", "cifar-100")


# ----------------------------------------------------------------------------- the provider

class Provider:
    """Serves float32 NCHW batches (mean-subtracted, 0..255 scale) from uint8 images in memory.

    train_images/test_images: uint8 (N, C, H0, W0); labels int64 (N,).
    """

    def __init__(self, name: str, train_images: npt.NDArray[np.uint8],
                 train_labels: npt.NDArray[np.integer], test_images: npt.NDArray[np.uint8],
                 test_labels: npt.NDArray[np.integer], label_names: Sequence[str],
                 inner_size: int | None = None, flip: bool | None = None, seed: int = 0) -> None:
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

    def num_train_batches(self, batch_size: int) -> int:
        return -(-self.num_train // check_batch_size(batch_size))

    def num_test_batches(self, batch_size: int) -> int:
        return -(-self.num_test // check_batch_size(batch_size))

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

    def epoch_order(self, epoch: int) -> npt.NDArray[np.int64]:
        """The permutation of training images that epoch `epoch` visits."""
        if int(epoch) < 0:
            raise ValueError(f"provider {self.name}: epoch must be >= 0, got {epoch}")
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_train)

    def train_batches(self, epoch: int, batch_size: int, start_batch: int = 0
                      ) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], int]]:
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

    def test_batches(self, batch_size: int
                     ) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
        """Yield (x, labels) over the test images in order: centre crop, no flip."""
        check_batch_size(batch_size)
        top, left = self.center
        _, crop_h, crop_w = self.image_shape
        for start in range(0, self.num_test, batch_size):
            crops = self.test_images[start:start + batch_size, :, top:top + crop_h,
                                     left:left + crop_w]
            yield self._to_float(crops), self.test_labels[start:start + batch_size].copy()

    def test_views(self, batch_size: int
                   ) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
        """Yield (x float32 (10, N, C, h, w), labels): cuda-convnet's multiview test patches.

        Views 0-4 are the four corner crops and the centre crop, views 5-9 their mirror images;
        average the softmax over axis 0. Needs inner_size smaller than the stored images.
        """
        check_batch_size(batch_size)
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



def _join(batches, numbers):
    images = np.concatenate([batches[n][0] for n in numbers])
    labels = np.concatenate([batches[n][1] for n in numbers])
    return images, labels


def provider_image_shape(name: str, path: str | None = None, inner_size: int | None = None
                         ) -> tuple[int, int, int]:
    """The (C, H, W) a provider would serve, without reading any image: Fashion-MNIST 1x28x28,
    CIFAR 3x32x32, a convnet-prepare folder its meta.json's size (3 x S x S), each cropped to
    `inner_size` where given (the image provider's default crop where not)."""
    key = str(name).lower()
    if key in ("image", "images", "jpeg"):
        size = int(BatchFiles.read_meta(path)["image_size"])
        if inner_size is None:
            inner_size = DEFAULT_INNER_SIZE if size > DEFAULT_INNER_SIZE else size
        channels = 3
    elif key in FASHION_NAMES or key in CIFAR_NAMES:
        channels, size = (1, 28) if key in FASHION_NAMES else CIFAR_IMAGE_SHAPE[:2]
    else:
        raise ValueError(f"unknown data set {name!r}: expected one of "
                         f"{', '.join(PROVIDER_NAMES)}")
    if inner_size is not None and not 1 <= int(inner_size) <= size:
        raise ValueError(f"provider {key}: inner_size must be in 1..{size}, got {inner_size}")
    side = size if inner_size is None else int(inner_size)
    return (channels, side, side)


def make_provider(name: str, path: str | None = None, train_range: str | None = None,
                  test_range: str | None = None, inner_size: int | None = None, seed: int = 0,
                  flip: bool | None = None, **options) -> Provider | ImageProvider:
    """A Provider for "fashion-mnist" or "cifar" ("cifar10" / "cifar100" are aliases), or an
    ImageProvider for "image" (a folder made by convnet-prepare; see image_provider.py).

    train_range/test_range: cuda-convnet batch ranges (see parse_range); defaults are train 1-6,
    test 7 for Fashion-MNIST and train 1-5, test 6 for CIFAR. flip: None means flip exactly
    when cropping (cuda-convnet's convention). options (color_noise, workers, decoder) are the
    image provider's.
    """
    key = str(name).lower()
    if key in ("image", "images", "jpeg"):
        return ImageProvider(path, train_range, test_range, inner_size, seed=seed, flip=flip,
                             **options)
    if options:
        raise ValueError(f"data set {name!r}: {', '.join(sorted(options))} apply to the image "
                         f"provider only")
    if key in FASHION_NAMES:
        key, last, default_train, default_test = "fashion-mnist", 7, "1-6", "7"
    elif key in CIFAR_NAMES:
        key, last, default_train, default_test = "cifar", 6, "1-5", "6"
    else:
        raise ValueError(f"unknown data set {name!r}: expected one of "
                         f"{', '.join(PROVIDER_NAMES)}")
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
