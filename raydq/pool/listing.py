"""The files of an embedding store in their canonical order, with row counts read from Parquet footers only.

Global row numbers are ``(file in canonical order, row within the file)``, so they stay put while a store grows: the
embed writer names files ``part-<UTC yyyymmddTHHMMSSffffff>-<run>-<seq>.parquet``, and a later run's files sort after
every earlier one. Files with other names (stores written before timestamped names, or by other tools) sort first,
by name. ``StoreListing.version`` changes whenever a file is added, removed or rewritten; ``extends`` tells an append
(every old file still there, unchanged, in front) from a rewrite.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raydq.pool.fs import StorageOptions, filesystem_for

PART_PREFIX = "part-"
PARQUET_SUFFIX = ".parquet"
_TIMESTAMPED = re.compile(r"^part-\d{8}T\d{12}-")
_FOOTER_THREADS = 16  # footers are one small ranged GET each on object storage: latency-bound, so read many at once


def part_name(run: str, seq: int, now: datetime | None = None) -> str:
    """The name of the ``seq``-th file of writer run ``run``, stamped with the UTC time so later files sort later."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{PART_PREFIX}{stamp}-{run}-{seq:05d}{PARQUET_SUFFIX}"


def canonical_key(name: str) -> tuple[int, str]:
    """Sort key of a file (its path relative to the store): legacy names first, then timestamped ones by time."""
    base = name.rsplit("/", 1)[-1]
    return (1 if _TIMESTAMPED.match(base) else 0, name)


@dataclass(frozen=True)
class StoreFile:
    """One Parquet file of a store: its path relative to the store root, its size in bytes and its row count."""

    name: str
    size: int
    rows: int


@dataclass(frozen=True)
class StoreListing:
    """A store's files at one moment, in canonical order; ``offsets[i]`` is the global row of file i's first row."""

    location: str
    root: str
    files: tuple[StoreFile, ...]

    @property
    def n_rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([f.rows for f in self.files], dtype=np.int64)]).astype(np.int64)

    @property
    def version(self) -> str:
        """``<file count>-<hash of names and sizes>``: cheap, and different after any file is added or rewritten."""
        h = hashlib.blake2b(digest_size=8)
        for f in self.files:
            h.update(f"{f.name}\0{f.size}\n".encode())
        return f"{len(self.files)}-{h.hexdigest()}"

    def extends(self, older: StoreListing) -> bool:
        """True when this listing is ``older`` plus files after it (an append); False for a rewrite."""
        return self.files[: len(older.files)] == older.files

    def path(self, f: StoreFile) -> str:
        return f"{self.root.rstrip('/')}/{f.name}"

    def overlapping(self, start: int, stop: int) -> Iterator[tuple[StoreFile, int]]:
        """``(file, global row of its first row)`` for every file holding a row of ``[start, stop)``."""
        offset = 0
        for f in self.files:
            if offset >= stop:
                break
            if offset + f.rows > start and f.rows:
                yield f, offset
            offset += f.rows


def _is_store_file(info: pafs.FileInfo, root: str) -> bool:
    rel = info.path[len(root) :].lstrip("/")
    hidden = any(part.startswith((".", "_")) for part in rel.split("/"))
    return info.type == pafs.FileType.File and rel.endswith(PARQUET_SUFFIX) and not hidden


def list_store(
    location: str, *, storage_options: StorageOptions | None = None, previous: StoreListing | None = None
) -> StoreListing:
    """List a store's Parquet files (hidden ``.``/``_`` names skipped) with their row counts. Footers of files that
    ``previous`` already counted (same name and size) are not read again, so polling a large store is cheap."""
    fs, root = filesystem_for(location, storage_options)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        raise FileNotFoundError(f"{location}: no embedding store there") from None
    infos = [i for i in infos if _is_store_file(i, root)]
    known = {(f.name, f.size): f.rows for f in previous.files} if previous is not None else {}
    entries = sorted(((i.path[len(root) :].lstrip("/"), int(i.size)) for i in infos), key=lambda e: canonical_key(e[0]))
    todo = [(name, size) for name, size in entries if (name, size) not in known]

    def footer_rows(entry: tuple[str, int]) -> int:
        with fs.open_input_file(f"{root}/{entry[0]}") as f:
            return pq.read_metadata(f).num_rows

    if todo:
        with ThreadPoolExecutor(min(_FOOTER_THREADS, len(todo))) as pool:
            known.update(zip(todo, pool.map(footer_rows, todo), strict=True))
    files = tuple(StoreFile(name, size, int(known[(name, size)])) for name, size in entries)
    return StoreListing(location=str(location), root=root, files=files)
