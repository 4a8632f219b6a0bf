"""The long-tailed pool sampler: class counts follow the exponential profile, seeds fix the subset."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.sim.imbalance import long_tail_counts, long_tail_subset


def _labels(per_class: list[int]) -> np.ndarray:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    return np.random.default_rng(0).permutation(y)


@pytest.mark.parametrize("ratio", [1.0, 10.0, 100.0])
def test_counts_follow_the_exponential_profile(ratio):
    available = np.full(10, 2000)
    order = np.random.default_rng(3).permutation(10)
    counts = long_tail_counts(available, ratio, order)
    ranked = counts[order]
    expected = 2000 * ratio ** (-np.arange(10) / 9)  # equal classes: the largest keeps all its rows
    assert np.abs(ranked - expected).max() <= 0.5
    assert (np.diff(ranked) <= 0).all()  # monotone along the class order
    assert ranked[0] == 2000
    assert ranked[0] / ranked[-1] == pytest.approx(ratio, rel=0.03)


def test_largest_size_is_what_every_class_can_supply():
    available = np.array([1000, 50, 700])
    counts = long_tail_counts(available, 4.0, np.array([0, 2, 1]))  # class 1 is the smallest: 1/4 of the largest
    assert counts.tolist() == [200, 50, 100]  # 50 rows at rank 2 cap the largest class at 200
    assert (counts <= available).all()


def test_subset_has_the_profile_and_only_real_rows():
    y = _labels([300, 250, 310, 280, 260])
    rows = long_tail_subset(y, 10.0, random_state=7)
    assert (np.diff(rows) > 0).all() and rows.max() < len(y)  # sorted, distinct, in range
    counts = np.bincount(y[rows], minlength=5)
    ranked = np.sort(counts)[::-1]
    assert ranked[0] / ranked[-1] == pytest.approx(10.0, rel=0.05)
    assert (np.diff(ranked) < 0).all()


def test_same_seed_same_subset_different_seed_different_order():
    y = _labels([400] * 6)
    a = long_tail_subset(y, 20.0, random_state=1)
    b = long_tail_subset(y, 20.0, random_state=1)
    np.testing.assert_array_equal(a, b)
    orders = {tuple(np.argsort(-np.bincount(y[long_tail_subset(y, 20.0, random_state=s)]))) for s in range(5)}
    assert len(orders) > 1  # the class that is rare changes with the seed


@pytest.mark.parametrize(
    ("available", "ratio", "message"),
    [([10, 10], 0.5, "ratio must be >= 1"), ([10, 0], 2.0, "at least one row"), ([5, 5], 20.0, "needs at least")],
)
def test_bad_inputs_are_refused(available, ratio, message):
    with pytest.raises(ValueError, match=message):
        long_tail_counts(np.array(available), ratio, np.arange(len(available)))
