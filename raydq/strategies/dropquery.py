"""DropQuery (Gupte et al., TMLR 2024) exactly as ARCHITECTURE §3, run through the two shard phases of §4."""

from __future__ import annotations

import numpy as np

from raydq.strategies.base import QueryStrategy, RandomState
from raydq.strategies.dropout import DEFAULT_CHUNK_ROWS


class DropQuery(QueryStrategy):
    """Uncertain rows by dropout disagreement, made diverse by k-means.

    1. y* = the head's argmax on the unperturbed pool; 2. ``n_passes`` passes with inverted dropout on the features,
    counting per row the passes that disagree with y*; 3. candidates are rows with count > t, t starting at
    ``threshold`` (default ``n_passes // 2``) and lowered while fewer than ``candidate_factor * batch_size`` remain
    and t > 0 (when ``relax``); 4. fewer than ``batch_size`` candidates: all of them plus random selectable rows
    (``random_fill``; without it the whole selectable pool is clustered instead); 5. otherwise k-means with
    ``batch_size`` clusters on the candidates' L2-normalised standardised (BatchNorm-output) embeddings, and the
    candidate nearest each centroid.

    Parameters
    ----------
    dropout : float, default=0.75
    n_passes : int, default=3
    candidate_factor : float, default=25
    threshold : int or None, default=None
        Starting threshold; None means ``n_passes // 2``.
    relax : bool, default=True
        Lower the threshold while candidates are too few.
    random_fill : bool, default=True
    max_candidates : int or None, default=None
        Candidates beyond this are thinned by uniform sampling before k-means; None means
        ``max(256 * batch_size, 20000)`` (256 per cluster is what faiss would subsample to anyway).
    kmeans_niter : int, default=25
    chunk_rows : int, default=1024
        Rows per dropout chunk (bounds memory; part of what a seed reproduces).
    random_state : None, int or Generator

    Attributes
    ----------
    last_result_ : DropQueryResult
        Threshold, candidate count and random-fill count of the last query.
    """

    needs_head = True

    def __init__(
        self,
        *,
        dropout: float = 0.75,
        n_passes: int = 3,
        candidate_factor: float = 25,
        threshold: int | None = None,
        relax: bool = True,
        random_fill: bool = True,
        max_candidates: int | None = None,
        kmeans_niter: int = 25,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        random_state: RandomState = None,
    ) -> None:
        self.dropout = dropout
        self.n_passes = n_passes
        self.candidate_factor = candidate_factor
        self.threshold = threshold
        self.relax = relax
        self.random_fill = random_fill
        self.max_candidates = max_candidates
        self.kmeans_niter = kmeans_niter
        self.chunk_rows = chunk_rows
        self.random_state = random_state

    def _validate(self) -> None:
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.n_passes, int | np.integer) or not 1 <= self.n_passes <= 255:
            raise ValueError(f"n_passes must be an integer in [1, 255], got {self.n_passes!r}")
        if float(self.candidate_factor) < 0:
            raise ValueError(f"candidate_factor must be >= 0, got {self.candidate_factor!r}")
        if self.threshold is not None and not 0 <= self.threshold <= self.n_passes:
            raise ValueError(f"threshold must be None or in [0, n_passes], got {self.threshold!r}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ValueError(f"max_candidates must be None or positive, got {self.max_candidates!r}")
        if not isinstance(self.chunk_rows, int | np.integer) or self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {self.chunk_rows!r}")

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        from raydq.pool.shard import LocalShard, dropquery_over_shards  # raydq.pool.shard imports this package

        self._validate()
        shard = LocalShard(np.ascontiguousarray(X, dtype=np.float32), selectable, chunk_rows=int(self.chunk_rows))
        result = dropquery_over_shards(
            [shard],
            head,
            batch_size=batch_size,
            dropout=float(self.dropout),
            n_passes=int(self.n_passes),
            candidate_factor=float(self.candidate_factor),
            threshold=self.threshold,
            relax=bool(self.relax),
            random_fill=bool(self.random_fill),
            max_candidates=self.max_candidates,
            kmeans_niter=int(self.kmeans_niter),
            seed=int(rng.integers(2**63)),
        )
        self.last_result_ = result
        return result.rows
