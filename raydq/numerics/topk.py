"""Seeded top-k: the ``k`` largest scores, ties broken by a per-row key, and the merge of per-shard top-k lists.

Ordering by ``(score descending, tie key ascending, row ascending)`` is a total order, so the global top-k is the top-k
of the union of every shard's top-k, whatever the sharding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(scores: np.ndarray, k: int, tie_keys: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` largest ``scores`` (ties: smallest ``tie_keys``, then smallest ``rows``), best first."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    if len(scores) > 4 * k:  # keep only the rows that can make it (an O(n) partition before the O(k log k) sort)
        part = np.argpartition(-scores, k - 1)[:k]
        cutoff = scores[part].min()
        pool = np.flatnonzero(scores >= cutoff)
    else:
        pool = np.arange(len(scores))
    keys = (tie_keys[pool],) if rows is None else (rows[pool], tie_keys[pool])
    order = np.lexsort((*keys, -scores[pool]))
    return pool[order[:k]]


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """The global rows of the best ``k`` among per-shard ``(scores, tie_keys, rows)`` lists."""
    scores = np.concatenate([p[0] for p in parts]).astype(np.float64, copy=False)
    keys = np.concatenate([p[1] for p in parts])
    rows = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
    return rows[top_k(scores, k, keys, rows)]
