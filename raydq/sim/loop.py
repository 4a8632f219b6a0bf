"""The paper's active-learning protocol with an oracle that answers from known labels.

Round 0: a cold start picks ``initial_budget`` rows; rounds 1..n_rounds: a fresh head is trained on the labels so far
and the query strategy picks ``per_round`` more. After every round a fresh head is trained and scored on the test
split (accuracy, balanced accuracy, macro-F1) and the number of classes labeled so far is recorded. Selection never
sees the true labels of unlabeled rows: the oracle reveals a label only once its row is picked. The heads standardize
with the pool's feature statistics (the unlabeled pool is the learner's to read; the test split never is).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from raydq.estimator import param_names
from raydq.head import LinearHead
from raydq.numerics.moments import FeatureMoments
from raydq.sim.metrics import scores
from raydq.strategies import MISSING_LABEL, STRATEGIES, QueryStrategy, make_strategy


def _value(text: str) -> object:
    """A strategy option's value: int, float, true/false/none, else the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_strategy(spec: str) -> tuple[str, dict[str, object]]:
    """``name`` or ``name[option=value;...]`` -> (registry name, constructor options), e.g.
    ``centroid[n_init=5;kmeans_niter=100]``. Unknown names and options are refused with the valid ones listed."""
    spec = spec.strip()
    name, _, rest = spec.partition("[")
    name = name.strip()
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} in {spec!r}; choose from {sorted(STRATEGIES)}")
    options: dict[str, object] = {}
    if rest:
        if not rest.endswith("]"):
            raise ValueError(f"strategy {spec!r}: options must look like name[option=value;option=value]")
        valid = set(param_names(STRATEGIES[name])) - {"random_state"}
        for item in filter(None, (i.strip() for i in rest[:-1].split(";"))):
            key, eq, value = (t.strip() for t in item.partition("="))
            if not eq or key not in valid:
                raise ValueError(f"strategy {spec!r}: {item!r} is not option=value for one of {sorted(valid)}")
            options[key] = _value(value)
    return name, options


@dataclass(frozen=True)
class StrategyPair:
    """``cold>query``: the cold start for round 0 and the query for later rounds (one spec means both); each side is a
    registry name with optional constructor options, ``name[option=value;...]`` (see ``parse_strategy``)."""

    cold: str
    query: str

    @classmethod
    def parse(cls, spec: str) -> StrategyPair:
        parts = [p.strip() for p in spec.split(">")]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"strategy {spec!r} must look like 'cold>query', e.g. 'centroid>dropquery'")
        cold_name, _ = parse_strategy(parts[0])
        parse_strategy(parts[1])
        if STRATEGIES[cold_name].needs_head:
            raise ValueError(f"{cold_name!r} needs a head and cannot be a cold start (in {spec!r})")
        return cls(*parts)

    def build(self, rng: np.random.Generator) -> tuple[QueryStrategy, QueryStrategy]:
        """The cold start and the query strategy, both drawing from ``rng``."""
        built = []
        for spec in (self.cold, self.query):
            name, options = parse_strategy(spec)
            built.append(make_strategy(name, random_state=rng, **options))
        return built[0], built[1]

    def __str__(self) -> str:
        return f"{self.cold}>{self.query}"


@dataclass(frozen=True)
class RoundResult:
    strategy: str
    seed: int
    round: int
    labeled: int
    test_accuracy: float
    query_seconds: float
    balanced_accuracy: float
    macro_f1: float
    classes_labeled: int  # distinct classes among the labels so far


def run_one(
    pair: StrategyPair,
    seed: int,
    *,
    X: np.ndarray,
    y_true: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    n_rounds: int = 20,
    initial_budget: int | None = None,
    per_round: int | None = None,
    head_params: dict | None = None,
) -> Iterator[RoundResult]:
    """Yield one ``RoundResult`` per round 0..n_rounds for one strategy pair and seed."""
    initial_budget = n_classes if initial_budget is None else initial_budget
    per_round = n_classes if per_round is None else per_round
    if initial_budget + n_rounds * per_round > len(X):
        raise ValueError(f"the pool has {len(X)} rows, fewer than the {initial_budget + n_rounds * per_round} asked")
    rng = np.random.default_rng([seed, 0xA1])
    y = np.full(len(X), MISSING_LABEL, dtype=np.int64)
    cold, query = pair.build(rng)
    moments = FeatureMoments.of(X)  # the pool's statistics, which the head standardizes with
    head = None
    for r in range(n_rounds + 1):
        strategy, budget = (cold, initial_budget) if r == 0 else (query, per_round)
        t0 = time.perf_counter()
        chosen = strategy.query(X, y, batch_size=budget, head=head if strategy.needs_head else None)
        seconds = time.perf_counter() - t0
        y[chosen] = y_true[chosen]  # the oracle answers
        labeled = y != MISSING_LABEL
        params = {**(head_params or {}), "random_state": int(seed) * 1000 + r}
        head = LinearHead(n_classes, **params).fit(X[labeled], y[labeled], feature_moments=moments)
        m = scores(y_test, head.predict(X_test), n_classes)
        yield RoundResult(
            str(pair),
            int(seed),
            r,
            int(labeled.sum()),
            m.accuracy,
            seconds,
            m.balanced_accuracy,
            m.macro_f1,
            len(np.unique(y[labeled])),
        )
