"""Diversity baselines: coreset (k-center greedy) and BADGE (k-means++ on gradient embeddings)."""

from __future__ import annotations

import numpy as np

from raydq.strategies._utils import l2_normalise, predict_proba_chunked
from raydq.strategies.base import QueryStrategy


def _sq_dist_to(Z: np.ndarray, sq: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.maximum(sq - 2.0 * (Z @ z) + float(z @ z), 0.0)


class CoresetQuery(QueryStrategy):
    """Coreset (Sener & Savarese 2018), k-center greedy on L2-normalised features: repeatedly take the selectable
    row farthest from every labeled or already chosen row (a random first row when nothing is labeled)."""

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        Z = l2_normalise(X)
        sq = (Z * Z).sum(axis=1)
        centers = np.flatnonzero(y != -1)
        dist = np.full(len(Z), np.inf, dtype=np.float32)
        for s in range(0, len(centers), 256):
            C = Z[centers[s : s + 256]]
            d2 = np.maximum(sq[:, None] - 2.0 * (Z @ C.T) + (C * C).sum(axis=1)[None, :], 0.0)
            dist = np.minimum(dist, d2.min(axis=1))
        chosen: list[int] = []
        for _ in range(batch_size):
            score = np.where(selectable, dist, -1.0)
            score[chosen] = -1.0
            unseen = np.flatnonzero(np.isinf(score))  # no center yet (nothing labeled or chosen): a random first row
            pick = int(rng.choice(unseen)) if len(unseen) else int(np.argmax(score))
            chosen.append(pick)
            dist = np.minimum(dist, _sq_dist_to(Z, sq, Z[pick]))
        return np.asarray(chosen, dtype=np.int64)


class BADGEQuery(QueryStrategy):
    """BADGE (Ash et al. 2020): k-means++ seeding on the gradient embeddings ``(p - onehot(argmax p)) ⊗ z`` of the
    last layer, ``z`` the head's BatchNorm output. The embeddings are never built: the squared distance between two
    of them is ``|a_i|²|z_i|² + |a_j|²|z_j|² - 2 (a_i·a_j)(z_i·z_j)``."""

    needs_head = True

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        rows = np.flatnonzero(selectable)
        P = predict_proba_chunked(head, X, rows).astype(np.float64)
        A = P.copy()
        A[np.arange(len(A)), P.argmax(axis=1)] -= 1.0
        Z = np.asarray(head.transform(X[rows]), dtype=np.float64)
        norms = (A * A).sum(axis=1) * (Z * Z).sum(axis=1)
        first = int(np.argmax(norms))  # BADGE starts from the largest gradient
        chosen = [first]
        closest = np.maximum(norms + norms[first] - 2.0 * (A @ A[first]) * (Z @ Z[first]), 0.0)
        closest[first] = 0.0
        for _ in range(1, batch_size):
            total = closest.sum()
            if total <= 0:
                rest = np.setdiff1d(np.arange(len(rows)), chosen)
                nxt = int(rng.choice(rest))
            else:
                nxt = int(rng.choice(len(rows), p=closest / total))
            chosen.append(nxt)
            d = np.maximum(norms + norms[nxt] - 2.0 * (A @ A[nxt]) * (Z @ Z[nxt]), 0.0)
            closest = np.minimum(closest, d)
            closest[chosen] = 0.0
        return rows[np.asarray(chosen, dtype=np.int64)]
