"""The query-strategy contract every selection strategy follows.

Shape borrowed from scikit-activeml's ``SingleAnnotatorPoolQueryStrategy`` on scikit-learn's estimator contract:
the constructor stores settings and does nothing else; what changes every round (features, labels, the head) is
passed to ``query``. Strategies are pure array code: no Ray, no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

MISSING_LABEL = -1
RandomState = int | np.random.Generator | None


def param_names(cls: type) -> list[str]:
    """The named constructor parameters of ``cls`` (scikit-learn's ``_get_param_names``): what ``get_params``
    returns and what a request's strategy ``options`` may set."""
    import inspect

    return [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def init_params(obj: object) -> dict[str, Any]:
    """``obj``'s constructor parameters by name, read back from the attributes the constructor stored them in."""
    return {name: getattr(obj, name) for name in param_names(type(obj))}


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """One place where ``random_state`` (None, int or Generator) becomes a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


class QueryStrategy(ABC):
    """Pick ``batch_size`` pool rows to label next.

    Subclasses implement ``_query``; ``query`` validates inputs and checks the result's contract: exactly
    ``batch_size`` distinct row indices, none labeled and none excluded.
    """

    #: True when the strategy needs a fitted head (uncertainty-based queries); False for cold starts.
    needs_head: ClassVar[bool] = False

    def __init__(self, *, random_state: RandomState = None) -> None:
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters by name (scikit-learn's ``get_params``, without nesting)."""
        return init_params(self)

    def query(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        batch_size: int,
        head: Any = None,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the indices (into ``X``) of the ``batch_size`` rows to label next.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Pool embeddings, labeled and unlabeled.
        y : ndarray of shape (n_samples,)
            Integer class labels, ``MISSING_LABEL`` (-1) where unlabeled.
        batch_size : int
            How many rows to return; must not exceed the number of selectable rows.
        head : fitted head, optional
            Required when ``needs_head``; a head with ``predict_proba`` and ``transform``.
        exclude : ndarray of bool, shape (n_samples,), optional
            Rows that must not be returned although unlabeled (for example leased to an annotator).
        """
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        selectable = y == MISSING_LABEL
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=bool)
            if exclude.shape != selectable.shape:
                raise ValueError(f"exclude must have shape {selectable.shape}, got {exclude.shape}")
            selectable &= ~exclude
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n_selectable = int(selectable.sum())
        if batch_size > n_selectable:
            raise ValueError(f"batch_size={batch_size} exceeds the {n_selectable} selectable unlabeled rows")
        if self.needs_head and head is None:
            raise ValueError(f"{type(self).__name__} needs a fitted head")
        rng = check_random_state(self.random_state)
        chosen = np.asarray(
            self._query(X, y, selectable, batch_size=batch_size, head=head, rng=rng), dtype=np.int64
        )
        if chosen.shape != (batch_size,) or len(np.unique(chosen)) != batch_size or not selectable[chosen].all():
            raise RuntimeError(f"{type(self).__name__} broke the query contract")  # a bug, never user input
        return chosen

    @abstractmethod
    def _query(
        self,
        X: np.ndarray,
        y: np.ndarray,
        selectable: np.ndarray,
        *,
        batch_size: int,
        head: Any,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Indices of ``batch_size`` distinct rows where ``selectable`` is True. Inputs are already validated."""


class RandomQuery(QueryStrategy):
    """Uniformly random unlabeled rows: the baseline every strategy must beat."""

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        return rng.choice(np.flatnonzero(selectable), size=batch_size, replace=False)
