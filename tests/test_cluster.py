"""k-means backends: faiss-style properties every CPU backend must have, and agreement with scikit-learn. The
kernels they share are tested in tests/test_numerics.py, Lloyd's loop and the probe in tests/cluster/."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from raydq.cluster import kmeans, make_kmeans
from raydq.deadline import Deadline, DeadlineExceeded

CPU_BACKENDS = ["numpy", "faiss"]


def _blobs(k=5, n_per=200, d=8, seed=0, spread=10.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * spread
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    return X, np.repeat(np.arange(k), n_per)


def _objective(X, C):
    return float(((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1).min(1).sum())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_agree_with_sklearn_on_easy_blobs(backend):
    X, truth = _blobs()
    km = make_kmeans(X.shape[1], 5, seed=3, backend=backend)
    inertia = km.train(X)
    dist, labels = km.assign(X)
    ref = KMeans(5, n_init=10, random_state=0).fit(X)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert adjusted_rand_score(ref.labels_, labels) == 1.0
    assert inertia == pytest.approx(ref.inertia_, rel=1e-3)
    assert dist.sum() == pytest.approx(inertia, rel=1e-4)  # train returns the objective of the centroids it keeps
    assert inertia == pytest.approx(_objective(X, km.centroids), rel=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_objective_within_a_few_percent_of_sklearn_on_overlapping_blobs(backend):
    """Overlapping clusters in 32-d: local optima differ, so only the objective is comparable."""
    X, _ = _blobs(k=20, n_per=150, d=32, seed=4, spread=1.5)
    ours = make_kmeans(32, 20, seed=1, backend=backend, n_init=3).train(X)
    ref = KMeans(20, n_init=3, random_state=0).fit(X).inertia_
    assert ours == pytest.approx(ref, rel=0.03)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_objective_never_rises_from_one_iteration_to_the_next(backend):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 16)).astype(np.float32)  # no structure: many iterations before convergence
    km = make_kmeans(16, 30, seed=0, niter=20, tol=0, backend=backend)
    km.train(X)
    obj = km.obj
    assert len(obj) >= 20
    assert np.all(np.diff(obj) <= 1e-6 * obj[:-1]), obj  # float32 distances: equal steps may differ in the last bit
    assert obj[-1] < 0.95 * obj[0]  # and it does go down


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_more_centroids_give_a_lower_error(backend):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 10)).astype(np.float32)
    errors = []
    for k in (4, 16, 64):
        km = make_kmeans(10, k, seed=1, backend=backend)
        km.train(X)  # trains on a sample of 256 rows per centroid while k is small
        errors.append(km.assign(X)[0].sum())
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fewer_distinct_points_than_centroids_still_runs(backend):
    """faiss issue #842's shape: 3 distinct points repeated, 6 centroids. Every distinct point gets a centroid
    (objective 0) and nothing is NaN."""
    base = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], np.float32)
    X = np.repeat(base, 10, axis=0)
    km = make_kmeans(2, 6, seed=0, backend=backend)
    assert km.train(X) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(km.centroids).all()
    dist, idx = km.assign(base)
    assert np.allclose(dist, 0.0, atol=1e-9)
    np.testing.assert_allclose(km.centroids[idx], base, atol=1e-5)  # faiss splits clusters with a tiny perturbation


def test_tol_zero_runs_exactly_niter_iterations_and_tol_stops_early():
    X, _ = _blobs(k=5, seed=6)
    fixed = make_kmeans(X.shape[1], 5, seed=0, niter=17, tol=0, backend="numpy")
    fixed.train(X)
    assert fixed.iterations == len(fixed.obj) == 17
    early = make_kmeans(X.shape[1], 5, seed=0, niter=17, backend="numpy")
    early.train(X)
    assert early.iterations < 17  # well-separated blobs: a fixed point within a few iterations
    assert early.obj[-1] == pytest.approx(fixed.obj[-1], rel=1e-5)
    faiss_run = make_kmeans(X.shape[1], 5, seed=0, niter=17, backend="faiss")
    faiss_run.train(X)
    assert faiss_run.iterations == 18  # faiss's 17, plus the pass that measures its final centroids


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_same_seed_same_centroids_other_seed_other_start(backend):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 12)).astype(np.float32)
    a = kmeans(X, 8, seed=5, backend=backend)
    b = kmeans(X, 8, seed=5, backend=backend)
    c = kmeans(X, 8, seed=6, backend=backend)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class _ExpiresAfter:
    """A deadline that passes after ``n`` checks: stops training at a known point, with no clock involved."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        self.left -= 1
        if self.left < 0:
            raise DeadlineExceeded("test deadline")


def test_deadline_stops_training_between_iterations_and_keeps_the_old_centroids():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    km = make_kmeans(8, 4, seed=0, niter=50, tol=0, backend="numpy")
    km.train(X)
    before = km.centroids.copy()
    k_seeding_checks = 1 + 3  # train's own check, then one per seeding step after the first
    deadline = _ExpiresAfter(k_seeding_checks + 5)
    with pytest.raises(DeadlineExceeded):
        km.train(X * 2, deadline=deadline)
    assert deadline.checks == k_seeding_checks + 6  # five iterations ran, the sixth was refused
    np.testing.assert_array_equal(km.centroids, before)
    with pytest.raises(DeadlineExceeded):
        make_kmeans(8, 4, backend="faiss").train(X, deadline=Deadline.after(-1.0))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"k": 0}, "k"), ({"niter": 0}, "niter"), ({"n_init": 0}, "n_init"), ({"tol": -1e-3}, "tol"),
     ({"tol": float("nan")}, "tol"), ({"max_points_per_centroid": 0}, "max_points_per_centroid")],
)  # fmt: skip
def test_bad_parameters_name_the_field(kwargs, field):
    params = {"k": 3, **kwargs}
    with pytest.raises(ValueError, match=field):
        make_kmeans(4, params.pop("k"), backend="numpy", **params)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least k=4"):
        kmeans(np.zeros((3, 2), np.float32), 4)
    with pytest.raises(ValueError, match="d=3"):
        make_kmeans(3, 2, backend="numpy").train(np.zeros((10, 2), np.float32))
    bad = np.ones((10, 2), np.float32)
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kmeans(bad, 2, backend="numpy")
    with pytest.raises(ValueError, match="before assign"):
        make_kmeans(2, 2, backend="numpy").assign(bad)
    with pytest.raises(ValueError, match="unknown k-means backend"):
        make_kmeans(2, 2, backend="sklearn")


def test_more_inits_never_raise_the_objective_and_full_data_is_an_option():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 8)).astype(np.float32)  # no structure: local optima differ
    one = make_kmeans(8, 12, seed=1, n_init=1, backend="numpy")
    many = make_kmeans(8, 12, seed=1, n_init=5, backend="numpy")
    assert many.train(X) <= one.train(X) * 1.0001
    sampled = make_kmeans(8, 12, seed=1, max_points_per_centroid=20, backend="numpy")
    sampled.train(X)
    assert sampled.assign(X)[0].sum() > 0  # trained on 240 rows, applies to all
    full = make_kmeans(8, 12, seed=1, max_points_per_centroid=None, backend="numpy")
    assert full.train(X) == pytest.approx(full.assign(X)[0].sum(), rel=1e-5)  # trained on every row


def test_faiss_thread_setting_is_restored_after_training():
    import faiss

    before = faiss.omp_get_max_threads()
    X, _ = _blobs(k=3)
    make_kmeans(X.shape[1], 3, backend="faiss").train(X)
    assert faiss.omp_get_max_threads() == before
