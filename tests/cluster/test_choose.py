"""Choosing the k-means backend: the GPU probe's fallback and warning, the env override, and the device backend's
code path run end to end with numpy standing in for cupy and scikit-learn for cuML (no GPU here)."""

from __future__ import annotations

import sys
import types
import warnings
from typing import ClassVar

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

from raydq.cluster import array_module, choose, cuda, kmeans_backend_name, make_kmeans, probe_backend
from raydq.cluster.choose import ENV_OVERRIDE
from raydq.numerics import nearest
from raydq.numerics.nearest import nearest_distinct_rows


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """No override from the environment, and no cached choice leaking into or out of a test."""
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    kmeans_backend_name.cache_clear()
    yield
    kmeans_backend_name.cache_clear()


def _fake_cupy(n_devices: int, calls: list[str] | None = None) -> types.ModuleType:
    """numpy under cupy's name, with cupy's device count; ``calls`` records every array moved 'to the device'."""
    mod = types.ModuleType("cupy")
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: n_devices))

    def asarray(a, dtype=None):
        if calls is not None:
            calls.append("asarray")
        return np.asarray(a, dtype=dtype)

    mod.asarray = asarray
    mod.__getattr__ = lambda name: getattr(np, name)
    return mod


def _install_cuml(monkeypatch, kmeans_cls) -> None:
    cuml = types.ModuleType("cuml")
    cluster = types.ModuleType("cuml.cluster")
    cluster.KMeans = kmeans_cls
    cuml.cluster = cluster
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.cluster", cluster)


class BrokenKMeans:
    """cuML on a machine without a usable GPU: it imports, then every call fails."""

    def __init__(self, **kw):
        pass

    def fit(self, x):
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")


class SklearnAsCuml:
    """cuML's KMeans surface over scikit-learn, checking the arguments raydq passes."""

    seen: ClassVar[list[dict]] = []

    def __init__(self, *, n_clusters, max_iter, tol, init, n_init, random_state, output_type):
        assert n_init == 1 and output_type == "cupy" and isinstance(init, np.ndarray)
        SklearnAsCuml.seen.append({"max_iter": max_iter, "tol": tol})
        self._km = SkKMeans(n_clusters, init=init, n_init=1, max_iter=max_iter, tol=tol, random_state=random_state)

    def fit(self, x):
        self._km.fit(x)
        self.cluster_centers_ = self._km.cluster_centers_.astype(np.float32)
        self.inertia_, self.n_iter_ = self._km.inertia_, self._km.n_iter_
        return self


def test_without_a_device_the_probe_picks_numpy_silently(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setattr(choose, "device_visible", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert probe_backend() == "numpy"
    assert kmeans_backend_name() == "numpy"


def test_a_visible_device_with_a_broken_cuml_falls_back_and_warns_with_the_exception(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(n_devices=1))
    _install_cuml(monkeypatch, BrokenKMeans)
    with pytest.warns(RuntimeWarning, match="cuML k-means cannot run.*cudaErrorInsufficientDriver"):
        assert probe_backend() == "numpy"
    with pytest.warns(RuntimeWarning):
        assert make_kmeans(4, 2).name == "numpy"  # the factory follows the probe


def test_a_gpu_the_driver_lists_but_cupy_cannot_use_warns(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # the image lacks the gpu extra
    monkeypatch.setattr(choose, "device_visible", lambda: True)
    with pytest.warns(RuntimeWarning, match="cupy cannot use it"):
        assert probe_backend() == "numpy"


def test_device_visible_reads_cuda_visible_devices(monkeypatch):
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert cuda.device_visible() is False


def test_env_override_wins_and_is_checked(monkeypatch):
    monkeypatch.setattr(choose, "cuml_usable", lambda: True)
    assert probe_backend() == "cuml"
    monkeypatch.setenv(ENV_OVERRIDE, "faiss")
    assert probe_backend() == "faiss"
    monkeypatch.setenv(ENV_OVERRIDE, "torch")
    with pytest.raises(ValueError, match=ENV_OVERRIDE):
        probe_backend()


def test_device_backend_path_end_to_end_with_stand_ins(monkeypatch):
    """With a working 'cuML' the probe picks it; training seeds on the 'device', hands cuML the k-means++ init and
    tol, and the objective matches the CPU backend's from the same start; the nearest distinct rows are searched
    on the 'device' too, block by block."""
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(n_devices=1, calls=calls))
    _install_cuml(monkeypatch, SklearnAsCuml)
    assert kmeans_backend_name() == "cuml"
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 10)) * 8
    x = np.concatenate([c + rng.normal(size=(300, 10)) for c in centers]).astype(np.float32)
    gpu = make_kmeans(10, 6, seed=2, tol=0, niter=30, max_points_per_centroid=None)
    assert gpu.name == "cuml"
    obj = gpu.train(x)
    assert SklearnAsCuml.seen[-1] == {"max_iter": 30, "tol": 0.0}
    cpu = make_kmeans(10, 6, seed=2, tol=0, niter=30, max_points_per_centroid=None, backend="numpy")
    assert obj == pytest.approx(cpu.train(x), rel=1e-4)
    np.testing.assert_allclose(np.sort(gpu.centroids, 0), np.sort(cpu.centroids, 0), rtol=1e-4, atol=1e-4)
    dist, _ = gpu.assign(x)
    assert dist.sum() == pytest.approx(obj, rel=1e-4)
    assert array_module() is sys.modules["cupy"]
    monkeypatch.setattr(nearest, "BLOCK_ROWS", 500)
    calls.clear()
    picked = nearest_distinct_rows(x, gpu.centroids, normalise=True, xp=array_module())
    assert calls.count("asarray") >= 5  # the centroids, then every block of x went to the 'device'
    np.testing.assert_array_equal(picked, nearest_distinct_rows(x, gpu.centroids, normalise=True))
