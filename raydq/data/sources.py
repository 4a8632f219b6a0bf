"""Image sources -> Ray Data datasets of decoded, model-sized images.

Every source yields rows ``{id, uri, label, image, error}``: ``image`` a uint8 array (one shape per source),
``label`` the true label or -1, ``error`` '' for a good image or the reason it could not be decoded. Reading and
decoding run as CPU tasks; ids are stable (the path/URI, ``fashion-mnist/<split>/<index>``, or for byte sources an
id column or the bytes' SHA-256), so ids already embedded are skipped before anything is read where possible.
``uri`` is a locator that ``raydq.data.images`` reads the image back from: the file's path or URI,
``<idx file>#<index>`` for Fashion-MNIST, and for bytes in a table without a uri column
``<parquet/arrow path or URI>#row=<n>&column=<col>`` (n counts rows within that file).
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raydq.data.decode import BadImage, decode_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "hdfs://")
IMAGE_COLUMN_CANDIDATES = ("image", "image_bytes", "bytes", "img", "content", "data")
NO_LABEL = -1


@dataclass(frozen=True)
class DecodeSpec:
    """What decode tasks need to know about the model's input (taken from the encoder's preprocessing)."""

    size: int
    resize_mode: str = "shortest"
    interpolation: str = "bilinear"
    max_pixels: int = 100_000_000

    def decode(self, data: bytes) -> np.ndarray:
        return decode_image(
            data, size=self.size, resize_mode=self.resize_mode, interpolation=self.interpolation,
            max_pixels=self.max_pixels,
        )  # fmt: skip


@dataclass
class SourcePlan:
    """A source resolved on the driver: how many rows it has, which are already done, and how to read the rest."""

    description: str
    total: int | None  # rows selected (after --limit), known up front for listed sources
    skipped: int
    class_names: list[str] | None
    build: Any = field(repr=False)  # () -> ray.data.Dataset of the remaining rows

    def dataset(self):
        return self.build()


# --------------------------------------------------------------------------- Fashion-MNIST


def _block_rows(rows: int, rows_per_block: int, min_blocks: int) -> int:
    """Rows per block: at most ``rows_per_block``, small enough that ``min_blocks`` blocks feed every actor."""
    return max(1, min(rows_per_block, -(-rows // max(1, min_blocks))))


def plan_fashion_mnist(
    *, split: str, limit: int | None, seed: int, done: set[str], rows_per_block: int, min_blocks: int = 1
) -> SourcePlan:
    import pandas as pd
    import ray

    from raydq.data.fashion_mnist import CLASS_NAMES, fashion_mnist_id, fashion_mnist_root, load_fashion_mnist

    images, labels = load_fashion_mnist(split)
    index = np.arange(len(images))
    if limit is not None and limit < len(index):
        index = np.sort(np.random.default_rng(seed).choice(len(index), size=limit, replace=False))
    ids = [fashion_mnist_id(split, int(i)) for i in index]
    keep = [n for n, i in enumerate(ids) if i not in done]
    root = fashion_mnist_root()
    prefix = "train" if split == "train" else "t10k"

    def build():
        frames = []
        step = _block_rows(len(keep), rows_per_block, min_blocks)
        for start in range(0, len(keep), step):
            sel = keep[start : start + step]
            rows = index[sel]
            frames.append(
                pd.DataFrame(
                    {
                        "id": [ids[n] for n in sel],
                        "uri": [f"{root}/{prefix}-images-idx3-ubyte.gz#{int(i)}" for i in rows],
                        "label": labels[rows],
                        "image": list(images[rows]),  # 28x28 uint8: resized to the model's size inside the actor
                        "error": [""] * len(sel),
                    }
                )
            )
        if not frames:
            return None
        return ray.data.from_pandas(frames)

    return SourcePlan(
        description=f"fashion-mnist:{split}",
        total=len(ids),
        skipped=len(ids) - len(keep),
        class_names=list(CLASS_NAMES),
        build=build,
    )


# --------------------------------------------------------------------------- files and object-store URIs


def _is_remote(source: str) -> bool:
    return source.startswith(OBJECT_STORE_SCHEMES)


def list_image_files(source: str) -> list[str]:
    """A folder (recursive), a glob, a single file, or an object-store prefix -> sorted image paths/URIs."""
    if _is_remote(source):
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(source)
        scheme = source.split("://", 1)[0]
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            return [source]
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = (i.path for i in infos if i.type == pafs.FileType.File)
        return sorted(f"{scheme}://{p}" for p in files if p.lower().endswith(IMAGE_EXTENSIONS))
    if any(ch in source for ch in "*?["):
        paths = glob.glob(source, recursive=True)
    elif Path(source).is_dir():
        paths = [str(p) for p in Path(source).rglob("*") if p.is_file()]
    elif Path(source).is_file():
        return [str(Path(source).resolve())]
    else:
        raise ValueError(f"source {source!r}: no such folder, file or glob")
    return sorted(str(Path(p).resolve()) for p in paths if p.lower().endswith(IMAGE_EXTENSIONS) and Path(p).is_file())


def _read_bytes(uri: str) -> bytes:
    if _is_remote(uri):
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as f:
            return f.read()
    with open(uri, "rb") as f:
        return f.read()


def decode_files_batch(batch: dict[str, np.ndarray], decode: DecodeSpec) -> dict[str, np.ndarray]:
    """Ray Data task: read and decode each file of the batch; failures become rows with ``error`` set."""
    uris = batch["uri"]
    images = np.zeros((len(uris), decode.size, decode.size, 3), dtype=np.uint8)
    errors = []
    for n, uri in enumerate(uris):
        try:
            images[n] = decode.decode(_read_bytes(str(uri)))
            errors.append("")
        except BadImage as e:
            errors.append(str(e))
        except OSError as e:
            errors.append(f"unreadable: {e}")
    return {
        "id": np.asarray(uris, dtype=object),
        "uri": np.asarray(uris, dtype=object),
        "label": np.full(len(uris), NO_LABEL, dtype=np.int64),
        "image": images,
        "error": np.asarray(errors, dtype=object),
    }


def plan_files(
    source: str, *, limit: int | None, seed: int, done: set[str], decode: DecodeSpec, rows_per_block: int,
    num_cpus: float, min_blocks: int = 1,
) -> SourcePlan:  # fmt: skip
    import ray

    uris = list_image_files(source)
    if not uris:
        raise ValueError(f"source {source!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if limit is not None and limit < len(uris):
        chosen = np.sort(np.random.default_rng(seed).choice(len(uris), size=limit, replace=False))
        uris = [uris[i] for i in chosen]
    todo = [u for u in uris if u not in done]

    def build():
        if not todo:
            return None
        step = _block_rows(len(todo), rows_per_block, min_blocks)
        ds = ray.data.from_items([{"uri": u} for u in todo], override_num_blocks=-(-len(todo) // step))
        return ds.map_batches(decode_files_batch, fn_kwargs={"decode": decode}, batch_size=step, num_cpus=num_cpus)

    return SourcePlan(description=source, total=len(uris), skipped=len(uris) - len(todo), class_names=None, build=build)


# --------------------------------------------------------------------------- Parquet / Arrow tables of bytes


def _image_bytes(value: Any) -> bytes:
    """A cell of the image column: raw bytes, or a Hugging Face-style struct {'bytes': ..., 'path': ...}."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return b""
    return bytes(value)


def content_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_SKIP_CACHE: dict[Any, frozenset[str]] = {}


def _skip_set(ref: Any) -> frozenset[str]:
    """The done-id set, fetched once per worker process from the object store."""
    import ray

    if ref is None:
        return frozenset()
    key = ref.hex()
    if key not in _SKIP_CACHE:
        _SKIP_CACHE.clear()
        _SKIP_CACHE[key] = ray.get(ref)
    return _SKIP_CACHE[key]


def decode_bytes_batch(
    batch: dict[str, np.ndarray],
    decode: DecodeSpec,
    image_column: str,
    id_column: str | None,
    label_column: str | None,
    uri_column: str | None,
    done_ref: Any,
) -> dict[str, np.ndarray]:
    """Ray Data task: ids (id column or content hash), skip the done ones, decode the rest."""
    done = _skip_set(done_ref)
    raw = [_image_bytes(v) for v in batch[image_column]]
    ids = [str(v) for v in batch[id_column]] if id_column else [content_id(b) for b in raw]
    keep = [n for n, i in enumerate(ids) if i not in done]
    images = np.zeros((len(keep), decode.size, decode.size, 3), dtype=np.uint8)
    errors = []
    for k, n in enumerate(keep):
        try:
            images[k] = decode.decode(raw[n])
            errors.append("")
        except BadImage as e:
            errors.append(str(e))
    labels = (
        np.asarray([NO_LABEL if v is None else int(v) for v in batch[label_column][keep]], dtype=np.int64)
        if label_column
        else np.full(len(keep), NO_LABEL, dtype=np.int64)
    )
    # The table's own uri where it has one, else the cell's locator (raydq.data.images reads the image back from it).
    located = batch[LOCATOR_COLUMN]
    own = batch[uri_column] if uri_column else [None] * len(raw)
    uris = [str(own[n]) if own[n] else str(located[n]) for n in keep]
    return {
        "id": np.asarray([ids[n] for n in keep], dtype=object),
        "uri": np.asarray(uris, dtype=object),
        "label": labels,
        "image": images,
        "error": np.asarray(errors, dtype=object),
    }


LOCATOR_COLUMN = "__raydq_locator"


def cell_locator(path: str, row: int, column: str) -> str:
    """The ``uri`` of an image stored as bytes in a table: row ``row`` (0-based, in that file) of ``column``."""
    return f"{path}#row={row}&column={column}"


def _locator_path(file: str, source: str) -> str:
    """A dataset file as a locator path: absolute when local, with its scheme back when in an object store."""
    if _is_remote(source):
        scheme = source.split("://", 1)[0]
        return file if "://" in file else f"{scheme}://{file}"
    return str(Path(file).resolve())


def parquet_units(dataset: Any, source: str, limit: int | None) -> list[dict[str, Any]]:
    """One read unit per row group ``{path, locator_path, row_group, first_row, rows}`` (from the files' footers),
    so every row knows its position in its file; cut after ``limit`` rows in file order."""
    units: list[dict[str, Any]] = []
    left = limit if limit is not None else -1
    for fragment in dataset.get_fragments():
        first = 0
        for group in fragment.row_groups:
            rows = group.num_rows
            if left == 0:
                return units
            take = rows if left < 0 else min(rows, left)
            units.append(
                {
                    "path": fragment.path,
                    "locator_path": _locator_path(fragment.path, source),
                    "row_group": group.id,
                    "first_row": first,
                    "rows": take,
                }
            )
            left = left - take if left > 0 else left
            first += rows
    return units


def read_parquet_unit(batch: dict[str, np.ndarray], columns: list[str], image_column: str):
    """Ray Data task: read one row group's ``columns`` and add each row's locator."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    path, locator_path = str(batch["path"][0]), str(batch["locator_path"][0])
    first, rows = int(batch["first_row"][0]), int(batch["rows"][0])
    if locator_path.startswith(OBJECT_STORE_SCHEMES):
        fs, inner = pafs.FileSystem.from_uri(locator_path)
    else:
        fs, inner = pafs.LocalFileSystem(), path
    table = pq.ParquetFile(inner, filesystem=fs).read_row_group(int(batch["row_group"][0]), columns=columns)
    table = table.slice(0, rows)
    locators = [cell_locator(locator_path, first + n, image_column) for n in range(table.num_rows)]
    return table.append_column(LOCATOR_COLUMN, pa.array(locators, type=pa.string()))


def is_parquet_source(source: str) -> bool:
    if source.endswith((".parquet", ".arrow", ".feather")):
        return True
    p = Path(source)
    return (
        p.is_dir() and any(p.glob("*.parquet")) and not any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir())
    )


def plan_parquet(
    source: str, *, limit: int | None, done: set[str], decode: DecodeSpec, image_column: str | None,
    id_column: str | None, label_column: str | None, rows_per_block: int, num_cpus: float,
) -> SourcePlan:  # fmt: skip
    import pyarrow as pa
    import pyarrow.dataset as pads
    import ray

    fmt = "ipc" if source.endswith((".arrow", ".feather")) else "parquet"
    dataset = pads.dataset(source, format=fmt)  # opened once: the schema, the row count and the done-id scan
    names = dataset.schema.names
    if image_column is None:
        image_column = next((c for c in IMAGE_COLUMN_CANDIDATES if c in names), None)
        if image_column is None:
            raise ValueError(f"{source}: no image bytes column found; set image_column (columns: {names})")
    elif image_column not in names:
        raise ValueError(f"image_column {image_column!r} is not a column of {source} (columns: {names})")
    if id_column is None and "id" in names:
        id_column = "id"
    elif id_column is not None and id_column not in names:
        raise ValueError(f"id_column {id_column!r} is not a column of {source} (columns: {names})")
    if label_column is None and "label" in names:
        label_column = "label"
    elif label_column is not None and label_column not in names:
        raise ValueError(f"label_column {label_column!r} is not a column of {source} (columns: {names})")
    uri_column = next((c for c in ("uri", "path", "url") if c in names), None)
    columns = [c for c in dict.fromkeys([image_column, id_column, label_column, uri_column]) if c]
    total = dataset.count_rows()
    if limit is not None:
        total = min(total, limit)
    skipped = 0
    if id_column is not None and done:
        ids = dataset.to_table(columns=[id_column]).column(id_column).to_pylist()
        ids = ids[:total]
        skipped = sum(1 for i in ids if str(i) in done)

    def build():
        if fmt == "parquet":
            units = parquet_units(dataset, source, limit)
            ds = ray.data.from_items(units, override_num_blocks=max(1, len(units))).map_batches(
                read_parquet_unit,
                fn_kwargs={"columns": columns, "image_column": image_column},
                batch_size=1,
                num_cpus=num_cpus,
            )
        else:
            table = dataset.to_table(columns=columns)
            if limit is not None:
                table = table.slice(0, limit)
            path = _locator_path(dataset.files[0], source)
            locators = [cell_locator(path, n, image_column) for n in range(table.num_rows)]
            ds = ray.data.from_arrow(table.append_column(LOCATOR_COLUMN, pa.array(locators, type=pa.string())))
        done_ref = ray.put(frozenset(done)) if done else None
        return ds.map_batches(
            decode_bytes_batch,
            fn_kwargs={
                "decode": decode, "image_column": image_column, "id_column": id_column,
                "label_column": label_column, "uri_column": uri_column, "done_ref": done_ref,
            },
            batch_size=rows_per_block,
            num_cpus=num_cpus,
        )  # fmt: skip

    # Without an id column the ids are content hashes, known only after reading: skips are counted as they happen.
    return SourcePlan(description=source, total=total, skipped=skipped, class_names=None, build=build)


def plan_source(
    source: str, *, split: str, limit: int | None, seed: int, done: set[str], decode: DecodeSpec,
    image_column: str | None = None, id_column: str | None = None, label_column: str | None = None,
    rows_per_block: int = 256, num_cpus: float = 1.0, min_blocks: int = 1,
) -> SourcePlan:  # fmt: skip
    """Resolve ``source`` (fashion-mnist | folder/glob/file | object-store URI | Parquet of bytes)."""
    if source == "fashion-mnist":
        return plan_fashion_mnist(
            split=split, limit=limit, seed=seed, done=done, rows_per_block=rows_per_block, min_blocks=min_blocks
        )
    if is_parquet_source(source):
        return plan_parquet(
            source, limit=limit, done=done, decode=decode, image_column=image_column, id_column=id_column,
            label_column=label_column, rows_per_block=rows_per_block, num_cpus=num_cpus,
        )  # fmt: skip
    if _is_remote(source) or os.path.exists(source) or any(ch in source for ch in "*?["):
        return plan_files(
            source, limit=limit, seed=seed, done=done, decode=decode, rows_per_block=rows_per_block,
            num_cpus=num_cpus, min_blocks=min_blocks,
        )  # fmt: skip
    raise ValueError(
        f"source {source!r}: expected 'fashion-mnist', a folder/glob of images, an s3:// or gs:// URI, "
        "or a .parquet file/folder with image bytes"
    )
