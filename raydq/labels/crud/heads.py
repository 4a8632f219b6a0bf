"""Trained heads: versions allocated by the database, a sanity verdict per head, the newest good head, an admin pin."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from raydq.labels.crud.meta import lock_counter, read_counter, set_counter
from raydq.labels.errors import InvalidField, NotFound
from raydq.labels.models import HeadRecord, Meta
from raydq.labels.schemas import HeadPublic


def allocate_version(*, session: Session) -> int:
    """The next model version. The counter row is locked until commit, so two trainers on one database never get the
    same version (a version whose training fails is simply skipped)."""
    version = lock_counter(session=session, key=Meta.HEAD_VERSION) + 1
    set_counter(session=session, key=Meta.HEAD_VERSION, value=version)
    return version


def max_version(*, session: Session) -> int:
    """The last version allocated (0 before the first)."""
    return read_counter(session=session, key=Meta.HEAD_VERSION) or 0


def pinned_version(*, session: Session) -> int | None:
    return read_counter(session=session, key=Meta.PINNED_HEAD)


def save_head(
    *,
    session: Session,
    version: int | None,
    revision: int,
    n_labels: int,
    classes: Iterable[str],
    payload: dict[str, Any],
    sane: bool,
    reason: str | None,
    now: datetime,
    keep: int,
) -> int:
    """Store a trained head; ``version`` None allocates one. Keeps the newest ``keep`` heads, the newest sane head
    and the pinned head; returns the version."""
    if version is None:
        version = allocate_version(session=session)
    elif version > lock_counter(session=session, key=Meta.HEAD_VERSION):
        set_counter(session=session, key=Meta.HEAD_VERSION, value=version)  # a version chosen outside the counter
    session.add(
        HeadRecord(
            version=version,
            revision=revision,
            n_labels=n_labels,
            classes=list(classes),
            created_at=now,
            payload=json.dumps(payload),
            sane=sane,
            reason=reason,
        )
    )
    session.flush()
    newest = list(session.scalars(select(HeadRecord.version).order_by(HeadRecord.version.desc()).limit(keep)))
    protected = set(newest)
    good = _latest_sane(session)
    if good is not None:
        protected.add(good.version)
    pinned = pinned_version(session=session)
    if pinned is not None:
        protected.add(pinned)
    session.execute(delete(HeadRecord).where(HeadRecord.version.not_in(protected)))
    return version


def _public(row: HeadRecord) -> HeadPublic:
    return HeadPublic(
        version=row.version,
        revision=row.revision,
        n_labels=row.n_labels,
        classes=list(row.classes),
        created_at=row.created_at,
        sane=row.sane,
        reason=row.reason,
        payload=json.loads(row.payload),
    )


def _latest_sane(session: Session) -> HeadRecord | None:
    return session.scalars(
        select(HeadRecord).where(HeadRecord.sane.is_(True)).order_by(HeadRecord.version.desc()).limit(1)
    ).first()


def latest_head(*, session: Session) -> HeadPublic | None:
    """The newest stored head, sane or not."""
    row = session.scalars(select(HeadRecord).order_by(HeadRecord.version.desc()).limit(1)).first()
    return None if row is None else _public(row)


def latest_good_head(*, session: Session) -> HeadPublic | None:
    """The head to serve: the pinned one if an admin pinned one, else the newest sane head."""
    pinned = pinned_version(session=session)
    if pinned is not None:
        row = session.get(HeadRecord, pinned)
        if row is not None:
            return _public(row)
    row = _latest_sane(session)
    return None if row is None else _public(row)


def get_head(*, session: Session, version: int) -> HeadPublic | None:
    row = session.get(HeadRecord, version)
    return None if row is None else _public(row)


def list_heads(*, session: Session) -> list[HeadPublic]:
    return [_public(r) for r in session.scalars(select(HeadRecord).order_by(HeadRecord.version.desc()))]


def pin_head(*, session: Session, version: int) -> None:
    """Serve ``version`` from now on, whatever is trained later (an admin rollback). Only a sane head can be pinned."""
    row = session.get(HeadRecord, version)
    if row is None:
        raise NotFound(f"no stored head with version {version}")
    if not row.sane:
        raise InvalidField(("version",), f"head {version} failed its sanity check ({row.reason}); not pinned")
    lock_counter(session=session, key=Meta.HEAD_VERSION)  # serialise with pruning in save_head
    if pinned_version(session=session) is None:
        session.add(Meta(key=Meta.PINNED_HEAD, value=version))
    else:
        set_counter(session=session, key=Meta.PINNED_HEAD, value=version)


def unpin_head(*, session: Session) -> int | None:
    """Back to serving the newest sane head; returns the version that was pinned."""
    lock_counter(session=session, key=Meta.HEAD_VERSION)
    pinned = pinned_version(session=session)
    session.execute(delete(Meta).where(Meta.key == Meta.PINNED_HEAD))
    return pinned
