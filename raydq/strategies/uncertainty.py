"""Uncertainty baselines: entropy, margin, least confidence (one forward pass), BALD and PowerBALD (dropout passes)."""

from __future__ import annotations

import numpy as np

from raydq.strategies._utils import entropy, predict_proba_chunked, top_k
from raydq.strategies.base import QueryStrategy, RandomState
from raydq.strategies.dropout import DEFAULT_CHUNK_ROWS, map_dropout_chunks


class _ScoreQuery(QueryStrategy):
    """Top-``batch_size`` selectable rows by an uncertainty score of the head's probabilities."""

    needs_head = True

    def _score(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        rows = np.flatnonzero(selectable)
        scores = self._score(predict_proba_chunked(head, X, rows))
        return rows[top_k(scores, batch_size, rng)]


class EntropyQuery(_ScoreQuery):
    """Highest predictive entropy."""

    def _score(self, P):
        return entropy(P)


class MarginQuery(_ScoreQuery):
    """Smallest gap between the two most probable classes."""

    def _score(self, P):
        if P.shape[1] < 2:
            return np.zeros(len(P))
        top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])


class LeastConfidenceQuery(_ScoreQuery):
    """Lowest probability of the predicted class."""

    def _score(self, P):
        return 1.0 - P.max(axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


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

    def __init__(self, *, dropout: float = 0.75, n_passes: int = 10, random_state: RandomState = None) -> None:
        self.dropout = dropout
        self.n_passes = n_passes
        self.random_state = random_state

    def _mutual_information(self, X, selectable, head, rng) -> np.ndarray:
        if not isinstance(self.n_passes, int | np.integer) or self.n_passes < 1:
            raise ValueError(f"n_passes must be a positive integer, got {self.n_passes!r}")
        W, b = head.affine()
        X = np.ascontiguousarray(X, dtype=np.float32)
        mi = np.empty(len(X))

        def fn(s, _logits, passes):
            probs = [_softmax(lp) for lp in passes]
            mean = np.mean(probs, axis=0)
            mi[s : s + len(mean)] = entropy(mean) - np.mean([entropy(p) for p in probs], axis=0)

        map_dropout_chunks(
            X,
            W,
            b,
            fn,
            dropout=float(self.dropout),
            n_passes=int(self.n_passes),
            seed=int(rng.integers(2**63)),
            chunk_rows=DEFAULT_CHUNK_ROWS,
        )
        return np.maximum(mi[selectable], 0.0)

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        rows = np.flatnonzero(selectable)
        return rows[top_k(self._mutual_information(X, selectable, head, rng), batch_size, rng)]


class PowerBALDQuery(BALDQuery):
    """PowerBALD (Kirsch et al. 2021): sample the batch with probability proportional to ``BALD ** beta`` (Gumbel
    top-k on ``beta * log BALD``), which keeps a batch from collapsing onto near-duplicates.

    Parameters
    ----------
    beta : float, default=1.0
        Inverse temperature; large values approach plain BALD.
    """

    def __init__(
        self, *, dropout: float = 0.75, n_passes: int = 10, beta: float = 1.0, random_state: RandomState = None
    ) -> None:
        super().__init__(dropout=dropout, n_passes=n_passes, random_state=random_state)
        self.beta = beta

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        rows = np.flatnonzero(selectable)
        mi = self._mutual_information(X, selectable, head, rng)
        scores = float(self.beta) * np.log(mi + 1e-12) + rng.gumbel(size=len(mi))
        return rows[top_k(scores, batch_size, rng)]
