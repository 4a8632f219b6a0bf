"""The numpy Lloyd loop's bookkeeping: the incremental update, empty clusters and early stopping. Its kernels
(assignment, seeding) are tested in tests/test_numerics.py."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.cluster.lloyd import lloyd


def _brute(x, c):
    d2 = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)
    return d2.min(1), d2.argmin(1)


def test_incremental_update_equals_the_means_of_the_previous_assignment():
    """The centroids measured by pass t are the means of pass t-1's clusters, though the update only ever added
    and removed the rows that moved."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    init = x[rng.choice(3000, 20, replace=False)]
    for t in (2, 5, 9):
        before = lloyd(x, init, niter=t - 1, tol=0)
        after = lloyd(x, init, niter=t, tol=0)
        sizes = np.bincount(before.labels, minlength=20)
        assert (sizes > 0).all()
        means = np.stack([x[before.labels == j].astype(np.float64).mean(0) for j in range(20)])
        np.testing.assert_allclose(after.centroids, means, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(after.obj[: t - 1], before.obj)
        assert after.obj[-1] == pytest.approx(_brute(x, after.centroids)[0].sum(), rel=1e-5)
        np.testing.assert_array_equal(after.labels, _brute(x, after.centroids)[1])


def test_an_empty_cluster_takes_the_row_farthest_from_its_centroid():
    rng = np.random.default_rng(3)
    right = rng.normal(size=(100, 2)) + np.array([20.0, 0.0])
    x = np.concatenate([rng.normal(size=(100, 2)), right]).astype(np.float32)
    x[7] = [-8.0, 0.0]  # the row farthest from any centroid after the first pass
    init = np.array([[10.0, 0.0], [500.0, 500.0]], np.float32)  # the second centroid wins no row at first
    one = lloyd(x, init, niter=2, tol=0)
    np.testing.assert_array_equal(one.centroids[1], x[7])  # relocated onto that row
    final = lloyd(x, init, niter=30, tol=1e-6)
    assert sorted(np.bincount(final.labels, minlength=2)) == [100, 100]  # and ends splitting the two blobs


def _means(x, labels, k):
    return np.stack([x[labels == j].astype(np.float64).mean(0) for j in range(k)])


def test_stops_at_a_fixed_point_or_when_the_objective_stalls_and_tol_zero_never_stops():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    init = x[:40].copy()
    for tol in (1e-1, 1e-3):
        r = lloyd(x, init, niter=200, tol=tol)
        gains = -np.diff(r.obj)
        at_fixed_point = np.allclose(r.centroids, _means(x, r.labels, 40), rtol=1e-5, atol=1e-6)
        assert gains[-1] <= tol * r.obj[-1] or at_fixed_point
        assert np.all(gains[:-1] > tol * r.obj[1:-1])  # it did not stop earlier than the rule says
    converged = lloyd(x, init, niter=500, tol=1e-12)
    assert len(converged.obj) < 500  # stopped because no row moved: the centroids are their rows' means
    np.testing.assert_allclose(converged.centroids, _means(x, converged.labels, 40), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(converged.labels, _brute(x, converged.centroids)[1])
    assert len(lloyd(x, init, niter=60, tol=0).obj) == 60
