"""k-means backends with faiss's ``Kmeans`` surface: ``Kmeans(d, k, niter=, seed=)``, ``train(x)``, ``centroids``,
``assign(x) -> (distances, indices)``.

cuML runs on a CUDA device, faiss on the CPU, and a small torch implementation is the last resort when neither
imports. ``kmeans_backend_name`` is the one place that probes and chooses; callers never pick a backend themselves.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from raydq.cluster.threads import single_thread_blas

log = logging.getLogger(__name__)

BACKENDS = ("cuml", "faiss", "torch")
ENV_OVERRIDE = "RAYDQ_KMEANS_BACKEND"


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_train_input(x: np.ndarray, k: int) -> np.ndarray:
    x = _as_f32(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {x.shape}")
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {x.shape[0]}")
    return x


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D² sampling): the init every backend starts from, so one seed means one start."""
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(sq - 2.0 * (x @ x[first]) + sq[first], 0.0)
    for j in range(1, k):
        cdf = np.cumsum(closest, dtype=np.float64)
        total = cdf[-1]
        nxt = (
            int(rng.integers(n)) if total <= 0 else min(int(np.searchsorted(cdf, rng.random() * total, "right")), n - 1)
        )
        centers[j] = x[nxt]
        closest = np.minimum(closest, np.maximum(sq - 2.0 * (x @ x[nxt]) + sq[nxt], 0.0))
    return centers


class _KmeansBase:
    """Shared surface; subclasses implement ``_train(x, init)`` returning the centroids.

    Like faiss, training uses at most ``max_points_per_centroid * k`` rows (a seeded uniform sample; None: every row):
    beyond that more points barely move the centroids and only cost time. Each of ``n_init`` runs starts from its own
    k-means++ seeding, and the run with the lowest objective wins (sklearn's ``n_init``, faiss's ``nredo``). Seeding
    makes k sequential passes over its input, so on large inputs it runs on a sample of at most
    ``_SEEDING_BUDGET / (k * d)`` rows (never fewer than 32 per centroid).
    """

    name = "base"
    _SEEDING_BUDGET = 2e8  # multiply-adds k-means++ seeding may spend

    def __init__(
        self,
        d: int,
        k: int,
        *,
        niter: int = 25,
        seed: int = 1234,
        n_init: int = 1,
        max_points_per_centroid: int | None = 256,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        self.d, self.k, self.niter, self.n_init = int(d), int(k), int(niter), int(n_init)
        self.seed = int(seed) % 2**31  # faiss and cuML take a 32-bit seed
        self.max_points_per_centroid = max_points_per_centroid
        self.centroids: np.ndarray | None = None

    def train(self, x: np.ndarray) -> float:
        """Fit the centroids on ``x`` (n >= k rows); returns the final sum of squared distances over ``x``."""
        x = _check_train_input(x, self.k)
        if x.shape[1] != self.d:
            raise ValueError(f"x has {x.shape[1]} columns, expected d={self.d}")
        rng = np.random.default_rng(self.seed)
        sample = x
        cap = None if self.max_points_per_centroid is None else self.max_points_per_centroid * self.k
        if cap is not None and len(x) > cap:
            sample = x[np.sort(rng.choice(len(x), cap, replace=False))]
        n_seed = max(32 * self.k, int(self._SEEDING_BUDGET / (self.k * self.d)))
        best, best_obj = None, np.inf
        for _ in range(self.n_init):
            seed_rows = sample
            if len(sample) > n_seed:
                seed_rows = sample[rng.choice(len(sample), n_seed, replace=False)]
            with single_thread_blas():  # k small products in a row: thread start-up would dominate
                init = kmeans_plusplus(seed_rows, self.k, rng)
            centroids = _as_f32(self._train(sample, init))
            obj = float(_nearest_centroid(sample, centroids)[0].sum()) if self.n_init > 1 else 0.0
            if best is None or obj < best_obj:
                best, best_obj = centroids, obj
        self.centroids = best
        return float(self.assign(x)[0].sum())

    def _train(self, x: np.ndarray, init: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared distance to, and index of, the nearest centroid for each row of ``x``."""
        if self.centroids is None:
            raise ValueError("call train(x) before assign(x)")
        dist, idx = _nearest_centroid(_as_f32(x), self.centroids)
        return dist, idx


def _nearest_centroid(x: np.ndarray, c: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    cc = (c * c).sum(axis=1)
    dist = np.empty(len(x), dtype=np.float32)
    idx = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        d2 = cc - 2.0 * (xs @ c.T)
        i = d2.argmin(axis=1)
        idx[s : s + chunk] = i
        dist[s : s + chunk] = np.maximum(d2[np.arange(len(xs)), i] + (xs * xs).sum(axis=1), 0.0)
    return dist, idx


class FaissKmeans(_KmeansBase):
    """faiss's CPU k-means (it subsamples to 256 points per centroid, as faiss does by default)."""

    name = "faiss"

    #: Multiply-adds per iteration below which faiss runs on one OpenMP thread. Measured on the shared 2-core dev
    #: machine: 25,600 x 768 points into 100 clusters took 1.6 s on one thread and 5.0 s on two (OpenMP threads spin
    #: against the other processes); only large problems gain from more threads.
    single_thread_below = 1e10

    def _train(self, x, init):
        import faiss

        threads = faiss.omp_get_max_threads()
        if len(x) * self.k * self.d < self.single_thread_below:
            faiss.omp_set_num_threads(1)
        try:
            return self._faiss_train(faiss, x, init)
        finally:
            faiss.omp_set_num_threads(threads)

    def _faiss_train(self, faiss, x, init):
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
        return km.centroids


class CumlKmeans(_KmeansBase):
    """cuML's k-means on the CUDA device."""

    name = "cuml"

    def _train(self, x, init):
        from cuml.cluster import KMeans

        km = KMeans(n_clusters=self.k, max_iter=self.niter, init=init, random_state=self.seed, n_init=1)
        km.fit(x)
        centers = km.cluster_centers_
        return centers.get() if hasattr(centers, "get") else np.asarray(centers)


class TorchKmeans(_KmeansBase):
    """Plain Lloyd iterations in torch: slow but always there."""

    name = "torch"

    def _train(self, x, init):
        import torch

        xt = torch.from_numpy(x)
        c = torch.from_numpy(init)
        for _ in range(self.niter):
            assign = (-2 * xt @ c.T + (c * c).sum(1)).argmin(1)
            counts = torch.bincount(assign, minlength=self.k).to(xt.dtype)
            sums = torch.zeros_like(c).index_add_(0, assign, xt)
            empty = counts == 0
            new = sums / counts.clamp_min(1).unsqueeze(1)
            new[empty] = c[empty]  # an empty cluster keeps its centroid
            if torch.allclose(new, c):
                c = new
                break
            c = new
        return c.numpy()


_CLASSES = {"cuml": CumlKmeans, "faiss": FaissKmeans, "torch": TorchKmeans}


def _cuml_usable() -> bool:
    """True only when a CUDA device is visible and a tiny real cuML k-means runs (importing cuML proves nothing)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        CumlKmeans(2, 1, niter=1).train(np.zeros((4, 2), dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None])
        return True
    except Exception as e:  # ImportError, CUDA driver errors, cuML runtime errors: all mean "not usable"
        log.debug("cuML not usable: %s", e)
        return False


def _faiss_usable() -> bool:
    try:
        FaissKmeans(2, 1, niter=1).train(np.zeros((4, 2), dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None])
        return True
    except Exception as e:
        log.debug("faiss not usable: %s", e)
        return False


def probe_backend() -> str:
    """Probe the machine and return the best usable backend name: cuml, then faiss, then torch.

    ``RAYDQ_KMEANS_BACKEND`` forces a choice (one of ``BACKENDS``).
    """
    forced = os.environ.get(ENV_OVERRIDE)
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_OVERRIDE}={forced!r} is not one of {BACKENDS}")
        return forced
    if _cuml_usable():
        return "cuml"
    if _faiss_usable():
        return "faiss"
    return "torch"


@functools.cache
def kmeans_backend_name() -> str:
    """The backend every k-means in this process uses: probed once, logged once."""
    name = probe_backend()
    log.info("k-means backend: %s", name)
    return name


def make_kmeans(d: int, k: int, *, backend: str | None = None, **params) -> _KmeansBase:
    """A k-means object of the chosen backend (the probed one unless ``backend`` names one); ``params`` are
    ``niter``, ``seed``, ``n_init`` and ``max_points_per_centroid``."""
    name = backend or kmeans_backend_name()
    if name not in _CLASSES:
        raise ValueError(f"unknown k-means backend {name!r}; choose one of {BACKENDS}")
    return _CLASSES[name](d, k, **params)


def kmeans(x: np.ndarray, k: int, *, backend: str | None = None, **params) -> np.ndarray:
    """Centroids (k, d) of ``x``."""
    x = _check_train_input(x, k)
    km = make_kmeans(x.shape[1], k, backend=backend, **params)
    km.train(x)
    return km.centroids
