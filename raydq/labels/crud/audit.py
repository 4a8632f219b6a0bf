"""The audit log: one row per action, written in the transaction of the action; filtered, keyset-paginated reads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from raydq.labels.errors import InvalidField
from raydq.labels.identity import Identity
from raydq.labels.models import AuditEntry
from raydq.labels.schemas import AuditPublic
from raydq.labels.text import unstorable

MAX_DETAIL_BYTES = 8192


def _check_storable(value: Any, field: tuple[str | int, ...]) -> None:
    """Every string in a JSON value, keys included, must be storable (PostgreSQL's json type refuses NUL escapes)."""
    if isinstance(value, str):
        why = unstorable(value)
        if why is not None:
            raise InvalidField(field, why)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_storable(k, field)
            _check_storable(v, (*field, k))
    elif isinstance(value, list | tuple):
        for n, v in enumerate(value):
            _check_storable(v, (*field, n))


def record(
    *,
    session: Session,
    caller: Identity,
    action: str,
    request_id: str | None,
    batch_id: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    _check_storable(detail, ("detail",))
    text = json.dumps(detail, default=str)
    if len(text) > MAX_DETAIL_BYTES:
        raise InvalidField(("detail",), f"larger than {MAX_DETAIL_BYTES} bytes of JSON")
    session.add(
        AuditEntry(
            at=now,
            caller=caller.name,
            role=caller.role,
            action=action,
            request_id=request_id,
            batch_id=batch_id,
            detail=json.loads(text),
        )
    )


def query(
    *,
    session: Session,
    caller: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after_id: int | None,
    limit: int,
    newest_first: bool,
) -> list[AuditPublic]:
    """Entries matching every given filter (``since`` inclusive, ``until`` exclusive), by id, after the cursor."""
    q = select(AuditEntry)
    if caller is not None:
        q = q.where(AuditEntry.caller == caller)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    if until is not None:
        q = q.where(AuditEntry.at < until)
    if after_id is not None:
        q = q.where(AuditEntry.id < after_id if newest_first else AuditEntry.id > after_id)
    q = q.order_by(AuditEntry.id.desc() if newest_first else AuditEntry.id).limit(limit)
    return [AuditPublic.model_validate(r) for r in session.scalars(q)]
