"""The strategies' k-means: their ``kmeans_niter`` and ``kmeans_tol`` reach the backend, and a deadline stops the
training between Lloyd iterations (not only before or after it)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from raydq.cluster import kmeans_backend_name
from raydq.cluster.choose import ENV_OVERRIDE
from raydq.deadline import Deadline, DeadlineExceeded
from raydq.strategies import LocalShardSet, make_strategy
from raydq.strategies.kmeans import fit_kmeans
from tests.strategies.helpers import make_pool


@pytest.fixture(autouse=True)
def numpy_backend(monkeypatch):
    """Our numpy Lloyd, whose iteration count is exact (faiss runs every iteration, cuML stops by its own rule)."""
    monkeypatch.setenv(ENV_OVERRIDE, "numpy")
    kmeans_backend_name.cache_clear()
    yield
    kmeans_backend_name.cache_clear()


@pytest.fixture(scope="module")
def pool():
    return make_pool(3000)


class ExpiresInLloyd(Deadline):
    """Passes at its first check made from inside Lloyd's loop, and never elsewhere."""

    def __init__(self) -> None:
        super().__init__(float("inf"))

    def check(self) -> None:
        caller = sys._getframe(1)
        if caller.f_code.co_name == "check":  # through raydq.deadline.check(deadline)
            caller = caller.f_back
        if caller.f_code.co_name == "lloyd":
            raise DeadlineExceeded("deadline inside the Lloyd loop")


@pytest.mark.parametrize("name", ["dropquery", "centroid"])
def test_kmeans_tol_and_niter_reach_the_backend(pool, name):
    shards = LocalShardSet.from_arrays(pool.X, pool.status)
    head = pool.head if name == "dropquery" else None
    fixed = make_strategy(name, kmeans_niter=12, kmeans_tol=0.0).select(shards, batch_size=8, head=head, seed=0)
    early = make_strategy(name, kmeans_niter=12, kmeans_tol=0.05).select(shards, batch_size=8, head=head, seed=0)
    assert fixed.info["kmeans_iterations"] == 12
    assert early.info["kmeans_iterations"] < 12


@pytest.mark.parametrize("name", ["dropquery", "centroid", "typiclust"])
def test_a_deadline_stops_the_strategy_inside_the_lloyd_loop(pool, name):
    shards = LocalShardSet.from_arrays(pool.X, pool.status)
    head = pool.head if name == "dropquery" else None
    with pytest.raises(DeadlineExceeded) as err:
        make_strategy(name).select(shards, batch_size=8, head=head, seed=0, deadline=ExpiresInLloyd())
    assert any(entry.name == "lloyd" for entry in err.traceback)


def test_fit_kmeans_trains_the_probed_backend_with_the_given_settings():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(2000, 8)).astype(np.float32)
    km = fit_kmeans(Z, 5, niter=9, tol=0.0, seed=2**40 + 3, max_points_per_centroid=None)
    assert km.name == "numpy" and km.iterations == 9 and km.seed == 3  # seeds beyond 31 bits are folded
    assert km.assign(Z)[0].sum() == pytest.approx(km.obj[-1], rel=1e-5)  # trained on every row
