"""Text the databases accept: PostgreSQL refuses NUL in text columns and a lone surrogate (U+D800..U+DFFF) cannot be
encoded as UTF-8 by either driver, so both are refused before a statement is built, naming the field. Messages never
repeat the value (it may not be encodable)."""

from __future__ import annotations

import re

from raydq.labels.errors import FieldPath, InvalidField

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can."""
    bad = _UNSTORABLE.search(value)
    if bad is None:
        return None
    what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (invalid Unicode)"
    return f"contains {what} at position {bad.start()}"


def check_text(value: str, field: FieldPath, *, max_length: int | None = None) -> str:
    """``value`` if it is a non-empty storable string of at most ``max_length`` characters; else ``InvalidField``."""
    if not isinstance(value, str):
        raise InvalidField(field, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidField(field, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidField(field, f"longer than {max_length} characters")
    why = unstorable(value)
    if why is not None:
        raise InvalidField(field, why)
    return value


def check_optional_text(value: str | None, field: FieldPath, *, max_length: int | None = None) -> str | None:
    return None if value is None else check_text(value, field, max_length=max_length)
