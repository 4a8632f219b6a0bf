"""k-means backends: agreement with scikit-learn, the probe-and-choose logic without a GPU, nearest distinct rows."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from raydq.cluster import backends, kmeans, kmeans_backend_name, make_kmeans, nearest_distinct, probe_backend


def _blobs(k=5, n_per=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 10
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers]).astype(np.float32)
    return X, np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_backends_agree_with_sklearn_on_easy_blobs(backend):
    X, truth = _blobs()
    km = make_kmeans(X.shape[1], 5, seed=3, backend=backend)
    inertia = km.train(X)
    _, labels = km.assign(X)
    ref = KMeans(5, n_init=10, random_state=0).fit(X)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert adjusted_rand_score(ref.labels_, labels) == 1.0
    assert inertia == pytest.approx(ref.inertia_, rel=1e-3)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_backends_are_deterministic_under_a_seed(backend):
    X, _ = _blobs(k=8, seed=1)
    a = kmeans(X, 8, seed=5, backend=backend)
    b = kmeans(X, 8, seed=5, backend=backend)
    np.testing.assert_array_equal(a, b)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="at least k=4"):
        kmeans(np.zeros((3, 2), np.float32), 4)


def test_probe_picks_faiss_on_this_cpu_machine(monkeypatch):
    monkeypatch.delenv(backends.ENV_OVERRIDE, raising=False)
    assert probe_backend() == "faiss"
    assert kmeans_backend_name() in backends.BACKENDS


def test_probe_skips_a_cuml_that_imports_but_cannot_run(monkeypatch):
    """cuML without a GPU imports fine and fails on every call: the probe must run it, not just import it."""
    monkeypatch.delenv(backends.ENV_OVERRIDE, raising=False)

    class BrokenKMeans:
        def __init__(self, **kw):
            pass

        def fit(self, x):
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    cuml = types.ModuleType("cuml")
    cuml_cluster = types.ModuleType("cuml.cluster")
    cuml_cluster.KMeans = BrokenKMeans
    cuml.cluster = cuml_cluster
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.cluster", cuml_cluster)
    assert backends._cuml_usable() is False
    assert probe_backend() == "faiss"


def test_probe_falls_back_to_torch_without_faiss(monkeypatch):
    monkeypatch.delenv(backends.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(backends, "_cuml_usable", lambda: False)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    assert backends._faiss_usable() is False
    assert probe_backend() == "torch"


def test_probe_prefers_cuml_when_usable_and_env_override(monkeypatch):
    monkeypatch.delenv(backends.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(backends, "_cuml_usable", lambda: True)
    assert probe_backend() == "cuml"
    monkeypatch.setenv(backends.ENV_OVERRIDE, "torch")
    assert probe_backend() == "torch"
    monkeypatch.setenv(backends.ENV_OVERRIDE, "nope")
    with pytest.raises(ValueError, match="RAYDQ_KMEANS_BACKEND"):
        probe_backend()


def test_nearest_distinct_matches_brute_force_when_no_conflicts():
    X, _ = _blobs(k=6)
    C = kmeans(X, 6, seed=0, backend="faiss")
    idx = nearest_distinct(X, C, chunk=97)  # small chunks exercise the running top-k merge
    brute = ((X[None] - C[:, None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(idx, brute)


def test_nearest_distinct_resolves_a_shared_nearest_row():
    X = np.array([[0.0], [10.0], [0.5]], np.float32)
    C = np.array([[0.1], [0.2]], np.float32)  # both nearest row 0; row 0 goes to centroid 0 (closer), 1 takes row 2
    np.testing.assert_array_equal(nearest_distinct(X, C, chunk=2), [0, 2])
    assert len(set(nearest_distinct(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)))) == 4


def test_more_inits_never_raise_the_objective_and_full_data_is_an_option():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 8)).astype(np.float32)  # no structure: local optima differ
    one = make_kmeans(8, 12, seed=1, n_init=1, backend="faiss")
    many = make_kmeans(8, 12, seed=1, n_init=5, backend="faiss")
    assert many.train(X) <= one.train(X) * 1.0001
    full = make_kmeans(8, 12, seed=1, max_points_per_centroid=None, backend="faiss")
    assert full.train(X) > 0
    with pytest.raises(ValueError, match="n_init"):
        make_kmeans(8, 2, n_init=0, backend="faiss")


def test_nearest_distinct_skips_rows_that_are_not_allowed():
    X = np.array([[0.0], [0.1], [5.0], [5.2]], np.float32)
    C = np.array([[0.0], [5.0]], np.float32)
    np.testing.assert_array_equal(nearest_distinct(X, C, allowed=np.array([False, True, False, True])), [1, 3])
    with pytest.raises(ValueError, match="eligible"):
        nearest_distinct(X, C, allowed=np.array([True, False, False, False]))


def test_faiss_thread_setting_is_restored_after_training():
    import faiss

    before = faiss.omp_get_max_threads()
    X, _ = _blobs(k=3)
    make_kmeans(X.shape[1], 3, backend="faiss").train(X)  # small: trains on one OpenMP thread
    assert faiss.omp_get_max_threads() == before
