"""Batches and their leases: leasing with a database-enforced "one lease per item", renew, release, the lease
report of a label update, and purging."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from raydq.labels.crud.answers import answered_ids
from raydq.labels.crud.meta import chunks, lock_revision
from raydq.labels.errors import BatchClosed, Forbidden, LeaseConflict, NotFound
from raydq.labels.identity import Identity
from raydq.labels.models import Batch, BatchItem, Label, Lease
from raydq.labels.schemas import BatchPublic, LeaseReport


def live_leased_ids(*, session: Session, now: datetime) -> list[str]:
    return list(session.scalars(select(Lease.item_id).where(Lease.expires_at > now)))


def count_live_leases(*, session: Session, now: datetime) -> int:
    return session.execute(select(func.count()).select_from(Lease).where(Lease.expires_at > now)).scalar_one()


def create_batch(
    *,
    session: Session,
    batch_id: str,
    item_ids: Sequence[str],
    owner: str,
    now: datetime,
    expires_at: datetime,
    strategy: str,
    model_version: int,
) -> None:
    """Lease ``item_ids`` under a new batch owned by ``owner``; ``LeaseConflict`` (nothing written) if any is leased,
    labeled or skipped."""
    lock_revision(session=session)
    taken: list[str] = []
    for chunk in chunks(item_ids):
        taken += session.scalars(select(Lease.item_id).where(Lease.item_id.in_(chunk), Lease.expires_at > now))
    taken += answered_ids(session=session, item_ids=item_ids)
    if taken:
        raise LeaseConflict(taken)
    for chunk in chunks(item_ids):
        session.execute(delete(Lease).where(Lease.item_id.in_(chunk)))  # expired leases of these items
    session.add(
        Batch(
            batch_id=batch_id,
            owner=owner,
            created_at=now,
            expires_at=expires_at,
            strategy=strategy,
            model_version=model_version,
            size=len(item_ids),
        )
    )
    session.flush()
    session.add_all(BatchItem(batch_id=batch_id, item_id=i) for i in item_ids)
    session.add_all(Lease(item_id=i, batch_id=batch_id, expires_at=expires_at) for i in item_ids)
    session.flush()


def _public(session: Session, batch: Batch, now: datetime) -> BatchPublic:
    leased = session.scalars(
        select(Lease.item_id).where(Lease.batch_id == batch.batch_id, Lease.expires_at > now).order_by(Lease.item_id)
    )
    return BatchPublic(
        batch_id=batch.batch_id,
        owner=batch.owner,
        created_at=batch.created_at,
        expires_at=batch.expires_at,
        released_at=batch.released_at,
        strategy=batch.strategy,
        model_version=batch.model_version,
        size=batch.size,
        leased_ids=list(leased),
    )


def get_batch(*, session: Session, batch_id: str, now: datetime) -> BatchPublic | None:
    batch = session.get(Batch, batch_id)
    return None if batch is None else _public(session, batch, now)


def _owned_batch(session: Session, batch_id: str, caller: Identity) -> Batch:
    """The batch, if ``caller`` may act on it: its owner, an admin, or anyone for a batch made before owners."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"unknown batch_id {batch_id!r}")
    if batch.owner is not None and batch.owner != caller.name and not caller.is_admin:
        raise Forbidden(f"batch {batch_id!r} belongs to another caller")
    return batch


def release_batch(*, session: Session, batch_id: str, caller: Identity, now: datetime) -> tuple[int, str | None]:
    """End the batch's remaining leases now; ``(how many ended, the batch's owner)``. Releasing twice is harmless."""
    lock_revision(session=session)
    batch = _owned_batch(session, batch_id, caller)
    released = session.execute(
        select(func.count()).select_from(Lease).where(Lease.batch_id == batch_id, Lease.expires_at > now)
    ).scalar_one()
    session.execute(delete(Lease).where(Lease.batch_id == batch_id))
    if batch.released_at is None:
        batch.released_at = now
    return released, batch.owner


def renew_batch(
    *, session: Session, batch_id: str, caller: Identity, now: datetime, expires_at: datetime
) -> BatchPublic:
    """Hold the batch's unanswered items until ``expires_at``: its own leases (live or lapsed) are extended, and an
    item whose lease was purged, or lapsed and was not taken by another batch since, is leased again. Items another
    batch holds now stay with it. ``BatchClosed`` for a released batch."""
    lock_revision(session=session)
    batch = _owned_batch(session, batch_id, caller)
    if batch.released_at is not None:
        raise BatchClosed(f"batch {batch_id!r} was released; select a new batch")
    items = list(
        session.scalars(
            select(BatchItem.item_id).where(
                BatchItem.batch_id == batch_id, BatchItem.item_id.not_in(select(Label.item_id))
            )
        )
    )
    leases: dict[str, Lease] = {}
    for chunk in chunks(items):
        leases.update({x.item_id: x for x in session.scalars(select(Lease).where(Lease.item_id.in_(chunk)))})
    for item in items:
        lease = leases.get(item)
        if lease is None:
            session.add(Lease(item_id=item, batch_id=batch_id, expires_at=expires_at))
        elif lease.batch_id == batch_id or lease.expires_at <= now:
            lease.batch_id, lease.expires_at = batch_id, expires_at
    batch.expires_at = expires_at
    session.flush()
    return _public(session, batch, now)


def open_batches(*, session: Session, owner: str | None, now: datetime, limit: int) -> list[BatchPublic]:
    """Unreleased batches that still hold a live lease, newest first; ``owner`` None lists everyone's."""
    query = select(Batch).where(
        Batch.released_at.is_(None),
        Batch.batch_id.in_(select(Lease.batch_id).where(Lease.expires_at > now)),
    )
    if owner is not None:
        query = query.where(Batch.owner == owner)
    batches = session.scalars(query.order_by(Batch.created_at.desc(), Batch.batch_id).limit(limit))
    return [_public(session, b, now) for b in batches]


def batch_exists(*, session: Session, batch_id: str) -> bool:
    return session.get(Batch, batch_id) is not None


def count_batches(*, session: Session) -> int:
    return session.execute(select(func.count()).select_from(Batch)).scalar_one()


def lease_report(
    *, session: Session, item_ids: Sequence[str], caller: Identity, batch_id: str | None, now: datetime
) -> LeaseReport:
    """For a label update about to be stored: which items its lease did not cover (read before the leases end)."""
    held: dict[str, tuple[str, str | None]] = {}  # item -> (batch, owner) of its live lease
    in_batch: set[str] = set()
    for chunk in chunks(item_ids):
        rows = session.execute(
            select(Lease.item_id, Lease.batch_id, Batch.owner)
            .join(Batch, Batch.batch_id == Lease.batch_id)
            .where(Lease.item_id.in_(chunk), Lease.expires_at > now)
        )
        held.update({item: (batch, owner) for item, batch, owner in rows})
        if batch_id is not None:
            in_batch.update(
                session.scalars(
                    select(BatchItem.item_id).where(BatchItem.batch_id == batch_id, BatchItem.item_id.in_(chunk))
                )
            )
    report = LeaseReport()
    for item in item_ids:
        if item in held:
            lease_batch, owner = held[item]
            if owner is not None and owner != caller.name:
                report.other_caller.append(item)
            elif batch_id is not None and lease_batch != batch_id:
                report.other_batch.append(item)
        elif batch_id is not None:
            (report.expired if item in in_batch else report.not_in_batch).append(item)
    return report


def end_leases(*, session: Session, item_ids: Sequence[str]) -> None:
    """Answered items are leased no more."""
    for chunk in chunks(item_ids):
        session.execute(delete(Lease).where(Lease.item_id.in_(chunk)))


def purge_expired_leases(*, session: Session, now: datetime) -> int:
    return session.execute(delete(Lease).where(Lease.expires_at <= now)).rowcount or 0
