"""The embedding store: Parquet shards plus a manifest that says what made them.

Layout of a store directory::

    <dir>/manifest.json      Manifest (model spec, dimension, preprocessing, row count, ...)
    <dir>/*.parquet          rows {id: string, embedding: fixed_size_list<float32|float16>[D],
                                   uri: string (nullable), label: int64 (nullable)}

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
import pyarrow.compute as pc
import pyarrow.dataset as pads
from pydantic import BaseModel, Field

MANIFEST_NAME = "manifest.json"
MISSING_LABEL = -1


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


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (write + rename) so a reader never sees half a manifest."""
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2))
    tmp.replace(path)
    return path


def read_manifest(directory: str | Path) -> Manifest:
    """Read a store's manifest; a clear error when the directory is not an embedding store."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an embedding store: {MANIFEST_NAME} is missing")
    return Manifest.model_validate(json.loads(path.read_text()))


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


def _embedding_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """Turn a fixed-size (or regular variable-size) list column into one (N, D) float32 array without copies
    beyond the final cast."""
    if column.num_chunks == 0:
        return np.zeros((0, 0), dtype=np.float32)
    combined = column.combine_chunks()
    values = pc.list_flatten(combined).to_numpy(zero_copy_only=False)
    n = len(combined)
    if n and values.size % n:
        raise ValueError("embeddings have differing lengths")
    return np.ascontiguousarray(values.reshape(n, values.size // n if n else 0), dtype=np.float32)


def load_pool(directory: str | Path) -> Pool:
    """Load every shard of an embedding store into one in-memory ``Pool`` (sorted by id, so row order does not
    depend on how shards were written)."""
    directory = Path(directory)
    manifest = read_manifest(directory) if (directory / MANIFEST_NAME).is_file() else None
    dataset = pads.dataset(str(directory), format="parquet", exclude_invalid_files=True)
    names = set(dataset.schema.names)
    if not {"id", "embedding"} <= names:
        raise ValueError(f"{directory}: an embedding store needs 'id' and 'embedding' columns, has {sorted(names)}")
    wanted = [c for c in ("id", "embedding", "uri", "label") if c in names]
    table = dataset.to_table(columns=wanted)
    table = table.sort_by("id")
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    X = _embedding_matrix(table.column("embedding"))
    labels = None
    if "label" in names:
        labels = table.column("label").fill_null(MISSING_LABEL).to_numpy().astype(np.int64)
    uris = np.asarray(table.column("uri").to_pylist(), dtype=object) if "uri" in names else None
    if manifest is not None and X.shape[0] and manifest.dim != X.shape[1]:
        raise ValueError(f"{directory}: manifest says dim={manifest.dim}, embeddings have {X.shape[1]}")
    return Pool(ids=ids, X=X, labels=labels, uris=uris, manifest=manifest)
