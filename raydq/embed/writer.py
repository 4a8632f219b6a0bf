"""Writing the embedding store from the driver: atomic Parquet shards, the done-id scan, the failure report.

A shard is written to a hidden temporary file, fsynced, then renamed into place, so a crash leaves either a whole
shard or none (hidden files are ignored by readers and removed at the next start). Ids in whole shards are skipped
by the next run: that is how a crashed run resumes without duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from raydq.pool.store import MANIFEST_NAME, read_manifest

FAILURES_NAME = "failures.jsonl"
SHARD_PREFIX = "part-"


def store_schema(dim: int, dtype: str) -> pa.Schema:
    value = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(value, dim), nullable=False),
            pa.field("uri", pa.string()),
            pa.field("label", pa.int64()),
        ]
    )


def prepare_output(output: Path, *, spec: dict, preprocessing: dict, dtype: str, overwrite: bool) -> set[str]:
    """Create the folder, clear crash leftovers, check an existing store was made by the same model, preprocessing
    (precision included: bf16 and fp32 features differ) and dtype, and return the ids it already holds."""
    if overwrite and output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    for leftover in output.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    shards = sorted(output.glob(f"{SHARD_PREFIX}*.parquet"))
    if (output / MANIFEST_NAME).is_file():
        manifest = read_manifest(output)
        if shards and (manifest.model, manifest.weights, manifest.dtype) != (spec["model"], spec["weights"], dtype):
            raise ValueError(
                f"output {output} holds embeddings of {manifest.model} ({manifest.weights}, {manifest.dtype}), not "
                f"{spec['model']} ({spec['weights']}, {dtype}): choose another output or set overwrite"
            )
        if shards and manifest.preprocessing != json.loads(json.dumps(preprocessing)):
            raise ValueError(
                f"output {output} holds embeddings made with preprocessing {manifest.preprocessing}, not "
                f"{preprocessing} (e.g. another --precision): choose another output or set overwrite"
            )
    if not shards:
        return set()
    ids = pads.dataset([str(p) for p in shards], format="parquet").to_table(columns=["id"]).column("id")
    return set(ids.to_pylist())


def count_rows(output: Path) -> int:
    shards = [str(p) for p in sorted(output.glob(f"{SHARD_PREFIX}*.parquet"))]
    return pads.dataset(shards, format="parquet").count_rows() if shards else 0


class ShardWriter:
    """Buffers rows and writes a shard every ``rows_per_shard`` rows (and at ``close``)."""

    def __init__(self, output: Path, *, dim: int, dtype: str, rows_per_shard: int) -> None:
        self.output = output
        self.dim = dim
        self.dtype = dtype
        self.rows_per_shard = rows_per_shard
        self.schema = store_schema(dim, dtype)
        self._run = uuid.uuid4().hex[:8]
        self._seq = 0
        self._parts: list[pa.Table] = []
        self._buffered = 0
        self.rows_written = 0

    def add(self, ids: np.ndarray, embeddings: np.ndarray, uris: np.ndarray, labels: np.ndarray) -> None:
        if len(ids) == 0:
            return
        emb = np.ascontiguousarray(embeddings, dtype=np.float16 if self.dtype == "float16" else np.float32)
        if emb.shape != (len(ids), self.dim):
            raise ValueError(f"embeddings have shape {emb.shape}, expected ({len(ids)}, {self.dim})")
        flat = pa.array(emb.reshape(-1), type=self.schema.field("embedding").type.value_type)
        label_list = [None if int(v) < 0 else int(v) for v in labels]
        table = pa.Table.from_arrays(
            [
                pa.array([str(i) for i in ids], type=pa.string()),
                pa.FixedSizeListArray.from_arrays(flat, self.dim),
                pa.array([None if u is None else str(u) for u in uris], type=pa.string()),
                pa.array(label_list, type=pa.int64()),
            ],
            schema=self.schema,
        )
        self._parts.append(table)
        self._buffered += len(ids)
        while self._buffered >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._parts)
        head, rest = table.slice(0, n), table.slice(n)
        self._parts = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows
        name = f"{SHARD_PREFIX}{self._run}-{self._seq:05d}.parquet"
        tmp = self.output / f".{name}.tmp"
        pq.write_table(head, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(self.output / name)
        self._seq += 1
        self.rows_written += head.num_rows

    def close(self) -> None:
        if self._buffered:
            self._flush(self._buffered)


class FailureReport:
    """``failures.jsonl`` next to the shards: one {id, uri, reason} line per image that could not be embedded."""

    def __init__(self, output: Path) -> None:
        self.path = output / FAILURES_NAME
        self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self.count = 0

    def add(self, item_id: str, uri: str | None, reason: str) -> None:
        self._file.write(json.dumps({"id": item_id, "uri": uri, "reason": reason}) + "\n")
        self.count += 1

    def close(self) -> None:
        self._file.flush()
        self._file.close()
