"""The `image` provider: batches of JPEGs made by `convnet-prepare`, decoded while the net trains.

The paper's pipeline, four stages at once: the thread pool decodes batches n+2 and n+3 (JPEG ->
uint8, cropped and flipped as it is copied out of the decoder), a background thread turns batch
n+1 into the float input (NumPy backend) or the consumer starts its asynchronous copy to the GPU
(cuda backend), and the net trains on batch n.

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
  the four corners and the centre, 5-9 their mirror images), as ``data.Provider``.
* Deterministic: epoch ``e`` visits the training images in the order of
  ``default_rng([seed, e]).permutation``; batch ``b`` draws its crops, flips and lighting from
  ``default_rng([seed, e, b])`` (tops, lefts, flips, then alphas). Results do not depend on the
  number of threads, so a run resumed at batch ``b`` sees exactly the batches it would have seen.
* cuda backend (``set_backend("cuda")``): the uint8 crops are decoded into pinned host buffers,
  copied to the GPU on a stream of their own while the previous batch trains, and turned into
  float there (HWC -> CHW, mean, lighting); ``CudaStager`` at the end of this file.

JPEGs are decoded with simplejpeg (libjpeg-turbo, releases the GIL) when it is installed, else
with Pillow (whose decoder releases the GIL too).
"""
import io
import json
import math
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .data import NUM_MULTIVIEW, DataError, _check_batch_size, parse_range

DEFAULT_INNER_SIZE = 224
DEFAULT_COLOR_NOISE = 0.1
META_FILE = "meta.json"
FORMAT_NAME = "convnet-image-batches"


# ----------------------------------------------------------------------------- decoding

# Decoders return RGBX: uint8 (H, W, 4), the fourth byte unused. Four-byte pixels make the crop
# and the mirror image one uint32 copy each (a mirror of 3-byte pixels costs as much as the
# decode in NumPy), and both libraries produce RGBX as cheaply as RGB.

def _pillow_decode(data):
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.frombuffer(im.tobytes("raw", "RGBX"), np.uint8).reshape(im.size[1], im.size[0], 4)


def _simplejpeg_decode(data):
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGBX")


def get_decoder(name="auto"):
    """(name, decode(bytes) -> uint8 RGBX (H, W, 4)): 'simplejpeg', 'pillow', or 'auto' (the
    first that is installed)."""
    if name not in ("auto", "simplejpeg", "pillow"):
        raise ValueError(f"image decoder must be 'auto', 'simplejpeg' or 'pillow', got {name!r}")
    if name in ("auto", "simplejpeg"):
        try:
            import simplejpeg  # noqa: F401

            return "simplejpeg", _simplejpeg_decode
        except ImportError:
            if name == "simplejpeg":
                raise ValueError("image decoder 'simplejpeg' is not installed "
                                 "(pip install simplejpeg)") from None
    return "pillow", _pillow_decode


def default_workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ----------------------------------------------------------------------------- stored batches

class ImageSet:
    """The JPEGs of some prepared batches: memory-mapped bytes, labels and source file names."""

    def __init__(self, blobs, owners, starts, ends, labels, files, paths):
        self.blobs, self.owners = blobs, owners
        self.starts, self.ends, self.labels, self.files = starts, ends, labels, files
        self.paths = paths  # the .bin file of each blob, for error messages

    def __len__(self):
        return len(self.labels)

    def jpeg(self, i):
        return self.blobs[self.owners[i]][self.starts[i]:self.ends[i]].tobytes()

    def where(self, i):
        return f"{self.paths[self.owners[i]]}, image {i} ({self.files[i]})"


class BatchFiles:
    """A folder written by convnet-prepare: meta.json, mean.npy and data_batch_N.{bin,npz}."""

    def __init__(self, path):
        if path is None:
            raise DataError("the image provider needs --data-path: a folder made by "
                            "`convnet-prepare SRC DST`")
        self.path = os.fspath(path)
        meta_path = os.path.join(self.path, META_FILE)
        if not os.path.isfile(meta_path):
            unfinished = os.path.isdir(self.path) and any(
                n.startswith("data_batch_") for n in os.listdir(self.path))
            raise DataError(f"{meta_path}: missing; " + (
                "the conversion did not finish: run convnet-prepare again to complete it"
                if unfinished else f"make the folder with `convnet-prepare SRC {self.path}`"))
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"{meta_path}: cannot read ({exc})") from None
        self.meta = self._check_meta(meta_path, meta)
        size = self.meta["image_size"]
        mean_path = os.path.join(self.path, self.meta.get("mean_file", "mean.npy"))
        try:
            mean = np.load(mean_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{mean_path}: cannot read ({exc})") from None
        if mean.shape != (3, size, size) or mean.dtype != np.float32:
            raise DataError(f"{mean_path}: expected a float32 (3, {size}, {size}) mean image, "
                            f"found {mean.dtype} {mean.shape}")
        self.mean = mean

    @staticmethod
    def _check_meta(where, meta):
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise DataError(f"{where}: not a convnet-prepare meta file")
        needed = ("image_size", "label_names", "train_batches", "test_batches", "batches",
                  "rgb_eigenvalues", "rgb_eigenvectors")
        missing = [k for k in needed if k not in meta]
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
        blobs, owners, starts, ends, labels, files, paths = [], [], [], [], [], [], []
        classes = len(self.meta["label_names"])
        for n in numbers:
            bin_path = os.path.join(self.path, f"data_batch_{n}.bin")
            index_path = os.path.join(self.path, f"data_batch_{n}.npz")
            try:
                with np.load(index_path, allow_pickle=False) as z:
                    offsets, batch_labels = z["offsets"], z["labels"]
                    batch_files = z["files"]
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
            files.append(batch_files)
        join = (lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype))
        return ImageSet(blobs, join(owners, np.int32), join(starts, np.int64),
                        join(ends, np.int64), join(labels, np.int64), join(files, "U1"), paths)


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
        single = isinstance(index, (int, np.integer))
        ids = np.arange(len(self._set))[index]
        ids = np.atleast_1d(ids)
        out = np.empty((len(ids),) + self.shape[1:], np.uint8)
        decode = self._provider._decode_checked
        images = list(self._provider._pool().map(lambda i: decode(self._set, int(i)), ids))
        for k, image in enumerate(images):
            out[k] = image[:, :, :3].transpose(2, 0, 1)
        return out[0] if single else out


# ----------------------------------------------------------------------------- crop jobs

class _Job:
    """One batch to decode: rows ``v * m + k`` hold view v of image ``images[k]``."""

    def __init__(self, key, image_set, images, tops, lefts, flips, views=1, shift=None):
        self.key, self.set, self.images = key, image_set, images
        self.tops, self.lefts, self.flips = tops, lefts, flips
        self.views, self.shift = views, shift
        self.rows = len(images) * views
        self.labels = image_set.labels[images]


def _decode_range(provider, job, out, first, last):
    """Decode images first..last-1 of `job` and write their crops into `out` (uint8 RGBX
    (rows, h, w, 4)), mirrored where the job says: one uint32 copy per crop."""
    _, height, width = provider.image_shape
    m = len(job.images)
    pixels_out = out.view(np.uint32)[..., 0]
    for k in range(first, last):
        image = provider._decode_checked(job.set, int(job.images[k]))
        pixels = image.view(np.uint32)[..., 0]
        for v in range(job.views):
            r = v * m + k
            top, left = job.tops[r], job.lefts[r]
            crop = pixels[top:top + height, left:left + width]
            pixels_out[r] = crop[:, ::-1] if job.flips[r] else crop


class _Decoding:
    """The futures of one job's decode tasks and the buffer they fill."""

    def __init__(self, job, buffer, futures):
        self.job, self.buffer, self.futures = job, buffer, futures

    def result(self):
        for future in self.futures:
            future.result()  # re-raises a decode error
        return self.buffer

    def abandon(self):
        for future in self.futures:
            future.cancel()
        wait(self.futures)  # running tasks still write into the buffer: let them finish


def _put(out, item, stop):
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(jobs, start, finish, depth):
    """Yield ``finish(job, buffer)`` for each job in order. A background thread keeps `depth`
    jobs decoding (``start(job)`` -> _Decoding) and runs `finish` on the oldest one while the
    consumer works on the previous item."""
    out = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce():
        pending = deque()
        try:
            for job in jobs:
                if stop.is_set():
                    return
                pending.append(start(job))
                if len(pending) >= depth:
                    decoding = pending.popleft()
                    if not _put(out, ("item", finish(decoding.job, decoding.result())), stop):
                        return
            while pending:
                decoding = pending.popleft()
                if not _put(out, ("item", finish(decoding.job, decoding.result())), stop):
                    return
            _put(out, ("end", None), stop)
        except BaseException as exc:  # handed to the consumer, raised there
            _put(out, ("error", exc), stop)
        finally:
            for decoding in pending:
                decoding.abandon()

    thread = threading.Thread(target=produce, name="convnet-image-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


# ----------------------------------------------------------------------------- the provider

class ImageProvider:
    """Serves float32 NCHW batches (NumPy, or CuPy on the cuda backend) from prepared JPEGs."""

    name = "image"

    def __init__(self, path, train_range=None, test_range=None, inner_size=None, seed=0,
                 flip=None, color_noise=DEFAULT_COLOR_NOISE, workers=None, prefetch_depth=2,
                 decoder="auto"):
        if int(seed) < 0:
            raise ValueError(f"provider image: seed must be >= 0, got {seed}")
        if not (color_noise >= 0 and math.isfinite(color_noise)):
            raise ValueError(f"provider image: color_noise must be >= 0, got {color_noise}")
        if workers is not None and int(workers) < 1:
            raise ValueError(f"provider image: workers must be >= 1, got {workers}")
        if int(prefetch_depth) < 1:
            raise ValueError(f"provider image: prefetch_depth must be >= 1, got {prefetch_depth}")
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
            raise DataError(f"{self.path}: batches {self.train_numbers if not self.num_train else self.test_numbers} hold no images")
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
        self.prefetch_depth = int(prefetch_depth)
        self.decoder_name, self._decode = get_decoder(decoder)
        self._executor = None
        self._executor_lock = threading.Lock()
        self.stager = None  # a CudaStager after set_backend("cuda")
        self.train_images = DecodedImages(self, self.train_set)
        self.test_images = DecodedImages(self, self.test_set)

    # --- plumbing

    def set_backend(self, name):
        """'cuda': stage batches through pinned buffers and a copy stream to the GPU."""
        self.stager = CudaStager(self.cropped_mean) if name == "cuda" else None

    def _pool(self):
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers,
                                                    thread_name_prefix="convnet-decode")
            return self._executor

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _decode_checked(self, image_set, i):
        try:
            image = self._decode(image_set.jpeg(i))
        except Exception as exc:
            raise DataError(f"{image_set.where(i)}: cannot decode the JPEG ({exc})") from None
        size = self.stored_shape[1]
        if image.shape != (size, size, 4):
            raise DataError(f"{image_set.where(i)}: decoded to {image.shape[:2]}, expected "
                            f"({size}, {size})")
        return image

    def _start(self, job, pinned=True):
        """Submit `job`'s decode tasks to the pool; they write into a fresh buffer (pinned host
        memory on the cuda backend)."""
        _, height, width = self.image_shape
        shape = (job.rows, height, width, 4)
        buffer = self.stager.host_buffer(shape) if self.stager and pinned \
            else np.empty(shape, np.uint8)
        m = len(job.images)
        chunk = max(1, -(-m // (2 * self.workers)))
        pool = self._pool()
        futures = [pool.submit(_decode_range, self, job, buffer, a, min(a + chunk, m))
                   for a in range(0, m, chunk)]
        return _Decoding(job, buffer, futures)

    def _start_host(self, job):
        return self._start(job, pinned=False)

    def _finish_cpu(self, job, buffer):
        return to_float(buffer, self.cropped_mean, job.shift), job

    def _run(self, jobs):
        """(x, job) for each job: x float32 (rows, 3, h, w), NumPy or CuPy."""
        if self.stager is None:
            yield from prefetch(jobs, self._start, self._finish_cpu, self.prefetch_depth)
        else:
            staged = prefetch(jobs, self._start, lambda job, buffer: (buffer, job),
                              self.prefetch_depth)
            yield from self.stager.run(staged)

    # --- sizes

    def num_train_batches(self, batch_size):
        return -(-self.num_train // _check_batch_size(batch_size))

    def num_test_batches(self, batch_size):
        return -(-self.num_test // _check_batch_size(batch_size))

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
        return _Job(batch_idx, self.train_set, images, tops, lefts, flips, shift=shift)

    def train_batches(self, epoch, batch_size, start_batch=0):
        """Yield (x float32 NCHW, labels int64, batch_idx) for batches start_batch.. of `epoch`."""
        count = self.num_train_batches(batch_size)
        if not 0 <= int(start_batch) <= count:
            raise ValueError(f"provider image: start_batch must be in 0..{count}, "
                             f"got {start_batch}")
        order = self.epoch_order(epoch)
        jobs = (self.train_job(epoch, batch_size, b, order) for b in range(int(start_batch), count))
        for x, job in self._run(jobs):
            yield x, job.labels, job.key

    def train_crops(self, epoch, batch_size, start_batch=0):
        """Yield (uint8 RGBX crops (N, h, w, 4), job, batch_idx): the decode stage alone, before
        the float stage (mean, lighting in ``job.shift``, HWC -> CHW). For benchmarks and
        checks."""
        count = self.num_train_batches(batch_size)
        order = self.epoch_order(epoch)
        jobs = (self.train_job(epoch, batch_size, b, order) for b in range(int(start_batch), count))
        for crops, job in prefetch(jobs, self._start_host, lambda job, buffer: (buffer, job),
                                   self.prefetch_depth):
            yield crops, job, job.key

    # --- testing

    def _test_jobs(self, batch_size, views):
        _check_batch_size(batch_size)
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
            yield _Job(start, self.test_set, images, tops, lefts, flips, views=views)

    def test_batches(self, batch_size):
        """Yield (x, labels) over the test images in order: centre crop, no flip, no lighting."""
        for x, job in self._run(self._test_jobs(batch_size, 1)):
            yield x, job.labels

    def test_views(self, batch_size):
        """Yield (x float32 (10, N, 3, h, w), labels): corners + centre, then their mirrors."""
        if not self.crop:
            raise ValueError(f"provider image: multiview testing needs inner_size smaller than "
                             f"the stored {self.stored_shape[1]}x{self.stored_shape[2]} images")
        for x, job in self._run(self._test_jobs(batch_size, NUM_MULTIVIEW)):
            yield x.reshape((NUM_MULTIVIEW, len(job.images)) + self.image_shape), job.labels


def to_float(crops, mean, shift=None):
    """float32 (N, 3, h, w) = RGB of crops (uint8 RGBX (N, h, w, 4)) - mean (3, h, w)
    [+ shift (N, 3)]."""
    x = np.empty((crops.shape[0], 3) + crops.shape[1:3], np.float32)
    np.subtract(crops[..., :3].transpose(0, 3, 1, 2), mean, out=x)
    if shift is not None:
        x += shift[:, :, None, None]
    return x


# ----------------------------------------------------------------------------- the GPU side

class CudaStager:
    """uint8 RGBX crops -> float32 NCHW on the GPU: pinned host buffers, an asynchronous copy on a
    stream of its own, then HWC -> CHW, mean and lighting in one kernel on the current stream.

    ``run`` keeps one batch ahead: while the consumer trains on batch n (current stream), the
    copy of batch n+1 runs on the copy stream. Two device slots alternate; a slot is written
    again only after the kernel that read it has run (an event on the current stream).
    """

    def __init__(self, mean):
        import cupy as cp

        self.cp = cp
        self.mean = cp.asarray(mean, dtype=cp.float32)
        self.kernel = cp.ElementwiseKernel(
            "raw uint8 src, raw float32 mean, raw float32 shift, int32 h, int32 w", "float32 x",
            """
            const int col = i % w, row = (i / w) % h, c = (i / (w * h)) % 3, n = i / (w * h * 3);
            x = (float)src[((n * h + row) * w + col) * 4 + c] - mean[(c * h + row) * w + col]
                + shift[n * 3 + c];
            """, "convnet_crops_to_float")

    def host_buffer(self, shape):
        import cupyx

        return cupyx.empty_pinned(shape, np.uint8)

    def run(self, staged):
        """(x CuPy float32 (rows, 3, h, w), job) for each (pinned buffer, job) of `staged`."""
        cp = self.cp
        copy_stream = cp.cuda.Stream(non_blocking=True)
        slots = [None, None]  # device uint8 buffers
        free = [None, None]   # events: the kernel that last read each slot has run
        ahead = None          # the batch whose copy is in flight
        index = 0
        try:
            for buffer, job in staged:
                nxt = self._upload(copy_stream, slots, free, index % 2, buffer, job)
                index += 1
                if ahead is not None:
                    yield self._convert(ahead, free)
                ahead = nxt
            if ahead is not None:
                yield self._convert(ahead, free)
        finally:
            copy_stream.synchronize()

    def _upload(self, copy_stream, slots, free, slot, buffer, job):
        """Start copying `buffer` into device slot `slot` on the copy stream."""
        cp = self.cp
        rows = buffer.shape[0]
        if slots[slot] is None or slots[slot].shape[0] < rows \
                or slots[slot].shape[1:] != buffer.shape[1:]:
            # allocated on the current stream: the copy waits for what that stream has queued,
            # so memory the pool hands back is not written while an earlier kernel reads it
            slots[slot] = cp.empty(buffer.shape, cp.uint8)
            free[slot] = cp.cuda.get_current_stream().record()
        copy_stream.wait_event(free[slot])
        device = slots[slot][:rows]
        device.set(buffer, stream=copy_stream)
        return slot, device, buffer, job, copy_stream.record()

    def _convert(self, ahead, free):
        """The float batch of an uploaded slot, computed on the current stream."""
        cp = self.cp
        slot, device, buffer, job, copied = ahead
        current = cp.cuda.get_current_stream()
        current.wait_event(copied)
        rows, h, w, _ = buffer.shape
        shift = np.zeros((rows, 3), np.float32) if job.shift is None else job.shift
        shift = cp.asarray(np.ascontiguousarray(shift, dtype=np.float32))
        x = cp.empty((rows, 3, h, w), cp.float32)
        self.kernel(device, self.mean, shift, np.int32(h), np.int32(w), x)
        free[slot] = current.record()
        copied.synchronize()  # the pinned buffer is dropped (and its memory reused) after this
        return x, job
