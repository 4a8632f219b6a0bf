"""An item's image read back from its source through the ``uri`` locator the embed job stored, re-encoded for a
browser (what ``GET /items/{id}/image`` and the labeling tools show).

Locators (one per row of every source, written by ``raydq.data.sources``):

- ``/path/to/file.jpg``, ``file:///path``, ``s3://bucket/key.png``, ``gs://...``: the file itself;
- ``<parquet or arrow file>#row=<n>&column=<col>``: the bytes in row ``n`` (0-based, in the file) of column ``col``;
- ``<...-images-idx3-ubyte.gz>#<index>``: image ``index`` of an idx file (Fashion-MNIST).

Work is bounded: files larger than ``max_bytes`` and images with more than ``max_pixels`` pixels are refused before
they are decoded (the limit of ``raydq.data.decode``), and thumbnails are 16..1024 pixels on their longest side.
Every failure is an ``ImageSourceError`` that names the locator.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import warnings
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

import numpy as np
from PIL import Image, ImageOps

from raydq.data.decode import DEFAULT_MAX_PIXELS, _to_rgb

MIN_SIZE, MAX_SIZE = 16, 1024
DEFAULT_MAX_BYTES = 64 << 20  # one image file; a larger one is refused unread
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://")
ImageFormat = Literal["png", "jpeg"]
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
_IDX_FRAGMENT = re.compile(r"^(?P<path>.+\.(?:gz|idx3-ubyte|ubyte))#(?P<index>\d+)$")


class ImageSourceError(Exception):
    """An item's image cannot be served: the source is unreadable, missing, too large or not an image.

    ``locator`` names the source and ``reason`` says what is wrong; ``missing`` is true when the source does not
    exist (a 404-like case for the caller) rather than being unreadable."""

    def __init__(self, locator: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(f"image source {locator!r}: {reason}")
        self.locator, self.reason, self.missing = locator, reason, missing


@dataclass(frozen=True)
class EncodedImage:
    """A browser-ready image: encoded ``data`` and its ``media_type``, plus the pixel size sent."""

    data: bytes
    media_type: str
    width: int
    height: int


@dataclass(frozen=True)
class Locator:
    """A parsed ``uri``: ``kind`` is file | parquet | idx; ``path`` the file or object-store URI."""

    kind: Literal["file", "parquet", "idx"]
    path: str
    row: int | None = None
    column: str | None = None

    @classmethod
    def parse(cls, uri: str) -> Locator:
        if not uri or not isinstance(uri, str):
            raise ImageSourceError(str(uri), "empty locator")
        path, sep, fragment = uri.partition("#")
        if not sep:
            return cls("file", path.removeprefix("file://"))
        if fragment.startswith("row="):
            params = parse_qs(fragment, strict_parsing=False)
            rows, columns = params.get("row", []), params.get("column", [])
            if len(rows) != 1 or not rows[0].isdigit() or len(columns) != 1 or not columns[0]:
                raise ImageSourceError(uri, "expected '#row=<n>&column=<name>' after a Parquet path")
            return cls("parquet", path.removeprefix("file://"), int(rows[0]), columns[0])
        m = _IDX_FRAGMENT.match(uri)
        if m:
            return cls("idx", m.group("path").removeprefix("file://"), int(m.group("index")))
        raise ImageSourceError(uri, f"unknown locator fragment '#{fragment}'")


def read_item_image(
    uri: str,
    *,
    size: int | None = None,
    image_format: ImageFormat | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> EncodedImage:
    """The image at ``uri`` as PNG or JPEG, at most ``size`` pixels on its longest side (never enlarged).

    ``image_format`` None keeps JPEG for JPEG sources and uses PNG otherwise (lossless for drawings and small
    grayscale images, no PNG-bloat for photos). Raises ``ValueError`` for a bad ``size`` or format and
    ``ImageSourceError`` naming ``uri`` for everything wrong with the source."""
    if size is not None and not (MIN_SIZE <= size <= MAX_SIZE):
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    if image_format is not None and image_format not in _MEDIA_TYPES:
        raise ValueError(f"image_format must be one of {sorted(_MEDIA_TYPES)}, got {image_format!r}")
    loc = Locator.parse(uri)
    if loc.kind == "idx":
        im, source_format = Image.fromarray(_idx_image(uri, loc.path, loc.row or 0)), "PNG"
    else:
        data = _parquet_cell(uri, loc, max_bytes) if loc.kind == "parquet" else _read_file(uri, loc.path, max_bytes)
        im, source_format = _open(uri, data, max_pixels)
    if size is not None:
        im.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    fmt = image_format or ("jpeg" if source_format == "JPEG" else "png")
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.convert("RGB").save(buf, "JPEG", quality=90)
    else:
        im.save(buf, "PNG", optimize=False)
    return EncodedImage(data=buf.getvalue(), media_type=_MEDIA_TYPES[fmt], width=im.width, height=im.height)


# --------------------------------------------------------------------------- reading


def _filesystem(uri: str, path: str):
    """(pyarrow filesystem, path inside it) for a local path or an object-store URI."""
    import pyarrow.fs as pafs

    try:
        if path.startswith(OBJECT_STORE_SCHEMES):
            return pafs.FileSystem.from_uri(path)
        return pafs.LocalFileSystem(), os.path.abspath(path)
    except (OSError, ValueError) as e:
        raise ImageSourceError(uri, f"cannot open its filesystem: {e}") from None


def _read_file(uri: str, path: str, max_bytes: int) -> bytes:
    import pyarrow.fs as pafs

    fs, inner = _filesystem(uri, path)
    try:
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise ImageSourceError(uri, "no such file", missing=True)
        if info.type != pafs.FileType.File:
            raise ImageSourceError(uri, "not a file")
        if info.size is not None and info.size > max_bytes:
            raise ImageSourceError(uri, f"file of {info.size} bytes exceeds max_bytes={max_bytes}")
        with fs.open_input_stream(inner) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ImageSourceError(uri, f"unreadable: {e}") from None
    if len(data) > max_bytes:
        raise ImageSourceError(uri, f"file exceeds max_bytes={max_bytes}")
    return data


@functools.lru_cache(maxsize=16)
def _parquet_metadata(path: str, mtime_ns: int | None):
    """Row-group boundaries of one Parquet file, cached per (path, modification time)."""
    import pyarrow.parquet as pq

    fs, inner = _filesystem(path, path)
    meta = pq.ParquetFile(inner, filesystem=fs).metadata
    starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return meta.num_rows, starts, meta.schema.to_arrow_schema().names


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if not path.startswith(OBJECT_STORE_SCHEMES) else None
    except OSError:
        return None


def _parquet_cell(uri: str, loc: Locator, max_bytes: int) -> bytes:
    """The bytes in one cell, reading only the row group (and column) that holds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row, column = loc.row or 0, loc.column or ""
    try:
        if loc.path.endswith((".arrow", ".feather")):
            fs, inner = _filesystem(uri, loc.path)
            with fs.open_input_file(inner) as f:
                table = pa.ipc.open_file(f).read_all()
            if column not in table.column_names:
                raise ImageSourceError(uri, f"no column {column!r} (columns: {table.column_names})")
            if row >= table.num_rows:
                raise ImageSourceError(uri, f"row {row} is past the table's {table.num_rows} rows", missing=True)
            value = table.column(column)[row].as_py()
        else:
            if not loc.path.startswith(OBJECT_STORE_SCHEMES) and not os.path.isfile(loc.path):
                raise ImageSourceError(uri, "no such Parquet file", missing=True)
            num_rows, starts, names = _parquet_metadata(loc.path, _mtime(loc.path))
            if column not in names:
                raise ImageSourceError(uri, f"no column {column!r} (columns: {names})")
            if row >= num_rows:
                raise ImageSourceError(uri, f"row {row} is past the file's {num_rows} rows", missing=True)
            group = int(np.searchsorted(starts, row, side="right") - 1)
            fs, inner = _filesystem(uri, loc.path)
            table = pq.ParquetFile(inner, filesystem=fs).read_row_group(group, columns=[column])
            value = table.column(column)[row - int(starts[group])].as_py()
    except ImageSourceError:
        raise
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ImageSourceError(uri, f"unreadable: {e}") from None
    if isinstance(value, dict):  # a Hugging Face-style {'bytes': ..., 'path': ...} struct
        value = value.get("bytes")
    if not value:
        raise ImageSourceError(uri, "the cell holds no bytes")
    if not isinstance(value, bytes | bytearray):
        raise ImageSourceError(uri, f"the cell holds {type(value).__name__}, not image bytes")
    if len(value) > max_bytes:
        raise ImageSourceError(uri, f"cell of {len(value)} bytes exceeds max_bytes={max_bytes}")
    return bytes(value)


@functools.lru_cache(maxsize=4)
def _idx_array(path: str, mtime_ns: int | None) -> np.ndarray:
    """A whole idx file decompressed once (Fashion-MNIST train: 47 MB) and kept for later items."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] not in (2, 3):
        raise ValueError("not an idx file of uint8 images")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape if ndim == 3 else (1, *shape))


def _idx_image(uri: str, path: str, index: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise ImageSourceError(uri, "no such idx file", missing=True)
    try:
        images = _idx_array(path, _mtime(path))
    except (OSError, ValueError, EOFError) as e:
        raise ImageSourceError(uri, f"unreadable idx file: {e}") from None
    if index >= len(images):
        raise ImageSourceError(uri, f"index {index} is past the file's {len(images)} images", missing=True)
    return np.array(images[index])


def _open(uri: str, data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Decode with the pixel cap checked from the header before any pixel is decoded; EXIF rotation applied."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: our own cap applies
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageSourceError(uri, f"too large: {w}x{h} = {w * h} pixels > max_pixels={max_pixels}")
            if w == 0 or h == 0:
                raise ImageSourceError(uri, f"degenerate size {w}x{h}")
            source_format = im.format or ""
            im.load()
            im = ImageOps.exif_transpose(im)
    except ImageSourceError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageSourceError(uri, f"too large (decompression bomb): {e}") from None
    except Image.UnidentifiedImageError:
        raise ImageSourceError(uri, "not an image (unidentified format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageSourceError(uri, f"truncated or corrupt: {e}") from None
    if im.mode not in ("RGB", "L"):
        im = _to_rgb(im)
    return im, source_format
