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
  the four corners and the centre, 5-9 their mirror images), as ``data.Provider``.
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
  float there (HWC -> CHW, mean, lighting); ``CudaStager`` at the end of this file.

JPEGs are decoded with simplejpeg (libjpeg-turbo, fast IDCT and chroma upsampling, in training
and test alike) when it is installed, else with Pillow (accurate IDCT and upsampling).
"""
import io
import json
import math
import os
import queue
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing  # a consumer that stops early stops the pipeline at once

import numpy as np

from .provider import NUM_MULTIVIEW, DataError, _check_batch_size, parse_range

DEFAULT_INNER_SIZE = 224
DEFAULT_COLOR_NOISE = 0.1
META_FILE = "meta.json"
FORMAT_NAME = "convnet-image-batches"
PROCESSES_ABOVE = 4  # parallel="auto": processes when there are more workers than this


# ----------------------------------------------------------------------------- decoding
# Decoders return RGBX: uint8 (H, W, 4), the fourth byte unused. Four-byte pixels make the crop
# and the mirror image one uint32 copy each (a mirror of 3-byte pixels costs as much as the
# decode in NumPy), and both libraries produce RGBX as cheaply as RGB.

def _pillow_decode(data, scratch=None):
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.frombuffer(im.tobytes("raw", "RGBX"), np.uint8).reshape(im.size[1], im.size[0], 4)


# libjpeg-turbo's fast integer IDCT and plain chroma upsampling, for training and test alike:
# the one-core decode + crop + flip rate rises by about a tenth (bench_pipeline.py --ab). Against
# the accurate decode (256x256 photo JPEGs, quality 90) pixels differ by 2.2 levels rms (R and B
# 1.2 darker on average; single pixels by up to ~50-85 at sharp colour edges, from the 4:2:0
# chroma): a third of the PCA lighting shift the net is trained to ignore (6.8 rms), and less
# than JPEG's own error (3.8 rms). Test images are decoded as training crops are, so the net is
# tested on the pixels it was trained on. Pillow keeps its accurate decode.
SIMPLEJPEG_OPTIONS = {"fastdct": True, "fastupsample": True}


def _simplejpeg_decode(data, scratch=None):
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGBX", buffer=scratch, **SIMPLEJPEG_OPTIONS)


DECODERS = {"simplejpeg": _simplejpeg_decode, "pillow": _pillow_decode}


def get_decoder(name="auto"):
    """(name, decode(bytes, scratch=None) -> uint8 RGBX (H, W, 4)): 'simplejpeg', 'pillow', or
    'auto' (the first that is installed). `scratch`, a (H, W, 4) array, may receive the pixels."""
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
        index_path = self.paths[owner][:-len(".bin")] + ".npz"
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
        blobs, owners, starts, ends, labels, paths = [], [], [], [], [], []
        classes = len(self.meta["label_names"])
        for n in numbers:
            bin_path = os.path.join(self.path, f"data_batch_{n}.bin")
            index_path = os.path.join(self.path, f"data_batch_{n}.npz")
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
        ids = np.atleast_1d(np.arange(len(self._set))[index])
        size = self.shape[2]
        decode = self._provider._decode

        def one(i):
            return decode_checked(decode, self._set, int(i), size, None)

        images = list(self._provider._threads().map(one, ids))
        out = np.empty((len(ids),) + self.shape[1:], np.uint8)
        for k, image in enumerate(images):
            out[k] = image[:, :, :3].transpose(2, 0, 1)
        return out[0] if single else out


# ----------------------------------------------------------------------------- crops

class CropSpec:
    """The crops of one batch (picklable: sent to decode processes). Row ``v * m + k`` of the
    output is view v of image ``images[k]`` of the `split` set, cut at (tops[r], lefts[r])
    and mirrored where flips[r]."""

    def __init__(self, split, images, tops, lefts, flips, views=1):
        self.split, self.images = split, np.asarray(images, np.int64)
        self.tops, self.lefts = np.asarray(tops, np.int64), np.asarray(lefts, np.int64)
        self.flips, self.views = np.asarray(flips, bool), int(views)
        self.rows = len(self.images) * self.views


class _Job:
    """One batch: its crops, labels, lighting shift (rows, 3) or None, and batch number."""

    def __init__(self, key, image_set, spec, shift=None):
        self.key, self.spec, self.shift = key, spec, shift
        self.images, self.tops, self.lefts, self.flips = (spec.images, spec.tops, spec.lefts,
                                                          spec.flips)
        self.views, self.rows = spec.views, spec.rows
        self.labels = image_set.labels[spec.images]


_scratch = threading.local()  # per decode thread: a reusable decoder output


def decode_checked(decode, image_set, i, size, scratch):
    """Image i of `image_set` as uint8 RGBX (size, size, 4); DataError naming the file."""
    try:
        image = decode(image_set.jpeg(i), scratch)
    except Exception as exc:
        raise DataError(f"{image_set.where(i)}: cannot decode the JPEG ({exc})") from None
    if image.shape != (size, size, 4):
        raise DataError(f"{image_set.where(i)}: decoded to {image.shape[:2]}, expected "
                        f"({size}, {size})")
    return image


def decode_crops(decode, image_set, spec, out, first, last, size):
    """Decode images first..last-1 of `spec` and write their crops into `out` (uint8 RGBX
    (rows, h, w, 4)): one uint32 copy per crop, mirrored or not."""
    height, width = out.shape[1:3]
    scratch = getattr(_scratch, "image", None)
    if scratch is None or scratch.shape != (size, size, 4):
        scratch = _scratch.image = np.empty((size, size, 4), np.uint8)
    m = len(spec.images)
    pixels_out = out.view(np.uint32)[..., 0]
    for k in range(first, last):
        image = decode_checked(decode, image_set, int(spec.images[k]), size, scratch)
        pixels = image.view(np.uint32)[..., 0]
        for v in range(spec.views):
            r = v * m + k
            top, left = spec.tops[r], spec.lefts[r]
            crop = pixels[top:top + height, left:left + width]
            pixels_out[r] = crop[:, ::-1] if spec.flips[r] else crop


# ----------------------------------------------------------------------------- host buffers

class HostBuffer:
    """A uint8 batch buffer: `array` (rows, h, w, 4); `name` of its shared memory (processes
    write into it) or None; `release()` gives it back for reuse."""

    def __init__(self, array, name=None, release=None):
        self.array, self.name, self._release = array, name, release

    def release(self):
        if self._release is not None:
            release, self._release = self._release, None
            release(self)


class SharedRing:
    """`count` buffers of one shape in shared memory, reused in turn (registered as pinned
    memory for asynchronous copies when `pin`). Closed (unlinked) by close() or at exit."""

    def __init__(self, shape, count, pin=False):
        from multiprocessing import shared_memory

        self.shape, self.free = tuple(shape), queue.Queue()
        nbytes = int(np.prod(shape))
        self.blocks, self.arrays, self.pinned = [], [], []
        try:
            for _ in range(count):
                block = shared_memory.SharedMemory(create=True, size=nbytes)
                self.blocks.append(block)
                array = np.ndarray(self.shape, np.uint8, buffer=block.buf)
                self.arrays.append(array)
                if pin:
                    import cupy

                    cupy.cuda.runtime.hostRegister(array.ctypes.data, nbytes, 0)
                    self.pinned.append(array.ctypes.data)
                self.free.put(len(self.arrays) - 1)
        except BaseException:
            self.close()
            raise
        self._finalizer = weakref.finalize(self, SharedRing._cleanup, self.blocks, self.pinned)

    def acquire(self, rows, timeout=600):
        try:
            index = self.free.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("image pipeline: no free shared buffer (a consumer holds them "
                               "all)") from None
        return HostBuffer(self.arrays[index][:rows], self.blocks[index].name,
                          lambda buf, i=index: self.free.put(i))

    @staticmethod
    def _cleanup(blocks, pinned):
        if pinned:
            import cupy

            for pointer in pinned:
                cupy.cuda.runtime.hostUnregister(pointer)
            pinned.clear()
        for block in blocks:
            try:
                block.close()
            except BufferError:  # a consumer still holds an array on it: unmapped when dropped
                pass
            try:
                block.unlink()
            except OSError:
                pass
        blocks.clear()

    def close(self):
        self.arrays = []
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        else:
            SharedRing._cleanup(self.blocks, self.pinned)


# ----------------------------------------------------------------------------- decode workers

class ThreadDecoders:
    """Decode tasks on a thread pool, into any host buffer."""

    def __init__(self, provider, workers):
        self.provider = provider
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="convnet-decode")

    def submit(self, spec, buffer, first, last):
        p = self.provider
        image_set = p.train_set if spec.split == "train" else p.test_set
        return self.pool.submit(decode_crops, p._decode, image_set, spec, buffer.array, first,
                                last, p.stored_shape[1])

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class ProcessDecoders:
    """Decode tasks on processes (spawned), into shared-memory buffers."""

    def __init__(self, provider, workers):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        numbers = {"train": provider.train_numbers, "test": provider.test_numbers}
        self.pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init,
            initargs=(provider.path, numbers, provider.decoder_name, provider.stored_shape[1]))

    def submit(self, spec, buffer, first, last):
        return self.pool.submit(_process_decode, spec, buffer.name, buffer.array.shape,
                                first, last)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


_WORKER = {}  # in a decode process: its image sets, decoder and attached shared buffers


def _process_init(path, numbers, decoder, size):
    import signal
    from multiprocessing import resource_tracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    # the parent owns (and unlinks) the shared buffers: attaching must not register them with
    # the resource tracker, which this process shares with the parent
    register = resource_tracker.register
    resource_tracker.register = lambda name, rtype: (
        None if rtype == "shared_memory" else register(name, rtype))
    files = BatchFiles(path)
    _WORKER.update(sets={split: files.load(n) for split, n in numbers.items()},
                   decode=DECODERS[decoder], size=size, blocks=OrderedDict())


def _attach(name):
    """The shared memory block `name`, attached once per process (the last 64 kept)."""
    from multiprocessing import shared_memory

    blocks = _WORKER["blocks"]
    if name in blocks:
        blocks.move_to_end(name)
        return blocks[name]
    block = blocks[name] = shared_memory.SharedMemory(name=name)
    while len(blocks) > 64:
        blocks.popitem(last=False)[1].close()
    return block


def _process_decode(spec, name, shape, first, last):
    block = _attach(name)
    rows_max = block.size // int(np.prod(shape[1:]))
    out = np.ndarray((rows_max,) + tuple(shape[1:]), np.uint8, buffer=block.buf)[:shape[0]]
    decode_crops(_WORKER["decode"], _WORKER["sets"][spec.split], spec, out, first, last,
                 _WORKER["size"])


# ----------------------------------------------------------------------------- the pipeline

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
        self.buffer.release()


def _put(out, item, stop):
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(jobs, start, finish, depth, discard=None):
    """Yield ``finish(job, buffer)`` for each job in order. A background thread keeps `depth`
    jobs decoding (``start(job)`` -> _Decoding) and runs `finish` on the oldest one while the
    consumer works on the previous item. Items never consumed go to `discard`."""
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
                kind, value = out.get(timeout=0.05)
                if kind == "item" and discard is not None:
                    discard(value)
            except queue.Empty:
                pass
        thread.join()
        while not out.empty():
            kind, value = out.get_nowait()
            if kind == "item" and discard is not None:
                discard(value)


# ----------------------------------------------------------------------------- the provider

class ImageProvider:
    """Serves float32 NCHW batches (NumPy, or CuPy on the cuda backend) from prepared JPEGs.

    workers: decode workers (default: every core); parallel: "threads", "processes" or "auto"
    (processes above 4 workers); prefetch_depth: batches decoding ahead of the one being
    turned into floats; decoder: "auto", "simplejpeg" or "pillow".
    """

    name = "image"

    def __init__(self, path, train_range=None, test_range=None, inner_size=None, seed=0,
                 flip=None, color_noise=DEFAULT_COLOR_NOISE, workers=None, prefetch_depth=2,
                 decoder="auto", parallel="auto"):
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

    def set_backend(self, name):
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

    def close(self):
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
        spec = CropSpec("train", images, tops, lefts, flips)
        return _Job(batch_idx, self.train_set, spec, shift=shift)

    def _train_jobs(self, epoch, batch_size, start_batch):
        count = self.num_train_batches(batch_size)
        if not 0 <= int(start_batch) <= count:
            raise ValueError(f"provider image: start_batch must be in 0..{count}, "
                             f"got {start_batch}")
        order = self.epoch_order(epoch)
        return (self.train_job(epoch, batch_size, b, order) for b in range(int(start_batch), count))

    def train_batches(self, epoch, batch_size, start_batch=0):
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
            spec = CropSpec("test", images, tops, lefts, flips, views=views)
            yield _Job(start, self.test_set, spec)

    def test_batches(self, batch_size):
        """Yield (x, labels) over the test images in order: centre crop, no flip, no lighting."""
        with closing(self._run(self._test_jobs(batch_size, 1), batch_size)) as batches:
            for x, job in batches:
                yield x, job.labels

    def test_views(self, batch_size):
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


# ----------------------------------------------------------------------------- the GPU side

class CudaStager:
    """uint8 RGBX crops -> float32 NCHW on the GPU: pinned host buffers, an asynchronous copy on
    a stream of its own, then HWC -> CHW, mean and lighting in one kernel on the current stream
    (cuda_ops.crops_to_float, csrc/stage.cu).

    ``run`` keeps one batch ahead: while the consumer trains on batch n (current stream), the
    copy of batch n+1 runs on the copy stream. Two device slots alternate; a slot is written
    again only after the kernel that read it has run (an event on the current stream).
    """

    def __init__(self, mean):
        import cupy as cp

        from convnet.backend import cuda_ops

        self.cp = cp
        self.to_float = cuda_ops.crops_to_float
        self.mean = cp.asarray(mean, dtype=cp.float32)

    def host_buffer(self, shape):
        import cupyx

        return cupyx.empty_pinned(shape, np.uint8)

    def run(self, staged):
        """(x CuPy float32 (rows, 3, h, w), job) for each (HostBuffer, job) of `staged`."""
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
                ahead = None
        finally:
            staged.close()
            copy_stream.synchronize()
            if ahead is not None:
                ahead[2].release()

    def _upload(self, copy_stream, slots, free, slot, buffer, job):
        """Start copying `buffer` into device slot `slot` on the copy stream."""
        cp = self.cp
        host = buffer.array
        rows = host.shape[0]
        if slots[slot] is None or slots[slot].shape[0] < rows \
                or slots[slot].shape[1:] != host.shape[1:]:
            # allocated on the current stream: the copy waits for what that stream has queued,
            # so memory the pool hands back is not written while an earlier kernel reads it
            slots[slot] = cp.empty(host.shape, cp.uint8)
            free[slot] = cp.cuda.get_current_stream().record()
        copy_stream.wait_event(free[slot])
        device = slots[slot][:rows]
        device.set(host, stream=copy_stream)
        return slot, device, buffer, job, copy_stream.record()

    def _convert(self, ahead, free):
        """The float batch of an uploaded slot, computed on the current stream."""
        cp = self.cp
        slot, device, buffer, job, copied = ahead
        current = cp.cuda.get_current_stream()
        current.wait_event(copied)
        rows = device.shape[0]
        shift = np.zeros((rows, 3), np.float32) if job.shift is None else job.shift
        shift = cp.asarray(np.ascontiguousarray(shift, dtype=np.float32))
        x = self.to_float(device, self.mean, shift)
        free[slot] = current.record()
        copied.synchronize()  # the host buffer may be reused once its copy is done
        buffer.release()
        return x, job
