"""BalancedDropQuery: quotas on known cases, the batch they produce, and the fallbacks. (The query contract itself
is checked for every registered strategy in test_strategies.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from raydq.head import LinearHead
from raydq.strategies import MISSING_LABEL, BalancedDropQuery, DropQuery
from raydq.strategies.balanced_dropquery import class_quotas


@pytest.mark.parametrize(
    ("labeled", "capacity", "budget", "expected"),
    [
        ([0, 0, 0], [5, 5, 5], 6, [2, 2, 2]),  # equal labels: equal shares
        ([6, 0, 3], [9, 9, 9], 6, [0, 5, 1]),  # the least-labeled class fills up to the next one first
        ([0, 0, 0], [1, 0, 9], 5, [1, 0, 4]),  # capacity caps a class, the rest spills over
        ([0, 4], [2, 1], 9, [2, 1]),  # fewer candidates than budget: every candidate
        ([1, 1], [3, 7], 1, [0, 1]),  # ties go to the class with more candidates
    ],
)
def test_class_quotas_known_answers(labeled, capacity, budget, expected):
    assert class_quotas(np.array(labeled), np.array(capacity), budget).tolist() == expected


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ([1, 1, 1], [4, 4, 4]),  # labeled counts alone
        ([8, 1, 1], [10, 1, 1]),  # (labels + 1) in proportion to the preferences
        ([2, 1, 1], [6, 3, 3]),
    ],
)
def test_preferences_move_slots_towards_a_class(preference, expected):
    got = class_quotas(np.zeros(3), np.array([80, 10, 10]), 12, preference=np.array(preference, dtype=float))
    assert got.tolist() == expected


def test_class_quotas_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="capacity"):
        class_quotas(np.array([1, 2]), np.array([1, 2, 3]), 2)
    with pytest.raises(ValueError, match="preference"):
        class_quotas(np.array([1, 2]), np.array([1, 2]), 2, preference=np.ones(3))


@pytest.fixture(scope="module")
def long_tail():
    """Three classes, 600 / 150 / 60 rows; labels 30 / 3 / 1: the head leans to class 0."""
    rng = np.random.default_rng(0)
    sizes = [600, 150, 60]
    centers = rng.normal(size=(3, 16)) * 2.0
    truth = np.repeat(np.arange(3), sizes)
    X = (centers[truth] + rng.normal(size=(len(truth), 16))).astype(np.float32)
    y = np.full(len(truth), MISSING_LABEL)
    for c, k in enumerate([30, 3, 1]):
        y[rng.choice(np.flatnonzero(truth == c), k, replace=False)] = c
    head = LinearHead(3, random_state=0).fit(X[y >= 0], y[y >= 0])
    return X, y, head


def corrected_predict(head, X, y, tau):
    """The head's argmax on logits adjusted by the labeled class prior, as the strategy computes y*."""
    counts = np.bincount(y[y >= 0], minlength=head.n_classes)
    return (head.decision_function(X) - tau * np.log((counts + 1) / (counts.sum() + len(counts)))).argmax(axis=1)


@pytest.mark.parametrize(("tau", "alpha"), [(0.0, 0.5), (1.0, 0.5), (0.0, 0.0), (0.0, 2.0)])
def test_batch_follows_the_water_filled_quotas(long_tail, tau, alpha):
    X, y, head = long_tail
    s = BalancedDropQuery(prior_correction=tau, difficulty_weight=alpha, random_state=0)
    chosen = s.query(X, y, batch_size=12, head=head)
    r = s.last_result_
    assert r.n_random == 0 and r.capacity.sum() == r.n_candidates >= 12
    predicted = np.bincount(corrected_predict(head, X[y < 0], y, tau), minlength=3)
    rate = r.capacity / np.maximum(predicted, 1)
    expected = class_quotas(np.bincount(y[y >= 0], minlength=3), r.capacity, 12, preference=rate**alpha)
    assert r.quotas.tolist() == expected.tolist()
    assert np.bincount(corrected_predict(head, X[chosen], y, tau), minlength=3).tolist() == r.quotas.tolist()
    assert r.capacity[1:].min() > 0  # the fixture must exercise all three classes


def test_rare_predicted_classes_get_more_of_the_batch_than_dropquery_gives(long_tail):
    X, y, head = long_tail
    balanced = BalancedDropQuery(prior_correction=0.0, difficulty_weight=0.0, random_state=1)
    chosen = balanced.query(X, y, batch_size=12, head=head)
    plain = DropQuery(random_state=1).query(X, y, batch_size=12, head=head)
    rare = lambda rows: int((head.predict(X[rows]) != 0).sum())  # noqa: E731
    assert rare(chosen) > rare(plain)
    assert rare(chosen) == min(12, balanced.last_result_.capacity[1:].sum())  # 4 labels against 30: all the rare slots


def test_prior_correction_widens_the_rare_classes(long_tail):
    X, y, head = long_tail
    capacity = {}
    for tau in (0.0, 1.0):
        s = BalancedDropQuery(prior_correction=tau, random_state=2)
        s.query(X, y, batch_size=12, head=head)
        capacity[tau] = s.last_result_.capacity
    assert capacity[1.0][1:].sum() > capacity[0.0][1:].sum()
    assert (corrected_predict(head, X, y, 1.0) != 0).sum() > (head.predict(X) != 0).sum()


def test_discover_first_clusters_all_candidates_until_every_class_has_a_label(long_tail):
    X, y, head = long_tail
    unseen = y.copy()
    unseen[unseen == 2] = MISSING_LABEL  # class 2 not found yet
    s = BalancedDropQuery(discover_first=True, random_state=0)
    chosen = s.query(X, unseen, batch_size=12, head=head)
    assert s.last_result_.quotas.sum() == 0 and s.last_result_.n_random == 0 and len(np.unique(chosen)) == 12
    s.query(X, y, batch_size=12, head=head)  # every class labeled: quotas again
    assert s.last_result_.quotas.sum() == 12
    off = BalancedDropQuery(discover_first=False, random_state=0)
    off.query(X, unseen, batch_size=12, head=head)
    assert off.last_result_.quotas.sum() == 12


def test_too_few_candidates_fall_back_to_random_rows(long_tail):
    X, y, head = long_tail
    s = BalancedDropQuery(n_passes=1, dropout=0.0, random_state=0)  # no dropout: no row ever disagrees
    chosen = s.query(X, y, batch_size=7, head=head)
    assert s.last_result_.n_candidates == 0 and s.last_result_.n_random == 7
    assert len(np.unique(chosen)) == 7 and (y[chosen] == MISSING_LABEL).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"n_passes": 0}, "n_passes"),
        ({"kmeans_niter": 0}, "kmeans_niter"),
        ({"prior_correction": -1.0}, "prior_correction"),
        ({"difficulty_weight": -0.5}, "difficulty_weight"),
    ],
)
def test_bad_parameters_name_themselves(long_tail, params, message):
    X, y, head = long_tail
    with pytest.raises(ValueError, match=message):
        BalancedDropQuery(**params).query(X, y, batch_size=3, head=head)
