"""k-means as the strategies use it: the cluster package's probed backend, trained under a deadline."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from raydq.cluster import DEFAULT_TOL, KmeansBase, make_kmeans
from raydq.deadline import Deadline
from raydq.strategies.base import StrategyOptions

#: Rows per centroid the representative strategies' k-means trains on: every row of a pool of tens of thousands
#: (as the reference's k-means does; a thinner sample picks visibly worse cold starts), a sample of a huge one.
KMEANS_POINTS_PER_CENTROID = 2048


class KmeansOptions(StrategyOptions):
    """The k-means settings of every strategy that clusters (its constructor takes the same two keywords)."""

    kmeans_niter: int = Field(25, ge=1, le=100, description="k-means iterations at most")
    kmeans_tol: float = Field(
        DEFAULT_TOL,
        ge=0.0,
        le=0.1,
        description="k-means stops once an iteration lowers its objective by less than this fraction (0: never early)",
    )


def fit_kmeans(
    Z: np.ndarray,
    k: int,
    *,
    niter: int,
    tol: float,
    seed: int,
    n_init: int = 1,
    max_points_per_centroid: int | None = None,
    deadline: Deadline | None = None,
) -> KmeansBase:
    """A k-means of the probed backend trained on the rows of ``Z``; ``deadline`` is checked between iterations
    (``DeadlineExceeded`` stops training there)."""
    km = make_kmeans(
        Z.shape[1],
        k,
        niter=niter,
        tol=tol,
        seed=seed % 2**31,
        n_init=n_init,
        max_points_per_centroid=max_points_per_centroid,
    )
    km.train(Z, deadline=deadline)
    return km
