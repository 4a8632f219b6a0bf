"""What the whole pool answers as one ``LocalShardSet`` (the reference every split must reproduce)."""

from __future__ import annotations

import numpy as np

from raydq.pool.store import load_pool
from raydq.strategies.shards import LABELED, UNAVAILABLE, LocalShardSet


def one_shard(location: str, labeled=(), unavailable=(), dtype: str = "float16") -> LocalShardSet:
    pool = load_pool(location)
    status = np.zeros(len(pool), dtype=np.uint8)
    status[np.asarray(labeled, dtype=np.int64)] |= LABELED
    status[np.asarray(unavailable, dtype=np.int64)] |= UNAVAILABLE
    return LocalShardSet.from_arrays(pool.X.astype(dtype), status)


def concat(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Join per-shard tuples of arrays field by field, in shard order."""
    return tuple(np.concatenate(field) for field in zip(*parts, strict=True))


def merge_top(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    rows, scores = concat(parts)
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]
