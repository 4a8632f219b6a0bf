"""Plain functions over a session, keyword-only arguments. They never commit: the caller owns the transaction
(``with db.write_session() as s, s.begin(): ...``), which is what makes a request all-or-nothing.

Write functions that change labels or leases first lock the revision row (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite writers already hold the database lock from ``BEGIN IMMEDIATE``), so label writes and leasing are serialised
by the database itself, across any number of replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from raydq.labels.models import Batch, HeadRecord, Label, LabelEvent, Lease, Meta
from raydq.labels.schemas import BatchPublic, HeadPublic, LabelCounts, LabelEventPublic, LabelIn, LabelPublic

_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits


class LeaseConflict(Exception):
    """Some chosen items were leased or labeled meanwhile (another replica or request won the race)."""

    def __init__(self, item_ids: Sequence[str]) -> None:
        super().__init__(f"{len(item_ids)} items are already leased or labeled")
        self.item_ids = list(item_ids)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def lock_revision(*, session: Session) -> int:
    """The label revision, with its row locked until the transaction ends (serialises writers)."""
    return session.execute(select(Meta.value).where(Meta.key == Meta.LABELS_REVISION).with_for_update()).scalar_one()


def labels_revision(*, session: Session) -> int:
    return session.execute(select(Meta.value).where(Meta.key == Meta.LABELS_REVISION)).scalar_one()


def apply_labels(
    *, session: Session, labels: Sequence[LabelIn], now: datetime, batch_id: str | None = None
) -> LabelCounts:
    """Upsert ``labels`` (ids must be distinct and already validated): a new label is created, a different label is
    an update recorded in ``label_events``, the same label again changes nothing. Leases on these items end."""
    revision = lock_revision(session=session)
    ids = [x.id for x in labels]
    existing: dict[str, Label] = {}
    for chunk in _chunks(ids):
        existing.update({row.item_id: row for row in session.scalars(select(Label).where(Label.item_id.in_(chunk)))})
    changed = [x for x in labels if x.id not in existing or existing[x.id].label != x.label]
    created = sum(1 for x in changed if x.id not in existing)
    if changed:
        revision += 1
        session.execute(update(Meta).where(Meta.key == Meta.LABELS_REVISION).values(value=revision))
        for x in changed:
            row = existing.get(x.id)
            previous = row.label if row is not None else None
            if row is None:
                session.add(
                    Label(
                        item_id=x.id,
                        label=x.label,
                        annotator=x.annotator,
                        created_at=now,
                        updated_at=now,
                        revision=revision,
                    )
                )
            else:
                row.label, row.annotator, row.updated_at, row.revision = x.label, x.annotator, now, revision
            session.add(
                LabelEvent(
                    item_id=x.id,
                    label=x.label,
                    previous_label=previous,
                    annotator=x.annotator,
                    batch_id=batch_id,
                    created_at=now,
                    revision=revision,
                )
            )
    for chunk in _chunks(ids):
        session.execute(delete(Lease).where(Lease.item_id.in_(chunk)))
    session.flush()
    labeled = session.execute(select(func.count()).select_from(Label)).scalar_one()
    return LabelCounts(
        received=len(labels),
        created=created,
        updated=len(changed) - created,
        unchanged=len(labels) - len(changed),
        revision=revision,
        labeled=labeled,
    )


def current_labels(*, session: Session) -> tuple[int, dict[str, str]]:
    """``(revision, {item_id: label})`` read in one transaction, so the two agree."""
    revision = labels_revision(session=session)
    rows = session.execute(select(Label.item_id, Label.label)).all()
    return revision, {item_id: label for item_id, label in rows}


def labels_since(*, session: Session, revision: int) -> list[tuple[str, str, int]]:
    """``(item_id, label, revision)`` of every label changed after ``revision``.

    Label writers hold the revision row's lock until they commit, so revisions commit in order and a reader that
    has applied everything up to r misses nothing by asking for what came after r.
    """
    rows = session.execute(select(Label.item_id, Label.label, Label.revision).where(Label.revision > revision))
    return [(i, lab, r) for i, lab, r in rows]


def get_label(*, session: Session, item_id: str) -> LabelPublic | None:
    row = session.get(Label, item_id)
    return LabelPublic.model_validate(row) if row is not None else None


def label_history(*, session: Session, item_id: str) -> list[LabelEventPublic]:
    rows = session.scalars(select(LabelEvent).where(LabelEvent.item_id == item_id).order_by(LabelEvent.id))
    return [LabelEventPublic.model_validate(r) for r in rows]


def count_labels(*, session: Session) -> int:
    return session.execute(select(func.count()).select_from(Label)).scalar_one()


def live_leased_ids(*, session: Session, now: datetime) -> list[str]:
    return list(session.scalars(select(Lease.item_id).where(Lease.expires_at > now)))


def count_live_leases(*, session: Session, now: datetime) -> int:
    return session.execute(select(func.count()).select_from(Lease).where(Lease.expires_at > now)).scalar_one()


def create_batch(
    *,
    session: Session,
    batch_id: str,
    item_ids: Sequence[str],
    now: datetime,
    expires_at: datetime,
    strategy: str,
    model_version: int,
) -> None:
    """Lease ``item_ids`` under a new batch; ``LeaseConflict`` (nothing written) if any is leased or labeled."""
    lock_revision(session=session)
    taken: list[str] = []
    for chunk in _chunks(item_ids):
        taken += session.scalars(select(Lease.item_id).where(Lease.item_id.in_(chunk), Lease.expires_at > now))
        taken += session.scalars(select(Label.item_id).where(Label.item_id.in_(chunk)))
    if taken:
        raise LeaseConflict(taken)
    for chunk in _chunks(item_ids):
        session.execute(delete(Lease).where(Lease.item_id.in_(chunk)))  # expired leases of these items
    session.add(
        Batch(
            batch_id=batch_id,
            created_at=now,
            expires_at=expires_at,
            strategy=strategy,
            model_version=model_version,
            size=len(item_ids),
        )
    )
    session.flush()
    session.add_all(Lease(item_id=i, batch_id=batch_id, expires_at=expires_at) for i in item_ids)
    session.flush()


def get_batch(*, session: Session, batch_id: str, now: datetime) -> BatchPublic | None:
    batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    leased = session.scalars(select(Lease.item_id).where(Lease.batch_id == batch_id, Lease.expires_at > now))
    return BatchPublic(
        batch_id=batch.batch_id,
        created_at=batch.created_at,
        expires_at=batch.expires_at,
        released_at=batch.released_at,
        strategy=batch.strategy,
        model_version=batch.model_version,
        size=batch.size,
        leased_ids=sorted(leased),
    )


def release_batch(*, session: Session, batch_id: str, now: datetime) -> int:
    """End the batch's remaining leases now; returns how many ended. ``LookupError`` for an unknown batch."""
    lock_revision(session=session)
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise LookupError(batch_id)
    released = session.execute(
        select(func.count()).select_from(Lease).where(Lease.batch_id == batch_id, Lease.expires_at > now)
    ).scalar_one()
    session.execute(delete(Lease).where(Lease.batch_id == batch_id))
    if batch.released_at is None:
        batch.released_at = now
    return released


def batch_exists(*, session: Session, batch_id: str) -> bool:
    return session.get(Batch, batch_id) is not None


def count_batches(*, session: Session) -> int:
    return session.execute(select(func.count()).select_from(Batch)).scalar_one()


def purge_expired_leases(*, session: Session, now: datetime) -> int:
    return session.execute(delete(Lease).where(Lease.expires_at <= now)).rowcount or 0


def save_head(
    *,
    session: Session,
    version: int,
    revision: int,
    n_labels: int,
    classes: Iterable[str],
    payload: dict[str, Any],
    now: datetime,
    keep: int = 5,
) -> None:
    """Store a trained head under ``version``; keep only the newest ``keep`` versions."""
    session.add(
        HeadRecord(
            version=version,
            revision=revision,
            n_labels=n_labels,
            classes=list(classes),
            created_at=now,
            payload=json.dumps(payload),
        )
    )
    session.flush()
    session.execute(delete(HeadRecord).where(HeadRecord.version <= version - keep))


def latest_head(*, session: Session) -> HeadPublic | None:
    row = session.scalars(select(HeadRecord).order_by(HeadRecord.version.desc()).limit(1)).first()
    if row is None:
        return None
    return HeadPublic(
        version=row.version,
        revision=row.revision,
        n_labels=row.n_labels,
        classes=list(row.classes),
        created_at=row.created_at,
        payload=json.loads(row.payload),
    )


def max_head_version(*, session: Session) -> int:
    return session.execute(select(func.coalesce(func.max(HeadRecord.version), 0))).scalar_one()
