"""Selection strategies: one ``select`` over a sharded pool (and ``query`` over one array) per strategy (see
``base.QueryStrategy``).

Cold starts (no head needed): random, centroid, typiclust, probcover. Queries: dropquery, balanced_dropquery (for
long-tailed pools), entropy, margin, least_confidence, bald, powerbald, coreset, badge, typiclust, probcover, random.
"""

from raydq.estimator import MISSING_LABEL, check_random_state
from raydq.strategies.balanced_dropquery import BalancedDropQuery
from raydq.strategies.base import QueryStrategy, StrategyOptions
from raydq.strategies.centroid import CentroidQuery
from raydq.strategies.diversity import BADGEQuery, CoresetQuery
from raydq.strategies.dropquery import DropQuery
from raydq.strategies.ranked import RandomQuery
from raydq.strategies.representative import ProbCoverQuery, TypiClustQuery
from raydq.strategies.shards import ArrayShard, LocalShardSet, Selection, ShardSet
from raydq.strategies.uncertainty import BALDQuery, EntropyQuery, LeastConfidenceQuery, MarginQuery, PowerBALDQuery

STRATEGIES: dict[str, type[QueryStrategy]] = {
    "random": RandomQuery,
    "centroid": CentroidQuery,
    "typiclust": TypiClustQuery,
    "probcover": ProbCoverQuery,
    "dropquery": DropQuery,
    "balanced_dropquery": BalancedDropQuery,
    "entropy": EntropyQuery,
    "margin": MarginQuery,
    "least_confidence": LeastConfidenceQuery,
    "bald": BALDQuery,
    "powerbald": PowerBALDQuery,
    "coreset": CoresetQuery,
    "badge": BADGEQuery,
}

#: Strategies that work without a head, i.e. can pick the first labeled set.
COLD_STARTS: tuple[str, ...] = tuple(name for name, cls in STRATEGIES.items() if not cls.needs_head)


def make_strategy(name: str, **params) -> QueryStrategy:
    """Build a strategy by registry name; an unknown name lists the valid ones."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}") from None
    return cls(**params)


__all__ = [
    "COLD_STARTS",
    "MISSING_LABEL",
    "STRATEGIES",
    "ArrayShard",
    "BADGEQuery",
    "BALDQuery",
    "BalancedDropQuery",
    "CentroidQuery",
    "CoresetQuery",
    "DropQuery",
    "EntropyQuery",
    "LeastConfidenceQuery",
    "LocalShardSet",
    "MarginQuery",
    "PowerBALDQuery",
    "ProbCoverQuery",
    "QueryStrategy",
    "RandomQuery",
    "Selection",
    "ShardSet",
    "StrategyOptions",
    "TypiClustQuery",
    "check_random_state",
    "make_strategy",
]
