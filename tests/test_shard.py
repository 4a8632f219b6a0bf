"""The two phases of ARCHITECTURE §4: a pool split into shards gives exactly the batch the whole pool gives."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.head import LinearHead
from raydq.pool.shard import (
    LocalShard,
    dropquery_over_shards,
    phase1,
    random_fill_keys,
    row_uniforms,
    split_into_shards,
)
from raydq.strategies import MISSING_LABEL, DropQuery


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(0)
    n, d, c = 3000, 32, 6
    centers = rng.normal(size=(c, d)) * 1.5
    truth = rng.integers(0, c, n)
    X = (centers[truth] + rng.normal(size=(n, d))).astype(np.float32)
    labeled = rng.choice(n, 24, replace=False)
    selectable = np.ones(n, bool)
    selectable[labeled] = False
    head = LinearHead(c, random_state=0).fit(X[labeled], truth[labeled])
    return X, selectable, head


@pytest.mark.parametrize("n_shards", [2, 3, 7])
@pytest.mark.parametrize(
    "params",
    [
        {},  # clustering path
        {"max_candidates": 300},  # candidates thinned by sampling before k-means
        {"threshold": 3, "relax": False, "n_passes": 3},  # no row can exceed 3: all random fill
    ],
)
def test_sharded_query_equals_single_shard(setting, n_shards, params):
    X, selectable, head = setting
    kw = {"batch_size": 12, "seed": 4, **params}
    whole = dropquery_over_shards([LocalShard(X, selectable, chunk_rows=256)], head, **kw)
    split = dropquery_over_shards(split_into_shards(X, selectable, n_shards, chunk_rows=256), head, **kw)
    np.testing.assert_array_equal(whole.rows, split.rows)
    assert (whole.threshold, whole.n_candidates, whole.n_random) == (
        split.threshold,
        split.n_candidates,
        split.n_random,
    )
    assert len(set(whole.rows)) == 12 and selectable[whole.rows].all()


def test_the_strategy_is_the_single_shard_driver(setting):
    X, selectable, head = setting
    y = np.where(selectable, MISSING_LABEL, 0)
    q = DropQuery(random_state=np.random.default_rng(5))
    chosen = q.query(X, y, batch_size=10, head=head)
    seed = int(np.random.default_rng(5).integers(2**63))
    direct = dropquery_over_shards([LocalShard(X, selectable)], head, batch_size=10, seed=seed)
    np.testing.assert_array_equal(chosen, direct.rows)


def test_phase1_histogram_counts_only_selectable_rows(setting):
    X, selectable, head = setting
    W, b = head.affine()
    counts, hist = phase1(X, selectable, W, b, dropout=0.75, n_passes=3, seed=0)
    assert counts.shape == (len(X),) and hist.shape == (4,)
    assert hist.sum() == selectable.sum()
    np.testing.assert_array_equal(hist, np.bincount(counts[selectable], minlength=4))


def test_histograms_add_up_across_shards(setting):
    X, selectable, head = setting
    W, b = head.affine()
    shards = split_into_shards(X, selectable, 3)
    total = sum(s.phase1(W, b, dropout=0.75, n_passes=3, seed=1) for s in shards)
    _, whole = phase1(X, selectable, W, b, dropout=0.75, n_passes=3, seed=1)
    np.testing.assert_array_equal(total, whole)


def test_random_fill_is_a_uniform_sample_over_all_shards():
    n, need = 400, 3
    selectable = np.ones(n, bool)
    counts = np.zeros(n, np.uint8)
    hits = np.zeros(n)
    for seed in range(2000):
        parts = [
            random_fill_keys(selectable[a:e], counts[a:e], 0, need, seed=seed, row_offset=a)
            for a, e in [(0, 100), (100, 400)]
        ]
        rows = np.concatenate([p[0] for p in parts])
        keys = np.concatenate([p[1] for p in parts])
        hits[rows[np.argsort(keys)[:need]]] += 1
    expected = 2000 * need / n
    assert abs(hits[:100].mean() - expected) < 0.1 * expected  # the small shard gets its fair share
    assert abs(hits[100:].mean() - expected) < 0.1 * expected


def test_row_uniforms_are_uniform_and_keyed_by_row():
    u = row_uniforms(3, np.arange(100000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    np.testing.assert_array_equal(row_uniforms(3, np.arange(10, 20)), u[10:20])
    assert not np.array_equal(row_uniforms(4, np.arange(10)), u[:10])


def test_phase2_before_phase1_is_an_error(setting):
    X, selectable, head = setting
    with pytest.raises(RuntimeError, match="phase1"):
        LocalShard(X, selectable).candidates(0, head, keep_fraction=1.0, seed=0)
