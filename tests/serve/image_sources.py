"""Embedding stores over three kinds of image source, with the ``uri`` locators the embed job's real source plans
record (an image folder, a Parquet table of image bytes, Fashion-MNIST), so the item-image endpoint is tested on
what the job writes. The embeddings are random: these tests read images back, they do not select."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raydq.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from raydq.data.sources import DecodeSpec, plan_source
from raydq.pool.store import Manifest, write_manifest
from tests.embed.images import encode, rgb, write_folder

DIM = 8


def _rows(source: str, **kw) -> list[dict]:
    plan = plan_source(source, split=kw.pop("split", "train"), limit=kw.pop("limit", None), seed=0, done=set(),
                       decode=DecodeSpec(size=16), rows_per_block=4, **kw)  # fmt: skip
    return plan.dataset().take_all()


def _store(directory: Path, rows: list[dict], classes: list[str]) -> Path:
    ids = [str(r["id"]) for r in rows]
    X = np.random.default_rng(0).normal(size=(len(ids), DIM)).astype(np.float32)
    directory.mkdir(parents=True)
    table = pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM),
                      "uri": [str(r["uri"]) for r in rows]})  # fmt: skip
    pq.write_table(table, directory / "part-0.parquet")
    write_manifest(directory, Manifest(model="random", weights="none", dim=DIM, num_rows=len(ids),
                                       class_names=classes))  # fmt: skip
    return directory


def stores_of_three_kinds(root: Path) -> Iterator[tuple[str, Path, Callable[[str], np.ndarray]]]:
    """``(kind, store directory, id -> the source's pixels)`` for a folder, Parquet bytes and Fashion-MNIST."""
    classes = ["a", "b"]
    files = {f"img{n}.png": encode(rgb(n, (24 + n, 20)), "PNG") for n in range(4)}
    paths = write_folder(root / "folder", files)
    rows = _rows(str(root / "folder"))
    by_uri = {str(p): np.asarray(Image.open(p).convert("RGB")) for p in paths}
    by_id = {str(r["id"]): by_uri[str(r["uri"])] for r in rows}
    yield "folder", _store(root / "folder-store", rows, classes), by_id.__getitem__

    images = [encode(rgb(10 + n, (16, 12 + n)), "PNG") for n in range(5)]
    (root / "table").mkdir()
    pq.write_table(pa.table({"image": pa.array(images, type=pa.binary())}), root / "table" / "part-0.parquet",
                   row_group_size=2)  # fmt: skip
    rows = _rows(str(root / "table"))
    by_id = {str(r["id"]): np.asarray(Image.open(_bytes_of(images, r)).convert("RGB")) for r in rows}
    yield "parquet", _store(root / "parquet-store", rows, classes), by_id.__getitem__

    rows = _rows("fashion-mnist", split="test", limit=6)
    pixels, _ = load_fashion_mnist("test")
    by_id = {str(r["id"]): pixels[int(str(r["uri"]).rsplit("#", 1)[1])] for r in rows}
    yield "fashion-mnist", _store(root / "fmnist-store", rows, list(CLASS_NAMES)), by_id.__getitem__


def _bytes_of(images: list[bytes], row: dict):
    import io

    n = int(str(row["uri"]).split("#row=", 1)[1].split("&", 1)[0])
    return io.BytesIO(images[n])
