"""Bytes -> fixed-size RGB uint8 arrays, turning every way an image can be bad into a reason instead of a crash.

Convertible oddities are converted, not rejected: CMYK, 16-bit, palette with transparency, alpha, EXIF rotation.
Unreadable ones (empty, not an image, truncated, too many pixels) raise ``BadImage`` with a short reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps

# A 100-megapixel cap by default: well above any photo worth embedding, well below a decompression bomb.
DEFAULT_MAX_PIXELS = 100_000_000
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class BadImage(ValueError):
    """An image that cannot be embedded; ``str(exc)`` is the reason written to the failure report."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited over white; 16/32-bit and float data are rescaled, not clipped."""
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if im.mode == "F":
            lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
            arr, top = arr - lo, max(hi - lo, 1e-12)
        gray = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _resize(im: Image.Image, size: int, resize_mode: str, interpolation: str) -> Image.Image:
    resample = _RESAMPLE.get(interpolation, Image.Resampling.BILINEAR)
    w, h = im.size
    if resize_mode == "shortest" and w != h:
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), resample, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        return im.crop((left, top, left + size, top + size))
    if (w, h) == (size, size):
        return im
    return im.resize((size, size), resample, reducing_gap=3.0)


def decode_image(
    data: bytes,
    *,
    size: int,
    resize_mode: str = "shortest",
    interpolation: str = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Encoded image bytes -> (size, size, 3) uint8 RGB. Raises ``BadImage`` with a reason."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: we apply our own cap below
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise BadImage(f"too large: {w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
            if w == 0 or h == 0:
                raise BadImage(f"degenerate size {w}x{h}")
            if im.format == "JPEG":
                im.draft("RGB", (size, size))  # decode at a reduced scale when the JPEG allows it
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
            im = _resize(im, size, resize_mode, interpolation)
            arr = np.asarray(im, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large (decompression bomb): {e}") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (unidentified format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"truncated or corrupt: {e}") from None
    if arr.shape != (size, size, 3):
        raise BadImage(f"decoded to unexpected shape {arr.shape}")
    return arr
