"""Strategy options a request may set: validated against the strategy's own declaration, then the operator's policy.

Each strategy declares once, in its ``Options`` model, every option a request may set, with its type and a bound
that keeps a request at the bound finite in time and memory. The operator narrows that in the serve config
(``option_policy``): forbid an option, tighten a bound, and decide which of the operator's own ``strategy_params``
a request may override (none by default). Options are checked against the strategy the request asked for, even
while the cold start runs instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from raydq.serve.config import OptionPolicy, ServeArgs
from raydq.serve.errors import ServiceError, validation_items
from raydq.strategies import STRATEGIES


def _strategy_class(name: str):
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ServiceError(
            422, ["body", "strategy"], f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}"
        ) from None


def build_strategy(name: str, options: dict[str, Any], *, args: ServeArgs, seed: int | None) -> Any:
    """The strategy ``name`` with the operator's settings and the request's ``options`` (422 naming the option)."""
    cls = _strategy_class(name)
    policy = args.option_policy.get(name, OptionPolicy())
    fixed = dict(args.strategy_params.get(name, {}))
    for key in options:
        if key in policy.forbid:
            raise ServiceError(422, ["body", "options", key], f"the operator does not allow requests to set {key!r}")
        if key in fixed and key not in policy.allow_override:
            raise ServiceError(
                422,
                ["body", "options", key],
                f"{key!r} is set by the operator ({fixed[key]!r}) and cannot be overridden",
            )
    try:
        parsed = cls.Options.model_validate(options)
    except ValidationError as e:
        loc, msg, kind = validation_items(e.errors())[0]
        raise ServiceError(422, ["body", "options", *loc], f"{name}: {msg}", kind) from None
    given = parsed.model_dump(exclude_unset=True)
    for key, bound in policy.bounds.items():
        value = given.get(key)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and (("ge" in bound and value < bound["ge"]) or ("le" in bound and value > bound["le"])):
            raise ServiceError(
                422, ["body", "options", key], f"{key}={value!r} is outside the operator's bounds {bound}"
            )
    return cls(random_state=seed, **{**fixed, **given})


def describe_strategies(args: ServeArgs) -> dict[str, Any]:
    """Every strategy: whether it needs a head, the options a request may set (JSON schema with bounds), the
    operator's fixed settings and policy, and the pool size above which a whole-pool strategy samples."""
    out: dict[str, Any] = {}
    for name, cls in sorted(STRATEGIES.items()):
        policy = args.option_policy.get(name, OptionPolicy())
        fixed = args.strategy_params.get(name, {})
        schema = cls.Options.model_json_schema()
        settable = {
            k: v
            for k, v in schema.get("properties", {}).items()
            if k not in policy.forbid and (k not in fixed or k in policy.allow_override)
        }
        gather = fixed.get("gather_limit", getattr(cls(), "gather_limit", None))
        out[name] = {
            "needs_head": bool(cls.needs_head),
            "options": settable,
            "operator_settings": fixed,
            "operator_bounds": policy.bounds,
            "gather_limit": gather,
        }
    return out
