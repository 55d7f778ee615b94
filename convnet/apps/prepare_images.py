"""convnet-prepare's conversion: one image file -> a size x size RGB JPEG (or the reason it is
skipped), and one planned batch -> its files in the prepared-set format (data/prepared.py) with
the sums the mean image and the PCA need."""
import io
import json
import os
import time
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.prepared import write_batch
from .prepare_source import batch_digest

PCA_STRIDE = 4  # the PCA uses every 4th pixel of every 4th row of each training image
IMAGE_SIGNATURES = ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


# ----------------------------------------------------------------------------- one image

class SkipImage(Exception):
    """An image that cannot be stored: `kind` is a short key for the report's counts."""

    def __init__(self, kind, reason):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _is_16bit(im):
    """True when the file stores 16 bits per sample (Pillow may still open it as 8-bit RGB)."""
    if im.mode.startswith("I;16"):
        return True
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else (
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else "")
        if "16" in rawmode:
            return True
    return False


def _to_rgb(im, changes):
    """`im` as 8-bit RGB; each conversion is appended to `changes`."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 0..65535 -> 0..255
        changes.append(f"{'16' if mode != 'I' else '32'}-bit greyscale -> 8-bit RGB")
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        values = np.asarray(im).astype(np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        changes.append("32-bit float greyscale -> 8-bit RGB")
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode == "P" and "transparency" in im.info) or (
        mode in ("L", "RGB") and "transparency" in im.info)
    if mode in ("P", "PA"):
        changes.append("palette -> RGB")
    elif mode in ("1",):
        changes.append("1-bit -> RGB")
    elif mode in ("L", "LA", "La"):
        changes.append("greyscale -> RGB")
    elif mode not in ("RGB", "RGBA", "RGBa"):
        changes.append(f"{mode} -> RGB")
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        changes.append("alpha removed (composited on white)")
        return white.convert("RGB")
    return im if mode == "RGB" else im.convert("RGB")


def convert_image(path, size=256, quality=90):
    """(JPEG bytes, uint8 (size, size, 3) pixels, [changes]) for one image file, or SkipImage.

    The short side is rescaled to `size` (bicubic; large JPEGs are first reduced by the
    decoder's DCT scaling, which keeps both sides >= size), then the centre is cropped.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise SkipImage("unreadable", f"cannot read: {exc.strerror or exc}") from None
    if not raw:
        raise SkipImage("not-an-image", "empty file")
    changes = []
    fmt = "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw))
            fmt = im.format or "image"
            frames = getattr(im, "n_frames", 1)
            sixteen = _is_16bit(im)
            if fmt == "JPEG":
                im.draft(None, (size, size))
            im.load()
    except Image.DecompressionBombError as exc:
        raise SkipImage("too-large", f"too many pixels ({exc})") from None
    except UnidentifiedImageError:
        known = next((name for magic, name in IMAGE_SIGNATURES if raw.startswith(magic)), None)
        if known:
            raise SkipImage("corrupt", f"corrupt {known}: starts like one, but cannot be "
                                       f"read") from None
        raise SkipImage("not-an-image", "not an image Pillow can read") from None
    except Exception as exc:  # truncated and corrupt files raise many different types
        raise SkipImage("corrupt", f"truncated or corrupt {fmt}: {exc}") from None
    width, height = im.size
    if width < 1 or height < 1:
        raise SkipImage("corrupt", f"{fmt} of size {width}x{height}")
    if fmt != "JPEG":
        changes.append(f"{fmt} -> JPEG")
    if frames > 1:
        changes.append(f"first frame of an animation ({frames} frames)")
    if sixteen and not im.mode.startswith("I;16"):
        changes.append("16-bit -> 8-bit")
    try:
        im = _to_rgb(im, changes)
    except Exception as exc:
        raise SkipImage("corrupt", f"cannot convert {fmt} mode {im.mode} to RGB: {exc}") from None
    short = min(width, height)
    if short < size:
        changes.append(f"upscaled: short side {short} < {size}")
    if (width, height) != (size, size):
        left, top = (width - short) / 2.0, (height - short) / 2.0
        im = im.resize((size, size), Image.Resampling.BICUBIC,
                       box=(left, top, left + short, top + short))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), np.asarray(im), changes


# ----------------------------------------------------------------------------- one batch

def convert_batch(src, dst, plan, size, quality):
    """Convert one planned batch and write its .bin then its .npz index; returns a summary."""
    started = time.monotonic()
    blobs, labels, files, converted, skipped = [], [], [], [], []
    pixel_sum = np.zeros((size, size, 3), np.uint64)
    rgb_sum, rgb_outer, rgb_count = np.zeros(3), np.zeros((3, 3)), 0
    for rel, label in plan.entries:
        try:
            jpeg, pixels, changes = convert_image(os.path.join(src, rel), size, quality)
        except SkipImage as skip:
            skipped.append({"file": rel, "kind": skip.kind, "reason": skip.reason})
            continue
        blobs.append(jpeg)
        labels.append(label)
        files.append(rel)
        if changes:
            converted.append({"file": rel, "changes": changes})
        pixel_sum += pixels
        sample = pixels[::PCA_STRIDE, ::PCA_STRIDE].reshape(-1, 3).astype(np.float64)
        rgb_sum += sample.sum(axis=0)
        rgb_outer += sample.T @ sample
        rgb_count += len(sample)
    report = {"converted": converted, "skipped": skipped}
    write_batch(dst, plan.number, blobs, labels, files, {
        "digest": np.asarray(batch_digest(plan, size, quality)),
        "split": np.asarray(plan.split), "report": np.asarray(json.dumps(report)),
        "pixel_sum": pixel_sum, "rgb_sum": rgb_sum, "rgb_outer": rgb_outer,
        "rgb_count": np.int64(rgb_count),
    })
    return {"number": plan.number, "stored": len(blobs), "converted": len(converted),
            "skipped": len(skipped), "seconds": time.monotonic() - started}
