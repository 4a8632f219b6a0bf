"""``FeatureMoments``: chunked float64 sums that merge across shards into the whole pool's mean and variance."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.numerics import moments
from raydq.numerics.moments import FeatureMoments


def test_mean_and_variance_match_numpy_across_chunks_and_dtypes(monkeypatch):
    monkeypatch.setattr(moments, "_CHUNK_ROWS", 7)  # several chunks, the last one short
    X = (np.random.default_rng(0).normal(3.0, 2.0, size=(50, 5))).astype(np.float16)
    m = FeatureMoments.of(X)
    exact = X.astype(np.float64)
    assert m.count == 50
    np.testing.assert_allclose(m.mean, exact.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m.var, exact.var(axis=0), rtol=1e-5)
    assert m.mean.dtype == m.var.dtype == np.float32


def test_the_sum_of_two_parts_is_the_moments_of_their_union():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(30, 4)).astype(np.float32), rng.normal(5, 3, size=(11, 4)).astype(np.float32)
    both = FeatureMoments.of(A) + FeatureMoments.of(B)
    whole = FeatureMoments.of(np.concatenate([A, B]))
    assert both.count == 41
    np.testing.assert_allclose(both.mean, whole.mean, rtol=1e-6)
    np.testing.assert_allclose(both.var, whole.var, rtol=1e-6)


def test_a_constant_feature_has_zero_variance_never_negative():
    X = np.full((1000, 3), 0.1, dtype=np.float32)
    assert (FeatureMoments.of(X).var >= 0).all()
    np.testing.assert_allclose(FeatureMoments.of(X).var, 0.0, atol=1e-12)


def test_an_empty_pool_has_no_mean():
    with pytest.raises(ValueError, match="empty"):
        _ = FeatureMoments.of(np.zeros((0, 3), np.float32)).mean
