"""Deterministic per-shard functions for ``shards.map`` tests (module level: shipped to actors by reference)."""

from __future__ import annotations

import os
import time

import numpy as np

from raydq.strategies.shards import ArrayShard


def describe_shard(shard: ArrayShard) -> tuple[int, int, int]:
    return shard.row_offset, len(shard), int(shard.status.sum())


def selectable_rows_and_sums(shard: ArrayShard) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global rows of the selectable rows, every row's status and float64 row sums: the same concatenated answer
    however the pool is split."""
    local = np.flatnonzero(shard.selectable)
    return shard.global_rows(local), shard.status.copy(), shard.X.astype(np.float64).sum(axis=1)


def top_scores(shard: ArrayShard, w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k selectable rows with the largest ``X @ w`` (ties by row): a per-shard top-k a driver merges."""
    scores = shard.chunk(0, len(shard)) @ w
    local = np.flatnonzero(shard.selectable)
    order = np.lexsort((local, -scores[local]))[:k]
    return shard.global_rows(local[order]), scores[local[order]]


def wait_for_file(shard: ArrayShard, path: str, limit_s: float = 120.0) -> int:
    """Compute 'until released': returns once ``path`` exists (the test creates it), checking the deadline."""
    give_up = time.monotonic() + limit_s
    while not os.path.exists(path) and time.monotonic() < give_up:
        shard.check_deadline()
        time.sleep(0.01)
    return shard.row_offset


def pid(shard: ArrayShard) -> int:
    return os.getpid()
