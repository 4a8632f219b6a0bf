"""Which k-means backend this process uses: the one place that probes and chooses; callers never pick one.

The device decides first: cuML when a GPU is visible and a tiny real cuML fit succeeds. On the CPU our numpy Lloyd
(``NumpyKmeans``) is the default; faiss stays available by name. ``RAYDQ_KMEANS_BACKEND`` forces a choice.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

import numpy as np

from raydq.cluster.backends import FaissKmeans, KmeansBase, NumpyKmeans
from raydq.cluster.cuda import CumlKmeans, cupy_module, device_visible
from raydq.numerics.array_module import ArrayModule

log = logging.getLogger(__name__)

BACKENDS = ("cuml", "faiss", "numpy")
ENV_OVERRIDE = "RAYDQ_KMEANS_BACKEND"
_CLASSES: dict[str, type[KmeansBase]] = {"cuml": CumlKmeans, "faiss": FaissKmeans, "numpy": NumpyKmeans}


def _tiny_fit(cls: type[KmeansBase]) -> None:
    cls(2, 2, niter=2).train(np.arange(8, dtype=np.float32).reshape(4, 2))


def cuml_usable() -> bool:
    """True only when a CUDA device is visible and a tiny real cuML k-means runs (importing cuML proves nothing).

    When a device is visible but the fit fails (a driver too old for the CUDA line, two CuPy packages, a broken
    cuML), this warns with the exception: a GPU node that quietly clusters on its CPU is a bug someone must see.
    Without a device the fallback is silent (DEBUG)."""
    try:
        n_devices = int(cupy_module().cuda.runtime.getDeviceCount())
        why: Exception | None = None
    except Exception as e:  # no cupy, or cupy without a usable driver
        n_devices, why = 0, e
    if n_devices < 1 and not device_visible():
        log.debug("no CUDA device visible: k-means runs on the CPU (%s)", why)
        return False
    try:
        if n_devices < 1:
            raise RuntimeError(f"the driver lists a GPU but cupy cannot use it: {why!r}")
        _tiny_fit(CumlKmeans)
        return True
    except Exception as e:
        warnings.warn(
            f"a CUDA device is visible but cuML k-means cannot run ({type(e).__name__}: {e}); "
            "k-means falls back to the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return False


def probe_backend() -> str:
    """The backend to use on this machine: ``cuml`` when usable, else ``numpy`` (``RAYDQ_KMEANS_BACKEND`` forces
    one of ``BACKENDS``).

    No CPU problem size was found where faiss wins, so there is no size rule. ``python bench/kmeans.py`` on the
    shared 2-core machine (load 6-11: wall-time ratios are noisy; CPU-time ratios, the CPU seconds of training over
    those of its passes' products, are not), 25 iterations at most:
    25,600 x 768 -> 100: numpy 9 passes (default tol) 1.3x its floor, CPU 0.95-1.14x; 25 passes 1.04x, CPU
    0.89-1.09x; faiss (26 passes) 1.6-1.75x, CPU 1.08-1.25x. 64,000 x 512 -> 1000: CPU numpy 1.01-1.07x, faiss
    1.69x. Fashion-MNIST 20,000 x 1280 -> 100: CPU numpy 1.03x, faiss 2.32x. A pass costs numpy no more than
    faiss, and numpy stops early and checks the deadline between iterations.
    """
    forced = os.environ.get(ENV_OVERRIDE)
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_OVERRIDE}={forced!r} is not one of {BACKENDS}")
        return forced
    return "cuml" if cuml_usable() else "numpy"


@functools.cache
def kmeans_backend_name() -> str:
    """The backend every k-means in this process uses: probed once, logged once."""
    name = probe_backend()
    log.info("k-means backend: %s", name)
    return name


def array_module() -> ArrayModule:
    """The array module this process's k-means computes on: cupy where the backend is cuML (work the size of an
    assignment pass that follows k-means, such as the nearest-distinct-row search, belongs on the same device), else
    numpy."""
    return cupy_module() if kmeans_backend_name() == "cuml" else np


def make_kmeans(d: int, k: int, *, backend: str | None = None, **params) -> KmeansBase:
    """A k-means object of the probed backend (or the one ``backend`` names), faiss's ``Kmeans`` surface. ``params``
    are ``KmeansBase``'s keywords (``niter``, ``seed``, ``n_init``, ``max_points_per_centroid``, ``tol``), passed on
    as given: the backend validates them, and a misspelt one fails at once."""
    name = backend or kmeans_backend_name()
    if name not in _CLASSES:
        raise ValueError(f"unknown k-means backend {name!r}; choose one of {BACKENDS}")
    return _CLASSES[name](d, k, **params)


def kmeans(x: np.ndarray, k: int, *, backend: str | None = None, **params) -> np.ndarray:
    """Centroids (k, d) of the rows of ``x`` (``params`` as for ``make_kmeans``)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {x.shape}")
    km = make_kmeans(x.shape[1], k, backend=backend, **params)
    km.train(x)
    return km.centroids
