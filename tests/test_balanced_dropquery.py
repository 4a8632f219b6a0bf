"""BalancedDropQuery: its query contract over shards, its option bounds, the quota arithmetic on known cases, and
that the share of the batch given to quotas follows the pool's skew (DropQuery's batch on a balanced pool). The
contract template in test_strategies.py and the bounds template in test_strategy_options.py run on it too."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from raydq.head import LinearHead
from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS
from raydq.numerics.moments import FeatureMoments
from raydq.strategies import MISSING_LABEL, BalancedDropQuery, DropQuery, LocalShardSet
from raydq.strategies.balanced_dropquery import (
    adjusted_predictions,
    class_boundary_rows,
    class_quotas,
    class_similar_rows,
    coverage_picks,
    distribution_skew,
    margin_rows,
    merge_ranked,
    quota_share,
    round_robin,
)
from raydq.strategies.dropquery import CACHE_PREDICTED, DropoutPasses, shard_counts, shard_predictions
from raydq.strategies.shards import LABELED, UNAVAILABLE, status_from_labels


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


def test_skew_of_known_distributions():
    assert distribution_skew(np.full(10, 7)) == pytest.approx(0.0)
    assert distribution_skew(np.array([5, 0, 0, 0])) == pytest.approx(1.0)
    assert distribution_skew(np.array([1, 1, 0, 0])) == pytest.approx(0.5)  # log 2 / log 4
    assert distribution_skew(np.array([3])) == 0.0 and distribution_skew(np.zeros(4)) == 0.0
    profile = lambda ratio: 1000 * ratio ** (-np.arange(10) / 9)  # noqa: E731  (the simulation's long tail)
    assert distribution_skew(profile(10)) == pytest.approx(0.1007, abs=1e-4)
    assert distribution_skew(profile(100)) == pytest.approx(0.2860, abs=1e-4)


@pytest.mark.parametrize(
    ("skew", "floor", "full", "expected"),
    [(0.02, 0.05, 0.2, 0.0), (0.05, 0.05, 0.2, 0.0), (0.125, 0.05, 0.2, 0.5), (0.2, 0.05, 0.2, 1.0), (0.3, 0, 0, 1.0)],
)
def test_quota_share_is_linear_between_floor_and_full(skew, floor, full, expected):
    assert quota_share(skew, floor, full) == pytest.approx(expected)


def make_pool(sizes, *, labels_per_class, seed=0, d=16):
    """Gaussian classes of the given sizes, a few labeled rows per class and a head fitted on them (standardized with
    the pool's statistics, as the service and the simulation fit it)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), d)) * 2.0
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = (centers[truth] + rng.normal(size=(len(truth), d))).astype(np.float32)
    y = np.full(len(truth), MISSING_LABEL)
    for c, k in enumerate(labels_per_class):
        y[rng.choice(np.flatnonzero(truth == c), k, replace=False)] = c
    head = LinearHead(len(sizes), random_state=0).fit(X[y >= 0], y[y >= 0], feature_moments=FeatureMoments.of(X))
    return X, y, head


@pytest.fixture(scope="module")
def long_tail():
    """Three classes, 600 / 150 / 60 rows; labels 30 / 3 / 1: y* leans to class 0 and the pool is skewed."""
    return make_pool([600, 150, 60], labels_per_class=[30, 3, 1])


@pytest.fixture(scope="module")
def balanced():
    return make_pool([300, 300, 300], labels_per_class=[4, 4, 4], seed=1)


def select(strategy, X, status, head, *, batch_size=12, seed=0, n_shards=1):
    return strategy.select(
        LocalShardSet.from_arrays(X, status, n_shards=n_shards), batch_size=batch_size, head=head, seed=seed
    )


def test_batch_is_distinct_selectable_rows_of_the_requested_size(long_tail):
    X, y, head = long_tail
    status = status_from_labels(y)
    unlabeled = np.flatnonzero(status == 0)
    status[unlabeled[::5]] = UNAVAILABLE
    sel = select(BalancedDropQuery(), X, status, head, batch_size=15)
    assert sel.rows.shape == (15,) and sel.rows.dtype == np.int64 and len(np.unique(sel.rows)) == 15
    assert (status[sel.rows] == 0).all()  # neither labeled nor unavailable
    assert not (status[sel.rows] & LABELED).any()


def test_same_seed_same_batch_and_sharding_does_not_change_it(long_tail):
    X, y, head = long_tail
    status = status_from_labels(y)
    one = select(BalancedDropQuery(), X, status, head, seed=7)
    again = select(BalancedDropQuery(), X, status, head, seed=7)
    sharded = select(BalancedDropQuery(), X, status, head, seed=7, n_shards=3)
    np.testing.assert_array_equal(one.rows, again.rows)
    np.testing.assert_array_equal(np.sort(one.rows), np.sort(sharded.rows))
    assert one.info["quotas"] == sharded.info["quotas"]
    other = select(BalancedDropQuery(), X, status, head, seed=8)
    assert set(other.rows) != set(one.rows)


def test_a_skewed_pool_gets_the_water_filled_quotas(long_tail):
    X, y, head = long_tail
    sel = select(BalancedDropQuery(skew_floor=0.0, skew_full=0.0, prior_adjust=0.0), X, status_from_labels(y), head)
    predicted = head.predict(X)  # the head's own classes: no logit adjustment
    assert sel.info["quota_slots"] == 12 and sel.info["pool_skew"] > 0.2
    labeled = np.bincount(predicted[y >= 0], minlength=3)
    assert np.bincount(predicted[sel.rows], minlength=3).tolist() == sel.info["quotas"]
    assert sum(sel.info["quotas"]) == 12 and sel.info["quotas"][0] < 12 // 3  # class 0, with 30 labels, gets least
    assert labeled.tolist() == [30, 3, 1]  # the fixture's head predicts its own labels right (the proxy holds)


def test_rare_predicted_classes_get_more_of_the_batch_than_dropquery_gives(long_tail):
    X, y, head = long_tail
    status = status_from_labels(y)
    balanced = select(BalancedDropQuery(skew_floor=0.0, skew_full=0.0), X, status, head, seed=1)
    plain = select(DropQuery(), X, status, head, seed=1)
    rare = lambda rows: int((head.predict(X[rows]) != 0).sum())  # noqa: E731
    assert rare(balanced.rows) > rare(plain.rows)


def test_half_way_between_floor_and_full_half_the_batch_has_quotas(long_tail):
    X, y, head = long_tail
    probe = select(BalancedDropQuery(), X, status_from_labels(y), head)
    skew = probe.info["pool_skew"]
    sel = select(BalancedDropQuery(skew_floor=skew / 2, skew_full=min(1.0, 1.5 * skew)), X, status_from_labels(y), head)
    assert sel.info["quota_slots"] == 6 and sum(sel.info["quotas"]) == 6 and len(np.unique(sel.rows)) == 12


def test_a_pool_below_the_floor_gets_exactly_dropquerys_batch(balanced, long_tail):
    for X, y, head in (balanced, long_tail):
        status = status_from_labels(y)
        sel = select(BalancedDropQuery(skew_floor=1.0, skew_full=1.0), X, status, head, seed=4)
        plain = select(DropQuery(), X, status, head, seed=4)
        assert sel.info["quota_slots"] == 0 and "quotas" not in sel.info
        np.testing.assert_array_equal(sel.rows, plain.rows)
    X, y, head = balanced
    sel = select(BalancedDropQuery(), X, status_from_labels(y), head, seed=4)
    assert sel.info["pool_skew"] < 0.1 and sel.info["quota_slots"] == 0  # the defaults leave a balanced pool alone


def test_predicted_classes_come_from_phase_1_or_one_pass_and_agree_with_the_head(long_tail):
    X, y, head = long_tail
    shards = LocalShardSet.from_arrays(X, status_from_labels(y), n_shards=3)
    W, b = head.affine()
    passes = DropoutPasses(W, b, 0.75, 3, 0, DEFAULT_CHUNK_ROWS)
    computed = np.concatenate([shard_predictions(s, passes) for s in shards.shards])
    assert all(CACHE_PREDICTED not in s.cache for s in shards.shards)
    for s in shards.shards:
        shard_counts(s, passes)
    assert all(s.cache[CACHE_PREDICTED][0] == passes.key for s in shards.shards)
    cached = np.concatenate([shard_predictions(s, passes) for s in shards.shards])
    np.testing.assert_array_equal(cached, computed)
    np.testing.assert_array_equal(computed, head.predict(X))


def test_too_few_candidates_fall_back_to_random_rows_as_dropquery(long_tail):
    X, y, head = long_tail
    sel = select(BalancedDropQuery(n_passes=1, dropout=0.0), X, status_from_labels(y), head, batch_size=7)
    assert sel.info["candidates"] == 0 and sel.info["random_fill"] == 7 and len(np.unique(sel.rows)) == 7


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"skew_floor": -0.1}, "skew_floor"),
        ({"skew_full": 1.5}, "skew_full"),
        ({"difficulty_weight": 5.0}, "difficulty_weight"),
        ({"difficulty_weight": "1"}, "difficulty_weight"),
        ({"skew_floor": 0.3, "skew_full": 0.2}, "skew_floor"),
        ({"n_passes": 0}, "n_passes"),
        ({"quota": 1}, "quota"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, field):
    with pytest.raises(ValidationError, match=field):
        BalancedDropQuery.validate_options(options)


def test_constructor_values_meet_the_same_bounds_at_select(long_tail):
    X, y, head = long_tail
    with pytest.raises(ValueError, match="skew_full"):
        select(BalancedDropQuery(skew_full=2.0), X, status_from_labels(y), head)


# -- discovery: rows over the whole pool, outside DropQuery's candidates ----------------------------------------------
MODES = ("boundary", "likely", "similar", "coverage", "margin")  # discovery=..., discovery_unseen=coverage|margin


def mode_options(mode):
    return {"discovery": mode} if mode in ("boundary", "likely", "similar") else {"discovery_unseen": mode}


@pytest.fixture(scope="module")
def unseen_tail():
    """Four classes, 600 / 150 / 60 / 30 rows; labels 30 / 3 / 1 / 0: the head predicts no row as class 3, so the
    candidates hold no row predicted as it, and the least-labeled classes are the rare ones."""
    return make_pool([600, 150, 60, 30], labels_per_class=[30, 3, 1, 0], seed=2)


def discovering(mode, **kw):
    return BalancedDropQuery(discovery_share=0.5, coverage_clusters=20, **mode_options(mode), **kw)


def candidate_rows(X, status, head, sel, *, pass_seed):
    """Global rows of DropQuery's candidates for a selection made with ``pass_seed`` (its threshold from ``info``)."""
    shard = LocalShardSet.from_arrays(X, status).shards[0]
    W, b = head.affine()
    passes = DropoutPasses(W, b, 0.75, 3, pass_seed, DEFAULT_CHUNK_ROWS)
    counts, _ = shard_counts(shard, passes)
    return np.flatnonzero((status == 0) & (counts > sel.info["threshold"]))


@pytest.mark.parametrize("mode", MODES)
def test_discovery_batch_is_distinct_selectable_rows_of_the_requested_size(unseen_tail, mode):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    status[np.flatnonzero(status == 0)[::7]] = UNAVAILABLE
    for batch_size in (1, 10, 25):
        sel = select(discovering(mode), X, status, head, batch_size=batch_size)
        assert sel.rows.shape == (batch_size,) and len(np.unique(sel.rows)) == batch_size
        assert (status[sel.rows] == 0).all()
    assert sel.info["discovery_rows"] == round(0.5 * 25) and sel.info["quota_slots"] == 25 - 12


@pytest.mark.parametrize("mode", MODES)
def test_discovery_is_deterministic_per_seed_and_does_not_depend_on_sharding(unseen_tail, mode):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    one = select(discovering(mode), X, status, head, seed=5)
    again = select(discovering(mode), X, status, head, seed=5)
    np.testing.assert_array_equal(one.rows, again.rows)
    for n_shards in (2, 3):
        sharded = select(discovering(mode), X, status, head, seed=5, n_shards=n_shards)
        np.testing.assert_array_equal(np.sort(one.rows), np.sort(sharded.rows))
        assert sharded.info["discovery_slots"] == one.info["discovery_slots"]
    assert set(select(discovering(mode), X, status, head, seed=6).rows) != set(one.rows)


@pytest.mark.parametrize("mode", MODES)
def test_discovery_rows_come_from_outside_the_candidates_for_a_class_without_candidates(unseen_tail, mode):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    assert (head.predict(X) != 3).all()  # no row, candidate or not, is predicted as class 3
    sel = select(discovering(mode, pass_seed=11, candidate_factor=2), X, status, head, seed=2)  # few candidates
    candidates = candidate_rows(X, status, head, sel, pass_seed=11)
    assert sel.info["discovery_slots"][3] > 0  # the unseen class is the least labeled: it gets discovery slots
    outside = np.setdiff1d(sel.rows, candidates)
    assert 0 < len(outside) <= sel.info["discovery_rows"]
    plain = select(BalancedDropQuery(pass_seed=11, candidate_factor=2), X, status, head, seed=2)
    assert np.isin(plain.rows, candidates).all()  # without discovery every row is a candidate


def test_without_discovery_share_the_batch_is_the_one_before_discovery_existed(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    for mode in MODES:
        sel = select(BalancedDropQuery(**mode_options(mode)), X, status, head, seed=3)
        assert "discovery_rows" not in sel.info
        np.testing.assert_array_equal(sel.rows, select(BalancedDropQuery(), X, status, head, seed=3).rows)


@pytest.mark.parametrize("mode", MODES)
def test_a_balanced_pool_gets_dropquerys_batch_even_with_discovery(balanced, mode):
    X, y, head = balanced
    status = status_from_labels(y)
    sel = select(BalancedDropQuery(discovery_share=1.0, **mode_options(mode)), X, status, head, seed=4)
    assert sel.info["pool_skew"] < 0.1 and "discovery_rows" not in sel.info
    np.testing.assert_array_equal(sel.rows, select(DropQuery(), X, status, head, seed=4).rows)


def test_the_whole_batch_can_be_discovery(unseen_tail):
    X, y, head = unseen_tail
    sel = select(BalancedDropQuery(discovery_share=1.0), X, status_from_labels(y), head, batch_size=9)
    assert sel.info["discovery_rows"] == 9 and sel.info["quota_slots"] == 0 and len(np.unique(sel.rows)) == 9


def test_boundary_rows_are_the_smallest_logit_gaps_merged_over_shards(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    W, b = head.affine()
    passes = DropoutPasses(W, b, 0.75, 3, 0, 64)
    logits = X @ W + b
    classes = np.array([3, 1])
    whole = class_boundary_rows(LocalShardSet.from_arrays(X, status).shards[0], passes, classes, 8)
    shards = LocalShardSet.from_arrays(X, status, n_shards=3).shards
    parts = [class_boundary_rows(s, passes, classes, 8) for s in shards]
    for i, c in enumerate(classes.tolist()):
        gap = np.abs(logits[:, c] - np.delete(logits, c, axis=1).max(axis=1))
        gap[status != 0] = np.inf
        rows, scores = whole[i]
        np.testing.assert_array_equal(rows, np.argsort(gap, kind="stable")[:8])
        np.testing.assert_allclose(scores, gap[rows], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(merge_ranked([p[i] for p in parts])[:8], rows)


def test_signed_boundary_rows_put_the_rows_called_the_class_most_surely_first(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    W, b = head.affine()
    logits = X @ W + b
    shard = LocalShardSet.from_arrays(X, status).shards[0]
    ((rows, scores),) = class_boundary_rows(shard, DropoutPasses(W, b, 0.75, 3, 0, 64), np.array([1]), 5, signed=True)
    gap = np.delete(logits, 1, axis=1).max(axis=1) - logits[:, 1]
    gap[status != 0] = np.inf
    np.testing.assert_array_equal(rows, np.argsort(gap, kind="stable")[:5])
    assert (head.predict(X[rows]) == 1).all() and (scores < 0).all()


def test_margin_rows_are_the_smallest_probability_margins(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    W, b = head.affine()
    P = head.predict_proba(X)
    top = np.sort(P, axis=1)
    margin = top[:, -1] - top[:, -2]
    margin[status != 0] = np.inf
    passes = DropoutPasses(W, b, 0.75, 3, 0, 64)
    rows, _ = margin_rows(LocalShardSet.from_arrays(X, status).shards[0], passes, 7)
    np.testing.assert_array_equal(np.sort(rows), np.sort(np.argsort(margin)[:7]))
    parts = [margin_rows(s, passes, 7) for s in LocalShardSet.from_arrays(X, status, n_shards=3).shards]
    np.testing.assert_array_equal(merge_ranked(parts)[:7], rows)


def test_similar_rows_are_the_nearest_to_the_anchors(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    W, b = head.affine()
    passes = DropoutPasses(W, b, 0.75, 3, 0, 64)
    Z = head.transform(X)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    anchors = [Z[[0, 5]], Z[[700]]]
    got = class_similar_rows(LocalShardSet.from_arrays(X, status).shards[0], passes, head, anchors, 6)
    for A, (rows, _) in zip(anchors, got, strict=True):
        sim = (Z @ A.T).max(axis=1)
        sim[status != 0] = -np.inf
        np.testing.assert_array_equal(np.sort(rows), np.sort(np.argsort(-sim)[:6]))


def test_coverage_picks_rows_of_clusters_no_label_covers():
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32) * 10
    truth = np.repeat(np.arange(4), [40, 40, 40, 12])
    Z = (centers[truth] + rng.normal(size=(len(truth), 4))).astype(np.float32)
    labeled = np.zeros(len(truth), bool)
    labeled[[0, 40, 80]] = True  # classes 0-2 have a label, class 3 none
    opts = BalancedDropQuery.Options()
    rows = np.arange(len(truth)) + 1000
    picks = coverage_picks(rows, Z, labeled, ~labeled, 1, 4, options=opts, seed=0, deadline=None)
    assert picks.shape == (1,) and truth[picks[0] - 1000] == 3
    assert (
        len(coverage_picks(rows, Z, np.zeros_like(labeled), ~labeled, 1, 4, options=opts, seed=0, deadline=None)) == 0
    )


def test_round_robin_takes_turns_and_skips_taken_rows():
    rankings = {2: np.array([5, 6, 7]), 0: np.array([5, 8, 9])}
    taken = {6}
    assert round_robin(rankings, {2: 2, 0: 2}, taken) == [5, 8, 7, 9]
    assert taken == {5, 6, 7, 8, 9}
    assert round_robin({0: np.array([1])}, {0: 3}, set()) == [1]  # a ranking that runs out gives what it has


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"discovery_share": 1.5}, "discovery_share"),
        ({"discovery_share": -0.1}, "discovery_share"),
        ({"discovery": "oracle"}, "discovery"),
        ({"discovery": "coverage"}, "discovery"),
        ({"discovery_unseen": "similar"}, "discovery_unseen"),
        ({"coverage_clusters": 1}, "coverage_clusters"),
        ({"coverage_clusters": 10_000}, "coverage_clusters"),
    ],
)
def test_bad_discovery_options_are_refused_naming_the_option(options, field):
    with pytest.raises(ValidationError, match=field):
        BalancedDropQuery.validate_options(options)


def test_discovery_off_gives_slots_only_to_classes_without_labels(unseen_tail, long_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    sel = select(BalancedDropQuery(discovery_share=0.5, discovery="off", discovery_unseen="margin"), X, status, head)
    labeled = np.bincount(head.predict(X[y >= 0]), minlength=4)
    slots = np.array(sel.info["discovery_slots"])
    assert slots.sum() == 6 and (slots[labeled > 0] == 0).all() and sel.info["discovery_rows"] == 6
    X, y, head = long_tail  # every class has a labeled row: no discovery at all, the quotas get the whole batch
    status = status_from_labels(y)
    sel = select(BalancedDropQuery(discovery_share=0.5, discovery="off"), X, status, head, seed=3)
    assert sel.info["discovery_rows"] == 0 and sel.info["quota_slots"] == 12
    np.testing.assert_array_equal(sel.rows, select(BalancedDropQuery(), X, status, head, seed=3).rows)


def test_prior_adjust_widens_the_rare_classes_and_keeps_the_contract(unseen_tail):
    X, y, head = unseen_tail
    status = status_from_labels(y)
    W, b = head.affine()
    passes = DropoutPasses(W, b, 0.75, 3, 0, 64)
    rows = np.arange(0, len(X), 3)
    shift = np.log(np.array([31.0, 4.0, 2.0, 1.0]) / 38.0)
    shards = LocalShardSet.from_arrays(X, status, n_shards=3).shards
    got = np.concatenate([adjusted_predictions(s, passes, rows, shift) for s in shards])
    np.testing.assert_array_equal(got, (X[rows] @ W + b - shift).argmax(axis=1))
    assert np.bincount(got, minlength=4)[0] < np.bincount(head.predict(X[rows]), minlength=4)[0]
    one = select(BalancedDropQuery(skew_floor=0.0, skew_full=0.0, prior_adjust=1.0), X, status, head, seed=9)
    three = select(
        BalancedDropQuery(skew_floor=0.0, skew_full=0.0, prior_adjust=1.0), X, status, head, seed=9, n_shards=3
    )
    assert one.info["prior_adjusted"] and len(np.unique(one.rows)) == 12 and (status[one.rows] == 0).all()
    np.testing.assert_array_equal(np.sort(one.rows), np.sort(three.rows))
    plain = select(BalancedDropQuery(skew_floor=0.0, skew_full=0.0, prior_adjust=0.0), X, status, head, seed=9)
    assert one.info["quotas"] != plain.info["quotas"] or set(one.rows) != set(plain.rows)
