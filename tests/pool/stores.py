"""Synthetic embedding stores written by the real embed writer (timestamped files, manifest)."""

from __future__ import annotations

import numpy as np

from raydq.embed.writer import ShardWriter
from raydq.pool.store import Manifest, write_manifest


def rows_of(start: int, n: int, dim: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``start .. start + n`` of a deterministic synthetic pool: ids, float32 embeddings, uris, labels."""
    ids = np.array([f"img-{i:06d}" for i in range(start, start + n)], dtype=object)
    X = np.stack([np.random.default_rng([seed, i]).standard_normal(dim) for i in range(start, start + n)])
    uris = np.array([f"file:///images/{i:06d}.png" for i in range(start, start + n)], dtype=object)
    labels = np.arange(start, start + n) % 10
    return ids, X.astype(np.float32), uris, labels


def write_rows(location: str, start: int, n: int, *, dim: int = 16, dtype: str = "float32", rows_per_file: int = 128,
               seed: int = 0, storage_options=None) -> None:  # fmt: skip
    """Append rows ``start .. start + n`` to the store at ``location`` (a new writer run) and update the manifest."""
    writer = ShardWriter(location, dim=dim, dtype=dtype, rows_per_shard=rows_per_file)
    writer.add(*rows_of(start, n, dim, seed=seed))
    writer.close()
    manifest = Manifest(model="synthetic", weights="random", dim=dim, dtype=dtype, num_rows=start + n,
                        class_names=[str(c) for c in range(10)])  # fmt: skip
    write_manifest(location, manifest, storage_options=storage_options)
