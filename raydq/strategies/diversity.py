"""Diversity baselines: coreset (k-center greedy) and BADGE (k-means++ on gradient embeddings). Both need every row
in one place (``raydq.strategies.gather``)."""

from __future__ import annotations

import numpy as np

from raydq.deadline import check
from raydq.numerics.distances import min_sq_distances, sq_distances_to
from raydq.numerics.norms import l2_normalise, row_sq_norms
from raydq.numerics.seeding import d2_sample
from raydq.strategies.base import RandomState
from raydq.strategies.gather import GATHER_LIMIT, GatheredQuery, labeled_mask

_HEAD_CHUNK = 65536


class CoresetQuery(GatheredQuery):
    """Coreset (Sener & Savarese 2018), k-center greedy on L2-normalised features: repeatedly take the selectable
    row farthest from every labeled or already chosen row (a random first row when nothing is labeled)."""

    def __init__(self, *, gather_limit: int = GATHER_LIMIT, random_state: RandomState = None) -> None:
        self.gather_limit = gather_limit
        self.random_state = random_state

    def _select_rows(self, X, status, options, *, batch_size, head, rng, deadline):
        Z = l2_normalise(X, copy=False)  # X is the driver's own gathered copy
        sq = row_sq_norms(Z)
        selectable = status == 0
        dist = min_sq_distances(Z, Z[labeled_mask(status)], deadline=deadline)
        chosen: list[int] = []
        for _ in range(batch_size):
            check(deadline)
            score = np.where(selectable, dist, -1.0)
            score[chosen] = -1.0
            unseen = np.flatnonzero(np.isinf(score))  # no center yet (nothing labeled or chosen): a random first row
            pick = int(rng.choice(unseen)) if len(unseen) else int(np.argmax(score))
            chosen.append(pick)
            np.minimum(dist, sq_distances_to(Z, Z[pick], a_sq=sq), out=dist)
        return np.asarray(chosen, dtype=np.int64)


class BADGEQuery(GatheredQuery):
    """BADGE (Ash et al. 2020): k-means++ seeding on the gradient embeddings ``(p - onehot(argmax p)) ⊗ z`` of the
    last layer, ``z`` the head's standardized input (``head.transform``). The embeddings are never built: the squared
    distance between two of them is ``|a_i|²|z_i|² + |a_j|²|z_j|² - 2 (a_i·a_j)(z_i·z_j)``."""

    needs_head = True

    def __init__(self, *, gather_limit: int = GATHER_LIMIT, random_state: RandomState = None) -> None:
        self.gather_limit = gather_limit
        self.random_state = random_state

    def _select_rows(self, X, status, options, *, batch_size, head, rng, deadline):
        rows = np.flatnonzero(status == 0)
        A = Z = None  # (p - onehot) and z for every selectable row, float64 (the distance expansion cancels)
        for s in range(0, len(rows), _HEAD_CHUNK):
            check(deadline)
            xs = X[rows[s : s + _HEAD_CHUNK]]
            P = np.asarray(head.predict_proba(xs), dtype=np.float64)
            if A is None:
                A, Z = np.empty((len(rows), P.shape[1])), np.empty((len(rows), X.shape[1]))
            P[np.arange(len(P)), P.argmax(axis=1)] -= 1.0
            A[s : s + len(P)] = P
            Z[s : s + len(P)] = head.transform(xs)
        norms = row_sq_norms(A) * row_sq_norms(Z)

        def sq_dist_to(i: int) -> np.ndarray:
            return np.maximum(norms + norms[i] - 2.0 * (A @ A[i]) * (Z @ Z[i]), 0.0)

        first = int(np.argmax(norms))  # BADGE starts from the largest gradient
        picks = d2_sample(len(rows), batch_size, sq_dist_to, rng, first=first, distinct=True, deadline=deadline)
        return rows[picks]
