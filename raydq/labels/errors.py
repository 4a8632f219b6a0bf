"""Exceptions of the label store. Each says what went wrong in one line; the service maps them to HTTP answers
(``InvalidField`` -> 422 at ``field``, ``NotFound`` -> 404, ``Forbidden`` -> 403, the conflicts -> 409)."""

from __future__ import annotations

from collections.abc import Sequence

FieldPath = tuple[str | int, ...]


class InvalidField(ValueError):
    """A value the store refuses, with the path of the field that holds it (``("labels", 3, "id")``).

    The message never repeats the value: it may hold characters (a lone surrogate) that cannot be encoded.
    """

    def __init__(self, field: FieldPath, message: str) -> None:
        self.field = tuple(field)
        self.reason = message
        super().__init__(f"{format_field(field)}: {message}")


def format_field(field: FieldPath) -> str:
    """``("labels", 3, "id")`` -> ``labels[3].id``."""
    out = ""
    for part in field:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class NotFound(LookupError):
    """An unknown batch, head version or token name."""


class Forbidden(PermissionError):
    """The caller may not do this (not the batch's owner, not an admin)."""


class AlreadyExists(Exception):
    """The thing to create exists (a live token with that name)."""


class LeaseConflict(Exception):
    """Some chosen items were leased or labeled meanwhile (another replica or request won the race)."""

    def __init__(self, item_ids: Sequence[str]) -> None:
        super().__init__(f"{len(item_ids)} items are already leased or labeled")
        self.item_ids = list(item_ids)


class BatchClosed(Exception):
    """The batch was released; its leases cannot be renewed."""


class IdempotencyConflict(Exception):
    """An idempotency key was used again with a different request body."""

    def __init__(self, key: str, endpoint: str) -> None:
        super().__init__(f"idempotency key already used for a different {endpoint} request")
        self.key = key
        self.endpoint = endpoint


class DatabaseMissing(RuntimeError):
    """There is no database at the URL (an SQLite file that does not exist)."""


class SchemaError(RuntimeError):
    """The database's schema does not match this code."""


class SchemaOutdated(SchemaError):
    """The database's schema is older than this code: run the migrations."""


class SchemaTooNew(SchemaError):
    """The database was migrated by a newer raydq than this one."""
