"""The query-strategy contract every selection strategy follows.

Shape borrowed from scikit-activeml's ``SingleAnnotatorPoolQueryStrategy`` on scikit-learn's estimator contract: the
constructor stores settings and does nothing else; what changes every round (the pool, its labels, the head) is passed
to ``select`` (a pool split into shards, ``raydq.strategies.shards``) or to ``query`` (one in-memory array).

Every setting a request may change is declared once per strategy in its ``Options`` model, with its type and a bound
chosen so that a request at the bounds finishes in bounded time and memory; the service publishes these models in
its OpenAPI schema and validates requests with them, and ``select`` validates the constructor's values with them too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from raydq.deadline import Deadline
from raydq.estimator import MISSING_LABEL, RandomState, check_random_state, init_params, param_names
from raydq.strategies.shards import (
    LocalShardSet,
    Selection,
    ShardSet,
    StatusCounts,
    count_selectable,
    status_counts,
    status_from_labels,
)

__all__ = ["MISSING_LABEL", "QueryStrategy", "RandomState", "StrategyOptions", "check_random_state"]


class StrategyOptions(BaseModel):
    """Settings a request may change, with server-side bounds: unknown names, wrong types (no string-to-number or
    bool-to-int coercion), NaN and infinities are refused with an error naming the option."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as a seed: an integer in [0, 2**64) (numpy integers too, booleans not), or a ValueError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < 2**64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars, so strict validation accepts ``np.int64(3)`` set in code."""
    return value.item() if isinstance(value, np.generic) else value


class QueryStrategy(ABC):
    """Pick ``batch_size`` pool rows to label next.

    Subclasses declare ``Options`` and implement ``_select``; ``select`` validates, runs it and checks the contract:
    exactly ``batch_size`` distinct global rows, all selectable.
    """

    #: True when the strategy needs a fitted head (uncertainty-based queries); False for cold starts.
    needs_head: ClassVar[bool] = False
    #: The constructor parameters a request may set, with their types and bounds.
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    #: Constructor parameters that only the operator or the service sets (never a request's options).
    not_request_settable: ClassVar[frozenset[str]] = frozenset({"random_state"})

    def __init__(self, *, random_state: RandomState = None) -> None:
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters by name (scikit-learn's ``get_params``, without nesting)."""
        return init_params(self)

    @classmethod
    def undeclared_params(cls) -> set[str]:
        """Constructor parameters neither declared in ``Options`` nor marked ``not_request_settable`` (a bug)."""
        return set(param_names(cls)) - set(cls.Options.model_fields) - cls.not_request_settable

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """A request's options checked against the declared types and bounds; only the options given come back.
        Raises ``pydantic.ValidationError`` (a ``ValueError``) whose errors name each bad option."""
        return cls.Options.model_validate(dict(options)).model_dump(exclude_unset=True)

    def _options(self) -> StrategyOptions:
        """This strategy's settings, validated by the same bounds a request meets."""
        return self.Options.model_validate({name: _plain(getattr(self, name)) for name in self.Options.model_fields})

    # -- selection over shards ---------------------------------------------------------------------------------------
    def select(
        self,
        shards: ShardSet,
        *,
        batch_size: int,
        head: Any = None,
        seed: int,
        deadline: Deadline | None = None,
    ) -> Selection:
        """Choose ``batch_size`` distinct selectable global rows of a sharded pool.

        ``seed`` (a non-negative integer) fixes every random choice, so the same seed on the same pool gives the
        same rows however the pool is split into shards. ``deadline`` is checked between chunks on every shard and
        between iterations on the driver; past it, ``DeadlineExceeded`` propagates and nothing is chosen.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        seed = check_seed(seed)
        if self.needs_head and head is None:
            raise ValueError(f"{type(self).__name__} needs a fitted head")
        options = self._options()
        counts = sum(shards.map(status_counts, deadline=deadline), StatusCounts(0, 0, 0))
        if batch_size > counts.selectable:
            raise ValueError(f"batch_size={batch_size} exceeds the {counts.selectable} selectable unlabeled rows")
        batch_size = int(batch_size)
        selection = self._select(
            shards, options, batch_size=batch_size, head=head, seed=seed, deadline=deadline, counts=counts
        )
        rows = np.asarray(selection.rows, dtype=np.int64)
        if (
            rows.shape != (batch_size,)
            or len(np.unique(rows)) != batch_size
            or sum(shards.map(count_selectable, rows, deadline=deadline)) != batch_size
        ):
            raise RuntimeError(f"{type(self).__name__} broke the query contract")  # a bug, never user input
        return Selection(rows, selection.info)

    @abstractmethod
    def _select(
        self,
        shards: ShardSet,
        options: Any,
        *,
        batch_size: int,
        head: Any,
        seed: int,
        deadline: Deadline | None,
        counts: StatusCounts,
    ) -> Selection:
        """``batch_size`` distinct selectable global rows; inputs are validated and ``options`` is ``self.Options``
        holding this strategy's settings."""

    # -- selection from one in-memory array --------------------------------------------------------------------------
    def query(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        batch_size: int,
        head: Any = None,
        exclude: np.ndarray | None = None,
        deadline: Deadline | None = None,
    ) -> np.ndarray:
        """Return the indices (into ``X``) of the ``batch_size`` rows to label next: ``select`` over the whole array
        as one shard, with a seed drawn from ``random_state``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Pool embeddings, labeled and unlabeled (float16 stays float16; other dtypes become float32).
        y : ndarray of shape (n_samples,)
            Integer class labels, ``MISSING_LABEL`` (-1) where unlabeled.
        batch_size : int
            How many rows to return; must not exceed the number of selectable rows.
        head : fitted head, optional
            Required when ``needs_head``; a head with ``predict_proba``, ``transform`` and ``affine``.
        exclude : ndarray of bool, shape (n_samples,), optional
            Rows that must not be returned although unlabeled (for example leased to an annotator).
        deadline : Deadline, optional
            Stop with ``DeadlineExceeded`` once it passes.
        """
        X = np.asarray(X)
        if X.dtype not in (np.float16, np.float32):
            X = X.astype(np.float32)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        if exclude is not None and np.shape(exclude) != y.shape:
            raise ValueError(f"exclude must have shape {y.shape}, got {np.shape(exclude)}")
        shards = LocalShardSet.from_arrays(X, status_from_labels(y, exclude))
        seed = int(check_random_state(self.random_state).integers(2**63))
        return self.select(shards, batch_size=batch_size, head=head, seed=seed, deadline=deadline).rows
