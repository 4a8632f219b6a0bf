"""Representative strategies that need no head: centroid (the paper's cold start), TypiClust and ProbCover.

All three work on L2-normalised pool features and also serve as queries (labeled and excluded rows are never
returned; TypiClust and ProbCover take the labeled rows into account).
"""

from __future__ import annotations

import hashlib

import numpy as np

from raydq.cluster import make_kmeans, nearest_distinct
from raydq.strategies._utils import l2_normalise
from raydq.strategies.base import QueryStrategy, RandomState

_GRAPH_CACHE: dict = {}  # ProbCover's last delta-ball graph (one pool's worth)


#: Rows per centroid the representative strategies' k-means trains on: every row of a pool of tens of thousands
#: (as the reference's k-means does; a thinner sample picks visibly worse cold starts), a sample of a huge one.
KMEANS_POINTS_PER_CENTROID = 2048


def _kmeans_centroids(Z: np.ndarray, k: int, rng: np.random.Generator, niter: int) -> tuple[np.ndarray, np.ndarray]:
    km = make_kmeans(
        Z.shape[1], k, niter=niter, seed=int(rng.integers(2**31)), max_points_per_centroid=KMEANS_POINTS_PER_CENTROID
    )
    km.train(Z)
    return km.centroids, km.assign(Z)[1]


class CentroidQuery(QueryStrategy):
    """L2-normalise the pool, k-means with k = ``batch_size``, take the selectable row nearest each centroid
    (distinct rows). ``n_init`` > 1 keeps the best of several k-means runs (better starts, n_init times the cost)."""

    def __init__(self, *, kmeans_niter: int = 25, n_init: int = 1, random_state: RandomState = None) -> None:
        self.kmeans_niter = kmeans_niter
        self.n_init = n_init
        self.random_state = random_state

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        km = make_kmeans(
            X.shape[1],
            batch_size,
            niter=int(self.kmeans_niter),
            seed=int(rng.integers(2**31)),
            n_init=int(self.n_init),
            max_points_per_centroid=KMEANS_POINTS_PER_CENTROID,
        )
        km.train(l2_normalise(X))
        return nearest_distinct(X, km.centroids, normalize=True, allowed=selectable)


class TypiClustQuery(QueryStrategy):
    """TypiClust (Hacohen et al. 2022): k-means into ``n_labeled + batch_size`` clusters (at most ``max_clusters``);
    repeatedly take the cluster with the fewest labeled rows (largest first among ties, clusters smaller than
    ``min_cluster_size`` skipped) and its most typical selectable row, typicality being the inverse mean distance to
    the ``k_neighbors`` nearest neighbours within the cluster (scored on a sample of ``max_cluster_rows`` rows of a
    larger cluster, since it needs all pairwise distances)."""

    def __init__(
        self,
        *,
        k_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        max_cluster_rows: int = 5000,
        kmeans_niter: int = 25,
        random_state: RandomState = None,
    ) -> None:
        self.k_neighbors = k_neighbors
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.max_cluster_rows = max_cluster_rows
        self.kmeans_niter = kmeans_niter
        self.random_state = random_state

    @staticmethod
    def _typicality(Z: np.ndarray, k: int) -> np.ndarray:
        sq = (Z * Z).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
        k = max(1, min(k, len(Z) - 1))
        knn = np.partition(d2, k, axis=1)[:, 1 : k + 1]  # column 0 is the row itself
        return 1.0 / (np.sqrt(knn).mean(axis=1) + 1e-5)

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        Z = l2_normalise(X)
        n_labeled = int((~selectable).sum())
        k = min(n_labeled + batch_size, int(self.max_clusters), len(Z))
        k = max(k, 1)
        _, assign = _kmeans_centroids(Z, k, rng, int(self.kmeans_niter))
        sizes = np.bincount(assign, minlength=k)
        existing = np.bincount(assign[~selectable], minlength=k)
        free = selectable.copy()
        eligible = sizes >= self.min_cluster_size
        chosen: list[int] = []
        while len(chosen) < batch_size:
            open_clusters = eligible & (np.bincount(assign[free], minlength=k) > 0)
            if not open_clusters.any():
                rest = np.flatnonzero(free)
                chosen.extend(rng.choice(rest, size=batch_size - len(chosen), replace=False).tolist())
                break
            cand = np.flatnonzero(open_clusters)
            order = np.lexsort((rng.random(len(cand)), -sizes[cand], existing[cand]))
            c = cand[order[0]]
            members = np.flatnonzero(assign == c)
            if len(members) > self.max_cluster_rows:  # typicality is quadratic in the cluster: score a sample
                keep = rng.choice(len(members), self.max_cluster_rows, replace=False)
                members = np.sort(np.union1d(members[keep], members[free[members]][:1]))
            typ = self._typicality(Z[members], min(int(self.k_neighbors), len(members) // 2))
            typ[~free[members]] = -np.inf
            pick = int(members[np.argmax(typ)])
            chosen.append(pick)
            free[pick] = False
            existing[c] += 1
        return np.asarray(chosen, dtype=np.int64)


class ProbCoverQuery(QueryStrategy):
    """ProbCover (Yehuda et al. 2022): balls of radius ``delta`` around every row on the L2-normalised features;
    greedily take the selectable row whose ball covers the most not-yet-covered rows (labeled rows' balls start
    covered); random rows once everything is covered.

    Parameters
    ----------
    delta : float or None, default=None
        Ball radius; None estimates it as the median distance to the ``k_delta``-th nearest neighbour on a sample.
    max_edges : int, default=20_000_000
        Refuse a graph larger than this (a clear error instead of running out of memory).
    """

    def __init__(
        self,
        *,
        delta: float | None = None,
        k_delta: int = 10,
        max_edges: int = 20_000_000,
        random_state: RandomState = None,
    ) -> None:
        self.delta = delta
        self.k_delta = k_delta
        self.max_edges = max_edges
        self.random_state = random_state

    def _estimate_delta(self, Z: np.ndarray) -> float:
        rng = np.random.default_rng(0)  # a property of the data, the same in every round
        sample = Z[rng.choice(len(Z), size=min(len(Z), 2000), replace=False)]
        d2 = np.maximum(2.0 - 2.0 * (sample @ Z.T), 0.0)
        k = min(int(self.k_delta), len(Z) - 1)
        return float(np.median(np.sqrt(np.partition(d2, k, axis=1)[:, k])))

    def _graph(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The delta-ball graph as CSR (src, dst, row starts). It depends only on the pool and delta, so the last
        one is kept (keyed by a fingerprint of X) and reused across rounds: building it is an N x N product."""
        key = (X.shape, hashlib.sha1(np.ascontiguousarray(X[:: max(1, len(X) // 64)]).tobytes()).hexdigest())
        key += (self.delta, self.k_delta)
        if _GRAPH_CACHE.get("key") == key:
            return _GRAPH_CACHE["graph"]
        Z = l2_normalise(X)
        n = len(Z)
        delta = float(self.delta) if self.delta is not None else self._estimate_delta(Z)
        cos_min = 1.0 - delta * delta / 2.0  # ||a - b|| < delta  <=>  a.b > 1 - delta^2/2 for unit vectors
        src, dst = [], []
        n_edges = 0
        for s in range(0, n, 2048):
            i, j = np.nonzero(Z[s : s + 2048] @ Z.T > cos_min)
            n_edges += len(i)
            if n_edges > self.max_edges:
                raise ValueError(f"delta={delta:.3g} gives more than max_edges={self.max_edges} edges; lower delta")
            src.append(i + s)
            dst.append(j)
        src, dst = np.concatenate(src), np.concatenate(dst)  # sorted by src: CSR by row
        graph = (src, dst, np.searchsorted(src, np.arange(n + 1)))
        _GRAPH_CACHE.clear()
        _GRAPH_CACHE.update(key=key, graph=graph)
        return graph

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        if self.delta is not None and float(self.delta) <= 0:
            raise ValueError(f"delta must be positive, got {self.delta}")
        src, dst, starts = self._graph(X)
        n = len(X)
        covered = np.zeros(n, dtype=bool)
        for r in np.flatnonzero(~selectable):
            covered[dst[starts[r] : starts[r + 1]]] = True
        degree = np.bincount(src, weights=~covered[dst], minlength=n).astype(np.int64)
        free = selectable.copy()
        chosen: list[int] = []
        while len(chosen) < batch_size:
            score = np.where(free, degree, -1)
            best = int(score.max())
            if best <= 0:
                rest = np.flatnonzero(free)
                chosen.extend(rng.choice(rest, size=batch_size - len(chosen), replace=False).tolist())
                break
            ties = np.flatnonzero(score == best)
            pick = int(ties[rng.integers(len(ties))])
            chosen.append(pick)
            free[pick] = False
            ball = dst[starts[pick] : starts[pick + 1]]
            newly = ball[~covered[ball]]
            covered[newly] = True
            for u in newly:  # every row whose ball holds u loses one uncovered neighbour (the graph is symmetric)
                degree[dst[starts[u] : starts[u + 1]]] -= 1
        return np.asarray(chosen, dtype=np.int64)
