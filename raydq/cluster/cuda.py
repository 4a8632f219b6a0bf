"""The device backend: cuML's Lloyd loop, with seeding, assignment and nearest-row search in cupy on the same GPU.

Only this module imports cupy and cuML, and only when a device backend is used (both import on machines without a
GPU and then fail on every call, so importing proves nothing; ``raydq.cluster.choose`` runs a tiny fit instead).
The k-means++ seeding, the final assignment and the nearest-distinct-row search are the same functions the CPU
backends run (``raydq.numerics``), given cupy as their array module: nothing of size n goes back to the host.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from raydq.cluster.backends import KmeansBase
from raydq.deadline import Deadline, check
from raydq.numerics.array_module import ArrayModule


def cupy_module() -> ArrayModule:
    import cupy

    return cupy


def device_visible() -> bool:
    """Whether this process can see an NVIDIA GPU, asked without CUDA: the driver lists its GPUs under /proc, and
    ``CUDA_VISIBLE_DEVICES`` (set by Ray for GPU actors) may hide them all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


class CumlKmeans(KmeansBase):
    """cuML's k-means on the CUDA device. ``tol`` is passed to cuML, which applies it to its own criterion (how far
    the centroids moved), so it may stop at another iteration than the numpy backend; ``tol=0`` means exactly
    ``niter`` iterations on both. cuML's loop is one call, so ``deadline`` is checked before and after it, and it
    reports only the final objective (``obj`` holds one value)."""

    name = "cuml"

    def _xp(self) -> ArrayModule:
        return cupy_module()

    def _fit(self, x, init, deadline: Deadline | None):
        from cuml.cluster import KMeans

        km = KMeans(
            n_clusters=self.k,
            max_iter=self.niter,
            tol=self.tol,
            init=init,
            n_init=1,
            random_state=self.seed,
            output_type="cupy",
        )
        km.fit(x)
        check(deadline)
        return km.cluster_centers_, np.array([float(km.inertia_)]), int(km.n_iter_) + 1
