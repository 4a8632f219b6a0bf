"""The strategy layer across process boundaries: per-shard functions and their arguments travel to Ray actors that
each hold one ArrayShard (the shape of ``raydq.pool``'s shard actors), the phase-1 cache lives in the actor, and a
deadline shipped to an actor stops its loop there."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.strategies import DropQuery, LocalShardSet, make_strategy
from raydq.strategies.dropquery import CACHE_RUNS
from tests.strategies.helpers import ActorShardSet, make_pool


@pytest.fixture(scope="module")
def pool():
    return make_pool(2000)


@pytest.fixture(scope="module")
def actors(ray_cluster, pool):
    return ActorShardSet(ray_cluster, LocalShardSet.from_arrays(pool.X, pool.status, n_shards=3))


@pytest.mark.parametrize("name", ["dropquery", "entropy", "bald", "centroid", "coreset"])
def test_actor_shards_give_the_in_process_batch(actors, pool, name):
    local = LocalShardSet.from_arrays(pool.X, pool.status)
    head = pool.head if make_strategy(name).needs_head else None
    expected = make_strategy(name).select(local, batch_size=8, head=head, seed=3).rows
    np.testing.assert_array_equal(make_strategy(name).select(actors, batch_size=8, head=head, seed=3).rows, expected)


def test_phase1_counts_stay_in_the_actor_between_queries(ray_cluster, actors, pool):
    q = DropQuery(pass_seed=5)
    first = q.select(actors, batch_size=8, head=pool.head, seed=1)
    runs = ray_cluster.get([a.cache_value.remote(CACHE_RUNS) for a in actors.actors])
    second = q.select(actors, batch_size=8, head=pool.head, seed=1)
    assert second.info["phase1_cached"] and not first.info["phase1_cached"]
    np.testing.assert_array_equal(first.rows, second.rows)
    assert ray_cluster.get([a.cache_value.remote(CACHE_RUNS) for a in actors.actors]) == runs


def test_a_deadline_travels_to_the_actor_and_stops_it(ray_cluster, actors, pool):
    with pytest.raises(DeadlineExceeded):
        try:
            DropQuery(chunk_rows=64).select(actors, batch_size=8, head=pool.head, seed=0, deadline=Deadline(0.0))
        except ray_cluster.exceptions.RayTaskError as e:  # the actor's exception, re-raised as its own type
            raise e.as_instanceof_cause() from None
