"""k-means backends with faiss's ``Kmeans`` surface: ``Kmeans(d, k, niter=, seed=, ...)``, ``train(x)``,
``centroids``, ``assign(x) -> (distances, indices)``.

Every backend starts from the same k-means++ seeding on the same sample for a seed, and differs only in who runs
Lloyd's iterations: ``NumpyKmeans`` (ours, ``raydq.cluster.lloyd``: matrix products plus an incremental update,
early stopping) or ``FaissKmeans`` (faiss's CPU loop, exactly ``niter`` iterations). The device backend (cuML with
cupy kernels) lives in ``raydq.cluster.cuda``; ``raydq.cluster.choose`` picks one.
"""

from __future__ import annotations

import contextlib

import numpy as np

from raydq.cluster.lloyd import lloyd
from raydq.deadline import Deadline, check
from raydq.numerics.array_module import ArrayModule, to_host
from raydq.numerics.distances import nearest_centroid
from raydq.numerics.seeding import kmeans_plusplus
from raydq.numerics.threads import blas_threads, cpu_budget, single_thread_blas

#: Default relative objective change below which training stops (cuML's default is the same number). Measured with
#: ``python bench/kmeans.py --sweep`` against 25 fixed iterations: Fashion-MNIST embeddings 20,000 x 1280 -> 100
#: stop after 23 iterations or run all 25, by start, at 1.0001x (3e-4: 17 at 1.0012x; 1e-3: 10 at 1.0043x); synthetic
#: 64,000 x 512 -> 1000 runs all 25 (1e-3: 10 at 1.0102x); synthetic 25,600 x 768 -> 100 reaches a fixed point
#: after 8. A 1e-3 would halve the work for up to 1% in objective; 1e-4 keeps the selections of 25 iterations.
DEFAULT_TOL = 1e-4


def as_f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class KmeansBase:
    """Shared surface; a backend implements ``_fit(x, init, deadline) -> (centroids, obj, iterations)``.

    Like faiss, training uses at most ``max_points_per_centroid * k`` rows (a seeded uniform sample; None: every
    row): beyond that more points barely move the centroids and only cost time. Each of ``n_init`` runs starts from
    its own k-means++ seeding, and the run with the lowest objective wins (sklearn's ``n_init``, faiss's ``nredo``).
    Seeding makes k sequential passes over its input, so it runs on a sample of at most
    ``SEEDING_BUDGET / (k * d)`` rows (never fewer than ``SEED_ROWS_PER_CENTROID`` per centroid).

    After ``train``: ``centroids`` (k, d) float32, ``obj`` the objective (sum of squared distances over the
    training rows) of each assignment pass, the last being that of ``centroids``, and ``iterations`` the number
    of assignment passes over the training rows (what a run costs, in matrix products).
    """

    name = "base"
    #: True: numeric work runs on the backend's own row threads (``cpu_budget()`` of them) over single-threaded
    #: BLAS; False: BLAS (or the library) brings the threads.
    row_threads = False
    SEEDING_BUDGET = 2e8  # multiply-adds k-means++ seeding may spend
    #: Seeding reads its whole sample once per centroid (matrix-vector products, memory-bound), so its cost grows
    #: as k²: with 32 rows per centroid, 64,000 x 512 -> 1000 spent longer seeding than in 5 Lloyd passes. 8 rows
    #: per centroid gave the same final objective (bench/kmeans.py data, 3 seeds: mean 57,509 against 57,512
    #: with 32; seed-to-seed sd ~100), and so did 4 and 8 on Fashion-MNIST embeddings (20,000 x 1280 -> 100).
    SEED_ROWS_PER_CENTROID = 8

    def __init__(
        self,
        d: int,
        k: int,
        *,
        niter: int = 25,
        seed: int = 1234,
        n_init: int = 1,
        max_points_per_centroid: int | None = 256,
        tol: float = DEFAULT_TOL,
    ) -> None:
        for name, value in (("d", d), ("k", k), ("niter", niter), ("n_init", n_init)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if max_points_per_centroid is not None and int(max_points_per_centroid) < 1:
            raise ValueError(f"max_points_per_centroid must be >= 1 or None, got {max_points_per_centroid}")
        if not float(tol) >= 0.0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        self.d, self.k, self.niter, self.n_init = int(d), int(k), int(niter), int(n_init)
        self.seed = int(seed) % 2**31  # faiss and cuML take a 32-bit seed
        self.max_points_per_centroid = max_points_per_centroid
        self.tol = float(tol)
        self.centroids: np.ndarray | None = None
        self.obj: np.ndarray | None = None
        self.iterations = 0

    # -- the surface ----------------------------------------------------------------------------------------------
    def train(self, x: np.ndarray, deadline: Deadline | None = None) -> float:
        """Fit the centroids on ``x`` (n >= k finite rows); returns the objective over the training rows (all of
        ``x`` unless it had more than ``max_points_per_centroid * k`` rows). ``deadline`` is checked between
        iterations; when it passes, ``DeadlineExceeded`` is raised and the previous centroids stay."""
        x = self._check_input(x)
        if len(x) < self.k:
            raise ValueError(f"k-means needs at least k={self.k} points, got {len(x)}")
        check(deadline)
        rng = np.random.default_rng(self.seed)
        cap = None if self.max_points_per_centroid is None else int(self.max_points_per_centroid) * self.k
        sample = x if cap is None or len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]
        n_seed = max(self.SEED_ROWS_PER_CENTROID * self.k, int(self.SEEDING_BUDGET / (self.k * self.d)))
        xp = self._xp()
        best = None
        with self._thread_limits():
            sample = xp.asarray(sample)
            if not bool(xp.isfinite(sample.sum())):
                raise ValueError("x contains NaN or infinite values (or values so large that distances overflow)")
            for _ in range(self.n_init):
                seed_rows = sample
                if len(sample) > n_seed:
                    seed_rows = sample[xp.asarray(np.sort(rng.choice(len(sample), n_seed, replace=False)))]
                # k matrix-vector products in a row: BLAS threads would only add barriers
                with contextlib.nullcontext() if self.row_threads else single_thread_blas():
                    init = kmeans_plusplus(seed_rows, self.k, rng, xp=xp, deadline=deadline)
                run = self._fit(sample, init, deadline)
                if best is None or run[1][-1] < best[1][-1]:
                    best = run
        centroids, obj, iterations = best
        self.centroids = as_f32(to_host(centroids))
        self.obj = np.asarray(obj, dtype=np.float64)
        self.iterations = int(iterations)
        return float(self.obj[-1])

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared distance to, and index of, the nearest centroid for each row of ``x``."""
        if self.centroids is None:
            raise ValueError("call train(x) before assign(x)")
        x = self._check_input(x)
        xp = self._xp()
        with self._thread_limits():
            dist, idx = nearest_centroid(
                x, xp.asarray(self.centroids), xp=xp, n_threads=cpu_budget() if self.row_threads else 1
            )
        return to_host(dist), to_host(idx)

    # -- what a backend provides ----------------------------------------------------------------------------------
    def _fit(self, x, init, deadline: Deadline | None) -> tuple[object, np.ndarray, int]:
        raise NotImplementedError

    def _xp(self) -> ArrayModule:
        """The array module the training rows live on."""
        return np

    def _thread_limits(self) -> contextlib.AbstractContextManager:
        """BLAS threads while training and assigning: this process's CPU budget, or one per row thread."""
        return single_thread_blas() if self.row_threads else blas_threads(cpu_budget())

    def _check_input(self, x) -> np.ndarray:
        x = as_f32(x)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, d={self.d}), got {x.shape}")
        return x


class NumpyKmeans(KmeansBase):
    """Lloyd's iterations as float32 matrix products (``raydq.cluster.lloyd``), stopping early at convergence."""

    name = "numpy"
    row_threads = True

    def _fit(self, x, init, deadline):
        result = lloyd(x, init, niter=self.niter, tol=self.tol, deadline=deadline, n_threads=cpu_budget())
        return result.centroids, result.obj, len(result.obj)


class FaissKmeans(KmeansBase):
    """faiss's CPU k-means loop: exactly ``niter`` iterations (faiss has no early stop, so ``tol`` is ignored, and
    the deadline is checked only before and after its loop). faiss reports the objective of the centroids before
    its last update, so one more assignment pass measures the centroids it returns."""

    name = "faiss"

    def _fit(self, x, init, deadline):
        import faiss  # optional at run time: the process may never use this backend

        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(cpu_budget())
        try:
            km = faiss.Kmeans(
                self.d,
                self.k,
                niter=self.niter,
                seed=self.seed,
                verbose=False,
                max_points_per_centroid=len(x),  # the base class already sampled
                min_points_per_centroid=1,  # small candidate sets are expected; no stderr warning
            )
            km.train(x, init_centroids=init)
        finally:
            faiss.omp_set_num_threads(threads)
        check(deadline)
        final = float(nearest_centroid(x, km.centroids)[0].sum(dtype=np.float64))
        return km.centroids, np.append(np.asarray(km.obj, dtype=np.float64), final), self.niter + 1
