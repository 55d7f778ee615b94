"""convnet-prepare: real photographs (foolbox's ImageNet JPEGs, scikit-image's photos,
Fashion-MNIST) -> batches of 256x256 JPEGs, mean image and RGB PCA; every kind of bad input
converted or skipped and reported; interrupted runs resumed without redoing finished batches.

The tree builders here are imported by test_imagedata.py as well."""
import glob
import importlib.util
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convnet.apps import prepare as prep
from convnet.data.datasets import FASHION_DEFAULT_PATH, FASHION_LABEL_NAMES

FASHION_PRESENT = os.path.isfile(os.path.join(FASHION_DEFAULT_PATH, "train-images-idx3-ubyte.gz"))


# ----------------------------------------------------------------------------- real photographs

def skimage_photos():
    """RGB photographs scikit-image ships (no download): {name: uint8 (H, W, 3)}."""
    data = pytest.importorskip("skimage.data",
                               reason="scikit-image (in the test extra) ships the photographs")
    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "rocket": data.rocket(), "camera": data.camera()}


def foolbox_imagenet_files():
    """foolbox's 20 labelled ImageNet JPEGs (512x512): [(path, ImageNet class)]."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox (in the test extra) ships 20 labelled ImageNet JPEGs")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    files = sorted(glob.glob(os.path.join(folder, "imagenet_*.jpg")))
    if len(files) != 20:
        pytest.skip(f"foolbox's data folder {folder} holds {len(files)} ImageNet JPEGs, not 20")
    return [(f, int(os.path.basename(f)[:-4].split("_")[2])) for f in files]


def build_imagenet_tree(root):
    """Class folders n<class> holding foolbox's ImageNet JPEGs (copied byte for byte)."""
    for path, label in foolbox_imagenet_files():
        folder = os.path.join(root, f"n{label:04d}")
        os.makedirs(folder, exist_ok=True)
        with open(path, "rb") as src, open(os.path.join(folder, os.path.basename(path)), "wb") as dst:
            dst.write(src.read())
    return root


def photo_crops(photos, count, rng, size_range=(280, 420)):
    """`count` different RGB images cut from the photographs at random places and scales."""
    names = [n for n in sorted(photos) if photos[n].ndim == 3]
    out = []
    for i in range(count):
        photo = photos[names[i % len(names)]]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        size = (int(rng.integers(*size_range)), int(rng.integers(*size_range)))
        out.append(np.asarray(crop.resize(size, Image.Resampling.BILINEAR)))
    return out


def build_photo_tree(root, classes=4, per_class=12, seed=0):
    """`classes` class folders of JPEG photo crops; class c's crops come from photo c mostly."""
    photos = skimage_photos()
    rng = np.random.default_rng(seed)
    names = [n for n in sorted(photos) if photos[n].ndim == 3]
    for c in range(classes):
        folder = os.path.join(root, f"class_{c}")
        os.makedirs(folder, exist_ok=True)
        crops = photo_crops({names[c % len(names)]: photos[names[c % len(names)]]},
                            per_class, rng)
        for i, crop in enumerate(crops):
            Image.fromarray(crop).save(os.path.join(folder, f"{i:03d}.jpg"), quality=90)
    return root


def fashion_folder_name(label):
    return FASHION_LABEL_NAMES[label].replace("/", "_")


def build_fashion_tree(root, train_per_class, test_per_class, split=True):
    """Fashion-MNIST (real 28x28 greyscale photos) as JPEG class folders: train/ and val/, or
    one folder per class when `split` is False."""
    if not FASHION_PRESENT:
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_DEFAULT_PATH} "
                    f"(apt-get install dataset-fashion-mnist)")
    from convnet.data.datasets import load_fashion_batches

    batches = load_fashion_batches()
    parts = [("train", batches[1], train_per_class), ("val", batches[7], test_per_class)]
    for split_name, (images, labels), per_class in parts:
        for label in range(10):
            chosen = np.flatnonzero(labels == label)[:per_class]
            base = os.path.join(root, split_name) if split else root
            folder = os.path.join(base, fashion_folder_name(label))
            os.makedirs(folder, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i, 0]).save(
                    os.path.join(folder, f"{split_name}_{i:05d}.jpg"), quality=95)
    return root


# ----------------------------------------------------------------------------- awkward files

def write_png16_rgb(path, rgb16):
    """A 16-bit-per-sample RGB PNG (Pillow cannot write one): uint16 (H, W, 3)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_bytes(array, quality=90):
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=quality)
    return out.getvalue()


def build_bad_input_tree(root):
    """Two class folders of real photos in every awkward form, an empty class folder and a
    stray file. Returns {relative path: ("ok",) | ("convert", {change keys}) | ("skip", kind)}."""
    photos = skimage_photos()
    cat, coffee, astro, camera = (photos["chelsea"], photos["coffee"], photos["astronaut"],
                                  photos["camera"])
    expected = {}

    def add(rel, expect, write):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(path)
        expected[rel] = expect

    def save(array, fmt=None, **kw):
        return lambda path: Image.fromarray(array).save(path, fmt, **kw)

    def raw(data):
        def write(path):
            with open(path, "wb") as f:
                f.write(data)
        return write

    add("cats/plain.jpg", ("ok",), save(cat, quality=90))
    add("cats/astronaut.jpg", ("ok",), save(astro, quality=90))
    add("coffee/plain.jpg", ("ok",), save(coffee, quality=90))
    add("coffee/rocket.jpg", ("ok",), save(photos["rocket"], quality=90))
    add("cats/grey.jpg", ("convert", {"greyscale -> RGB"}),
        lambda p: Image.fromarray(cat).convert("L").save(p, quality=90))
    add("cats/cmyk.jpg", ("convert", {"CMYK -> RGB"}),
        lambda p: Image.fromarray(cat).convert("CMYK").save(p, quality=90))
    add("cats/photo.png", ("convert", {"PNG -> JPEG"}), save(cat))
    add("cats/photo.bmp", ("convert", {"BMP -> JPEG"}), save(cat))
    add("cats/photo.tif", ("convert", {"TIFF -> JPEG"}), save(cat))

    def animated_gif(path):
        frames = [Image.fromarray(np.roll(cat, 30 * k, axis=1)).quantize(64) for k in range(3)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    add("cats/animated.gif", ("convert", {"GIF -> JPEG", "palette -> RGB",
                                          "first frame of an animation"}), animated_gif)
    add("coffee/grey16.png", ("convert", {"PNG -> JPEG", "16-bit greyscale -> 8-bit RGB"}),
        lambda p: Image.fromarray((camera.astype(np.uint16) * 257)).save(p))
    add("coffee/camera8.png", ("convert", {"PNG -> JPEG", "greyscale -> RGB"}), save(camera))
    add("coffee/rgb16.png", ("convert", {"PNG -> JPEG", "16-bit -> 8-bit"}),
        lambda p: write_png16_rgb(p, astro.astype(np.uint16) * 257))
    add("coffee/astronaut.png", ("convert", {"PNG -> JPEG"}), save(astro))

    def alpha_png(path):
        rgba = np.dstack([astro, np.full(astro.shape[:2], 255, np.uint8)])
        rgba[:, :256, 3] = 0  # the left half fully transparent
        Image.fromarray(rgba, "RGBA").save(path)
    add("coffee/alpha.png", ("convert", {"PNG -> JPEG", "alpha removed"}), alpha_png)

    def transparent_palette(path):
        im = Image.fromarray(coffee).quantize(32)
        im.save(path, transparency=0)
    add("coffee/palette.png", ("convert", {"PNG -> JPEG", "palette -> RGB", "alpha removed"}),
        transparent_palette)
    small = np.asarray(Image.fromarray(coffee).resize((120, 90)))
    add("coffee/small.jpg", ("convert", {"upscaled"}), save(small, quality=90))
    add("coffee/tiny_grey.png", ("convert", {"PNG -> JPEG", "greyscale -> RGB", "upscaled"}),
        save(np.asarray(Image.fromarray(camera).resize((30, 20)))))

    whole = jpeg_bytes(cat)
    add("cats/truncated.jpg", ("skip", "corrupt"), raw(whole[:len(whole) * 6 // 10]))
    add("cats/bad_header.jpg", ("skip", "corrupt"),
        raw(b"\xff\xd8" + np.random.default_rng(1).bytes(5000)))
    png = io.BytesIO()
    Image.fromarray(coffee).save(png, "PNG")
    add("coffee/truncated.png", ("skip", "corrupt"), raw(png.getvalue()[:len(png.getvalue()) // 2]))
    add("cats/notes.txt", ("skip", "not-an-image"), raw(b"a cat, photographed\n"))
    add("cats/empty.jpg", ("skip", "not-an-image"), raw(b""))
    add("coffee/fake.jpg", ("skip", "not-an-image"), raw(b"<html>not a photo</html>"))
    add("coffee/random.bin", ("skip", "not-an-image"), raw(np.random.default_rng(2).bytes(3000)))
    os.makedirs(os.path.join(root, "empty_class"))
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("a stray file outside the class folders\n")
    return expected


# ----------------------------------------------------------------------------- reading DST back

def read_batches(dst, numbers=None):
    """[(PIL image, label, source file)] of the stored batches, read without convnet's reader."""
    meta = json.load(open(os.path.join(dst, "meta.json")))
    numbers = numbers or meta["train_batches"] + meta["test_batches"]
    out = []
    for n in numbers:
        blob = open(os.path.join(dst, f"data_batch_{n}.bin"), "rb").read()
        with np.load(os.path.join(dst, f"data_batch_{n}.npz"), allow_pickle=False) as z:
            offsets, labels, files = z["offsets"], z["labels"], z["files"]
        for k in range(len(labels)):
            image = Image.open(io.BytesIO(blob[offsets[k]:offsets[k + 1]]))
            out.append((image, int(labels[k]), str(files[k])))
    return out


def short_side_centre_crop(path, size):
    """The paper's preprocessing done another way: resize the whole image (Lanczos), then crop
    the centre at whole pixels."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.Resampling.LANCZOS)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def change_keys(changes):
    return {c.split(":")[0].split(" (")[0] for c in changes}


# ----------------------------------------------------------------------------- tests

def test_prepare_imagenet_jpegs_rescaled_labelled_mean_and_pca(tmp_path):
    """foolbox's ImageNet JPEGs in class folders, two processes: 256x256 JPEGs with the right
    labels, the image content kept, the mean image and the RGB PCA of what was stored."""
    src = build_imagenet_tree(str(tmp_path / "src"))
    dst = str(tmp_path / "dst")
    report = prep.prepare(src, dst, test_fraction=0.5, images_per_batch=6, workers=2,
                          progress=False, out=io.StringIO())
    meta = json.load(open(os.path.join(dst, "meta.json")))
    classes = sorted(os.listdir(src))
    assert meta["label_names"] == classes and meta["image_size"] == 256
    assert report["counts"]["skipped"] == 0 and report["counts"]["converted"] == 0
    assert meta["num_train"] + meta["num_test"] == 20
    # a class with two images gives one to the test set; a class of one keeps it for training
    twice = [c for c in classes if len(os.listdir(os.path.join(src, c))) == 2]
    assert meta["num_test"] == len(twice) and twice

    stored = read_batches(dst)
    train_pixels = []
    for image, label, rel in stored:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (256, 256)
        assert rel.split(os.sep)[0] == classes[label]
        # compared at 64x64 (box filter): resampling filters differ in the fine detail only
        expected = short_side_centre_crop(os.path.join(src, rel), 256).reduce(4)
        difference = np.asarray(image.reduce(4), np.float64) - np.asarray(expected, np.float64)
        assert np.abs(difference).mean() < 3.0, rel
    for image, label, rel in read_batches(dst, meta["train_batches"]):
        train_pixels.append(np.asarray(image, np.float64))
    train_pixels = np.stack(train_pixels)

    mean = np.load(os.path.join(dst, "mean.npy"))
    assert mean.dtype == np.float32 and mean.shape == (3, 256, 256)
    # the mean is taken before JPEG encoding: the decoded JPEGs agree to JPEG's error
    assert np.abs(mean - train_pixels.mean(axis=0).transpose(2, 0, 1)).mean() < 1.0

    values = np.asarray(meta["rgb_eigenvalues"])
    vectors = np.asarray(meta["rgb_eigenvectors"])
    assert np.all(np.diff(values) <= 0) and values[-1] > 0
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-9)
    covariance = np.cov(train_pixels.reshape(-1, 3).T)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, covariance,
                               rtol=0.05, atol=0.02 * values[0])


def test_prepare_bad_inputs_converted_or_skipped_and_reported(tmp_path):
    """Every awkward file is converted (and listed with what was done) or skipped (with why);
    found = stored + skipped; empty class folders and stray files are reported too."""
    src = str(tmp_path / "src")
    expected = build_bad_input_tree(src)
    dst = str(tmp_path / "dst")
    report = prep.prepare(src, dst, test_fraction=0.0, workers=1, progress=False,
                          out=io.StringIO())
    counts = report["counts"]
    n_skip = sum(e[0] == "skip" for e in expected.values())
    assert counts["found"] == len(expected)
    assert counts["skipped"] == n_skip and counts["stored"] == len(expected) - n_skip
    assert counts["converted"] == sum(e[0] == "convert" for e in expected.values())
    assert counts["skipped_by_kind"] == {"corrupt": 3, "not-an-image": 4}
    skipped = {e["file"]: e for e in report["skipped"]}
    converted = {e["file"]: e for e in report["converted"]}
    for rel, expect in expected.items():
        if expect[0] == "skip":
            assert skipped[rel]["kind"] == expect[1], (rel, skipped[rel])
            assert rel not in converted
        elif expect[0] == "convert":
            assert change_keys(converted[rel]["changes"]) == expect[1], (rel, converted[rel])
        else:
            assert rel not in converted and rel not in skipped
    assert report["empty_class_folders"] == ["empty_class"]
    assert report["files_outside_class_folders"] == ["README.txt"]
    assert counts["conversions"]["upscaled"] == 2 and counts["conversions"]["PNG -> JPEG"] == 8
    text = open(os.path.join(dst, "report.txt")).read()
    for rel in list(skipped) + list(converted) + ["empty_class", "README.txt"]:
        assert rel in text
    assert json.load(open(os.path.join(dst, "report.json")))["counts"] == counts

    meta = json.load(open(os.path.join(dst, "meta.json")))
    assert meta["label_names"] == ["cats", "coffee", "empty_class"]
    stored = {rel: (image, label) for image, label, rel in read_batches(dst)}
    assert set(stored) == {r for r, e in expected.items() if e[0] != "skip"}
    for rel, (image, label) in stored.items():
        assert image.size == (256, 256) and image.mode == "RGB", rel
        assert meta["label_names"][label] == rel.split("/")[0]
    pixels = {rel: np.asarray(image, np.float64) for rel, (image, _) in stored.items()}
    grey = pixels["cats/grey.jpg"]
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 3 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 3
    assert np.abs(pixels["cats/cmyk.jpg"] - pixels["cats/plain.jpg"]).mean() < 6
    # 16-bit files keep their picture: the same as the 8-bit file of the same photo
    assert np.abs(pixels["coffee/grey16.png"] - pixels["coffee/camera8.png"]).mean() < 1.5
    assert np.abs(pixels["coffee/rgb16.png"] - pixels["coffee/astronaut.png"]).mean() < 1.5
    alpha = pixels["coffee/alpha.png"]
    assert alpha[:, :120].min() >= 245  # transparent half composited on white
    assert np.abs(alpha[:, 136:] - pixels["coffee/astronaut.png"][:, 136:]).mean() < 3


def test_prepare_rescales_short_side_and_crops_centre(tmp_path):
    """A wide, a tall and a small image whose centre square is white and whose sides are black:
    the stored image is the centre square, whatever the orientation or scale."""
    src = tmp_path / "src" / "shapes"
    src.mkdir(parents=True)
    for name, (h, w) in {"wide": (300, 600), "tall": (500, 250), "small": (60, 100)}.items():
        image = np.zeros((h, w, 3), np.uint8)
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image[top:top + side, left:left + side] = 255
        Image.fromarray(image).save(src / f"{name}.png")
    dst = str(tmp_path / "dst")
    prep.prepare(str(tmp_path / "src"), dst, size=64, test_fraction=0.0, workers=1,
                 progress=False, out=io.StringIO())
    for image, _, rel in read_batches(dst):
        pixels = np.asarray(image, np.int64)
        assert image.size == (64, 64)
        # the borders may blend with the black sides through the filter's support
        assert pixels[:, 3:-3].min() >= 235, rel


def test_prepare_train_val_layout_fashion(tmp_path):
    """train/ and val/ with class folders (Fashion-MNIST JPEGs): labels are the train class
    folders, val's images form the test batches, a val class without a train folder is
    reported and left out; every 28x28 greyscale image is upscaled and made RGB."""
    src = build_fashion_tree(str(tmp_path / "src"), 6, 3)
    os.makedirs(os.path.join(src, "val", "unknown_class"))
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(
        os.path.join(src, "val", "unknown_class", "x.jpg"))
    dst = str(tmp_path / "dst")
    report = prep.prepare(src, dst, size=32, images_per_batch=25, workers=1, progress=False,
                          out=io.StringIO())
    meta = json.load(open(os.path.join(dst, "meta.json")))
    assert meta["label_names"] == sorted(fashion_folder_name(i) for i in range(10))
    assert meta["num_train"] == 60 and meta["num_test"] == 30
    assert meta["train_batches"] == [1, 2, 3] and meta["test_batches"] == [4, 5]
    assert report["test_classes_not_in_train"] == [os.path.join("val", "unknown_class")]
    assert report["files_outside_class_folders"] == [os.path.join("val", "unknown_class", "x.jpg")]
    assert report["counts"]["conversions"] == {"greyscale -> RGB": 90, "upscaled": 90}
    for number, split in ((1, "train"), (4, "val")):
        for image, label, rel in read_batches(dst, [number]):
            assert rel.startswith(split + os.sep)
            assert rel.split(os.sep)[1] == meta["label_names"][label]


def test_prepare_resume_after_interrupt_keeps_finished_batches(tmp_path, monkeypatch):
    """Ctrl-C after two batches: the rerun converts only the rest (finished batches untouched,
    a leftover temporary file removed) and ends with exactly what an uninterrupted run makes."""
    src = build_photo_tree(str(tmp_path / "src"), classes=3, per_class=10)
    dst, clean = str(tmp_path / "dst"), str(tmp_path / "clean")
    options = dict(size=64, images_per_batch=5, test_fraction=0.2, workers=1, progress=False,
                   out=io.StringIO())
    real = prep.convert_batch
    calls, armed = [], [True]

    def stop_at_third(*args):
        calls.append(args[2].number)
        if armed[0] and len(calls) == 3:
            armed[0] = False
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(prep, "convert_batch", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(src, dst, **options)
    assert not os.path.exists(os.path.join(dst, "meta.json"))
    finished = calls[:2]
    written = {p: (os.stat(p).st_mtime_ns, os.stat(p).st_ino)
               for n in finished for p in prep.batch_paths(dst, n)}
    open(os.path.join(dst, "data_batch_9.bin.tmp-123"), "wb").write(b"half a batch")

    calls.clear()
    prep.prepare(src, dst, **options)
    plans = prep.plan_batches(prep.scan_source(src, 0.2), 5)
    assert sorted(calls) == [p.number for p in plans if p.number not in finished]
    assert written == {p: (os.stat(p).st_mtime_ns, os.stat(p).st_ino) for p in written}
    assert not any(".tmp-" in name for name in os.listdir(dst))

    calls.clear()
    prep.prepare(src, dst, **options)  # everything done: nothing converted again
    assert calls == []

    monkeypatch.setattr(prep, "convert_batch", real)
    prep.prepare(src, clean, **options)
    for plan in plans:
        for a, b in zip(prep.batch_paths(dst, plan.number), prep.batch_paths(clean, plan.number)):
            if a.endswith(".bin"):
                assert open(a, "rb").read() == open(b, "rb").read()
    meta, meta_clean = (json.load(open(os.path.join(d, "meta.json"))) for d in (dst, clean))
    meta.pop("source"), meta_clean.pop("source")
    assert meta == meta_clean
    assert np.array_equal(np.load(os.path.join(dst, "mean.npy")),
                          np.load(os.path.join(clean, "mean.npy")))


def test_prepare_changed_options_redo_batches_and_processes_match(tmp_path):
    """Another --quality redoes every batch; 2 processes write what 1 process writes."""
    src = build_photo_tree(str(tmp_path / "src"), classes=2, per_class=8)
    dst, single = str(tmp_path / "dst"), str(tmp_path / "single")
    common = dict(size=48, images_per_batch=4, test_fraction=0.25, progress=False)
    prep.prepare(src, dst, quality=90, workers=2, out=io.StringIO(), **common)
    prep.prepare(src, single, quality=90, workers=1, out=io.StringIO(), **common)
    names = sorted(n for n in os.listdir(dst) if n.endswith(".bin"))
    assert names and names == sorted(n for n in os.listdir(single) if n.endswith(".bin"))
    for name in names:
        assert open(os.path.join(dst, name), "rb").read() == \
            open(os.path.join(single, name), "rb").read()
    before = {n: os.path.getsize(os.path.join(dst, n)) for n in names}
    log = io.StringIO()
    prep.prepare(src, dst, quality=40, workers=1, out=log, **common)
    assert f"0 already done, {len(names)} to convert" in log.getvalue()
    assert all(os.path.getsize(os.path.join(dst, n)) < before[n] for n in names)
    assert json.load(open(os.path.join(dst, "meta.json")))["quality"] == 40


def test_prepare_cli_errors_exit_2(tmp_path, capsys):
    """convnet-prepare: a missing SRC, bad options, DST inside SRC, no class folders, or no
    usable image: exit status 2 and one line that says why (the report is still written)."""
    good = build_photo_tree(str(tmp_path / "good"), classes=1, per_class=2)
    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "d1")], "not a folder"),
        ([good, str(tmp_path / "d2"), "--quality", "0"], "--quality"),
        ([good, str(tmp_path / "d3"), "--size", "4"], "--size"),
        ([good, os.path.join(good, "out")], "inside SRC"),
        ([good, str(tmp_path / "d4"), "--workers", "0"], "--workers"),
    ]
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.jpg").write_bytes(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    cases.append(([str(loose), str(tmp_path / "d5")], "no class folders"))
    broken = tmp_path / "broken" / "only"
    broken.mkdir(parents=True)
    (broken / "a.jpg").write_bytes(b"junk")
    cases.append(([str(tmp_path / "broken"), str(tmp_path / "d6")], "no usable training image"))
    for argv, message in cases:
        assert prep.main(argv + ["--progress", "0"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.startswith("convnet-prepare: "), (argv, err)
    assert json.load(open(tmp_path / "d6" / "report.json"))["counts"]["skipped"] == 1
    assert prep.main([good, str(tmp_path / "ok"), "--size", "32", "--workers", "1",
                      "--progress", "0"]) == 0
    assert os.path.isfile(tmp_path / "ok" / "meta.json")


def test_prepare_reads_each_file_once_through_links_and_skips_special_files(tmp_path):
    """A link back to SRC, two links to '.', a second link to a class folder, a FIFO and a
    broken link: each image is stored once, in one split, and nothing hangs; what was not read
    is listed in the report."""
    src = build_photo_tree(str(tmp_path / "src"), classes=2, per_class=6)
    os.symlink("..", os.path.join(src, "class_0", "loop"))        # back to SRC
    os.symlink(".", os.path.join(src, "class_1", "self_a"))
    os.symlink(".", os.path.join(src, "class_1", "self_b"))
    os.symlink(os.path.join(src, "class_0"), os.path.join(src, "class_1", "again"))
    os.mkfifo(os.path.join(src, "class_1", "pipe.jpg"))
    os.symlink("missing.jpg", os.path.join(src, "class_0", "broken.jpg"))
    report = prep.prepare(src, str(tmp_path / "dst"), size=32, images_per_batch=5,
                          test_fraction=0.34, workers=1, progress=False, out=io.StringIO())
    c = report["counts"]
    assert c["found"] == c["stored"] == 12 and c["stored_test"] == 4
    why = {e["path"]: e["why"] for e in report["left_out"]}
    assert why == {"class_0/loop": "a link to a folder already included",
                   "class_1/self_a": "a link to a folder already included",
                   "class_1/self_b": "a link to a folder already included",
                   "class_1/again": "a link to a folder already included",
                   "class_1/pipe.jpg": "not a regular file",
                   "class_0/broken.jpg": "a broken link"}
    text = (tmp_path / "dst" / prep.REPORT_TEXT).read_text()
    assert "left out               6" in text and "class_1/pipe.jpg: not a regular file" in text
    files = [(name, label) for _, label, name in read_batches(str(tmp_path / "dst"))]
    assert len({name for name, _ in files}) == 12
    assert all(name.startswith(f"class_{label}/") and name.count("/") == 1
               for name, label in files)


def test_prepare_leaves_out_undecodable_file_names_and_refuses_such_class_names(tmp_path):
    src = build_photo_tree(str(tmp_path / "src"), classes=2, per_class=3)
    good = os.path.join(src, "class_0", "000.jpg")
    odd = os.fsencode(os.path.join(src, "class_0")) + b"/caf\xe9.jpg"      # Latin-1, not UTF-8
    with open(good, "rb") as f, open(odd, "wb") as g:
        g.write(f.read())
    report = prep.prepare(src, str(tmp_path / "dst"), size=32, workers=1, progress=False,
                          out=io.StringIO())
    assert report["left_out"] == [{"path": "class_0/caf\\xe9.jpg",
                                   "why": "its name is not valid UTF-8"}]
    assert "caf\\xe9.jpg" in (tmp_path / "dst" / prep.REPORT_TEXT).read_text()
    assert (tmp_path / "dst" / "meta.json").exists()
    os.mkdir(os.fsencode(src) + b"/\xffclass")
    assert prep.main([src, str(tmp_path / "dst2"), "--progress", "0"]) == 2
