"""Rows brought from the shards to the driver: a uniform row-keyed sample (the cold start's k-means training set),
or the whole pool for strategies that need every row in one place (coreset, BADGE, TypiClust, ProbCover).

A row is in the sample when its counter-based uniform ``u(seed, global row)`` is below the sampling fraction, so the
sample is the same however the pool is split, and each shard decides alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from raydq.numerics.norms import l2_normalise
from raydq.numerics.uniforms import row_uniforms
from raydq.strategies.base import QueryStrategy, StrategyOptions
from raydq.strategies.shards import LABELED, ArrayShard, Selection

_COPY_CHUNK = 65536

#: The default and the largest ``gather_limit``: 200,000 x 1280 float32 is 1 GiB on the driver.
GATHER_LIMIT = 200_000

Gathered = tuple[np.ndarray, np.ndarray, np.ndarray]  # (global rows, float32 features, status)


def sample_rows(
    shard: ArrayShard,
    fraction: float,
    seed: int,
    *,
    labeled_fraction: float | None = None,
    normalise: bool = False,
) -> Gathered:
    """``(global rows, float32 features, status)`` of this shard's rows whose key is below ``fraction`` (labeled rows:
    below ``labeled_fraction``, default the same fraction); a fraction >= 1 takes every row. Features are copies
    (L2-normalised with ``normalise``), made chunk by chunk with a deadline check in between."""
    labeled_fraction = fraction if labeled_fraction is None else labeled_fraction
    if fraction >= 1.0 and labeled_fraction >= 1.0:
        local = np.arange(len(shard))
    else:
        u = row_uniforms(seed, shard.global_rows(np.arange(len(shard))))
        local = np.flatnonzero(u < np.where(shard.labeled, labeled_fraction, fraction))
    X = np.empty((len(local), shard.dim), dtype=np.float32)
    for s in range(0, len(local), _COPY_CHUNK):
        shard.check_deadline()
        part = local[s : s + _COPY_CHUNK]
        X[s : s + len(part)] = shard.X[part[0] : part[-1] + 1][part - part[0]]
        if normalise:
            l2_normalise(X[s : s + len(part)], copy=False)
    return shard.global_rows(local), X, shard.status[local].copy()


def join(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """The shards' tuples of arrays (rows first) joined field by field in shard order; one shard's arrays are used
    as they are (no copy)."""
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(field) for field in zip(*parts, strict=True))


class GatheredOptions(StrategyOptions):
    gather_limit: int = Field(
        GATHER_LIMIT,
        ge=100,
        le=GATHER_LIMIT,
        description="rows brought to one place; a larger pool is represented by a uniform sample of this size",
    )


class GatheredQuery(QueryStrategy):
    """A strategy that needs the whole pool in one place: it runs on every row (float32, with its status) when the
    pool holds at most ``gather_limit`` rows, else on a uniform row-keyed sample of ``gather_limit`` rows that keeps
    every labeled row (up to half the sample); ``Selection.info`` then says ``sampled_rows`` and ``pool_rows``."""

    Options = GatheredOptions

    def _select_rows(
        self, X: np.ndarray, status: np.ndarray, options: Any, *, batch_size: int, head: Any, rng, deadline
    ) -> np.ndarray:
        """Positions in ``X`` of ``batch_size`` distinct rows with ``status == 0``."""
        raise NotImplementedError

    def _select(self, shards, options, *, batch_size, head, seed, deadline, counts):
        sample_seed, algo_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        limit = int(options.gather_limit)
        sampled = counts.rows > limit
        fraction = labeled_fraction = 1.0
        if sampled:
            keep_labeled = min(counts.labeled, limit // 2)
            labeled_fraction = keep_labeled / counts.labeled if counts.labeled else 1.0
            fraction = (limit - keep_labeled) / (counts.rows - counts.labeled)
        rows, X, status = join(
            shards.map(sample_rows, fraction, sample_seed, labeled_fraction=labeled_fraction, deadline=deadline)
        )
        n_selectable = int(np.count_nonzero(status == 0))
        if n_selectable < batch_size:
            raise ValueError(
                f"the sample of {len(rows)} rows (gather_limit={limit}) holds only {n_selectable} selectable rows, "
                f"fewer than batch_size={batch_size}; raise gather_limit"
            )
        picks = self._select_rows(
            X,
            status,
            options,
            batch_size=batch_size,
            head=head,
            rng=np.random.default_rng(algo_seed),
            deadline=deadline,
        )
        info = {"sampled_rows": len(rows), "pool_rows": counts.rows} if sampled else {}
        return Selection(rows[np.asarray(picks, dtype=np.int64)], info)


def labeled_mask(status: np.ndarray) -> np.ndarray:
    return (status & LABELED) != 0
