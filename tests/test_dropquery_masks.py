"""The fast dropout masks are statistically the same as independent per-element inverted dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raydq.deadline import DeadlineExceeded
from raydq.numerics.dropout_passes import dyadic_keep, keep_mask, map_dropout_chunks, mismatch_counts
from tests.strategies.helpers import CountingDeadline


def _within(observed, p, n, sigmas=5.0):
    return abs(observed - p) <= sigmas * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.125, 0.375, 0.8125, 0.1])
def test_keep_rate(keep):
    m = keep_mask(np.random.default_rng(0), 2000, 768, keep)
    assert m.shape == (2000, 768) and set(np.unique(m)) <= {0, 1}
    assert _within(m.mean(), keep, m.size)


def test_dyadic_detection():
    assert dyadic_keep(0.25) == (1, 2)
    assert dyadic_keep(0.375) == (3, 3)
    assert dyadic_keep(0.1) is None


@pytest.mark.parametrize("keep", [0.25, 0.375])
def test_every_column_and_bit_position_keeps_at_the_same_rate(keep):
    """A bit-slicing or unpacking mistake shows up as columns (bit positions in a word) with the wrong rate."""
    rows = 20000
    m = keep_mask(np.random.default_rng(1), rows, 130, keep)  # 130 columns: a partial last word too
    col = m.mean(axis=0)
    sd = np.sqrt(keep * (1 - keep) / rows)
    assert np.abs(col - keep).max() < 5 * sd
    chi2 = (((col - keep) / sd) ** 2).sum()  # ~ chi-square with 130 dof
    assert chi2 < 130 + 6 * np.sqrt(2 * 130)


@pytest.mark.parametrize("lag", [1, 7, 8, 31, 32, 63, 64])
def test_elements_are_pairwise_independent_within_a_row(lag):
    q = 0.25
    m = keep_mask(np.random.default_rng(2), 4000, 256, q).astype(bool)
    both = (m[:, :-lag] & m[:, lag:]).mean()
    assert _within(both, q * q, m[:, lag:].size)


def test_rows_and_passes_are_independent():
    q = 0.25
    rng = np.random.default_rng(3)
    a = keep_mask(rng, 3000, 256, q).astype(bool)
    b = keep_mask(rng, 3000, 256, q).astype(bool)  # the next pass from the same generator
    assert _within((a & b).mean(), q * q, a.size)
    assert _within((a[:-1] & a[1:]).mean(), q * q, a[1:].size)  # neighbouring rows
    # the number kept per row is Binomial(256, q): its variance shows no hidden correlation
    per_row = a.sum(axis=1)
    assert abs(per_row.var() / (256 * q * (1 - q)) - 1) < 0.15


def test_passes_apply_inverted_scaling_and_are_unbiased():
    """With W = I the pass logits are the dropped-out features themselves: each is 0 or x / (1 - p)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 16)).astype(np.float32) + 1.0
    W, b = np.eye(16, dtype=np.float32), np.zeros(16, np.float32)
    sums = np.zeros_like(X, dtype=np.float64)
    kept = np.zeros_like(X, dtype=np.float64)
    seen = {}

    def fn(s, logits, passes):
        np.testing.assert_allclose(logits, X[s : s + len(logits)], rtol=1e-6)
        for p in passes:
            xs = X[s : s + len(p)]
            zero = p == 0
            np.testing.assert_allclose(p[~zero], 4.0 * xs[~zero], rtol=1e-6)
            sums[s : s + len(p)] += p
            kept[s : s + len(p)] += ~zero
        seen[s] = len(passes)

    map_dropout_chunks(X, W, b, fn, dropout=0.75, n_passes=200, seed=0, chunk_rows=64, n_threads=2)
    assert sum(seen.values()) == 200 * 5
    assert _within(kept.mean() / 200, 0.25, X.size * 200)
    assert np.abs(sums / 200 - X).mean() < 0.15  # E[x * m / q] = x


def test_mismatch_counts_match_torch_dropout_in_distribution():
    """Mismatch counts from our masks and from torch's per-element dropout agree in distribution."""
    rng = np.random.default_rng(5)
    d, c = 48, 5
    X = rng.normal(size=(6000, d)).astype(np.float32)
    W = rng.normal(size=(d, c)).astype(np.float32)
    b = rng.normal(size=c).astype(np.float32)
    y0, ours = mismatch_counts(X, W, b, dropout=0.75, n_passes=3, seed=0)
    np.testing.assert_array_equal(y0, (X @ W + b).argmax(1))
    torch.manual_seed(0)
    xt = torch.from_numpy(X)
    ref = np.zeros(len(X), np.int64)
    for _ in range(3):
        pred = (torch.nn.functional.dropout(xt, 0.75, training=True).numpy() @ W + b).argmax(1)
        ref += pred != y0
    h_ours = np.bincount(ours, minlength=4) / len(X)
    h_ref = np.bincount(ref, minlength=4) / len(X)
    assert np.abs(h_ours - h_ref).max() < 5 * np.sqrt(0.25 / len(X)) * np.sqrt(2)


def test_results_do_not_depend_on_threads_or_sharding():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(1000, 32)).astype(np.float32)
    W = rng.normal(size=(32, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    _, one = mismatch_counts(X, W, b, dropout=0.75, n_passes=5, seed=9, chunk_rows=128, n_threads=1)
    _, two = mismatch_counts(X, W, b, dropout=0.75, n_passes=5, seed=9, chunk_rows=128, n_threads=2)
    np.testing.assert_array_equal(one, two)
    parts = [
        mismatch_counts(X[a:e], W, b, dropout=0.75, n_passes=5, seed=9, row_offset=a, chunk_rows=128)[1]
        for a, e in [(0, 300), (300, 301), (301, 1000)]  # shard edges inside chunks
    ]
    np.testing.assert_array_equal(np.concatenate(parts), one)
    _, other = mismatch_counts(X, W, b, dropout=0.75, n_passes=5, seed=10, chunk_rows=128)
    assert not np.array_equal(one, other)


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep_prob"):
        keep_mask(np.random.default_rng(), 2, 2, 0.0)
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="dropout"):
        mismatch_counts(X, np.zeros((2, 2)), np.zeros(2), dropout=1.0, n_passes=3, seed=0)
    with pytest.raises(ValueError, match="float32"):
        mismatch_counts(X.astype(np.float64), np.zeros((2, 2)), np.zeros(2), dropout=0.5, n_passes=3, seed=0)
    with pytest.raises(ValueError, match="chunk_rows"):
        mismatch_counts(X, np.zeros((2, 2)), np.zeros(2), dropout=0.5, n_passes=3, seed=0, chunk_rows=0)


def test_float16_features_give_the_float32_answer():
    """A float16 pool is converted chunk by chunk; its counts equal those of the same values stored as float32."""
    rng = np.random.default_rng(7)
    X16 = rng.normal(size=(700, 24)).astype(np.float16)
    W = rng.normal(size=(24, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    for threads in (1, 2):
        y16, c16 = mismatch_counts(X16, W, b, dropout=0.75, n_passes=4, seed=2, chunk_rows=128, n_threads=threads)
        y32, c32 = mismatch_counts(X16.astype(np.float32), W, b, dropout=0.75, n_passes=4, seed=2, chunk_rows=128)
        np.testing.assert_array_equal(y16, y32)
        np.testing.assert_array_equal(c16, c32)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_deadline_stops_the_chunk_loop_in_the_middle(threads):
    X = np.zeros((64 * 40, 8), np.float32)
    seen = []
    deadline = CountingDeadline(5)
    with pytest.raises(DeadlineExceeded):
        map_dropout_chunks(
            X,
            np.zeros((8, 2), np.float32),
            np.zeros(2, np.float32),
            lambda s, logits, passes: seen.append(s),
            dropout=0.5,
            n_passes=1,
            seed=0,
            chunk_rows=64,
            n_threads=threads,
            deadline=deadline,
        )
    assert 5 <= len(seen) < 40  # some chunks ran, then the loop stopped
