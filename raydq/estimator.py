"""scikit-learn's estimator plumbing, shared by the head and the strategies: constructor parameters read back from
the signature, one door through which ``random_state`` becomes a generator, and the label array's convention."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

#: The label of a row nobody has labeled yet, in every integer label array (skactiveml's ``missing_label``).
MISSING_LABEL = -1

RandomState = int | np.random.Generator | None


def param_names(cls: type) -> list[str]:
    """The named constructor parameters of ``cls`` (scikit-learn's ``_get_param_names``): what ``get_params``
    returns and what a strategy's declared options are checked against."""
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
