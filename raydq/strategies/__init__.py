"""Selection strategies: pure array code behind one query interface (see ``base.QueryStrategy``)."""

from raydq.strategies.base import MISSING_LABEL, QueryStrategy, RandomQuery, check_random_state

STRATEGIES: dict[str, type[QueryStrategy]] = {"random": RandomQuery}


def make_strategy(name: str, **params) -> QueryStrategy:
    """Build a strategy by registry name; an unknown name lists the valid ones."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}") from None
    return cls(**params)


__all__ = ["MISSING_LABEL", "STRATEGIES", "QueryStrategy", "RandomQuery", "check_random_state", "make_strategy"]
