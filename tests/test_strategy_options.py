"""Bounds on request options (issue 10): every constructor parameter is declared with a type and a server-side bound
or explicitly not settable by a request, bad values are refused naming the option, and a request at the bounds
finishes (in bounded time and memory) on a 20,000 x 64 pool."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from pydantic import ValidationError

from raydq.estimator import param_names
from raydq.head import LinearHead
from raydq.strategies import STRATEGIES, LocalShardSet, make_strategy
from raydq.strategies.shards import LABELED

ALL = sorted(STRATEGIES)


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_is_declared_or_not_request_settable(name):
    cls = STRATEGIES[name]
    assert cls.undeclared_params() == set()
    assert "random_state" in cls.not_request_settable
    assert not set(cls.Options.model_fields) & cls.not_request_settable
    assert set(cls.Options.model_fields) <= set(param_names(cls))  # nothing declared that the strategy lacks


@pytest.mark.parametrize("name", ALL)
def test_declared_defaults_are_the_constructor_defaults(name):
    cls = STRATEGIES[name]
    signature = inspect.signature(cls.__init__).parameters
    for field, info in cls.Options.model_fields.items():
        assert info.default == signature[field].default, f"{name}.{field}"


@pytest.mark.parametrize("name", ALL)
def test_every_number_has_both_bounds_in_the_published_schema(name):
    schema = STRATEGIES[name].Options.model_json_schema()
    assert schema["additionalProperties"] is False
    for field, prop in schema.get("properties", {}).items():
        branches = prop.get("anyOf", [prop])
        for branch in branches:
            if branch.get("type") in ("integer", "number"):
                assert "maximum" in branch, f"{name}.{field} has no upper bound"
                assert "minimum" in branch or "exclusiveMinimum" in branch, f"{name}.{field} has no lower bound"


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("dropquery", {"max_candidates": "x"}, "max_candidates"),  # a TypeError before: now a validation error
        ("dropquery", {"n_passes": 1_000_000}, "n_passes"),
        ("dropquery", {"chunk_rows": 10**12}, "chunk_rows"),
        ("dropquery", {"dropout": math.nan}, "dropout"),
        ("dropquery", {"candidate_factor": math.inf}, "candidate_factor"),
        ("dropquery", {"kmeans_niter": 25.0}, "kmeans_niter"),  # a float where an integer belongs
        ("dropquery", {"relax": 1}, "relax"),  # no int-to-bool coercion
        ("dropquery", {"n_passes": True}, "n_passes"),  # no bool-to-int either
        ("dropquery", {"pass_seed": 3}, "pass_seed"),  # the service's, not the request's
        ("dropquery", {"random_state": 3}, "random_state"),
        ("dropquery", {"nope": 1}, "nope"),
        ("dropquery", {"kmeans_tol": -1e-3}, "kmeans_tol"),
        ("centroid", {"n_init": 1_000_000}, "n_init"),
        ("centroid", {"kmeans_tol": 0.5}, "kmeans_tol"),
        ("typiclust", {"kmeans_tol": "1e-4"}, "kmeans_tol"),
        ("bald", {"n_passes": 1_000_000}, "n_passes"),
        ("powerbald", {"beta": -1.0}, "beta"),
        ("probcover", {"delta": 2.5}, "delta"),
        ("probcover", {"max_edges": 1e300}, "max_edges"),
        ("probcover", {"delta": 0.0}, "delta"),
        ("typiclust", {"max_cluster_rows": 10**9}, "max_cluster_rows"),
        ("coreset", {"gather_limit": 10**9}, "gather_limit"),
        ("entropy", {"n_passes": 3}, "n_passes"),  # entropy takes no options at all
    ],
)
def test_bad_options_are_refused_naming_the_option(name, options, field):
    with pytest.raises(ValidationError) as err:
        STRATEGIES[name].validate_options(options)
    assert any(field in e["loc"] for e in err.value.errors()), err.value.errors()
    assert isinstance(err.value, ValueError)


def test_a_cross_field_bound_names_its_fields():
    with pytest.raises(ValidationError, match="threshold"):
        STRATEGIES["dropquery"].validate_options({"threshold": 5, "n_passes": 3})


def test_valid_options_come_back_as_given_and_only_those():
    assert STRATEGIES["dropquery"].validate_options({"n_passes": 5, "max_candidates": None}) == {
        "n_passes": 5,
        "max_candidates": None,
    }
    assert STRATEGIES["probcover"].validate_options({"delta": 1}) == {"delta": 1.0}  # JSON integers are numbers
    assert STRATEGIES["entropy"].validate_options({}) == {}


def test_constructor_values_meet_the_same_bounds_at_select():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    shards = LocalShardSet.from_arrays(X)
    with pytest.raises(ValueError, match="n_init"):
        make_strategy("centroid", n_init=10**6).select(shards, batch_size=2, seed=0)
    sel = make_strategy("centroid", n_init=np.int64(2)).select(shards, batch_size=2, seed=0)  # numpy ints are fine
    assert len(sel.rows) == 2


# -- a request at the bounds finishes ---------------------------------------------------------------------------------
def _at(bound: str, name: str) -> dict:
    """Every declared numeric option of ``name`` at its upper (or lower) bound; booleans and None as defaults."""
    out = {}
    for field, prop in STRATEGIES[name].Options.model_json_schema().get("properties", {}).items():
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") in ("integer", "number"):
                if bound == "upper":
                    out[field] = branch["maximum"]
                else:
                    low = branch.get("minimum", branch.get("exclusiveMinimum"))
                    out[field] = low if "minimum" in branch else low + 1e-3
    return STRATEGIES[name].validate_options(out)


@pytest.fixture(scope="module")
def big_pool():
    rng = np.random.default_rng(0)
    n, d, c = 20_000, 64, 10
    truth = rng.integers(0, c, n)
    X = (rng.normal(size=(c, d))[truth] * 0.8 + rng.normal(size=(n, d))).astype(np.float32)
    status = np.zeros(n, np.uint8)
    labeled = rng.choice(n, 100, replace=False)
    status[labeled] = LABELED
    head = LinearHead(c, random_state=0).fit(X[labeled], truth[labeled])
    return X, status, head


@pytest.mark.parametrize("bound", ["upper", "lower"])
@pytest.mark.parametrize("name", ALL)
def test_a_request_at_the_bounds_finishes(big_pool, name, bound):
    X, status, head = big_pool
    options = _at(bound, name)
    strategy = make_strategy(name, **options)
    shards = LocalShardSet.from_arrays(X, status, n_shards=2)
    head = head if strategy.needs_head else None
    if name == "probcover" and bound == "upper":
        # radius 2 joins every pair of unit vectors: 4e8 edges, refused (counted block by block, never stored)
        with pytest.raises(ValueError, match="max_edges"):
            strategy.select(shards, batch_size=20, head=head, seed=0)
        return
    sel = strategy.select(shards, batch_size=20, head=head, seed=0)
    assert len(set(sel.rows)) == 20 and (status[sel.rows] == 0).all()
