"""Representative strategies that need no head and need every row in one place: TypiClust and ProbCover.

Both work on L2-normalised features and also serve as queries (labeled and unavailable rows are never returned and
count as already covered). They run on the rows gathered by ``raydq.strategies.gather``.
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydantic import Field

from raydq.cluster import DEFAULT_TOL
from raydq.deadline import check
from raydq.numerics.distances import BLOCK_ELEMENTS, sq_distances
from raydq.numerics.norms import l2_normalise
from raydq.strategies.base import RandomState
from raydq.strategies.gather import GATHER_LIMIT, GatheredOptions, GatheredQuery
from raydq.strategies.kmeans import KMEANS_POINTS_PER_CENTROID, KmeansOptions, fit_kmeans

_GRAPH_CACHE: dict = {}  # ProbCover's last delta-ball graph (one pool's worth)


class TypiClustQuery(GatheredQuery):
    """TypiClust (Hacohen et al. 2022): k-means into ``n_labeled + batch_size`` clusters (at most ``max_clusters``);
    repeatedly take the cluster with the fewest labeled rows (largest first among ties, clusters smaller than
    ``min_cluster_size`` skipped) and its most typical selectable row, typicality being the inverse mean distance to
    the ``k_neighbors`` nearest neighbours within the cluster (scored on a sample of ``max_cluster_rows`` rows of a
    larger cluster, since it needs all pairwise distances)."""

    class Options(GatheredOptions, KmeansOptions):
        k_neighbors: int = Field(20, ge=1, le=100, description="neighbours that define typicality")
        max_clusters: int = Field(500, ge=1, le=1000, description="cap on the k-means clusters")
        min_cluster_size: int = Field(5, ge=1, le=1000, description="smaller clusters are skipped")
        max_cluster_rows: int = Field(
            5000, ge=10, le=8192, description="typicality of a larger cluster is scored on a sample of this many rows"
        )

    def __init__(
        self,
        *,
        k_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        max_cluster_rows: int = 5000,
        kmeans_niter: int = 25,
        kmeans_tol: float = DEFAULT_TOL,
        gather_limit: int = GATHER_LIMIT,
        random_state: RandomState = None,
    ) -> None:
        self.k_neighbors = k_neighbors
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.max_cluster_rows = max_cluster_rows
        self.kmeans_niter = kmeans_niter
        self.kmeans_tol = kmeans_tol
        self.gather_limit = gather_limit
        self.random_state = random_state

    @staticmethod
    def _typicality(Z: np.ndarray, k: int) -> np.ndarray:
        d2 = sq_distances(Z, Z)
        k = max(1, min(k, len(Z) - 1))
        knn = np.partition(d2, k, axis=1)[:, 1 : k + 1]  # column 0 is the row itself
        return 1.0 / (np.sqrt(knn).mean(axis=1) + 1e-5)

    def _select_rows(self, X, status, options, *, batch_size, head, rng, deadline):
        Z = l2_normalise(X, copy=False)
        selectable = status == 0
        n_labeled = int((~selectable).sum())
        k = max(1, min(n_labeled + batch_size, options.max_clusters, len(Z)))
        km = fit_kmeans(
            Z,
            k,
            niter=options.kmeans_niter,
            tol=options.kmeans_tol,
            seed=int(rng.integers(2**31)),
            max_points_per_centroid=KMEANS_POINTS_PER_CENTROID,
            deadline=deadline,
        )
        assign = km.assign(Z)[1]
        sizes = np.bincount(assign, minlength=k)
        existing = np.bincount(assign[~selectable], minlength=k)
        free = selectable.copy()
        eligible = sizes >= options.min_cluster_size
        chosen: list[int] = []
        while len(chosen) < batch_size:
            check(deadline)
            open_clusters = eligible & (np.bincount(assign[free], minlength=k) > 0)
            if not open_clusters.any():
                rest = np.flatnonzero(free)
                chosen.extend(rng.choice(rest, size=batch_size - len(chosen), replace=False).tolist())
                break
            cand = np.flatnonzero(open_clusters)
            order = np.lexsort((rng.random(len(cand)), -sizes[cand], existing[cand]))
            c = cand[order[0]]
            members = np.flatnonzero(assign == c)
            if len(members) > options.max_cluster_rows:  # typicality is quadratic in the cluster: score a sample
                keep = rng.choice(len(members), options.max_cluster_rows, replace=False)
                members = np.sort(np.union1d(members[keep], members[free[members]][:1]))
            typ = self._typicality(Z[members], min(options.k_neighbors, len(members) // 2))
            typ[~free[members]] = -np.inf
            pick = int(members[np.argmax(typ)])
            chosen.append(pick)
            free[pick] = False
            existing[c] += 1
        return np.asarray(chosen, dtype=np.int64)


class ProbCoverQuery(GatheredQuery):
    """ProbCover (Yehuda et al. 2022): balls of radius ``delta`` around every row on the L2-normalised features;
    greedily take the selectable row whose ball covers the most not-yet-covered rows (labeled rows' balls start
    covered); random rows once everything is covered.

    Parameters
    ----------
    delta : float or None, default=None
        Ball radius; None estimates it as the median distance to the ``k_delta``-th nearest neighbour on a sample.
    k_delta : int, default=10
    max_edges : int, default=20_000_000
        Refuse a graph larger than this (a clear error, counted before any edge is stored, instead of running out of
        memory).
    gather_limit : int, default=200_000
    random_state : None, int or Generator
    """

    class Options(GatheredOptions):
        delta: float | None = Field(
            None, gt=0.0, le=2.0, description="ball radius on unit vectors; default: estimated from the data"
        )
        k_delta: int = Field(10, ge=1, le=100, description="neighbour rank whose median distance estimates delta")
        max_edges: int = Field(
            20_000_000,
            ge=GATHER_LIMIT,  # every row's ball holds the row itself: a smaller cap would refuse every gathered pool
            le=50_000_000,
            description="refuse a graph with more edges than this (16 bytes each)",
        )

    def __init__(
        self,
        *,
        delta: float | None = None,
        k_delta: int = 10,
        max_edges: int = 20_000_000,
        gather_limit: int = GATHER_LIMIT,
        random_state: RandomState = None,
    ) -> None:
        self.delta = delta
        self.k_delta = k_delta
        self.max_edges = max_edges
        self.gather_limit = gather_limit
        self.random_state = random_state

    @staticmethod
    def _estimate_delta(Z: np.ndarray, k_delta: int) -> float:
        rng = np.random.default_rng(0)  # a property of the data, the same in every round
        sample = Z[rng.choice(len(Z), size=min(len(Z), 2000), replace=False)]
        k = min(k_delta, len(Z) - 1)
        step = max(1, BLOCK_ELEMENTS // len(sample))
        nearest = []  # per block of Z, each sample row's k + 1 smallest squared distances (the row itself is one)
        for s in range(0, len(Z), step):
            block = sq_distances(sample, Z[s : s + step])
            nearest.append(np.partition(block, min(k, block.shape[1] - 1), axis=1)[:, : k + 1])
        d2 = np.concatenate(nearest, axis=1)
        return float(np.median(np.sqrt(np.partition(d2, k, axis=1)[:, k])))

    def _graph(self, Z: np.ndarray, options, deadline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The delta-ball graph as CSR (src, dst, row starts). It depends only on the pool and delta, so the last
        one is kept (keyed by a fingerprint of Z) and reused across rounds: building it is an N x N product."""
        key = (Z.shape, hashlib.sha1(np.ascontiguousarray(Z[:: max(1, len(Z) // 64)]).tobytes()).hexdigest())
        key += (options.delta, options.k_delta)
        if _GRAPH_CACHE.get("key") == key:
            return _GRAPH_CACHE["graph"]
        n = len(Z)
        delta = options.delta if options.delta is not None else self._estimate_delta(Z, options.k_delta)
        cos_min = 1.0 - delta * delta / 2.0  # ||a - b|| < delta  <=>  a.b > 1 - delta^2/2 for unit vectors
        src, dst = [], []
        n_edges = 0
        step = max(1, BLOCK_ELEMENTS // max(1, n))
        for s in range(0, n, step):
            check(deadline)
            near = Z[s : s + step] @ Z.T > cos_min
            n_edges += int(np.count_nonzero(near))  # counted before any edge is stored
            if n_edges > options.max_edges:
                raise ValueError(f"delta={delta:.3g} gives more than max_edges={options.max_edges} edges; lower delta")
            i, j = np.nonzero(near)
            src.append(i + s)
            dst.append(j)
        src, dst = np.concatenate(src), np.concatenate(dst)  # sorted by src: CSR by row
        graph = (src, dst, np.searchsorted(src, np.arange(n + 1)))
        _GRAPH_CACHE.clear()
        _GRAPH_CACHE.update(key=key, graph=graph)
        return graph

    def _select_rows(self, X, status, options, *, batch_size, head, rng, deadline):
        Z = l2_normalise(X, copy=False)
        src, dst, starts = self._graph(Z, options, deadline)
        selectable = status == 0
        n = len(Z)
        covered = np.zeros(n, dtype=bool)
        for r in np.flatnonzero(~selectable):
            covered[dst[starts[r] : starts[r + 1]]] = True
        degree = np.bincount(src, weights=~covered[dst], minlength=n).astype(np.int64)
        free = selectable.copy()
        chosen: list[int] = []
        while len(chosen) < batch_size:
            check(deadline)
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
