"""Shard actors on a three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): placement, the same
answers as one ``LocalShardSet``, reads while a shard computes, restarts (status re-sent, nothing lost), the bound
on waiting for a restart, deadlines, and a store that grows while the pool serves."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import ray

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.head import LinearHead
from raydq.pool import PoolConfig, PoolUnavailable, ShardedPool, StoreChange
from raydq.strategies.dropquery import DropQuery
from tests.conftest import NODES
from tests.pool import shard_fns
from tests.pool.expected import concat, merge_top, one_shard
from tests.pool.stores import rows_of, write_rows

pytestmark = pytest.mark.slow

LABELED = [0, 7, 333, 334, 667, 668, 999]
LEASED = [1, 7, 500, 998]
# Actors reserve half a CPU, so every node could hold all three: distinct nodes come from the spread placement.
ACTOR = {"num_cpus": 0.5, "ready_timeout_s": 60.0, "load_timeout_s": 120.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("store"))
    write_rows(path, 0, 1000, rows_per_file=96)
    return path


@pytest.fixture(scope="module")
def pool3(three_nodes, store):
    with ShardedPool.open(store, PoolConfig(shards=3, **ACTOR)) as pool:
        pool.sync_status(LABELED, LEASED)
        yield pool


def _assert_same_answers(pool: ShardedPool, expected) -> None:
    got = concat(pool.shards.map(shard_fns.selectable_rows_and_sums))
    for a, b in zip(got, expected.map(shard_fns.selectable_rows_and_sums)[0], strict=True):
        np.testing.assert_array_equal(a, b)


def _wait_until_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} still runs {timeout} s after ray.kill")


def test_shards_land_on_distinct_nodes(pool3):
    status = pool3.status()
    assert [s["rows"] for s in status["shards"]] == [[0, 334], [334, 668], [668, 1000]]
    assert {s["state"] for s in status["shards"]} == {"ready"}
    nodes = {s["node_id"] for s in status["shards"]}
    assert len(nodes) == NODES and nodes <= {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert status["pool_size"] == 1000 and status["store_version"] == pool3.store_version


def test_three_actor_shards_answer_what_one_local_shard_set_answers(pool3, store):
    expected = one_shard(store, LABELED, LEASED)
    _assert_same_answers(pool3, expected)
    w = np.random.default_rng(5).standard_normal(16)
    np.testing.assert_array_equal(
        merge_top(pool3.shards.map(shard_fns.top_scores, w, 40), 40)[0], expected.map(shard_fns.top_scores, w, 40)[0][0]
    )
    assert list(pool3.lookup(["img-000668", "img-000333", "unknown"])) == [668, 333, -1]
    assert pool3.describe([667, 668])[1] == ("img-000668", "file:///images/000668.png")
    whole = rows_of(0, 1000, 16)[1].astype(np.float16).astype(np.float64)  # what the actors hold
    moments = pool3.feature_moments()  # summed over the three actors
    assert moments.count == 1000
    np.testing.assert_allclose(moments.mean, whole.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moments.var, whole.var(axis=0), rtol=1e-5)


def test_two_actor_shards_answer_the_same(three_nodes, store):
    with ShardedPool.open(store, PoolConfig(shards=2, **ACTOR)) as pool:
        pool.sync_status(LABELED, LEASED)
        _assert_same_answers(pool, one_shard(store, LABELED, LEASED))


@pytest.mark.xfail(
    not hasattr(DropQuery, "select"), reason="the engine's DropQuery.select(shards, ...) is not on this branch yet",
    raises=AttributeError, strict=True,
)  # fmt: skip
@pytest.mark.parametrize("shards", [2, 3])
def test_dropquery_over_actor_shards_returns_the_single_shard_batch(three_nodes, store, shards):
    expected = one_shard(store, LABELED, LEASED)
    X = expected.shards[0].X.astype(np.float32)
    y = np.arange(len(X)) % 10
    head = LinearHead(n_classes=10, random_state=0).fit(X[LABELED], y[LABELED])
    want = DropQuery(max_candidates=200).select(expected, batch_size=8, head=head, seed=11)
    with ShardedPool.open(store, PoolConfig(shards=shards, **ACTOR)) as pool:
        pool.sync_status(LABELED, LEASED)
        got = DropQuery(max_candidates=200).select(pool.shards, batch_size=8, head=head, seed=11)
    np.testing.assert_array_equal(got.rows, want.rows)
    assert (got.info["threshold"], got.info["candidates"]) == (want.info["threshold"], want.info["candidates"])


def test_lookups_answer_while_a_shard_computes(pool3, tmp_path):
    release = str(tmp_path / "release")
    done: list = []
    worker = threading.Thread(target=lambda: done.append(pool3.shards.map(shard_fns.wait_for_file, release)))
    worker.start()
    try:
        assert list(pool3.lookup(["img-000400"])) == [400]
        assert pool3.describe([900]) == [("img-000900", "file:///images/000900.png")]
        assert {s["state"] for s in pool3.status()["shards"]} == {"ready"}
        assert worker.is_alive() and not done  # the map is still computing: reads did not wait for it
    finally:
        open(release, "w").close()
        worker.join(timeout=120)
    assert done == [[0, 334, 668]]


def test_a_killed_shard_comes_back_with_its_status(pool3, store):
    expected = one_shard(store, LABELED, LEASED)
    before = pool3.status()["shards"][1]
    ray.kill(pool3.shards.slots[1].handle, no_restart=False)
    _wait_until_gone(before["pid"])  # ray.kill returns at once: an answer could still come from the old process
    _assert_same_answers(pool3, expected)  # waits for the reload, re-sends the status, retries
    after = pool3.status()["shards"][1]
    assert after["incarnation"] != before["incarnation"] and after["pid"] != before["pid"]

    pid = pool3.shards.map(shard_fns.pid)[2]
    os.kill(pid, signal.SIGKILL)  # a crash rather than a kill through Ray
    assert list(pool3.lookup(["img-000999", "img-000100"])) == [999, 100]
    pool3.sync_status([*LABELED, 800], LEASED)  # a label that arrives while shard 2 may still be reloading
    _assert_same_answers(pool3, one_shard(store, [*LABELED, 800], LEASED))
    pool3.sync_status(LABELED, LEASED)


def test_a_query_during_a_reload_past_the_bound_is_unavailable_then_recovers(three_nodes, store):
    config = PoolConfig(shards=1, **{**ACTOR, "ready_timeout_s": 0.05})
    with ShardedPool.open(store, config) as pool:
        pool.sync_status(LABELED, LEASED)
        ray.kill(pool.shards.slots[0].handle, no_restart=False)
        with pytest.raises(PoolUnavailable) as err:
            pool.shards.map(shard_fns.describe_shard)
        assert err.value.retry_after_s >= 1.0
        pool.shards.ready_timeout_s = 60.0  # the shard reloads meanwhile; a later query waits for it
        _assert_same_answers(pool, one_shard(store, LABELED, LEASED))


def test_a_deadline_stops_a_map_over_actors(pool3):
    with pytest.raises(DeadlineExceeded):
        pool3.shards.map(shard_fns.wait_for_file, "/nonexistent/never", deadline=Deadline.after(0.5))
    assert pool3.shards.map(shard_fns.describe_shard)[0][:2] == (0, 334)  # the shards stopped and answer again


def test_a_store_that_grows_while_serving(three_nodes, tmp_path):
    store = str(tmp_path)
    write_rows(store, 0, 1000, rows_per_file=96)
    with ShardedPool.open(store, PoolConfig(shards=2, **ACTOR)) as pool:
        pool.sync_status([3, 600], [4])
        kept = pool.status()["shards"][0]
        write_rows(store, 1000, 1000, rows_per_file=96)
        assert pool.refresh() is StoreChange.APPENDED
        assert pool.n_rows == 2000 and list(pool.bounds) == [0, 500, 1000, 1500, 2000]
        assert pool.status()["shards"][0]["incarnation"] == kept["incarnation"]  # full shards keep their actor
        assert list(pool.lookup(["img-001000", "img-001999", "img-000600"])) == [1000, 1999, 600]
        labeled, leased = [3, 600, 1000, 1777], [4, 1999]
        pool.sync_status(labeled, leased)
        _assert_same_answers(pool, one_shard(store, labeled, leased))
        assert pool.refresh() is StoreChange.UNCHANGED
