"""Strategies that score every selectable row and take the ``batch_size`` best: each shard returns its own top-B
(score, tie key, global row) and the driver merges them. The tie key is a counter-based uniform of ``(seed, global
row)``, so the order is total and K shards give exactly the 1-shard batch.

Scores are computed chunk by chunk on a global chunk grid (float16 rows become float32 per chunk), with a deadline
check between chunks; only the running top-B is kept, so memory beyond the pool is O(chunk + B).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from raydq.numerics.topk import merge_top_k, top_k
from raydq.numerics.uniforms import row_uniforms
from raydq.strategies.base import QueryStrategy
from raydq.strategies.shards import ArrayShard, Selection

#: Rows scored at once (head outputs are chunk x classes).
SCORE_CHUNK_ROWS = 8192

TopList = tuple[np.ndarray, np.ndarray, np.ndarray]  # (scores, tie keys, global rows), best first


class RowScorer(Protocol):
    """A picklable per-row score: ``scorer(X, rows)`` for float32 features ``X`` of global ``rows`` (``X`` is None
    when ``uses_features`` is False: no rows are copied for a score that ignores them)."""

    uses_features: bool

    def __call__(self, X: np.ndarray | None, rows: np.ndarray) -> np.ndarray: ...


def keep_best(best: TopList, scores: np.ndarray, keys: np.ndarray, rows: np.ndarray, k: int) -> TopList:
    """The best ``k`` of a running top list and new rows."""
    s = np.concatenate([best[0], np.asarray(scores, dtype=np.float64)])
    t = np.concatenate([best[1], keys])
    r = np.concatenate([best[2], rows])
    order = top_k(s, k, t, r)
    return s[order], t[order], r[order]


def empty_top() -> TopList:
    return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)


def shard_top_scores(shard: ArrayShard, scorer: RowScorer, k: int, tie_seed: int) -> TopList:
    """This shard's ``k`` best selectable rows under ``scorer``."""
    best = empty_top()
    for a, e in shard.grid_chunks(SCORE_CHUNK_ROWS):
        local = np.flatnonzero(shard.selectable[a:e]) + a
        if len(local) == 0:
            continue
        rows = shard.global_rows(local)
        X = np.asarray(shard.X[local], dtype=np.float32) if scorer.uses_features else None
        best = keep_best(best, scorer(X, rows), row_uniforms(tie_seed, rows), rows, k)
    return best


class RandomRows:
    """A uniform random key per row: the top-B of these is a uniform sample without replacement."""

    uses_features = False

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, X: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        return row_uniforms(self.seed, rows)


class RankedQuery(QueryStrategy):
    """Top-``batch_size`` selectable rows by a per-row score; subclasses give the scorer."""

    def _scorer(self, options: Any, head: Any, seed: int) -> RowScorer:
        raise NotImplementedError

    def _select(self, shards, options, *, batch_size, head, seed, deadline, counts):
        score_seed, tie_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        scorer = self._scorer(options, head, score_seed)
        parts = shards.map(shard_top_scores, scorer, batch_size, tie_seed, deadline=deadline)
        return Selection(merge_top_k(parts, batch_size))


class RandomQuery(RankedQuery):
    """Uniformly random unlabeled rows: the baseline every strategy must beat."""

    def _scorer(self, options, head, seed):
        return RandomRows(seed)
