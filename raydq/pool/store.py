"""The embedding store: Parquet files plus a manifest that says what made them.

Layout of a store (a folder, or a prefix on object storage)::

    <store>/manifest.json    Manifest (model spec, dimension, preprocessing, row count, ...)
    <store>/*.parquet        rows {id: string, embedding: fixed_size_list<float32|float16>[D],
                                   uri: string (nullable), label: int64 (nullable)}

Rows are numbered in the store's canonical order (``raydq.pool.listing``): files in canonical order, rows in file
order, so numbers stay put while the store grows.

``id`` is the one identifier used end to end (embed job -> select_batch -> update_labels). ``label`` holds a true
label where the source has one; it exists for simulation and evaluation only and selection never reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, Field

from raydq.estimator import MISSING_LABEL as MISSING_LABEL
from raydq.pool.fs import StorageOptions, filesystem_for, join, read_bytes, write_bytes_atomic
from raydq.pool.listing import list_store
from raydq.pool.reader import read_rows, store_dim

MANIFEST_NAME = "manifest.json"

#: How the embed writer writes a store's files. Row groups of 65,536 rows bound what a shard reading a file holds
#: beyond its own slice. The embedding column is neither dictionary-encoded nor compressed: float16 values fit
#: Parquet's dictionary, which made reading them 6.5x slower (2.73 s vs 0.42 s per 65,536 x 768 row group,
#: measured), and snappy saves nothing on embeddings while costing another 0.37 s to decode.
PARQUET_OPTIONS = {
    "row_group_size": 65_536,
    "use_dictionary": ["label"],
    "compression": {"id": "snappy", "embedding": "none", "uri": "snappy", "label": "snappy"},
}


def store_schema(dim: int, dtype: str) -> pa.Schema:
    """The columns of a store's Parquet files."""
    value = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(value, dim), nullable=False),
            pa.field("uri", pa.string()),
            pa.field("label", pa.int64()),
        ]
    )


class Manifest(BaseModel):
    """What produced an embedding store, so that a pool knows which model and preprocessing it holds."""

    model: str = Field(description="encoder spec, e.g. 'efficientnet_lite0' or 'open_clip:ViT-B-32/laion2b_s34b_b79k'")
    weights: str = Field(description="identity of the weights: a file's SHA-256, a pretrained tag, or 'random-init'")
    dim: int = Field(gt=0)
    dtype: str = "float32"
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    num_rows: int = Field(ge=0)
    class_names: list[str] | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    raydq_version: str = ""


def write_manifest(location: str | Path, manifest: Manifest, *, storage_options: StorageOptions | None = None) -> str:
    """Write ``manifest.json`` whole (temporary file and rename locally, one PUT on object storage), so a reader
    never sees half a manifest. Returns its path."""
    fs, root = filesystem_for(str(location), storage_options)
    path = join(root, MANIFEST_NAME)
    write_bytes_atomic(fs, path, manifest.model_dump_json(indent=2).encode())
    return path


def read_manifest(location: str | Path, *, storage_options: StorageOptions | None = None) -> Manifest:
    """Read a store's manifest; a clear error when the location is not an embedding store."""
    fs, root = filesystem_for(str(location), storage_options)
    try:
        raw = read_bytes(fs, join(root, MANIFEST_NAME))
    except FileNotFoundError:
        raise FileNotFoundError(f"{location} is not an embedding store: {MANIFEST_NAME} is missing") from None
    return Manifest.model_validate(json.loads(raw))


def read_manifest_if_any(location: str | Path, *, storage_options: StorageOptions | None = None) -> Manifest | None:
    """The manifest, or None for a store of bare Parquet files."""
    try:
        return read_manifest(location, storage_options=storage_options)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Pool:
    """An embedding store in memory: row i of ``X`` is the embedding of ``ids[i]``."""

    ids: np.ndarray  # (N,) object array of str
    X: np.ndarray  # (N, D) float32, C-contiguous
    labels: np.ndarray | None  # (N,) int64 true labels, MISSING_LABEL where unknown; None if the source has none
    uris: np.ndarray | None  # (N,) object array of str, or None
    manifest: Manifest | None = None
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or len(self.ids) != self.X.shape[0]:
            raise ValueError(f"ids ({len(self.ids)}) and X {self.X.shape} disagree")
        if not self._index:
            self._index.update({str(i): n for n, i in enumerate(self.ids)})
        if len(self._index) != len(self.ids):
            raise ValueError("the embedding store holds duplicate ids")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    def index_of(self, ids: list[str] | np.ndarray) -> np.ndarray:
        """Row positions of ``ids``; KeyError naming the first unknown id."""
        try:
            return np.fromiter((self._index[str(i)] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as e:
            raise KeyError(f"unknown id {e.args[0]!r}") from None

    def contains(self, item_id: str) -> bool:
        return str(item_id) in self._index


def load_pool(location: str | Path, *, storage_options: StorageOptions | None = None) -> Pool:
    """Load a whole embedding store (a folder or an ``s3://``/``gs://`` URI) into one in-memory float32 ``Pool``, in
    the store's canonical row order (the row numbers a ``ShardedPool`` of the same store uses). For small tools
    (simulation, demo); a service opens a ``ShardedPool`` instead."""
    location = str(location)
    listing = list_store(location, storage_options=storage_options)
    manifest = read_manifest_if_any(location, storage_options=storage_options)
    if not listing.files:
        raise ValueError(f"{location}: the embedding store holds no Parquet files")
    dim = store_dim(listing, storage_options)
    if manifest is not None and listing.n_rows and manifest.dim != dim:
        raise ValueError(f"{location}: manifest says dim={manifest.dim}, embeddings have {dim}")
    rows = read_rows(listing, 0, listing.n_rows, dtype="float32", dim=dim, with_labels=True,
                     storage_options=storage_options)  # fmt: skip
    ids = np.asarray(rows.ids.to_pylist(), dtype=object)
    uris = np.asarray(rows.uris.to_pylist(), dtype=object) if rows.uris is not None else None
    return Pool(ids=ids, X=rows.X, labels=rows.labels, uris=uris, manifest=manifest)
