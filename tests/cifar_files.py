"""Synthetic CIFAR-10 python batches for end-to-end tests (no real data needed)."""
import numpy as np

from convnet.data.datasets import write_cifar_batch, write_cifar_meta


def write_cifar_folder(folder, per_batch, seed):
    """data_batch_1..5 and test_batch of `per_batch` random 3x32x32 images, and batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(1, 7):
        labels = rng.integers(0, 10, per_batch)
        images = rng.integers(0, 256, (per_batch, 3, 32, 32))
        write_cifar_batch(folder / ("test_batch" if b == 6 else f"data_batch_{b}"),
                          images.reshape(per_batch, -1), labels.tolist())
    write_cifar_meta(folder / "batches.meta", [f"class{i}" for i in range(10)])
    return folder
