"""DropQuery on hand-built cases whose answer is known: threshold relaxation, random fill, candidates only."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.head import LinearHead
from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS
from raydq.strategies import MISSING_LABEL, DropQuery, LocalShardSet
from raydq.strategies.dropquery import (
    CACHE_COUNTS,
    CACHE_RUNS,
    DropoutPasses,
    candidate_cap,
    choose_threshold,
    n_above,
)
from raydq.strategies.shards import LABELED


class IdentityHead:
    """transform = identity, so candidate embeddings are just the normalised features."""

    def affine(self):
        return np.zeros((2, 2), np.float32), np.zeros(2, np.float32)

    def transform(self, X):
        return np.asarray(X, np.float32)


def preset(X, counts, *, status=None, n_shards=1, n_passes=3):
    """Shards whose phase-1 cache already holds ``counts`` for ``DropQuery(pass_seed=0)`` and ``IdentityHead``: the
    test sets the mismatch counts instead of drawing them (and a cache miss would fail: W does not fit X)."""
    shards = LocalShardSet.from_arrays(X, status, n_shards=n_shards)
    W, b = IdentityHead().affine()
    key = DropoutPasses(W, b, 0.75, n_passes, 0, DEFAULT_CHUNK_ROWS).key
    for s in shards.shards:
        s.cache[CACHE_COUNTS] = (key, np.asarray(counts, np.uint8)[s.row_offset : s.row_offset + len(s)])
    return shards


def run(shards, batch_size, *, seed=0, **params):
    sel = DropQuery(pass_seed=0, **params).select(shards, batch_size=batch_size, head=IdentityHead(), seed=seed)
    assert all(CACHE_RUNS not in s.cache for s in shards.shards)  # the preset counts were used
    return sel


@pytest.mark.parametrize(
    ("hist", "batch", "expected"),
    [
        ([900, 50, 30, 20], 2, 1),  # t = 1 has 50 = 25 x 2 above it: no relaxation
        ([900, 60, 20, 20], 2, 0),  # t = 1 has 40 < 50 above it: relax to 0
        ([900, 10, 5, 2], 2, 0),  # never enough: stops at 0
        ([0, 0, 0, 100], 4, 1),  # plenty at the start
        ([10, 10, 10, 10, 10, 100], 4, 2),  # M = 5 starts at 2
    ],
)
def test_threshold_relaxation_known_answers(hist, batch, expected):
    assert choose_threshold(np.array(hist), batch_size=batch, candidate_factor=25) == expected


def test_threshold_options():
    hist = np.array([900, 60, 20, 20])
    assert choose_threshold(hist, batch_size=2, relax=False) == 1
    assert choose_threshold(hist, batch_size=2, start=3) == 0
    assert choose_threshold(hist, batch_size=1, candidate_factor=40) == 1
    assert n_above(hist, 0) == 100 and n_above(hist, 2) == 20 and n_above(hist, 3) == 0
    with pytest.raises(ValueError, match="threshold"):
        choose_threshold(hist, batch_size=1, start=4)


def _grid(n, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_fewer_candidates_than_batch_takes_all_and_fills_at_random():
    n, B = 200, 10
    X = _grid(n)
    status = np.zeros(n, np.uint8)
    status[:20] = LABELED
    counts = np.zeros(n, np.uint8)
    uncertain = np.array([25, 60, 61, 150])  # 4 selectable rows with count 3; rows 0..19 also "uncertain" but labeled
    counts[uncertain] = 3
    counts[:20] = 3
    res = run(preset(X, counts, status=status), B, seed=1)
    assert res.info["threshold"] == 0 and res.info["candidates"] == 4 and res.info["random_fill"] == 6
    assert set(uncertain) <= set(res.rows)
    assert len(set(res.rows)) == B and (status[res.rows] == 0).all()
    again = run(preset(X, counts, status=status), B, seed=2)
    assert set(again.rows) - set(uncertain) != set(res.rows) - set(uncertain)  # the fill is random
    split = run(preset(X, counts, status=status, n_shards=3), B, seed=1)
    np.testing.assert_array_equal(split.rows, res.rows)


def test_enough_candidates_clusters_only_candidates_at_the_relaxed_threshold():
    n, B = 1000, 4
    X = _grid(n)
    counts = np.zeros(n, np.uint8)
    counts[100:160] = 1  # 60 rows with count 1
    counts[500:530] = 2  # 30 rows with count 2 (< 25 x 4 = 100 above t = 1), so t relaxes to 0: 90 candidates
    res = run(preset(X, counts), B)
    assert res.info["threshold"] == 0 and res.info["candidates"] == 90 and res.info["random_fill"] == 0
    assert res.info["clustered"] == 90
    assert np.isin(res.rows, np.r_[100:160, 500:530]).all() and len(set(res.rows)) == B


def test_candidates_are_the_rows_nearest_the_kmeans_centroids():
    """Candidates form B tight, far-apart groups: one pick per group, the member nearest the group's centre."""
    B, per = 3, 40
    rng = np.random.default_rng(0)
    centres = np.eye(B, 8) * 5
    cand = (np.repeat(centres, per, axis=0) + rng.normal(scale=0.05, size=(B * per, 8))).astype(np.float32)
    X = np.concatenate([cand, rng.normal(size=(500, 8)).astype(np.float32)])
    counts = np.r_[np.full(B * per, 3), np.zeros(500)].astype(np.uint8)
    res = run(preset(X, counts), B, candidate_factor=1)
    assert sorted(res.rows // per) == [0, 1, 2]
    Z = cand / np.linalg.norm(cand, axis=1, keepdims=True)
    for r in res.rows:
        g = Z[(r // per) * per : (r // per + 1) * per]
        assert r % per in np.argsort(np.linalg.norm(g - g.mean(0), axis=1))[:3]


def test_without_random_fill_the_whole_selectable_pool_is_clustered():
    X = _grid(300)
    counts = np.zeros(300, np.uint8)
    counts[:2] = 3
    res = run(preset(X, counts), 5, random_fill=False)
    assert res.info["random_fill"] == 0 and res.info["candidates"] == 300 and len(set(res.rows)) == 5


def _voting_pool(n_certain=400, n_balanced=30, d=64, seed=0):
    """Every feature votes for class 0 with weight +1 (class 1: -1). Certain rows are all +1, so a dropout pass flips
    them only if all 64 features are dropped (0.75**64 ≈ 1e-8). Balanced rows sum to +1 and flip about half the time.
    """
    rng = np.random.default_rng(seed)
    certain = np.ones((n_certain, d), np.float32)
    balanced = np.tile(np.r_[np.ones(d // 2 + 1), -np.ones(d // 2 - 1)], (n_balanced, 1)).astype(np.float32)
    balanced = np.array([rng.permutation(r) for r in balanced]) * 0.5 + 0.25 * (1 / d)
    X = np.concatenate([certain, balanced.astype(np.float32)])

    class VotingHead:
        def affine(self):
            W = np.zeros((d, 2), np.float32)
            W[:, 0], W[:, 1] = 1.0, -1.0
            return W, np.zeros(2, np.float32)

        def transform(self, X):
            return np.asarray(X, np.float32)

    return X, VotingHead()


def test_real_dropout_never_picks_a_row_no_pass_can_flip():
    X, head = _voting_pool()
    y = np.full(len(X), MISSING_LABEL)
    for seed in range(3):
        chosen = DropQuery(candidate_factor=1, random_state=seed).query(X, y, batch_size=5, head=head)
        assert (chosen >= 400).all()  # only balanced rows disagree with y* under dropout
        sel = DropQuery(candidate_factor=1).select(LocalShardSet.from_arrays(X), batch_size=5, head=head, seed=seed)
        assert sel.info["random_fill"] == 0 and (sel.rows >= 400).all()


def test_real_dropout_fill_when_too_few_rows_can_flip():
    X, head = _voting_pool(n_balanced=3)
    r = DropQuery().select(LocalShardSet.from_arrays(X), batch_size=8, head=head, seed=0)
    assert r.info["threshold"] == 0 and r.info["candidates"] <= 3
    assert r.info["random_fill"] == 8 - r.info["candidates"]
    assert (r.rows >= 400).sum() >= r.info["candidates"]
    assert len(set(r.rows)) == 8


def test_labeled_and_excluded_rows_are_never_candidates():
    X, head = _voting_pool()
    y = np.full(len(X), MISSING_LABEL)
    y[400:410] = 0
    exclude = np.zeros(len(X), bool)
    exclude[410:420] = True
    chosen = DropQuery(candidate_factor=1, random_state=0).query(X, y, batch_size=5, head=head, exclude=exclude)
    assert (chosen >= 420).all()


def test_dropquery_parameters_are_validated_with_their_names():
    X, head = _voting_pool()
    y = np.full(len(X), MISSING_LABEL)
    for params, name in [
        ({"dropout": 1.0}, "dropout"),
        ({"n_passes": 0}, "n_passes"),
        ({"threshold": 9}, "threshold"),
        ({"threshold": 4, "n_passes": 3}, "threshold"),
        ({"max_candidates": "x"}, "max_candidates"),
        ({"chunk_rows": 10**9}, "chunk_rows"),
        ({"pass_seed": -1}, "pass_seed"),
        ({"pass_seed": 1.5}, "pass_seed"),
    ]:
        with pytest.raises(ValueError, match=name):
            DropQuery(**params).query(X, y, batch_size=2, head=head)


def test_dropquery_with_a_trained_head_prefers_the_boundary():
    """Two blobs and a band of points between them: the uncertain band is where DropQuery looks."""
    rng = np.random.default_rng(0)
    d = 32
    a = rng.normal(size=(400, d)) + 4
    b = rng.normal(size=(400, d)) - 4
    band = rng.normal(scale=0.5, size=(60, d))
    X = np.concatenate([a, b, band]).astype(np.float32)
    y = np.full(len(X), MISSING_LABEL)
    y[:5], y[400:405] = 0, 1
    head = LinearHead(2, random_state=0).fit(X[np.r_[0:5, 400:405]], y[np.r_[0:5, 400:405]])
    chosen = DropQuery(candidate_factor=1, random_state=0).query(X, y, batch_size=6, head=head)
    assert (chosen >= 800).mean() >= 0.8


def test_candidate_cap_keeps_small_batches_exact_and_bounds_kmeans_work():
    assert candidate_cap(10, None) == 20_000  # the paper's batches: every candidate of a pool of tens of thousands
    assert candidate_cap(1, None) == 20_000
    assert candidate_cap(100, None) == 6_400  # 64 per cluster
    assert candidate_cap(1000, None) == 64_000
    assert candidate_cap(100, 300) == 300
    for b in (1, 10, 20, 50, 100, 200, 1000):
        assert candidate_cap(b, None) >= 64 * b
        assert candidate_cap(b, None) * b <= max(200_000, 64 * b * b)
