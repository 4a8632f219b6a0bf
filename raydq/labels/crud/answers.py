"""Answers (labels and skips): upserts with history, the revision-ordered reads the selector, the trainer and the
export use, and one item's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from raydq.labels.crud.meta import chunks, lock_revision, set_counter
from raydq.labels.models import LABEL, SKIP, Label, LabelEvent, Meta
from raydq.labels.schemas import ExportRow, LabelChange, LabelEventPublic, LabelIn, LabelPublic, LabelSnapshot


@dataclass
class Tally:
    """What an update did, per kind of answer."""

    created: dict[str, int] = field(default_factory=lambda: {LABEL: 0, SKIP: 0})
    updated: dict[str, int] = field(default_factory=lambda: {LABEL: 0, SKIP: 0})
    unchanged: dict[str, int] = field(default_factory=lambda: {LABEL: 0, SKIP: 0})
    revision: int = 0


def apply_answers(
    *, session: Session, answers: Sequence[LabelIn], caller: str, batch_id: str | None, now: datetime
) -> Tally:
    """Upsert ``answers`` (ids distinct, already validated): a new answer is created, a different one (another class,
    a skip, a label replacing a skip, another skip reason) is an update recorded in ``label_events``, the same answer
    again changes nothing. ``annotator`` defaults to ``caller``. Leases are not touched here."""
    tally = Tally(revision=lock_revision(session=session))
    existing: dict[str, Label] = {}
    for chunk in chunks([x.id for x in answers]):
        existing.update({row.item_id: row for row in session.scalars(select(Label).where(Label.item_id.in_(chunk)))})
    changed = []
    for x in answers:
        row = existing.get(x.id)
        if row is None:
            tally.created[x.kind] += 1
            changed.append(x)
        elif (row.kind, row.label, row.reason) != (x.kind, x.label, x.reason):
            tally.updated[x.kind] += 1
            changed.append(x)
        else:
            tally.unchanged[x.kind] += 1
    if not changed:
        return tally
    tally.revision += 1
    set_counter(session=session, key=Meta.LABELS_REVISION, value=tally.revision)
    for x in changed:
        row = existing.get(x.id)
        previous = row.label if row is not None else None
        annotator = x.annotator if x.annotator is not None else caller
        values = {"kind": x.kind, "label": x.label, "reason": x.reason, "annotator": annotator}
        if row is None:
            session.add(Label(item_id=x.id, created_at=now, updated_at=now, revision=tally.revision, **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at, row.revision = now, tally.revision
        session.add(
            LabelEvent(
                item_id=x.id,
                previous_label=previous,
                batch_id=batch_id,
                created_at=now,
                revision=tally.revision,
                **values,
            )
        )
    session.flush()
    return tally


def answered_ids(*, session: Session, item_ids: Sequence[str]) -> list[str]:
    """Which of ``item_ids`` have an answer (a label or a skip): such items are never leased."""
    out: list[str] = []
    for chunk in chunks(item_ids):
        out += session.scalars(select(Label.item_id).where(Label.item_id.in_(chunk)))
    return out


def changes_since(*, session: Session, revision: int) -> list[LabelChange]:
    """The current answer of every item changed after ``revision``, in revision order (label None: a skip).

    Answer writers hold the revision row's lock until they commit, so revisions commit in order and a reader that
    has applied everything up to r misses nothing by asking for what came after r.
    """
    rows = session.execute(
        select(Label.item_id, Label.label, Label.revision)
        .where(Label.revision > revision)
        .order_by(Label.revision, Label.item_id)
    )
    return [LabelChange(i, lab, r) for i, lab, r in rows]


def snapshot(*, session: Session) -> LabelSnapshot:
    """Labels (skips excluded) and their revision from one statement, so the two agree on any isolation level.

    The revision is the highest revision among the rows: every revision bump writes a row with that revision and
    rows are never deleted, so it equals the ``labels_revision`` counter at the statement's snapshot.
    """
    labels: dict[str, str] = {}
    revision = 0
    for item_id, kind, label, rev in session.execute(select(Label.item_id, Label.kind, Label.label, Label.revision)):
        revision = max(revision, rev)
        if kind == LABEL:
            labels[item_id] = label
    return LabelSnapshot(revision, labels)


def skipped_ids(*, session: Session) -> list[str]:
    return list(session.scalars(select(Label.item_id).where(Label.kind == SKIP).order_by(Label.item_id)))


def get_answer(*, session: Session, item_id: str) -> LabelPublic | None:
    row = session.get(Label, item_id)
    return LabelPublic.model_validate(row) if row is not None else None


def history(*, session: Session, item_id: str) -> list[LabelEventPublic]:
    rows = session.scalars(select(LabelEvent).where(LabelEvent.item_id == item_id).order_by(LabelEvent.id))
    return [LabelEventPublic.model_validate(r) for r in rows]


def count_answers(*, session: Session, kind: str = LABEL) -> int:
    return session.execute(select(func.count()).select_from(Label).where(Label.kind == kind)).scalar_one()


def export_page(
    *,
    session: Session,
    since_revision: int,
    after: tuple[int, str | None] | None,
    limit: int,
    include_skips: bool,
) -> list[ExportRow]:
    """Current answers with revision > ``since_revision`` in (revision, item_id) order, strictly after ``after``
    (``(revision, None)``: after all of that revision).

    Keyset pages over an order that revisions only extend (a change moves an item to a new, higher revision) see
    every answer once per change, even while answers are written.
    """
    query = select(Label).where(Label.revision > since_revision)
    if after is not None:
        rev, item_id = after
        if item_id is None:  # after all of revision rev
            query = query.where(Label.revision > rev)
        else:
            query = query.where(or_(Label.revision > rev, and_(Label.revision == rev, Label.item_id > item_id)))
    if not include_skips:
        query = query.where(Label.kind == LABEL)
    rows = session.scalars(query.order_by(Label.revision, Label.item_id).limit(limit))
    return [
        ExportRow(
            item_id=r.item_id,
            kind=r.kind,
            label=r.label,
            reason=r.reason,
            annotator=r.annotator,
            revision=r.revision,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
