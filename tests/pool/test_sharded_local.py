"""``ShardedPool`` with in-process shards (``use_actors=False``, no Ray): the driver's own logic (layout, status
deltas, lookups, growth, rewrites, deadlines, bad input) against one ``LocalShardSet`` of the whole store."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.pool import PoolConfig, ShardedPool, StoreChange
from tests.pool import shard_fns
from tests.pool.expected import concat, merge_top, one_shard
from tests.pool.stores import rows_of, write_rows

LABELED = [0, 5, 333, 334, 999]
LEASED = [1, 5, 600]


@pytest.fixture
def store(tmp_path):
    write_rows(str(tmp_path), 0, 1000, rows_per_file=96)
    return str(tmp_path)


def _open(store, **kw) -> ShardedPool:
    return ShardedPool.open(store, PoolConfig(use_actors=False, **kw))


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_any_split_answers_what_one_local_shard_set_answers(store, shards):
    expected = one_shard(store, LABELED, LEASED)
    w = np.random.default_rng(3).standard_normal(16)
    with _open(store, shards=shards) as pool:
        assert pool.n_rows == 1000 and pool.dim == 16 and len(pool.bounds) == shards + 1
        pool.sync_status(LABELED, LEASED)
        got = concat(pool.shards.map(shard_fns.selectable_rows_and_sums))
        for a, b in zip(got, expected.map(shard_fns.selectable_rows_and_sums)[0], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(
            merge_top(pool.shards.map(shard_fns.top_scores, w, 25), 25)[0],
            expected.map(shard_fns.top_scores, w, 25)[0][0],
        )


def test_status_travels_as_deltas(store):
    with _open(store, shards=3) as pool:
        assert pool.sync_status(LABELED, LEASED) == 7  # rows 0, 1, 5, 333, 334, 600, 999
        assert pool.sync_status(LABELED, LEASED) == 0  # nothing changed: nothing sent
        assert pool.sync_status([*LABELED, 1], [600, 700]) == 3  # 1 leased -> labeled, 5 lease ends, 700 leased
        per_shard = pool.shards.map(shard_fns.describe_shard)
        assert [p[:2] for p in per_shard] == [(0, 334), (334, 334), (668, 332)]
        # shard 0: 0, 1, 5, 333 labeled | shard 1: 334 labeled, 600 leased | shard 2: 700 leased, 999 labeled
        assert [p[2] for p in per_shard] == [4, 1 + 2, 2 + 1]
        assert pool.status()["labeled_rows"] == 6 and pool.status()["unavailable_rows"] == 2


def test_lookup_describe_and_embeddings(store):
    ids, X, uris, _ = rows_of(0, 1000, 16)
    with _open(store, shards=3) as pool:
        assert list(pool.lookup(["img-000999", "nope", "img-000000", "img-000334"])) == [999, -1, 0, 334]
        assert list(pool.lookup([])) == []
        rows = [999, 0, 500, 333, 334]
        assert pool.describe(rows) == [(ids[r], uris[r]) for r in rows]
        np.testing.assert_array_equal(pool.embeddings(rows), X[rows].astype(np.float16).astype(np.float32))
        assert pool.embeddings([]).shape == (0, 16)


def test_bad_input_is_a_value_error_naming_the_field(store):
    with _open(store, shards=2) as pool:
        with pytest.raises(ValueError, match="labeled_rows"):
            pool.sync_status([1000], [])
        with pytest.raises(ValueError, match="unavailable_rows"):
            pool.sync_status([], [-1])
        with pytest.raises(ValueError, match="rows"):
            pool.describe([1000])
        with pytest.raises(ValueError, match="rows"):
            pool.embeddings([-3])
        assert pool.sync_status([], []) == 0  # nothing of the bad calls was applied
    with pytest.raises(pydantic.ValidationError, match="not both"):
        PoolConfig(shards=2, rows_per_shard=10)


def test_growth_fills_the_last_shard_then_adds_shards_and_keeps_full_ones(store):
    with _open(store, shards=3) as pool:
        pool.sync_status([10, 900], [20])
        first_hosts = list(pool.shards.hosts)
        version = pool.store_version
        assert pool.refresh() is StoreChange.UNCHANGED and not pool.refresh()
        write_rows(store, 1000, 700, rows_per_file=96)
        assert pool.refresh() is StoreChange.APPENDED
        assert pool.store_version != version and pool.n_rows == 1700
        assert list(pool.bounds) == [0, 334, 668, 1002, 1336, 1670, 1700]
        assert pool.shards.hosts[:2] == first_hosts[:2]  # full shards kept, with their caches
        assert pool.shards.hosts[2] is not first_hosts[2]  # the partial one reloaded with more rows
        assert list(pool.lookup(["img-001000", "img-001699", "img-000900"])) == [1000, 1699, 900]
        pool.sync_status([10, 900, 1001, 1699], [20, 1500])
        expected = one_shard(store, [10, 900, 1001, 1699], [20, 1500])
        got = concat(pool.shards.map(shard_fns.selectable_rows_and_sums))
        np.testing.assert_array_equal(got[0], expected.map(shard_fns.selectable_rows_and_sums)[0][0])
        np.testing.assert_array_equal(got[1], expected.map(shard_fns.selectable_rows_and_sums)[0][1])


def test_a_rewritten_store_is_reloaded_and_the_status_starts_over(tmp_path):
    store = str(tmp_path)
    write_rows(store, 0, 300, rows_per_file=100)
    with _open(store, rows_per_shard=128) as pool:
        pool.sync_status([1, 2], [3])
        for f in tmp_path.glob("part-*.parquet"):
            f.unlink()
        write_rows(store, 5000, 200, rows_per_file=100)
        assert pool.refresh() is StoreChange.RELOADED and pool.generation == 1
        assert pool.n_rows == 200 and list(pool.bounds) == [0, 128, 200]
        assert list(pool.lookup(["img-000001", "img-005000"])) == [-1, 0]
        assert [s[2] for s in pool.shards.map(shard_fns.describe_shard)] == [0, 0]


def test_a_deadline_stops_a_map(store):
    with _open(store, shards=2) as pool, pytest.raises(DeadlineExceeded):
        pool.shards.map(shard_fns.wait_for_file, "/nonexistent/never", deadline=Deadline.after(0.2))


@pytest.mark.parametrize("shards", [1, 3])
def test_feature_moments_are_the_whole_stores_and_follow_growth(store, shards):
    def stored(n):  # what the shards hold: float16 rows
        return rows_of(0, n, 16)[1].astype(np.float16).astype(np.float64)

    with _open(store, shards=shards) as pool:
        m = pool.feature_moments()
        assert m.count == 1000 and pool.feature_moments() is m  # cached while the store is unchanged
        np.testing.assert_allclose(m.mean, stored(1000).mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(m.var, stored(1000).var(axis=0), rtol=1e-5)
        write_rows(store, 1000, 500, rows_per_file=96)
        assert pool.refresh() is StoreChange.APPENDED
        grown = pool.feature_moments()
        assert grown.count == 1500
        np.testing.assert_allclose(grown.mean, stored(1500).mean(axis=0), rtol=1e-5, atol=1e-6)
