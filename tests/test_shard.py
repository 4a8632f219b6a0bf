"""Every strategy over a sharded pool: K shards give exactly the 1-shard batch for the same seed (ARCHITECTURE §4),
float16 shards give the float32 batch, DropQuery's phase 1 is cached per head, and deadlines stop the shard loops."""

from __future__ import annotations

import os

import numpy as np
import pytest

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.estimator import MISSING_LABEL
from raydq.head import LinearHead
from raydq.strategies import STRATEGIES, DropQuery, LocalShardSet, make_strategy
from raydq.strategies.dropquery import CACHE_COUNTS, CACHE_RUNS
from raydq.strategies.gather import sample_rows
from raydq.strategies.shards import LABELED, UNAVAILABLE, ArrayShard
from tests.strategies.helpers import CountingDeadline, make_pool

B = 12


@pytest.fixture(scope="module")
def pool():
    return make_pool()


def _select(strategy, pool, X=None, *, n_shards=1, seed=4, batch_size=B):
    X = pool.X if X is None else X
    shards = LocalShardSet.from_arrays(X, pool.status, n_shards=n_shards)
    head = pool.head if strategy.needs_head else None
    return strategy.select(shards, batch_size=batch_size, head=head, seed=seed)


CASES = [
    ("dropquery", {"chunk_rows": 256}),  # clustering path
    ("dropquery", {"chunk_rows": 256, "max_candidates": 300}),  # candidates thinned by sampling before k-means
    ("dropquery", {"threshold": 3, "relax": False}),  # no row can exceed 3 of 3 passes: all random fill
    ("dropquery", {"n_passes": 8, "threshold": 7, "relax": False}),  # a few candidates plus random fill
    ("dropquery", {"threshold": 3, "relax": False, "random_fill": False}),  # cluster the whole selectable pool
    *[(name, {}) for name in sorted(STRATEGIES) if name != "dropquery"],
    ("coreset", {"gather_limit": 500}),  # gathered strategies on a sample
    ("typiclust", {"gather_limit": 500}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_k_shards_give_the_one_shard_batch(pool, name, params):
    whole = _select(make_strategy(name, **params), pool)
    assert len(set(whole.rows)) == B and (pool.status[whole.rows] == 0).all()
    for n_shards in (2, 3, 7):
        split = _select(make_strategy(name, **params), pool, n_shards=n_shards)
        np.testing.assert_array_equal(split.rows, whole.rows, err_msg=f"{n_shards} shards")
        info = {k: v for k, v in split.info.items() if not k.endswith("seconds") and k != "phase1_cached"}
        assert info == {k: v for k, v in whole.info.items() if k in info}
    if "threshold" in params:  # the path the case is meant to take
        n_cand = whole.info["candidates"]
        if not params.get("random_fill", True):
            assert whole.info["random_fill"] == 0 and whole.info["clustered"] == n_cand == (pool.status == 0).sum()
        elif params["threshold"] == params.get("n_passes", 3):
            assert n_cand == 0 and whole.info["random_fill"] == B
        else:
            assert 0 < n_cand < B and whole.info["random_fill"] == B - n_cand


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_float16_shards_give_the_float32_batch(pool, name):
    X16 = pool.X.astype(np.float16)
    params = {"chunk_rows": 256} if name == "dropquery" else {}
    half = _select(make_strategy(name, **params), pool, X16, n_shards=3)
    single = _select(make_strategy(name, **params), pool, X16.astype(np.float32), n_shards=3)
    np.testing.assert_array_equal(half.rows, single.rows)


def test_the_query_is_select_on_one_shard_with_a_seed_from_random_state(pool):
    y = np.where(pool.status == LABELED, pool.truth, MISSING_LABEL)
    exclude = pool.status == UNAVAILABLE
    chosen = DropQuery(random_state=np.random.default_rng(5)).query(
        pool.X, y, batch_size=10, head=pool.head, exclude=exclude
    )
    seed = int(np.random.default_rng(5).integers(2**63))
    direct = DropQuery().select(
        LocalShardSet.from_arrays(pool.X, pool.status), batch_size=10, head=pool.head, seed=seed
    )
    np.testing.assert_array_equal(chosen, direct.rows)


def test_gathered_strategies_report_their_sample_and_keep_every_labeled_row(pool):
    sel = _select(make_strategy("coreset", gather_limit=500), pool, n_shards=3)
    assert sel.info["pool_rows"] == len(pool.X)
    assert abs(sel.info["sampled_rows"] - 500) < 5 * np.sqrt(500)
    assert _select(make_strategy("coreset"), pool).info == {}  # the whole pool fits: nothing sampled
    shards = LocalShardSet.from_arrays(pool.X, pool.status, n_shards=3)
    parts = [sample_rows(s, 0.1, 3, labeled_fraction=1.0) for s in shards.shards]
    rows = np.concatenate([p[0] for p in parts])
    assert set(np.flatnonzero(pool.status == LABELED)) <= set(rows)
    for r, X, status in parts:
        np.testing.assert_array_equal(X, pool.X[r])
        np.testing.assert_array_equal(status, pool.status[r])
    whole = sample_rows(ArrayShard(pool.X, status=pool.status.copy()), 0.1, 3, labeled_fraction=1.0)
    np.testing.assert_array_equal(whole[0], rows)  # the same sample however the pool is split


def test_a_too_small_sample_is_refused_with_the_option_named(pool):
    with pytest.raises(ValueError, match="gather_limit"):
        _select(make_strategy("coreset", gather_limit=100), pool, batch_size=150)


# -- DropQuery's phase-1 cache ----------------------------------------------------------------------------------------
def _runs(shards):
    return [s.cache.get(CACHE_RUNS, 0) for s in shards.shards]


def test_phase1_is_cached_per_head_and_pass_seed(pool):
    shards = LocalShardSet.from_arrays(pool.X, pool.status, n_shards=3)
    q = DropQuery(pass_seed=11, chunk_rows=256)
    first = q.select(shards, batch_size=B, head=pool.head, seed=1)
    assert _runs(shards) == [1, 1, 1] and not first.info["phase1_cached"]
    again = q.select(shards, batch_size=B, head=pool.head, seed=1)
    assert _runs(shards) == [1, 1, 1] and again.info["phase1_cached"]
    np.testing.assert_array_equal(again.rows, first.rows)
    fresh = q.select(LocalShardSet.from_arrays(pool.X, pool.status, n_shards=2), batch_size=B, head=pool.head, seed=1)
    np.testing.assert_array_equal(fresh.rows, first.rows)  # the cached counts are the counts
    other_batch = q.select(shards, batch_size=B, head=pool.head, seed=2)  # a fresh phase-2 seed, same passes
    assert _runs(shards) == [1, 1, 1] and not np.array_equal(other_batch.rows, first.rows)

    # labels and leases change between queries: the histogram follows the status, the counts stay cached
    for s in shards.shards:
        s.set_status(s.local_rows(first.rows) + s.row_offset, LABELED)
    after = q.select(shards, batch_size=B, head=pool.head, seed=1)
    assert _runs(shards) == [1, 1, 1] and not set(after.rows) & set(first.rows)
    status = pool.status.copy()
    status[first.rows] = LABELED
    uncached = q.select(LocalShardSet.from_arrays(pool.X, status), batch_size=B, head=pool.head, seed=1)
    np.testing.assert_array_equal(after.rows, uncached.rows)

    retrained = LinearHead(6, random_state=1).fit(pool.X[first.rows], pool.truth[first.rows])
    q.select(shards, batch_size=B, head=retrained, seed=1)
    assert _runs(shards) == [2, 2, 2]  # another head: phase 1 again, and only its counts are kept
    assert all(len([k for k in s.cache if k == CACHE_COUNTS]) == 1 for s in shards.shards)
    DropQuery(pass_seed=12, chunk_rows=256).select(shards, batch_size=B, head=retrained, seed=1)
    DropQuery(pass_seed=12, n_passes=5, chunk_rows=256).select(shards, batch_size=B, head=retrained, seed=1)
    assert _runs(shards) == [4, 4, 4]  # another pass seed, another number of passes: new counts


def test_without_a_pass_seed_every_query_draws_fresh_passes(pool):
    shards = LocalShardSet.from_arrays(pool.X, pool.status)
    q = DropQuery(chunk_rows=256)
    q.select(shards, batch_size=B, head=pool.head, seed=1)
    q.select(shards, batch_size=B, head=pool.head, seed=2)
    assert _runs(shards) == [2]
    q.select(shards, batch_size=B, head=pool.head, seed=2)
    assert _runs(shards) == [2]


def test_phase2_recomputes_counts_a_shard_lost_between_the_phases(pool):
    """A shard actor restarted between the phases has an empty cache; phase 2 recomputes the same counts."""
    shards = LocalShardSet.from_arrays(pool.X, pool.status, n_shards=2)
    q = DropQuery(pass_seed=3, chunk_rows=256)
    expected = q.select(shards, batch_size=B, head=pool.head, seed=1).rows

    class ForgetfulShards(LocalShardSet):
        def map(self, fn, /, *args, deadline=None, **kwargs):
            out = super().map(fn, *args, deadline=deadline, **kwargs)
            for s in self.shards:
                s.cache.clear()
            return out

    forgetful = ForgetfulShards(LocalShardSet.from_arrays(pool.X, pool.status, n_shards=2).shards)
    np.testing.assert_array_equal(q.select(forgetful, batch_size=B, head=pool.head, seed=1).rows, expected)


# -- deadlines --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_deadline_stops_every_strategy_inside_its_loops(pool, name):
    params = {"chunk_rows": 64} if name == "dropquery" else {}
    big = np.tile(pool.X, (20, 1))  # 60,000 rows: several chunks per shard for every loop
    status = np.tile(pool.status, 20)
    shards = LocalShardSet.from_arrays(big, status, n_shards=2)
    head = pool.head if STRATEGIES[name].needs_head else None
    deadline = CountingDeadline(3)
    with pytest.raises(DeadlineExceeded):
        make_strategy(name, **params).select(shards, batch_size=B, head=head, seed=0, deadline=deadline)
    # it raised at the first check past the budget (each row thread checks once more), not after the whole pool
    assert 4 <= len(deadline.checks) <= 3 + (os.cpu_count() or 1)
    assert all(CACHE_COUNTS not in s.cache for s in shards.shards)  # nothing half-computed was kept
    with pytest.raises(DeadlineExceeded):
        make_strategy(name, **params).select(shards, batch_size=B, head=head, seed=0, deadline=Deadline(0.0))


def test_dropquery_deadline_fires_inside_the_phase1_chunk_loop(pool):
    shards = LocalShardSet.from_arrays(np.tile(pool.X, (10, 1)), np.tile(pool.status, 10))
    deadline = CountingDeadline(40)
    with pytest.raises(DeadlineExceeded) as err:
        DropQuery(chunk_rows=64, pass_seed=0).select(shards, batch_size=B, head=pool.head, seed=0, deadline=deadline)
    assert any(entry.name == "run" and "dropout_passes" in str(entry.path) for entry in err.traceback)
    assert CACHE_COUNTS not in shards.shards[0].cache


def test_the_cold_start_samples_a_large_pool_and_says_so(pool):
    whole = _select(make_strategy("centroid"), pool, batch_size=1)  # 2,048 rows per centroid < 3,000 rows
    assert whole.info["pool_rows"] == len(pool.X)
    assert abs(whole.info["sampled_rows"] - 2048) < 5 * np.sqrt(2048)
    for n_shards in (2, 5):
        split = _select(make_strategy("centroid"), pool, batch_size=1, n_shards=n_shards)
        np.testing.assert_array_equal(split.rows, whole.rows)
        assert split.info == whole.info
