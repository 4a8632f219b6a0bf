"""Uncertainty baselines: entropy, margin, least confidence (one forward pass), BALD and PowerBALD (dropout passes).

All rank rows per shard and merge the shards' top-B (``raydq.strategies.ranked``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS, map_dropout_chunks
from raydq.numerics.probability import entropy, softmax
from raydq.numerics.topk import merge_top_k, top_k
from raydq.numerics.uniforms import row_gumbels, row_uniforms
from raydq.strategies.base import QueryStrategy, RandomState, StrategyOptions
from raydq.strategies.ranked import RankedQuery, TopList
from raydq.strategies.shards import ArrayShard, Selection


def entropy_score(P: np.ndarray) -> np.ndarray:
    """Predictive entropy: high when the head spreads its probability."""
    return entropy(P)


def margin_score(P: np.ndarray) -> np.ndarray:
    """Minus the gap between the two most probable classes: high when the top two are close."""
    if P.shape[1] < 2:
        return np.zeros(len(P))
    top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1].astype(np.float64) - top2[:, 0])


def least_confidence_score(P: np.ndarray) -> np.ndarray:
    """One minus the probability of the predicted class."""
    return 1.0 - P.max(axis=1).astype(np.float64)


class ProbabilityScore:
    """``score(head.predict_proba(X))`` for one of the module-level score functions (picklable: shipped to shards)."""

    uses_features = True

    def __init__(self, head: Any, score) -> None:
        self.head, self.score = head, score

    def __call__(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.score(np.asarray(self.head.predict_proba(X), dtype=np.float32))


class _ProbabilityQuery(RankedQuery):
    needs_head = True
    score = staticmethod(entropy_score)  # each subclass names its score function

    def _scorer(self, options, head, seed):
        return ProbabilityScore(head, type(self).score)


class EntropyQuery(_ProbabilityQuery):
    """Highest predictive entropy."""

    score = staticmethod(entropy_score)


class MarginQuery(_ProbabilityQuery):
    """Smallest gap between the two most probable classes."""

    score = staticmethod(margin_score)


class LeastConfidenceQuery(_ProbabilityQuery):
    """Lowest probability of the predicted class."""

    score = staticmethod(least_confidence_score)


# -- BALD and PowerBALD ----------------------------------------------------------------------------------------------
def bald_mutual_information(
    shard: ArrayShard, W: np.ndarray, b: np.ndarray, *, dropout: float, n_passes: int, seed: int
) -> np.ndarray:
    """Per-row mutual information ``H[mean_k p_k] - mean_k H[p_k]`` over ``n_passes`` dropout passes (>= 0)."""
    mi = np.empty(len(shard))

    def fn(s: int, _logits: np.ndarray, passes: list[np.ndarray]) -> None:
        probs = [softmax(lp, out=lp) for lp in passes]
        mean = np.mean(probs, axis=0)
        mi[s : s + len(mean)] = entropy(mean) - np.mean([entropy(p) for p in probs], axis=0)

    map_dropout_chunks(
        shard.X,
        W,
        b,
        fn,
        dropout=dropout,
        n_passes=n_passes,
        seed=seed,
        row_offset=shard.row_offset,
        chunk_rows=DEFAULT_CHUNK_ROWS,
        n_threads=shard.n_threads,
        deadline=shard.deadline,
    )
    return np.maximum(mi, 0.0)


def bald_top_scores(
    shard: ArrayShard,
    W: np.ndarray,
    b: np.ndarray,
    k: int,
    *,
    dropout: float,
    n_passes: int,
    seed: int,
    tie_seed: int,
    beta: float | None = None,
    gumbel_seed: int = 0,
) -> TopList:
    """This shard's ``k`` best selectable rows by BALD, or by PowerBALD's ``beta * log BALD + Gumbel`` when ``beta``
    is given."""
    mi = bald_mutual_information(shard, W, b, dropout=dropout, n_passes=n_passes, seed=seed)
    local = np.flatnonzero(shard.selectable)
    rows = shard.global_rows(local)
    scores = mi[local]
    if beta is not None:
        scores = beta * np.log(scores + 1e-12) + row_gumbels(gumbel_seed, rows)
    keys = row_uniforms(tie_seed, rows)
    order = top_k(scores, k, keys, rows)
    return scores[order], keys[order], rows[order]


class BALDQuery(QueryStrategy):
    """BALD (Houlsby et al. 2011) with MC dropout on the head's input: mutual information between the prediction
    and the dropout mask, ``H[mean_k p_k] - mean_k H[p_k]``, over ``n_passes`` passes. Needs a head with ``affine()``.

    Parameters
    ----------
    dropout : float, default=0.75
        Dropout rate of the passes (the head's training rate).
    n_passes : int, default=10
    random_state : None, int or Generator
    """

    needs_head = True

    class Options(StrategyOptions):
        dropout: float = Field(0.75, ge=0.0, le=0.95, description="dropout rate of the passes")
        n_passes: int = Field(10, ge=1, le=100, description="dropout passes (each costs one pass over the pool)")

    def __init__(self, *, dropout: float = 0.75, n_passes: int = 10, random_state: RandomState = None) -> None:
        self.dropout = dropout
        self.n_passes = n_passes
        self.random_state = random_state

    def _beta(self, options) -> float | None:
        return None

    def _select(self, shards, options, *, batch_size, head, seed, deadline, counts):
        mask_seed, tie_seed, gumbel_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
        W, b = head.affine()
        parts = shards.map(
            bald_top_scores,
            W,
            b,
            batch_size,
            dropout=options.dropout,
            n_passes=options.n_passes,
            seed=mask_seed,
            tie_seed=tie_seed,
            beta=self._beta(options),
            gumbel_seed=gumbel_seed,
            deadline=deadline,
        )
        return Selection(merge_top_k(parts, batch_size))


class PowerBALDQuery(BALDQuery):
    """PowerBALD (Kirsch et al. 2021): sample the batch with probability proportional to ``BALD ** beta`` (Gumbel
    top-k on ``beta * log BALD``), which keeps a batch from collapsing onto near-duplicates.

    Parameters
    ----------
    beta : float, default=1.0
        Inverse temperature; large values approach plain BALD.
    """

    class Options(BALDQuery.Options):
        beta: float = Field(1.0, ge=0.0, le=1000.0, description="inverse temperature; large values approach BALD")

    def __init__(
        self, *, dropout: float = 0.75, n_passes: int = 10, beta: float = 1.0, random_state: RandomState = None
    ) -> None:
        super().__init__(dropout=dropout, n_passes=n_passes, random_state=random_state)
        self.beta = beta

    def _beta(self, options) -> float | None:
        return float(options.beta)
