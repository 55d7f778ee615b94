"""The `image` provider: batches of JPEGs made by `convnet-prepare`, decoded while the net trains.

The paper's pipeline, four stages at once: decode workers turn batches n+2 and n+3 into uint8
crops (JPEG -> RGBX, cropped and mirrored as they are copied out of the decoder), a background
thread turns batch n+1 into the float input (NumPy backend) or the consumer starts its
asynchronous copy to the GPU (cuda backend), and the net trains on batch n.

* Training: random ``inner_size`` crops (default 224) of the stored 256x256 images, each
  flipped left-right with probability 1/2, the paper's PCA colour lighting, and the centre crop
  of the mean image subtracted (cuda-convnet's convention, as the other providers). Pixels stay
  on the 0..255 scale.
* Lighting: each image gets ``sum_i p_i * alpha_i * sqrt(lambda_i)`` added to every pixel, with
  ``p_i, lambda_i`` the eigenvectors and eigenvalues of the RGB covariance of the training pixels
  (0..255 scale, from meta.json) and ``alpha_i ~ N(0, color_noise^2)``, ``color_noise`` = 0.1 as
  in the paper. The paper writes ``alpha_i * lambda_i``; on the 0..255 scale that is not a
  colour shift but noise hundreds of levels wide, so the shift is taken along each eigenvector
  in units of its standard deviation, as cuda-convnet2's ImageDataProvider did.
* Test: the centre crop; ``test_views`` gives the 10 views of multiview testing (views 0-4:
  the four corners and the centre, 5-9 their mirror images), as ``provider.Provider``.
* Deterministic: epoch ``e`` visits the training images in the order of
  ``default_rng([seed, e]).permutation``; batch ``b`` draws its crops, flips and lighting from
  ``default_rng([seed, e, b])`` (tops, lefts, flips, then alphas). Results do not depend on the
  number or kind of workers, so a run resumed at batch ``b`` sees exactly the batches it would
  have seen.
* Workers: threads (the decoders release the GIL), or processes writing into shared memory
  (``parallel="processes"``; the default when there are more than 4 workers: past about 8
  threads the GIL, held between decodes, stops the threads from scaling).
* cuda backend (``set_backend("cuda")``): the crops are decoded into pinned host buffers,
  copied to the GPU on a stream of their own while the previous batch trains, and turned into
  float there (HWC -> CHW, mean, lighting); ``CudaStager`` in staging.py.

JPEGs are decoded with simplejpeg (libjpeg-turbo, fast IDCT and chroma upsampling, in training
and test alike) when it is installed, else with Pillow (accurate IDCT and upsampling).

The folder's format is prepared.py's, the decoders and crops decode.py's, the buffers, workers
and prefetching pipeline.py's.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing  # a consumer that stops early stops the pipeline at once

import numpy as np

from .common import NUM_MULTIVIEW, DataError, check_batch_size
from .decode import CropSpec, decode_checked, get_decoder
from .pipeline import (HostBuffer, ProcessDecoders, SharedRing, ThreadDecoders, _Decoding,
                       default_workers, prefetch)
from .prepared import BatchFiles
from .staging import CudaStager

DEFAULT_INNER_SIZE = 224
DEFAULT_COLOR_NOISE = 0.1
PROCESSES_ABOVE = 4  # parallel="auto": processes when there are more workers than this


class DecodedImages:
    """``provider.test_images[index]``: uint8 (N, 3, S, S) images, decoded on demand."""

    def __init__(self, provider, image_set):
        self._provider, self._set = provider, image_set
        size = provider.stored_shape[1]
        self.shape = (len(image_set), 3, size, size)
        self.dtype = np.dtype(np.uint8)

    def __len__(self):
        return len(self._set)

    def __getitem__(self, index):
        """As a uint8 array's first axis: an int, a slice, or an integer array of any shape
        (convnet-retrieve asks for (queries, k) neighbours at once)."""
        ids = np.arange(len(self._set))[index]
        size = self.shape[2]
        decode = self._provider._decode

        def one(i):
            return decode_checked(decode, self._set, int(i), size, None)

        flat = np.reshape(ids, -1)
        out = np.empty((len(flat),) + self.shape[1:], np.uint8)
        for k, image in enumerate(self._provider._threads().map(one, flat)):
            out[k] = image[:, :, :3].transpose(2, 0, 1)
        return out.reshape(np.shape(ids) + self.shape[1:])


class _Job:
    """One batch: its crops, labels, lighting shift (rows, 3) or None, and batch number."""

    def __init__(self, key, image_set, spec, shift=None):
        self.key, self.spec, self.shift = key, spec, shift
        self.images, self.tops, self.lefts, self.flips = (spec.images, spec.tops, spec.lefts,
                                                          spec.flips)
        self.views, self.rows = spec.views, spec.rows
        self.labels = image_set.labels[spec.images]


# ----------------------------------------------------------------------------- the provider

class ImageProvider:
    """Serves float32 NCHW batches (NumPy, or CuPy on the cuda backend) from prepared JPEGs.

    workers: decode workers (default: every core); parallel: "threads", "processes" or "auto"
    (processes above 4 workers); prefetch_depth: batches decoding ahead of the one being
    turned into floats; decoder: "auto", "simplejpeg" or "pillow".
    """

    name = "image"

    def __init__(self, path: str, train_range: str | None = None, test_range: str | None = None,
                 inner_size: int | None = None, seed: int = 0, flip: bool | None = None,
                 color_noise: float = DEFAULT_COLOR_NOISE, workers: int | None = None,
                 prefetch_depth: int = 2, decoder: str = "auto", parallel: str = "auto") -> None:
        if int(seed) < 0:
            raise ValueError(f"provider image: seed must be >= 0, got {seed}")
        if not (color_noise >= 0 and math.isfinite(color_noise)):
            raise ValueError(f"provider image: color_noise must be >= 0, got {color_noise}")
        if workers is not None and int(workers) < 1:
            raise ValueError(f"provider image: workers must be >= 1, got {workers}")
        if int(prefetch_depth) < 1:
            raise ValueError(f"provider image: prefetch_depth must be >= 1, got {prefetch_depth}")
        if parallel not in ("auto", "threads", "processes"):
            raise ValueError(f"provider image: parallel must be 'auto', 'threads' or "
                             f"'processes', got {parallel!r}")
        self.files = BatchFiles(path)
        meta = self.files.meta
        self.path, self.seed = self.files.path, int(seed)
        self.label_names = list(meta["label_names"])
        self.num_classes = len(self.label_names)
        self.train_numbers = self.files.numbers(train_range, "train_batches")
        self.test_numbers = self.files.numbers(test_range, "test_batches")
        if not self.train_numbers:
            raise DataError(f"{self.path}: no training batches")
        if not self.test_numbers:
            raise DataError(f"{self.path}: no test batches (prepare with a val/ folder or "
                            f"--test-fraction > 0, or pass --test-range)")
        self.train_set = self.files.load(self.train_numbers)
        self.test_set = self.files.load(self.test_numbers)
        self.num_train, self.num_test = len(self.train_set), len(self.test_set)
        if not self.num_train or not self.num_test:
            empty = self.train_numbers if not self.num_train else self.test_numbers
            raise DataError(f"{self.path}: batches {empty} hold no images")
        self.train_labels, self.test_labels = self.train_set.labels, self.test_set.labels

        size = int(meta["image_size"])
        self.stored_shape = (3, size, size)
        if inner_size is None:
            inner_size = DEFAULT_INNER_SIZE if size > DEFAULT_INNER_SIZE else size
        if not 1 <= int(inner_size) <= size:
            raise ValueError(f"provider image: inner_size must be in 1..{size}, got {inner_size}")
        self.inner_size = int(inner_size)
        self.crop = self.inner_size < size
        self.flip = self.crop if flip is None else bool(flip)
        self.image_shape = (3, self.inner_size, self.inner_size)
        offset = (size - self.inner_size) // 2
        self.center = (offset, offset)
        self.mean = self.files.mean
        self.cropped_mean = np.ascontiguousarray(
            self.mean[:, offset:offset + self.inner_size, offset:offset + self.inner_size])
        self.color_noise = float(color_noise)
        self.eigenvectors = np.asarray(meta["rgb_eigenvectors"], np.float64)
        self.eigen_std = np.sqrt(np.asarray(meta["rgb_eigenvalues"], np.float64))

        self.workers = int(workers) if workers else default_workers()
        self.parallel = parallel if parallel != "auto" else (
            "processes" if self.workers > PROCESSES_ABOVE else "threads")
        self.prefetch_depth = int(prefetch_depth)
        self.tasks_per_worker = 2  # decode tasks per batch and worker
        self.decoder_name, self._decode = get_decoder(decoder)
        self._decoders = self._thread_pool = None
        self._rings = {}  # idle SharedRings by (shape, pinned)
        self._lock = threading.Lock()
        self.stager = None  # a CudaStager after set_backend("cuda")
        self.train_images = DecodedImages(self, self.train_set)
        self.test_images = DecodedImages(self, self.test_set)

    # --- plumbing

    def set_backend(self, name: str) -> None:
        """'cuda': stage batches through pinned buffers and a copy stream to the GPU."""
        self.stager = CudaStager(self.cropped_mean) if name == "cuda" else None

    def _threads(self):
        with self._lock:
            if self._thread_pool is None:
                self._thread_pool = ThreadPoolExecutor(self.workers,
                                                       thread_name_prefix="convnet-decode")
            return self._thread_pool

    def _decoder_pool(self):
        with self._lock:
            if self._decoders is None:
                kind = ProcessDecoders if self.parallel == "processes" else ThreadDecoders
                self._decoders = kind(self, self.workers)
            return self._decoders

    def close(self) -> None:
        """Stop the decode workers and free the shared buffers (both come back when needed)."""
        with self._lock:
            decoders, threads, rings = self._decoders, self._thread_pool, self._rings
            self._decoders, self._thread_pool, self._rings = None, None, {}
        if decoders is not None:
            decoders.close()
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        for idle in rings.values():
            for ring in idle:
                ring.close()

    def _buffers(self, rows, pinned):
        """acquire(rows) -> HostBuffer, and a done() for when the pipeline ends."""
        _, h, w = self.image_shape
        if self.parallel == "processes":
            # a ring per running pipeline (a test run may interrupt a training epoch), kept for
            # the next one: the decode processes stay attached to the same few blocks
            key = ((rows, h, w, 4), pinned and self.stager is not None)
            with self._lock:
                idle = self._rings.setdefault(key, [])
                ring = idle.pop() if idle else None
            if ring is None:
                ring = SharedRing(key[0], self.prefetch_depth + 5, pin=key[1])

            def done():
                if ring.free.qsize() == len(ring.arrays):  # every buffer back: reuse it
                    with self._lock:
                        self._rings.setdefault(key, []).append(ring)
                else:
                    ring.close()
            return ring.acquire, done
        if pinned and self.stager is not None:
            return (lambda n: HostBuffer(self.stager.host_buffer((n, h, w, 4)))), (lambda: None)
        return (lambda n: HostBuffer(np.empty((n, h, w, 4), np.uint8))), (lambda: None)

    def _pipeline(self, jobs, rows, finish, pinned, discard=None):
        """prefetch() over `jobs` with this provider's decode workers and buffers."""
        acquire, close_buffers = self._buffers(rows, pinned)
        decoders = self._decoder_pool()

        def start(job):
            buffer = acquire(job.rows)
            m = len(job.images)
            chunk = max(1, -(-m // (self.tasks_per_worker * self.workers)))
            futures = [decoders.submit(job.spec, buffer, a, min(a + chunk, m))
                       for a in range(0, m, chunk)]
            return _Decoding(job, buffer, futures)

        items = prefetch(jobs, start, finish, self.prefetch_depth, discard)
        return items, close_buffers

    def _run(self, jobs, rows):
        """(x, job) for each job: x float32 (rows, 3, h, w), NumPy or CuPy."""
        if self.stager is None:
            def finish(job, buffer):
                x = to_float(buffer.array, self.cropped_mean, job.shift)
                buffer.release()
                return x, job

            items, close_buffers = self._pipeline(jobs, rows, finish, pinned=False)
        else:
            items, close_buffers = self._pipeline(
                jobs, rows, lambda job, buffer: (buffer, job), pinned=True,
                discard=lambda item: item[0].release())
            items = self.stager.run(items)
        try:
            yield from items
        finally:
            items.close()
            close_buffers()

    # --- sizes

    def num_train_batches(self, batch_size: int) -> int:
        return -(-self.num_train // check_batch_size(batch_size))

    def num_test_batches(self, batch_size: int) -> int:
        return -(-self.num_test // check_batch_size(batch_size))

    # --- training

    def epoch_order(self, epoch):
        if int(epoch) < 0:
            raise ValueError(f"provider image: epoch must be >= 0, got {epoch}")
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_train)

    def train_job(self, epoch, batch_size, batch_idx, order=None):
        """The crops, flips and lighting of training batch `batch_idx` of `epoch`."""
        order = self.epoch_order(epoch) if order is None else order
        images = order[batch_idx * batch_size:(batch_idx + 1) * batch_size]
        n = len(images)
        size, inner = self.stored_shape[1], self.inner_size
        rng = np.random.default_rng([self.seed, int(epoch), int(batch_idx)])
        # always drawn in this order, so switching flips or lighting off leaves the crops alone
        tops = rng.integers(0, size - inner + 1, size=n)
        lefts = rng.integers(0, size - inner + 1, size=n)
        flips = rng.random(n) < 0.5
        alphas = rng.standard_normal((n, 3)) * self.color_noise
        if not self.crop:
            tops[:] = lefts[:] = 0
        if not self.flip:
            flips[:] = False
        shift = None
        if self.color_noise > 0:
            shift = ((alphas * self.eigen_std) @ self.eigenvectors.T).astype(np.float32)
        spec = CropSpec("train", images, tops, lefts, flips)
        return _Job(batch_idx, self.train_set, spec, shift=shift)

    def _train_jobs(self, epoch, batch_size, start_batch):
        count = self.num_train_batches(batch_size)
        if not 0 <= int(start_batch) <= count:
            raise ValueError(f"provider image: start_batch must be in 0..{count}, "
                             f"got {start_batch}")
        order = self.epoch_order(epoch)
        return (self.train_job(epoch, batch_size, b, order) for b in range(int(start_batch), count))

    def train_batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator:
        """Yield (x float32 NCHW, labels int64, batch_idx) for batches start_batch.. of `epoch`."""
        jobs = self._train_jobs(epoch, batch_size, start_batch)
        with closing(self._run(jobs, batch_size)) as batches:
            for x, job in batches:
                yield x, job.labels, job.key

    def train_crops(self, epoch, batch_size, start_batch=0):
        """Yield (uint8 RGBX crops (N, h, w, 4), job, batch_idx): the decode stage alone, before
        the float stage (mean, lighting in ``job.shift``, HWC -> CHW). The crops are valid
        until the next batch is asked for. For benchmarks and checks."""
        jobs = self._train_jobs(epoch, batch_size, start_batch)
        items, close_buffers = self._pipeline(jobs, batch_size, lambda job, buf: (buf, job),
                                              pinned=False, discard=lambda item: item[0].release())
        try:
            for buffer, job in items:
                try:
                    yield buffer.array, job, job.key
                finally:
                    buffer.release()
        finally:
            items.close()
            close_buffers()

    # --- testing

    def _test_jobs(self, batch_size, views):
        check_batch_size(batch_size)
        size, inner = self.stored_shape[1], self.inner_size
        far = size - inner
        corners = [(0, 0), (0, far), (far, 0), (far, far), self.center]
        for start in range(0, self.num_test, batch_size):
            images = np.arange(start, min(start + batch_size, self.num_test))
            m = len(images)
            if views == 1:
                tops = np.full(m, self.center[0])
                lefts = np.full(m, self.center[1])
                flips = np.zeros(m, bool)
            else:
                tops = np.repeat([c[0] for c in corners] * 2, m)
                lefts = np.repeat([c[1] for c in corners] * 2, m)
                flips = np.repeat([False] * 5 + [True] * 5, m)
            spec = CropSpec("test", images, tops, lefts, flips, views=views)
            yield _Job(start, self.test_set, spec)

    def test_batches(self, batch_size: int) -> Iterator:
        """Yield (x, labels) over the test images in order: centre crop, no flip, no lighting."""
        with closing(self._run(self._test_jobs(batch_size, 1), batch_size)) as batches:
            for x, job in batches:
                yield x, job.labels

    def test_views(self, batch_size: int) -> Iterator:
        """Yield (x float32 (10, N, 3, h, w), labels): corners + centre, then their mirrors."""
        if not self.crop:
            raise ValueError(f"provider image: multiview testing needs inner_size smaller than "
                             f"the stored {self.stored_shape[1]}x{self.stored_shape[2]} images")
        jobs = self._test_jobs(batch_size, NUM_MULTIVIEW)
        with closing(self._run(jobs, batch_size * NUM_MULTIVIEW)) as batches:
            for x, job in batches:
                yield x.reshape((NUM_MULTIVIEW, len(job.images)) + self.image_shape), job.labels


def to_float(crops, mean, shift=None):
    """float32 (N, 3, h, w) = RGB of crops (uint8 RGBX (N, h, w, 4)) - mean (3, h, w)
    [+ shift (N, 3)]."""
    x = np.empty((crops.shape[0], 3) + crops.shape[1:3], np.float32)
    np.subtract(crops[..., :3].transpose(0, 3, 1, 2), mean, out=x)
    if shift is not None:
        x += shift[:, :, None, None]
    return x
