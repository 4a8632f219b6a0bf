"""Idempotency records: the response to (caller, key, endpoint), replayed on a retry with the same request."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from raydq.labels.errors import IdempotencyConflict, InvalidField
from raydq.labels.models import IdempotencyRecord


def request_hash(request: Any) -> str:
    """SHA-256 of the request's canonical JSON (sorted keys), so key order and spacing do not matter."""
    try:
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidField(("request",), f"not JSON-serialisable: {e}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def recall(*, session: Session, caller: str, key: str, endpoint: str, digest: str) -> Any | None:
    """The stored response, None if the key is new; ``IdempotencyConflict`` if it came with another request."""
    row = session.get(IdempotencyRecord, (caller, key, endpoint))
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyConflict(key, endpoint)
    return json.loads(row.response)


def remember(
    *, session: Session, caller: str, key: str, endpoint: str, digest: str, response: Any, now: datetime
) -> None:
    try:  # ASCII JSON: any string (even one with a NUL) is stored as escapes and replayed as it was
        text = json.dumps(response, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidField(("response",), f"not JSON-serialisable: {e}") from None
    session.add(
        IdempotencyRecord(caller=caller, key=key, endpoint=endpoint, request_hash=digest, response=text, created_at=now)
    )
    session.flush()


def purge(*, session: Session, before: datetime) -> int:
    return session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < before)).rowcount or 0
