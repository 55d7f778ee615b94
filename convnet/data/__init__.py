"""Data providers: Fashion-MNIST, CIFAR-10/100 and folders of JPEGs made by convnet-prepare."""
from .image_provider import ImageProvider
from .provider import (CIFAR_IMAGE_SHAPE, FASHION_DEFAULT_PATH, FASHION_FILES, FASHION_LABEL_NAMES,
                       IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, NUM_MULTIVIEW, DataError, Provider,
                       load_cifar_batches, load_fashion_batches, make_provider, parse_idx,
                       parse_range, read_cifar_pickle, write_cifar_batch, write_cifar_meta,
                       write_idx)
