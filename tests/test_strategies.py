"""The query contract, checked on every registered strategy through one template (as scikit-activeml does)."""

from __future__ import annotations

import numpy as np
import pytest

from raydq.head import LinearHead
from raydq.strategies import COLD_STARTS, MISSING_LABEL, STRATEGIES, QueryStrategy, make_strategy

N, D, C = 600, 24, 4


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(C, D)) * 2.5
    truth = rng.integers(0, C, N)
    X = (centers[truth] + rng.normal(size=(N, D))).astype(np.float32)
    y = np.full(N, MISSING_LABEL)
    labeled = rng.choice(N, 30, replace=False)
    y[labeled] = truth[labeled]
    exclude = np.zeros(N, dtype=bool)
    exclude[rng.choice(np.flatnonzero(y == MISSING_LABEL), 40, replace=False)] = True
    head = LinearHead(C, random_state=0).fit(X[labeled], y[labeled])
    return X, y, exclude, head


ALL = sorted(STRATEGIES)


def test_registry_holds_every_cold_start_and_query():
    assert {"random", "centroid", "typiclust", "probcover"} <= set(COLD_STARTS)
    queries = {"dropquery", "entropy", "margin", "least_confidence", "bald", "powerbald", "coreset", "badge"}
    assert queries | {"typiclust", "probcover", "random"} <= set(STRATEGIES)
    for name in ("dropquery", "entropy", "margin", "least_confidence", "bald", "powerbald", "badge"):
        assert STRATEGIES[name].needs_head, name
    for name in ("random", "centroid", "typiclust", "probcover", "coreset"):
        assert not STRATEGIES[name].needs_head, name


@pytest.mark.parametrize("name", ALL)
def test_returns_batch_size_distinct_unlabeled_unexcluded_rows(name, pool):
    X, y, exclude, head = pool
    chosen = make_strategy(name, random_state=3).query(X, y, batch_size=17, head=head, exclude=exclude)
    assert chosen.shape == (17,) and chosen.dtype == np.int64
    assert len(np.unique(chosen)) == 17
    assert (y[chosen] == MISSING_LABEL).all()
    assert not exclude[chosen].any()


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_a_seed(name, pool):
    X, y, exclude, head = pool
    a = make_strategy(name, random_state=11).query(X, y, batch_size=9, head=head, exclude=exclude)
    b = make_strategy(name, random_state=11).query(X, y, batch_size=9, head=head, exclude=exclude)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_batch_size_must_be_a_positive_integer(name, bad, pool):
    X, y, _, head = pool
    with pytest.raises(ValueError, match="batch_size"):
        make_strategy(name).query(X, y, batch_size=bad, head=head)


@pytest.mark.parametrize("name", ALL)
def test_batch_size_larger_than_the_selectable_rows_is_refused(name, pool):
    X, y, exclude, head = pool
    n_selectable = int(((y == MISSING_LABEL) & ~exclude).sum())
    with pytest.raises(ValueError, match="exceeds"):
        make_strategy(name).query(X, y, batch_size=n_selectable + 1, head=head, exclude=exclude)


@pytest.mark.parametrize("name", ALL)
def test_can_take_every_selectable_row(name, pool):
    X, y, _, head = pool
    small = np.full(40, MISSING_LABEL)
    small[:10] = y[np.flatnonzero(y != MISSING_LABEL)[:10]]
    chosen = make_strategy(name, random_state=0).query(X[:40], small, batch_size=30, head=head)
    assert sorted(chosen) == list(range(10, 40))


@pytest.mark.parametrize("name", [n for n in ALL if STRATEGIES[n].needs_head])
def test_head_strategies_refuse_to_run_without_a_head(name, pool):
    X, y, _, _ = pool
    with pytest.raises(ValueError, match="needs a fitted head"):
        make_strategy(name).query(X, y, batch_size=3)


@pytest.mark.parametrize("name", COLD_STARTS)
def test_cold_starts_work_with_nothing_labeled(name, pool):
    X, _, _, _ = pool
    chosen = make_strategy(name, random_state=0).query(X, np.full(N, MISSING_LABEL), batch_size=C)
    assert len(np.unique(chosen)) == C


@pytest.mark.parametrize("name", ALL)
def test_constructor_only_stores_and_get_params_round_trips(name):
    s = make_strategy(name, random_state=5)
    params = s.get_params()
    assert params["random_state"] == 5
    assert isinstance(type(s)(**params), QueryStrategy)
    assert not [a for a in vars(s) if a.endswith("_")]


def test_unknown_strategy_lists_the_valid_names():
    with pytest.raises(ValueError, match="dropquery"):
        make_strategy("nope")


def test_centroid_cold_start_takes_the_point_nearest_each_cluster():
    """On four tight, far-apart blobs with one budget per blob, the centroid start takes one point from each blob,
    namely the one nearest that blob's (normalised) mean."""
    rng = np.random.default_rng(1)
    dirs = np.eye(4, 16) * 10
    truth = np.repeat(np.arange(4), 50)
    X = (dirs[truth] + rng.normal(scale=0.3, size=(200, 16))).astype(np.float32)
    chosen = make_strategy("centroid", random_state=0).query(X, np.full(200, MISSING_LABEL), batch_size=4)
    assert sorted(truth[chosen]) == [0, 1, 2, 3]
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    for row in chosen:
        members = np.flatnonzero(truth == truth[row])
        mean = Z[members].mean(axis=0)
        dist = np.linalg.norm(Z[members] - mean, axis=1)
        assert row in members[np.argsort(dist)[:3]]  # the nearest (or a hair from it: k-means stops near the mean)


def test_uncertainty_scores_rank_as_defined():
    class FixedHead:
        def predict_proba(self, X):
            return np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.5, 0.5, 0.0], [0.6, 0.2, 0.2]])[: len(X)]

    X = np.zeros((4, 2), np.float32)
    y = np.full(4, MISSING_LABEL)
    head = FixedHead()
    assert make_strategy("entropy").query(X, y, batch_size=1, head=head)[0] == 1
    assert make_strategy("least_confidence").query(X, y, batch_size=1, head=head)[0] == 1
    assert make_strategy("margin").query(X, y, batch_size=1, head=head)[0] == 2


def test_probcover_reuses_its_graph_without_changing_answers(pool):
    from raydq.strategies import representative

    X, y, exclude, _ = pool
    representative._GRAPH_CACHE.clear()
    first = make_strategy("probcover", random_state=2).query(X, y, batch_size=8, exclude=exclude)
    key = representative._GRAPH_CACHE["key"]
    again = make_strategy("probcover", random_state=2).query(X, y, batch_size=8, exclude=exclude)
    assert representative._GRAPH_CACHE["key"] == key
    np.testing.assert_array_equal(first, again)
    make_strategy("probcover", random_state=2).query(X[:300], y[:300], batch_size=8)
    assert representative._GRAPH_CACHE["key"] != key  # another pool, another graph


def test_typiclust_scores_a_sample_of_a_huge_cluster(pool):
    X, y, exclude, _ = pool
    chosen = make_strategy("typiclust", max_cluster_rows=20, random_state=0).query(X, y, batch_size=6, exclude=exclude)
    assert len(set(chosen)) == 6 and (y[chosen] == MISSING_LABEL).all() and not exclude[chosen].any()
