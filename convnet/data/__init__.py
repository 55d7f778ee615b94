"""Data providers: Fashion-MNIST and CIFAR-10/100 held in memory (provider.py, datasets.py), and
folders of JPEGs made by convnet-prepare, decoded while the net trains (image_provider.py over
prepared.py's format, decode.py and pipeline.py; staging.py for the GPU).

Every provider serves float32 NCHW batches: ``train_batches(epoch, batch_size, start_batch)``,
``test_batches(batch_size)``, ``test_views(batch_size)``. ``make_provider`` picks one by name.
This package imports nothing from convnet.engine, convnet.training or convnet.apps.
"""
from .common import NUM_MULTIVIEW, DataError, check_batch_size, parse_range
from .datasets import (CIFAR_IMAGE_SHAPE, FASHION_DEFAULT_PATH, FASHION_FILES, FASHION_LABEL_NAMES,
                       IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_cifar_batches,
                       load_fashion_batches, parse_idx, read_cifar_pickle, write_cifar_batch,
                       write_cifar_meta, write_idx)
from .image_provider import ImageProvider
from .provider import PROVIDER_NAMES, Provider, make_provider, provider_image_shape

__all__ = [
    "CIFAR_IMAGE_SHAPE", "FASHION_DEFAULT_PATH", "FASHION_FILES", "FASHION_LABEL_NAMES",
    "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "NUM_MULTIVIEW", "DataError", "ImageProvider",
    "PROVIDER_NAMES", "Provider", "check_batch_size", "load_cifar_batches", "load_fashion_batches",
    "make_provider", "parse_idx", "parse_range", "provider_image_shape", "read_cifar_pickle",
    "write_cifar_batch",
    "write_cifar_meta", "write_idx",
]
