"""k-means as the strategies use it: the cluster package's backend, trained under a deadline."""

from __future__ import annotations

import inspect

import numpy as np

from raydq.cluster import make_kmeans
from raydq.deadline import Deadline, check

#: Rows per centroid the representative strategies' k-means trains on: every row of a pool of tens of thousands
#: (as the reference's k-means does; a thinner sample picks visibly worse cold starts), a sample of a huge one.
KMEANS_POINTS_PER_CENTROID = 2048


def fit_kmeans(
    Z: np.ndarray,
    k: int,
    *,
    niter: int,
    seed: int,
    n_init: int = 1,
    max_points_per_centroid: int | None = None,
    deadline: Deadline | None = None,
):
    """A trained k-means object (``centroids``, ``assign``) of the probed backend on the rows of ``Z``."""
    km = make_kmeans(
        Z.shape[1], k, niter=niter, seed=seed % 2**31, n_init=n_init, max_points_per_centroid=max_points_per_centroid
    )
    check(deadline)
    # TODO(lead): once raydq.cluster's train(x, deadline=None) is merged everywhere, call it directly and drop the
    # signature probe; until then the deadline is checked before and after training only.
    if "deadline" in inspect.signature(km.train).parameters:
        km.train(Z, deadline=deadline)
    else:
        km.train(Z)
        check(deadline)
    return km
