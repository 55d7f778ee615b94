"""JPEG -> crops: the decoders (simplejpeg or Pillow, both optional imports: one is needed for
the image provider) and the crops of one batch cut out of each decoded image, mirrored or not.

Decoders return RGBX: uint8 (H, W, 4), the fourth byte unused. Four-byte pixels make the crop
and the mirror image one uint32 copy each (a mirror of 3-byte pixels costs as much as the
decode in NumPy), and both libraries produce RGBX as cheaply as RGB.
"""
import io
import threading

import numpy as np

from .common import DataError


# ----------------------------------------------------------------------------- decoding

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
