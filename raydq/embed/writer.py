"""Writing the embedding store from the driver: whole Parquet files, the done-id scan, the failure report.

The output is a local folder or an object-store URI (``s3://``, ``gs://``; credentials and endpoint from the usual
environment, e.g. ``AWS_ENDPOINT_URL`` for an S3-compatible server). Every file appears whole or not at all: locally
it is written to a hidden temporary file, fsynced, then renamed into place (hidden files are ignored by readers and
removed at the next start); on object storage one upload is committed at once when it completes. Ids in whole files
are skipped by the next run: that is how a crashed run resumes without duplicates.

Files are named ``part-<UTC yyyymmddTHHMMSSffffff>-<run>-<seq>.parquet`` (``raydq.pool.listing.part_name``), later
than every file already in the store, so a later run's rows are numbered after the existing ones and a serving pool
picks them up as an append.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raydq.pool.fs import filesystem_for, is_uri, join, write_bytes_atomic
from raydq.pool.listing import PART_PREFIX, StoreListing, list_store, part_name
from raydq.pool.store import MANIFEST_NAME, PARQUET_OPTIONS, read_manifest, store_schema

FAILURES_NAME = "failures.jsonl"
_STAMP = "%Y%m%dT%H%M%S%f"


def resolve_output(output: str) -> str:
    """A local output as an absolute path; an object-store URI as given."""
    return str(output) if is_uri(str(output)) else os.path.abspath(output)


def _listing(output: str) -> StoreListing | None:
    try:
        return list_store(output)
    except FileNotFoundError:
        return None


def prepare_output(output: str, *, spec: dict, preprocessing: dict, dtype: str, overwrite: bool) -> set[str]:
    """Create the folder, clear crash leftovers, check an existing store was made by the same model, preprocessing
    (precision included: bf16 and fp32 features differ) and dtype, and return the ids it already holds."""
    fs, root = filesystem_for(output)
    if overwrite:
        fs.delete_dir_contents(root, missing_dir_ok=True)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(root, name))
    listing = _listing(output)
    files = listing.files if listing is not None else ()
    manifest_info = fs.get_file_info(join(root, MANIFEST_NAME))
    if files and manifest_info.type == pafs.FileType.File:
        manifest = read_manifest(output)
        if (manifest.model, manifest.weights, manifest.dtype) != (spec["model"], spec["weights"], dtype):
            raise ValueError(
                f"output {output} holds embeddings of {manifest.model} ({manifest.weights}, {manifest.dtype}), not "
                f"{spec['model']} ({spec['weights']}, {dtype}): choose another output or set overwrite"
            )
        if manifest.preprocessing != json.loads(json.dumps(preprocessing)):
            raise ValueError(
                f"output {output} holds embeddings made with preprocessing {manifest.preprocessing}, not "
                f"{preprocessing} (e.g. another --precision): choose another output or set overwrite"
            )
    if not files:
        return set()
    paths = [listing.path(f) for f in files]
    ids = pads.dataset(paths, format="parquet", filesystem=fs).to_table(columns=["id"]).column("id")
    return set(ids.to_pylist())


def count_rows(output: str) -> int:
    listing = _listing(output)
    return listing.n_rows if listing is not None else 0


def _latest_stamp(listing: StoreListing | None) -> datetime | None:
    """The newest timestamp among the store's timestamped file names (None if there is none)."""
    stamps = []
    for f in listing.files if listing is not None else ():
        base = f.name.rsplit("/", 1)[-1]
        try:
            stamps.append(datetime.strptime(base[len(PART_PREFIX) :].split("-", 1)[0], _STAMP).replace(tzinfo=UTC))
        except ValueError:
            continue  # a legacy name
    return max(stamps, default=None)


class ShardWriter:
    """Buffers rows and writes a file every ``rows_per_shard`` rows (and at ``close``)."""

    def __init__(self, output: str, *, dim: int, dtype: str, rows_per_shard: int) -> None:
        self.output = str(output)
        self.fs, self.root = filesystem_for(self.output)
        self.dim = dim
        self.dtype = dtype
        self.rows_per_shard = rows_per_shard
        self.schema = store_schema(dim, dtype)
        self._run = uuid.uuid4().hex[:8]
        self._seq = 0
        self._stamp = _latest_stamp(_listing(self.output))  # names never sort before a file already there
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

    def _next_name(self) -> str:
        now = datetime.now(UTC)
        if self._stamp is not None and now <= self._stamp:  # a clock behind the store's newest file
            now = self._stamp + timedelta(microseconds=1)
        self._stamp = now
        name = part_name(self._run, self._seq, now)
        self._seq += 1
        return name

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._parts)
        head, rest = table.slice(0, n), table.slice(n)
        self._parts = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows
        name = self._next_name()
        if isinstance(self.fs, pafs.LocalFileSystem):
            tmp = os.path.join(self.root, f".{name}.tmp")
            pq.write_table(head, tmp, **PARQUET_OPTIONS)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.root, name))
        else:  # one upload, visible only once complete
            pq.write_table(head, join(self.root, name), filesystem=self.fs, **PARQUET_OPTIONS)
        self.rows_written += head.num_rows

    def close(self) -> None:
        if self._buffered:
            self._flush(self._buffered)


class FailureReport:
    """``failures.jsonl`` next to the files: one {id, uri, reason} line per image that could not be embedded.
    Written line by line locally; on object storage it is uploaded whole at ``close``."""

    def __init__(self, output: str) -> None:
        fs, root = filesystem_for(str(output))
        self.path = join(root, FAILURES_NAME) if isinstance(fs, pafs.LocalFileSystem) else join(output, FAILURES_NAME)
        self._fs, self._remote = fs, join(root, FAILURES_NAME)
        if isinstance(fs, pafs.LocalFileSystem):
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        else:
            self._file = io.StringIO()
        self.count = 0

    def add(self, item_id: str, uri: str | None, reason: str) -> None:
        self._file.write(json.dumps({"id": item_id, "uri": uri, "reason": reason}) + "\n")
        self.count += 1

    def close(self) -> None:
        if isinstance(self._file, io.StringIO):
            write_bytes_atomic(self._fs, self._remote, self._file.getvalue().encode())
        else:
            self._file.flush()
        self._file.close()
