"""DropQuery phase 1 in torch (raydq.numerics.device), run on torch's CPU device: the GPU shard's kernel."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from raydq.deadline import DeadlineExceeded
from raydq.numerics.device import cell_masks, mismatch_counts_torch
from raydq.numerics.dropout_passes import mismatch_counts

CPU = torch.device("cpu")


def _problem(n=6000, d=64, c=10, seed=0):
    """Rows of c classes whose margins vary, so dropout flips some predictions and not others."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * 0.6
    y = rng.integers(0, c, n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    W = (centers.T / d).astype(np.float32)
    b = rng.normal(size=c).astype(np.float32) * 0.01
    return X, W, b


def test_shapes_dtypes_and_the_unperturbed_argmax():
    X, W, b = _problem()
    y_star, counts = mismatch_counts_torch(X, W, b, n_passes=3, dropout=0.75, seed=1, chunk_rows=1000)
    assert y_star.shape == counts.shape == (len(X),)
    assert y_star.dtype == torch.int32 and counts.dtype == torch.uint8 and y_star.device == CPU
    np.testing.assert_array_equal(y_star.numpy(), (X.astype(np.float64) @ W + b).argmax(1))
    assert 0 < counts.float().mean() < 3 and int(counts.max()) <= 3


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.3])
def test_masks_keep_at_the_rate_and_passes_are_independent(keep):
    masks = [m.numpy() for m in cell_masks(7, 3, 3, (4000, 96), keep, CPU)]
    n = masks[0].size
    for m in masks:
        assert abs(m.mean() - keep) <= 5 * np.sqrt(keep * (1 - keep) / n)
        assert np.abs(m.mean(axis=0) - keep).max() <= 5 * np.sqrt(keep * (1 - keep) / 4000)  # every column
    both = (masks[0] & masks[1]).mean()  # independent passes: P(kept in both) = keep²
    assert abs(both - keep**2) <= 5 * np.sqrt(keep**2 * (1 - keep**2) / n)
    again = next(iter(cell_masks(7, 3, 1, (4000, 96), keep, CPU))).numpy()
    np.testing.assert_array_equal(again, masks[0])
    other = next(iter(cell_masks(7, 4, 1, (4000, 96), keep, CPU))).numpy()
    assert (other != masks[0]).mean() > 0.1  # another cell, other masks


def test_results_do_not_depend_on_how_the_pool_is_split():
    X, W, b = _problem(n=5000)
    kw = {"n_passes": 3, "dropout": 0.75, "seed": 11, "chunk_rows": 700}
    whole_y, whole_c = mismatch_counts_torch(X, W, b, **kw)
    for bounds in ([0, 1234, 5000], [0, 700, 2101, 2102, 5000], [0, 4999, 5000]):
        parts = [
            mismatch_counts_torch(torch.from_numpy(X[s:e]), W, b, row_offset=s, **kw)
            for s, e in itertools.pairwise(bounds)
        ]
        np.testing.assert_array_equal(torch.cat([p[0] for p in parts]).numpy(), whole_y.numpy())
        np.testing.assert_array_equal(torch.cat([p[1] for p in parts]).numpy(), whole_c.numpy())
    other_seed = mismatch_counts_torch(X, W, b, **{**kw, "seed": 12})[1]
    assert not torch.equal(other_seed, whole_c)


def test_counts_agree_in_distribution_with_the_cpu_kernel():
    """Different random streams, same law: the histogram of mismatch counts over 20,000 rows matches the numpy
    kernel's (two-sample chi-square), and so does the mean count among rows of each predicted class."""
    X, W, b = _problem(n=20000, d=128, c=8, seed=3)
    X *= 0.6  # smaller margins: every count from 0 to 3 occurs often
    kw = {"n_passes": 3, "dropout": 0.75, "seed": 5}
    y_t, c_t = mismatch_counts_torch(X, W, b, chunk_rows=4096, **kw)
    y_n, c_n = mismatch_counts(X, W, b, chunk_rows=1024, n_threads=1, **kw)
    np.testing.assert_array_equal(y_t.numpy(), y_n)
    h_t = np.bincount(c_t.numpy(), minlength=4).astype(float)
    h_n = np.bincount(c_n, minlength=4).astype(float)
    assert min(h_t.min(), h_n.min()) > 50  # every count occurs: the test has power
    expected = (h_t + h_n) / 2
    chi2 = (((h_t - expected) ** 2 + (h_n - expected) ** 2) / expected).sum()  # 3 degrees of freedom
    assert chi2 < 21.1  # p = 1e-4
    for cls in range(8):
        rows = y_n == cls
        a, b_ = c_t.numpy()[rows].astype(float), c_n[rows].astype(float)
        assert abs(a.mean() - b_.mean()) < 5 * np.sqrt((a.var() + b_.var()) / rows.sum())


def test_float16_rows_are_computed_in_float32():
    X, W, b = _problem(n=3000)
    X16 = torch.from_numpy(X).half()
    kw = {"n_passes": 3, "dropout": 0.75, "seed": 2, "chunk_rows": 512}
    y16, c16 = mismatch_counts_torch(X16, W, b, **kw)
    y32, c32 = mismatch_counts_torch(X16.float(), W, b, **kw)  # the same values, already widened
    assert torch.equal(y16, y32) and torch.equal(c16, c32)


def test_no_dropout_means_no_mismatch_and_bad_arguments_name_the_field():
    X, W, b = _problem(n=500)
    _, counts = mismatch_counts_torch(X, W, b, n_passes=4, dropout=0.0, seed=0)
    assert int(counts.max()) == 0
    for kwargs, field in (({"n_passes": 0}, "n_passes"), ({"dropout": 1.0}, "dropout"), ({"chunk_rows": 0}, "chunk")):
        args = {"n_passes": 3, "dropout": 0.5, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=field):
            mismatch_counts_torch(X, W, b, **args)
    with pytest.raises(ValueError, match="W must be"):
        mismatch_counts_torch(X, W[:-1], b, n_passes=3, dropout=0.5, seed=0)


def test_deadline_is_checked_between_chunks():
    X, W, b = _problem(n=1000)

    class After:
        def __init__(self, n):
            self.n = n

        def check(self):
            self.n -= 1
            if self.n < 0:
                raise DeadlineExceeded("test")

    with pytest.raises(DeadlineExceeded):
        mismatch_counts_torch(X, W, b, n_passes=3, dropout=0.5, seed=0, chunk_rows=100, deadline=After(4))
    mismatch_counts_torch(X, W, b, n_passes=3, dropout=0.5, seed=0, chunk_rows=100, deadline=After(10))  # 10 chunks
