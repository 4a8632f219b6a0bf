"""The shared numeric kernels against plain definitions (scipy, brute force), and the properties the sharded
strategies rely on: row-keyed randomness, a total order for top-k, unique nearest-row keys, one global row grid.
Their device paths run with cupy's stand-in in tests/cluster/test_choose.py, the torch kernel in tests/numerics/."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import softmax as scipy_softmax
from scipy.stats import entropy as scipy_entropy

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.numerics import nearest
from raydq.numerics.distances import min_sq_distances, nearest_centroid, sq_distances, sq_distances_to
from raydq.numerics.grid import grid_cells
from raydq.numerics.nearest import (
    merge_nearest_keys,
    nearest_distinct_rows,
    nearest_keys,
    pack_keys,
    resolve_distinct,
    unpack_keys,
)
from raydq.numerics.norms import l2_normalise, row_sq_norms
from raydq.numerics.probability import entropy, log_softmax, softmax
from raydq.numerics.seeding import d2_sample, kmeans_plusplus
from raydq.numerics.topk import merge_top_k, top_k
from raydq.numerics.uniforms import row_gumbels, row_uniforms


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _brute_d2(A, B):
    return ((A[:, None, :].astype(np.float64) - B[None, :, :]) ** 2).sum(-1)


def test_l2_normalise_units_rows_keeps_zero_rows_and_copies_unless_asked(rng):
    X = rng.normal(size=(50, 7)).astype(np.float32)
    X[3] = 0
    Z = l2_normalise(X)
    np.testing.assert_allclose(np.linalg.norm(Z[np.arange(50) != 3], axis=1), 1, rtol=1e-6)
    assert (Z[3] == 0).all() and Z.dtype == np.float32
    assert not np.shares_memory(Z, X)
    same = l2_normalise(X, copy=False)
    assert np.shares_memory(same, X)
    np.testing.assert_allclose(row_sq_norms(X[:3]), 1, rtol=1e-6)  # scaled in place
    np.testing.assert_array_equal(l2_normalise(X.astype(np.float16)).dtype, np.float32)


def test_softmax_log_softmax_and_entropy_match_scipy(rng):
    logits = rng.normal(size=(40, 6)).astype(np.float32) * 30  # large values: must not overflow
    np.testing.assert_allclose(softmax(logits.copy()), scipy_softmax(logits, axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(log_softmax(logits), scipy_log_softmax(logits, axis=1), rtol=1e-4, atol=1e-4)
    P = scipy_softmax(rng.normal(size=(40, 6)), axis=1)
    np.testing.assert_allclose(entropy(P), scipy_entropy(P, axis=1), rtol=1e-9)
    buf = logits.copy()
    assert softmax(buf, out=buf) is buf


def test_squared_distances_equal_brute_force(rng):
    A = rng.normal(size=(30, 5)).astype(np.float32)
    B = rng.normal(size=(20, 5)).astype(np.float32)
    np.testing.assert_allclose(sq_distances(A, B), _brute_d2(A, B), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sq_distances_to(A, B[3]), _brute_d2(A, B[3:4])[:, 0], rtol=1e-4, atol=1e-4)
    assert (sq_distances(A, A) >= 0).all()  # clipped: the expansion never goes negative


@pytest.mark.parametrize(("chunk_rows", "n_threads"), [(None, 1), (7, 1), (1000, 1), (None, 3), (7, 2), (500, 4)])
def test_nearest_centroid_matches_brute_force(chunk_rows, n_threads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(301, 9)).astype(np.float32)
    c = rng.normal(size=(13, 9)).astype(np.float32)
    dist, idx = nearest_centroid(x, c, chunk_rows=chunk_rows, n_threads=n_threads)
    ref = _brute_d2(x, c)
    np.testing.assert_array_equal(idx, ref.argmin(1))
    np.testing.assert_allclose(dist, ref.min(1), rtol=1e-4, atol=1e-5)
    assert dist.dtype == np.float32 and idx.dtype == np.int64


def test_nearest_centroid_breaks_ties_to_the_lower_index_and_never_goes_negative():
    x = np.array([[1.0, 1.0], [3.0, 3.0]], np.float32)
    c = np.array([[2.0, 2.0], [2.0, 2.0], [1.0, 1.0]], np.float32)
    dist, idx = nearest_centroid(x, c)
    np.testing.assert_array_equal(idx, [2, 0])
    assert (dist >= 0).all() and dist[0] == 0.0


def test_min_sq_distances_in_blocks_equals_one_block(rng, monkeypatch):
    from raydq.numerics import distances

    A = rng.normal(size=(300, 4)).astype(np.float32)
    B = rng.normal(size=(90, 4)).astype(np.float32)
    whole = min_sq_distances(A, B)
    np.testing.assert_allclose(whole, _brute_d2(A, B).min(1), rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(distances, "BLOCK_ELEMENTS", 1000)  # many blocks in both directions
    np.testing.assert_array_equal(min_sq_distances(A, B), whole)
    assert np.isinf(min_sq_distances(A, B[:0])).all()
    with pytest.raises(DeadlineExceeded):
        min_sq_distances(A, B, deadline=Deadline(0.0))


def test_kmeans_plusplus_is_d2_sampling():
    """Four far-apart groups: D² sampling takes one seed from each, and every seed is a row of x."""
    rng = np.random.default_rng(1)
    centers = np.array([[0.0] * 4, [100.0] * 4, [-100.0] * 4, [0, 100.0, 0, -100.0]])
    x = np.concatenate([c + rng.normal(size=(50, 4)) for c in centers]).astype(np.float32)
    for seed in range(10):
        seeds = kmeans_plusplus(x, 4, np.random.default_rng(seed))
        assert seeds.shape == (4, 4) and seeds.dtype == np.float32
        rows = [int(np.flatnonzero((x == s).all(1))[0]) for s in seeds]
        assert sorted(r // 50 for r in rows) == [0, 1, 2, 3]
    np.testing.assert_array_equal(
        kmeans_plusplus(x, 5, np.random.default_rng(3)), kmeans_plusplus(x, 5, np.random.default_rng(3))
    )
    with pytest.raises(DeadlineExceeded):
        kmeans_plusplus(x, 5, np.random.default_rng(1), deadline=Deadline(0.0))


def test_kmeans_plusplus_on_identical_rows_still_returns_k_centers():
    x = np.ones((5, 3), np.float32)
    assert kmeans_plusplus(x, 4, np.random.default_rng(0)).shape == (4, 3)


def test_d2_sample_distinct_never_repeats_even_on_duplicates():
    x = np.zeros((6, 2), np.float32)  # every distance is zero: only uniform picks are possible
    picks = d2_sample(6, 6, lambda i: sq_distances_to(x, x[i]), np.random.default_rng(0), distinct=True)
    assert sorted(picks) == list(range(6))
    picks = d2_sample(6, 4, lambda i: sq_distances_to(x, x[i]), np.random.default_rng(0), first=2, distinct=True)
    assert picks[0] == 2 and len(set(picks)) == 4


def test_row_uniforms_are_uniform_keyed_by_row_and_seed():
    u = row_uniforms(3, np.arange(100000))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    hist = np.bincount((u * 10).astype(int), minlength=10)
    assert np.abs(hist - 10000).max() < 5 * np.sqrt(10000 * 0.9)
    np.testing.assert_array_equal(row_uniforms(3, np.arange(10, 20)), u[10:20])
    assert not np.array_equal(row_uniforms(4, np.arange(10)), u[:10])
    g = row_gumbels(5, np.arange(200000))
    assert np.isfinite(g).all()
    assert abs(g.mean() - np.euler_gamma) < 0.01 and abs(g.var() - np.pi**2 / 6) < 0.03


def test_top_k_orders_by_score_then_tie_key_and_ignores_nan():
    scores = np.array([1.0, 3.0, 3.0, np.nan, 2.0, 3.0])
    keys = np.array([0.1, 0.9, 0.2, 0.0, 0.5, 0.2])
    rows = np.array([10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(top_k(scores, 4, keys, rows), [2, 5, 1, 4])  # 12 and 15 tie on key: row decides
    np.testing.assert_array_equal(top_k(scores, 2, keys), [2, 5])


def test_merging_per_shard_top_k_equals_top_k_of_the_whole(rng):
    scores = rng.integers(0, 5, 1000).astype(float)  # many exact ties
    rows = np.arange(1000)
    keys = row_uniforms(7, rows)
    whole = rows[top_k(scores, 25, keys, rows)]
    parts = []
    for a, e in [(0, 1), (1, 400), (400, 1000)]:
        order = top_k(scores[a:e], 25, keys[a:e], rows[a:e])
        parts.append((scores[a:e][order], keys[a:e][order], rows[a:e][order]))
    np.testing.assert_array_equal(merge_top_k(parts, 25), whole)


def test_packed_keys_order_by_distance_then_row_and_round_trip():
    d2 = np.array([0.5, 0.25, 0.5, 0.0, -0.0, 3e38], np.float32)
    rows = np.array([7, 9, 3, 11, 2, 5])
    keys = pack_keys(d2, rows)
    assert np.argsort(keys).tolist() == [4, 3, 1, 2, 0, 5]  # -0.0 counts as 0; equal distances by row
    back_d, back_r = unpack_keys(keys)
    np.testing.assert_array_equal(back_r, rows)
    np.testing.assert_array_equal(back_d, np.abs(d2))


def test_nearest_distinct_rows_split_across_shards_equals_the_whole(rng):
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    x[1000:1010] = x[5]  # exact duplicates: equal distances must still split identically
    c = np.r_[l2_normalise(x[5:6]), rng.normal(size=(24, 8))].astype(np.float32)  # row 5's copies: distance 0
    allowed = rng.random(3000) < 0.8
    allowed[5] = False
    whole = resolve_distinct(nearest_keys(x, c, 25, allowed=allowed, normalise=True))
    parts = [
        nearest_keys(x[a:e], c, 25, allowed=allowed[a:e], normalise=True, row_offset=a)
        for a, e in [(0, 1), (1, 1004), (1004, 3000)]
    ]
    np.testing.assert_array_equal(resolve_distinct(merge_nearest_keys(parts, 25)), whole)
    assert len(set(whole)) == 25 and allowed[whole].all()
    assert whole[0] == 1000  # the duplicate of row 5 with the smallest row number


def test_nearest_distinct_rows_gives_contested_rows_to_the_closest_centroid():
    x = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    c = np.array([[1.0, 0.0], [0.1, 0.0]], np.float32)  # both nearest row 0; centroid 1 is closer
    np.testing.assert_array_equal(nearest_distinct_rows(x, c), [1, 0])
    with pytest.raises(ValueError, match="centroids"):
        nearest_distinct_rows(x[:1], c)


def test_nearest_keys_never_scales_the_callers_rows_in_place(rng):
    x = rng.normal(size=(100, 4)).astype(np.float32) * 5
    before = x.copy()
    nearest_keys(x, x[:3], 3, normalise=True)
    np.testing.assert_array_equal(x, before)


def test_nearest_distinct_rows_match_brute_force_when_no_centroids_share_a_row(rng, monkeypatch):
    x = rng.normal(size=(600, 8)).astype(np.float32)
    c = x[rng.choice(600, 6, replace=False)] + np.float32(0.01)
    whole = nearest_distinct_rows(x, c)
    np.testing.assert_array_equal(whole, _brute_d2(c, x).argmin(1))
    monkeypatch.setattr(nearest, "BLOCK_ROWS", 97)  # many blocks: the running top-k merge
    np.testing.assert_array_equal(nearest_distinct_rows(x, c), whole)


def test_nearest_distinct_rows_normalise_per_block_and_read_float16(rng, monkeypatch):
    monkeypatch.setattr(nearest, "BLOCK_ROWS", 64)
    X = (rng.normal(size=(500, 6)) * rng.uniform(0.5, 20, size=(500, 1))).astype(np.float16)
    rows = np.array([3, 50, 100, 200, 400])
    C = l2_normalise(X[rows]) + np.float32(1e-4)  # each centroid sits (almost) on one row, at other lengths in X
    np.testing.assert_array_equal(nearest_distinct_rows(X, C, normalise=True), rows)
    assert not np.array_equal(nearest_distinct_rows(X, C), rows)  # unnormalised, the lengths decide


def test_nearest_distinct_rows_skip_rows_that_are_not_allowed():
    X = np.array([[0.0], [0.1], [5.0], [5.2]], np.float32)
    C = np.array([[0.0], [5.0]], np.float32)
    np.testing.assert_array_equal(nearest_distinct_rows(X, C, allowed=np.array([False, True, False, True])), [1, 3])
    with pytest.raises(ValueError, match="eligible"):
        nearest_distinct_rows(X, C, allowed=np.array([True, False, False, False]))
    with pytest.raises(ValueError, match="allowed"):
        nearest_distinct_rows(X, C, allowed=np.array([True, False]))
    assert len(set(nearest_distinct_rows(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)))) == 4


@pytest.mark.parametrize(("offset", "n", "cell_rows"), [(0, 10, 4), (3, 10, 4), (8, 4, 4), (5, 0, 4), (0, 7, 100)])
def test_grid_cells_cover_the_slice_once_on_the_global_grid(offset, n, cell_rows):
    cells = list(grid_cells(offset, n, cell_rows))
    covered = np.concatenate([np.arange(a, e) for _, a, e in cells]) if cells else np.zeros(0, int)
    np.testing.assert_array_equal(covered, np.arange(n))  # every row once, in order
    for cell, a, e in cells:
        assert 0 <= a < e <= n
        assert ((np.arange(a, e) + offset) // cell_rows == cell).all()  # a cell holds only its own global rows
