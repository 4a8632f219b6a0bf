"""Small real image files for the embed tests: good ones in every format the job reads, and bad ones of each kind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgb(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A random RGB image (width, height); different seeds give different pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def good_images() -> dict[str, bytes]:
    """name -> bytes of images the job must embed (convertible oddities included)."""
    sixteen = np.random.default_rng(7).integers(0, 65536, (24, 24), dtype=np.uint16)
    return {
        "a.jpg": encode(rgb(1), "JPEG"),
        "b.png": encode(rgb(2), "PNG"),
        "c.webp": encode(rgb(3), "WEBP"),
        "d.bmp": encode(rgb(4), "BMP"),
        "e.tiff": encode(rgb(5), "TIFF"),
        "cmyk.jpg": encode(rgb(6).convert("CMYK"), "JPEG"),
        "gray16.png": encode(Image.fromarray(sixteen), "PNG"),
        "palette_transparent.png": encode(rgb(8).convert("P"), "PNG", transparency=0),
    }


def bad_images() -> dict[str, bytes]:
    """name -> bytes of files the job must report and skip (the size cap is exercised with max_pixels)."""
    jpeg = encode(rgb(9, (48, 40)), "JPEG")
    return {
        "empty.png": b"",
        "not_an_image.jpg": b"this is a text file with an image extension\n",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
    }


def write_folder(folder: Path, files: dict[str, bytes], *, subfolder: str | None = None) -> list[Path]:
    paths = []
    for n, (name, data) in enumerate(files.items()):
        target = folder / subfolder if subfolder and n % 2 else folder
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
        paths.append((target / name).resolve())
    return paths
