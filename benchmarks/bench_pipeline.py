"""The image pipeline alone: images/s of 256x256 JPEGs decoded, cropped and flipped to uint8.

    python benchmarks/bench_pipeline.py [--images 512] [--data DST] [--seconds 3] [--json FILE]
    python benchmarks/bench_pipeline.py --ab 101 --seconds 0.25 [--json FILE]

Without --data it builds a folder of 256x256 JPEGs (quality 90) from the photographs that
scikit-image ships (random crops at random scales, so no two are alike) with convnet-prepare
itself, which also gives the conversion rate. Then, for each JPEG decoder installed:

* one core: decode + random 224 crop + random flip into a uint8 RGBX batch, in the calling thread
  (the per-core rate of the decode stage);
* the provider's uint8 stage (``ImageProvider.train_crops``: decode workers + prefetch thread)
  with 1, 2, 4 ... threads, then as many processes, up to every core;
* the provider's whole CPU path (``train_batches``: + mean, lighting, HWC -> CHW float32) with
  every core: the float work that belongs on the GPU there, measured for the NumPy backend.

``--ab ROUNDS`` measures only the one-core rate, simplejpeg's accurate decode against the
provider's (``SIMPLEJPEG_OPTIONS``: fast IDCT and chroma upsampling), alternating in one process
on the same JPEGs (ABBA order), and prints the medians and the median per-round ratio: the figure
that stays meaningful on a loaded machine.

It ends with the rate that feeds AlexNet on an H100 and the cores that rate needs; the step
time is an assumption (stated, and settable with --net-images-per-s). --simulate feeds a
stand-in training step (sleep, or GPU matrix products and a sync with --gpu) at given rates and
reports the fraction of the loop's time spent waiting for the next batch.

Measured 2026-11-22 with the accurate decode (simplejpeg's defaults, as Pillow), 256x256 JPEGs
of ~17 KiB (quality 80-95 photo crops), 224 crops, batch 128:

    machine                      decoder     1 core   uint8 stage, N workers (img/s)
    2 cores (shared, load ~5)    simplejpeg  2,059    threads 2: 2,110   processes 2: 1,888
                                 pillow      1,414    threads 2: 1,466   processes 2: 1,172
    H100 host, 16 vCPUs          simplejpeg  1,754-1,844   threads 4/8/16: 6.3k/10.7k/8.2k
                                                      processes 4/8/16: 7.7k/15.1k/14.2k
                                 pillow      1,651    threads 2/4/8/16: 2.1k/2.6k/1.9k/1.7k

    convnet-prepare (resize + crop + encode, 300-500 px photos): 1,057 img/s on 16 processes.
    H100, 14 decode processes, the GPU float stage, a stand-in step of 13.8 ms per 128 images
    (9,249 img/s, the derived AlexNet rate): 7.0-7.7k img/s reached, waiting 11-15% of the
    time within epochs (+25-35 ms to refill at each epoch start); at 925 img/s: 1.6%.

Since then simplejpeg decodes with fastdct + fastupsample (training and test alike). ``--ab
--seconds 0.25`` on the 2-core machine, under load (a training run beside it, load average
2.3-3.0), three runs of 61, 61 and 101 rounds: median per-round ratio fast/accurate 1.099, 1.115,
1.096 (medians of the rates 3,119 -> 3,342, 2,193 -> 2,522, 1,947 -> 2,183 img/s: the absolute
rates swing with the load, only the ratios mean anything; 2 s blocks were too coarse for that
load: 11 rounds gave 1.03, single rounds 0.70-1.41). That is about +10% for decode + crop + flip
(a decode-only A/B on 64 photo JPEGs gave +14%); applied to the H100 host's 1,754-1,844 it would
be ~1,930-2,030 per core, an estimate, not a measurement: re-measure there with
``python benchmarks/bench_pipeline.py --json FILE`` (and ``--ab``).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from convnet.apps.prepare import prepare  # noqa: E402
from convnet.data.decode import SIMPLEJPEG_OPTIONS, decode_crops, get_decoder  # noqa: E402
from convnet.data.image_provider import ImageProvider  # noqa: E402
from convnet.data.pipeline import default_workers  # noqa: E402

# AlexNet (the paper's net, 227x227 input, groups=2 in conv2/4/5): multiply-adds per image
ALEXNET_MACS = {
    "conv1": 55 * 55 * 96 * 11 * 11 * 3, "conv2": 27 * 27 * 256 * 5 * 5 * 48,
    "conv3": 13 * 13 * 384 * 3 * 3 * 256, "conv4": 13 * 13 * 384 * 3 * 3 * 192,
    "conv5": 13 * 13 * 256 * 3 * 3 * 192, "fc6": 9216 * 4096, "fc7": 4096 * 4096,
    "fc8": 4096 * 1000,
}
H100_FP32_TFLOPS = 67.0  # H100 SXM, fp32 without tensor cores (51 on the PCIe card)


def sample_photos():
    """RGB uint8 photographs shipped with scikit-image (a few are enough: we crop them)."""
    try:
        import skimage.data as data
    except ImportError:
        return []
    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "retina", "motorcycle_left"):
        try:
            image = getattr(data, name)()
        except Exception:  # missing from this version, or would need a download
            continue
        if image.ndim == 3 and image.shape[2] >= 3:
            photos.append(np.ascontiguousarray(image[:, :, :3]))
    return photos


def smooth_noise(rng, size=320):
    """A stand-in photo when scikit-image is missing: low-frequency colour noise."""
    coarse = rng.integers(0, 256, (size // 16, size // 16, 3)).astype(np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def build_folder(root, count, rng):
    """`count` JPEG files in root/src/<class>/ cut from real photos at random scales."""
    from PIL import Image

    photos = sample_photos() or [smooth_noise(rng) for _ in range(4)]
    src = os.path.join(root, "src")
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        image = Image.fromarray(photo[top:top + side, left:left + side])
        image = image.resize((int(rng.integers(300, 500)), int(rng.integers(300, 500))))
        folder = os.path.join(src, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=int(rng.integers(80, 96)))
    return src


def timed(run, seconds):
    """Images/s of `run()` (which returns the images it did), repeated for >= `seconds`."""
    run()  # warm up: page cache, thread pool, allocator
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += run()
    return done / (time.perf_counter() - started)


def one_core_rate(provider, batch_size, seconds, decode=None):
    """decode + crop + flip into a uint8 batch in this thread, no pool, no prefetch (with the
    provider's decoder, or `decode`)."""
    decode = decode or provider._decode
    _, h, w = provider.image_shape
    state = {"batch": 0}
    count = provider.num_train_batches(batch_size)
    order = provider.epoch_order(1)

    def run():
        job = provider.train_job(1, batch_size, state["batch"] % count, order)
        state["batch"] += 1
        out = np.empty((job.rows, h, w, 4), np.uint8)
        decode_crops(decode, provider.train_set, job.spec, out, 0, len(job.images),
                     provider.stored_shape[1])
        return len(job.images)

    return timed(run, seconds)


def decode_options_ab(provider, batch_size, seconds, rounds):
    """The one-core rate with simplejpeg's accurate decode (A: the flags before) and with the
    provider's SIMPLEJPEG_OPTIONS (B), interleaved in this process on the same JPEGs: `rounds`
    rounds of both, in ABBA order; the medians and the median of the per-round ratios B/A."""
    import simplejpeg

    def accurate(data, scratch=None):
        return simplejpeg.decode_jpeg(data, colorspace="RGBX", buffer=scratch)

    variants = {"accurate": accurate, "fast": provider._decode}
    rates = {name: [] for name in variants}
    for k in range(rounds):
        for name in (("accurate", "fast") if k % 2 == 0 else ("fast", "accurate")):
            rates[name].append(one_core_rate(provider, batch_size, seconds, variants[name]))
        print(f"round {k + 1}/{rounds}: accurate {rates['accurate'][-1]:.0f} img/s, "
              f"fast {rates['fast'][-1]:.0f} img/s")
    ratios = np.array(rates["fast"]) / np.array(rates["accurate"])
    return {"rounds": rounds, "seconds_each": seconds, "options": dict(SIMPLEJPEG_OPTIONS),
            "accurate_median": round(float(np.median(rates["accurate"])), 1),
            "fast_median": round(float(np.median(rates["fast"])), 1),
            "ratio_median": round(float(np.median(ratios)), 3),
            "ratio_quartiles": [round(float(q), 3) for q in np.percentile(ratios, [25, 75])],
            "accurate": [round(r, 1) for r in rates["accurate"]],
            "fast": [round(r, 1) for r in rates["fast"]]}


def pipeline_rate(provider, batch_size, seconds, floats=False):
    """The provider's own pipeline for `seconds`: uint8 stage, or the whole CPU path."""
    epoch = [1]

    def run():
        done = 0
        batches = provider.train_batches(epoch[0], batch_size) if floats \
            else provider.train_crops(epoch[0], batch_size)
        for item in batches:
            done += len(item[1]) if floats else item[0].shape[0]
        epoch[0] += 1
        return done

    return timed(run, seconds)


class GpuStep:
    """A stand-in for a training step on the GPU: matrix products for about `seconds`, then a
    synchronisation (as the trainer's read of the cost does)."""

    def __init__(self, seconds):
        import cupy as cp

        self.cp = cp
        self.a = cp.random.standard_normal((2048, 2048), dtype=cp.float32)
        self.a @ self.a
        cp.cuda.Device().synchronize()
        started = time.perf_counter()
        for _ in range(20):
            self.a @ self.a
        cp.cuda.Device().synchronize()
        per_product = (time.perf_counter() - started) / 20
        self.products = max(1, round(seconds / per_product))

    def __call__(self, x):
        total = x.sum()
        for _ in range(self.products):
            self.a @ self.a
        float(total)  # waits for the stream, as the trainer's float(cost) does


def simulate_training(provider, batch, step_seconds, seconds, gpu):
    """Feed a stand-in training step of `step_seconds` per batch: the fraction of the loop's
    time spent waiting for the next batch, and the images/s reached."""
    step = GpuStep(step_seconds) if gpu else (lambda x: time.sleep(step_seconds))
    waited = filling = done = 0
    started = time.perf_counter()
    epoch = 1
    while time.perf_counter() - started < seconds:
        batches = provider.train_batches(epoch, batch)
        first = True
        while True:
            tick = time.perf_counter()
            item = next(batches, None)
            wait = time.perf_counter() - tick
            waited += wait
            filling += wait if first else 0  # an epoch starts with an empty pipeline
            first = False
            if item is None:
                break
            step(item[0])
            done += len(item[1])
            if time.perf_counter() - started >= seconds:
                batches.close()
                break
        epoch += 1
    total = time.perf_counter() - started
    return {"step_ms": round(1000 * step_seconds, 2), "wait_fraction": round(waited / total, 4),
            "wait_fraction_within_epochs": round((waited - filling) / total, 4),
            "batches_per_epoch": provider.num_train_batches(batch), "epochs": epoch - 1,
            "images_per_s": round(done / total, 1)}


def feed_requirement(net_images_per_s=None):
    flops_per_image = 3 * 2 * sum(ALEXNET_MACS.values())  # forward + two backward passes
    if net_images_per_s:
        return {"net_images_per_s": net_images_per_s, "assumption": "given on the command line",
                "train_gflop_per_image": flops_per_image / 1e9}
    efficiency = 0.6
    rate = efficiency * H100_FP32_TFLOPS * 1e12 / flops_per_image
    return {"net_images_per_s": round(rate),
            "train_gflop_per_image": round(flops_per_image / 1e9, 2),
            "assumption": (f"AlexNet training = 3 x {2 * sum(ALEXNET_MACS.values()) / 1e9:.2f} "
                           f"GFLOP per image, fp32 at {efficiency:.0%} of an H100 SXM's "
                           f"{H100_FP32_TFLOPS:g} TFLOP/s (an upper bound for non-tensor-core "
                           f"fp32; cuDNN-class AlexNet measurements are nearer 2,500-3,000 "
                           f"img/s on older cards)")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="JPEGs to build (default 512)")
    p.add_argument("--data", default=None, help="benchmark this convnet-prepare folder instead")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--inner-size", type=int, default=224)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--decoders", default="all", help="all, pillow or simplejpeg")
    p.add_argument("--threads", default=None, help="thread counts, e.g. 1,2,4 (default: "
                                                   "powers of two up to every core)")
    p.add_argument("--net-images-per-s", type=float, default=None,
                   help="the net's training rate to feed (default: derived, see the output)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--ab", type=int, default=None, metavar="ROUNDS",
                   help="only the one-core rate of simplejpeg, accurate vs fast decode options, "
                        "interleaved for ROUNDS rounds (medians)")
    p.add_argument("--simulate", type=float, nargs="*", default=None, metavar="IMG_PER_S",
                   help="feed a stand-in training step at these rates (default: the net's rate "
                        "and a tenth of it) and report the time the loop waits for data")
    p.add_argument("--gpu", action="store_true",
                   help="stage batches on the GPU (CuPy) and make the stand-in step GPU work")
    args = p.parse_args(argv)

    cores = default_workers()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"machine": {"cores": cores, "cpu": platform.processor() or platform.machine(),
                          "load_average_at_start": load, "python": platform.python_version()},
              "batch": args.batch, "inner_size": args.inner_size}
    print(f"machine: {cores} cores, load average {load}")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            rng = np.random.default_rng(0)
            src = build_folder(tmp, args.images, rng)
            data = os.path.join(tmp, "prepared")
            started = time.perf_counter()
            with open(os.devnull, "w") as quiet:
                prepare(src, data, images_per_batch=max(16, args.images // (2 * cores)),
                        test_fraction=0.05, progress=False, out=quiet)
            rate = args.images / (time.perf_counter() - started)
            result["prepare_images_per_s_all_cores"] = round(rate, 1)
            print(f"convnet-prepare: {rate:.0f} images/s with {cores} processes "
                  f"(resize + centre crop + JPEG encode, {args.images} photos ~300-500 px)")
        if args.ab:
            provider = ImageProvider(data, inner_size=args.inner_size, workers=1,
                                     decoder="simplejpeg")
            row = result["decode_options_ab"] = decode_options_ab(provider, args.batch,
                                                                  args.seconds, args.ab)
            print(f"simplejpeg, one core, decode + crop + flip to uint8, medians of {args.ab} "
                  f"interleaved rounds: accurate {row['accurate_median']:.0f} img/s, "
                  f"fast {row['fast_median']:.0f} img/s ({row['options']}), fast/accurate "
                  f"{row['ratio_median']:.3f} (quartiles of the rounds "
                  f"{row['ratio_quartiles'][0]:.3f}-{row['ratio_quartiles'][1]:.3f})")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(result, f, indent=1)
            return 0
        names = ["simplejpeg", "pillow"] if args.decoders == "all" else [args.decoders]
        threads = [int(t) for t in args.threads.split(",")] if args.threads else \
            sorted({2 ** k for k in range(cores.bit_length()) if 2 ** k <= cores} | {cores})
        result["decoders"] = {}
        for name in names:
            try:
                get_decoder(name)
            except ValueError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            row = {}
            provider = ImageProvider(data, inner_size=args.inner_size, workers=1, decoder=name)
            jpeg_bytes = float(np.mean(provider.train_set.ends - provider.train_set.starts))
            row["one_core"] = round(one_core_rate(provider, args.batch, args.seconds), 1)
            print(f"{name}: one core, decode + crop + flip to uint8: {row['one_core']:.0f} img/s "
                  f"(JPEGs of {jpeg_bytes / 1024:.1f} KiB on average)")
            for parallel in ("threads", "processes"):
                key = f"pipeline_uint8_{parallel}"
                row[key] = {}
                for t in threads:
                    provider = ImageProvider(data, inner_size=args.inner_size, workers=t,
                                             decoder=name, parallel=parallel)
                    rate = pipeline_rate(provider, args.batch, args.seconds)
                    provider.close()
                    row[key][t] = round(rate, 1)
                    print(f"{name}: pipeline uint8 stage, {t:2d} {parallel:9s}: {rate:8.0f} "
                          f"img/s ({rate / t:.0f} per worker)")
            provider = ImageProvider(data, inner_size=args.inner_size, workers=cores, decoder=name)
            row["pipeline_float_cpu"] = round(pipeline_rate(provider, args.batch, args.seconds,
                                                            floats=True), 1)
            provider.close()
            print(f"{name}: whole CPU path (+ mean, lighting, float32 NCHW), {cores} threads: "
                  f"{row['pipeline_float_cpu']:.0f} img/s")
            result["decoders"][name] = row
    need = feed_requirement(args.net_images_per_s)
    result["feed"] = need
    best = max(result["decoders"].items(), key=lambda kv: kv[1]["one_core"], default=None)
    if best:
        name, row = best
        all_cores = max(row["pipeline_uint8_threads"][max(threads)],
                        row["pipeline_uint8_processes"][max(threads)])
        cores_needed = need["net_images_per_s"] / 0.95 / row["one_core"]
        result["feed"]["cores_needed_at_one_core_rate"] = round(cores_needed, 1)
        print(f"\nto feed AlexNet on an H100: {need['net_images_per_s']:,} img/s ({need['assumption']})")
        print(f"with {name} at {row['one_core']:.0f} img/s per core that needs "
              f"{cores_needed:.1f} cores (5% headroom: the loop waits on data < 5% of the time); "
              f"this machine's {cores} cores give {all_cores:.0f} img/s in the pipeline")
    if args.simulate is not None and best:
        rates = args.simulate or [need["net_images_per_s"], need["net_images_per_s"] / 10]
        result["simulated_training"] = []
        with tempfile.TemporaryDirectory() as tmp:
            if args.data is None:
                src = build_folder(tmp, args.images, np.random.default_rng(1))
                data = os.path.join(tmp, "prepared")
                with open(os.devnull, "w") as quiet:
                    prepare(src, data, images_per_batch=max(16, args.images // (2 * cores)),
                            test_fraction=0.05, progress=False, out=quiet)
            else:
                data = args.data
            provider = ImageProvider(data, inner_size=args.inner_size, workers=cores,
                                     decoder=best[0])
            if args.gpu:
                provider.set_backend("cuda")
            for rate in rates:
                row = simulate_training(provider, args.batch, args.batch / rate, args.seconds * 2,
                                        args.gpu)
                row["target_images_per_s"] = round(rate)
                result["simulated_training"].append(row)
                print(f"stand-in training step of {row['step_ms']} ms per {args.batch} images "
                      f"({rate:.0f} img/s{' on the GPU' if args.gpu else ''}): waits for data "
                      f"{100 * row['wait_fraction']:.1f}% of the time "
                      f"({100 * row['wait_fraction_within_epochs']:.1f}% without the first batch "
                      f"of each of {row['epochs']} epochs of {row['batches_per_epoch']} batches), "
                      f"{row['images_per_s']:.0f} img/s reached")
            provider.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
