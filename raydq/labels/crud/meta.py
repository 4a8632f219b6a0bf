"""The counter rows of ``raydq_meta`` and the id chunking every bulk query uses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from raydq.labels.models import Meta

CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def lock_counter(*, session: Session, key: str) -> int:
    """The counter's value, its row locked until the transaction ends (serialises the writers that use it)."""
    return session.execute(select(Meta.value).where(Meta.key == key).with_for_update()).scalar_one()


def read_counter(*, session: Session, key: str) -> int | None:
    return session.execute(select(Meta.value).where(Meta.key == key)).scalar_one_or_none()


def set_counter(*, session: Session, key: str, value: int) -> None:
    session.execute(update(Meta).where(Meta.key == key).values(value=value))


def lock_revision(*, session: Session) -> int:
    """The label revision, locked: answer writes, leasing and idempotent replays queue on this row."""
    return lock_counter(session=session, key=Meta.LABELS_REVISION)


def labels_revision(*, session: Session) -> int:
    return session.execute(select(Meta.value).where(Meta.key == Meta.LABELS_REVISION)).scalar_one()
