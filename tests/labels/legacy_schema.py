"""The label store's schema as ``create_all`` made it before migrations existed (raydq 0.1, revision 0001), frozen
here so the migration tests can build such a database, fill it and upgrade it. Do not edit: it is history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, TypeDecorator, create_engine, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from raydq.labels.db import normalise_url


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LegacyBase(DeclarativeBase):
    pass


class Meta(LegacyBase):
    __tablename__ = "raydq_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Label(LegacyBase):
    __tablename__ = "raydq_labels"
    item_id: Mapped[str] = mapped_column(String, primary_key=True)
    label: Mapped[str] = mapped_column(String, nullable=False)
    annotator: Mapped[str | None] = mapped_column(String, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, index=True)


class LabelEvent(LegacyBase):
    __tablename__ = "raydq_label_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    label: Mapped[str] = mapped_column(String, nullable=False)
    previous_label: Mapped[str | None] = mapped_column(String, nullable=True)
    annotator: Mapped[str | None] = mapped_column(String, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)


class Batch(LegacyBase):
    __tablename__ = "raydq_batches"
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    strategy: Mapped[str] = mapped_column(String(64), nullable=False)
    model_version: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)


class Lease(LegacyBase):
    __tablename__ = "raydq_leases"
    item_id: Mapped[str] = mapped_column(String, primary_key=True)
    batch_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("raydq_batches.batch_id", ondelete="CASCADE"), nullable=False, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class HeadRecord(LegacyBase):
    __tablename__ = "raydq_heads"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    n_labels: Mapped[int] = mapped_column(Integer, nullable=False)
    classes: Mapped[list] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)


T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def build_legacy_database(url: str, *, n_labels: int = 300) -> dict:
    """Create today's schema at ``url`` the way raydq 0.1 did (``create_all`` plus the revision row) and fill it with
    labels and their history (relabels included), a live and an expired batch with leases, a released batch and
    heads. Returns what was written, for comparison after the upgrade."""
    engine = create_engine(normalise_url(url))
    LegacyBase.metadata.create_all(engine)
    labels, events, leases = {}, [], {}
    with engine.begin() as conn:
        revision = 0
        for i in range(n_labels):
            revision += 1
            item = f"item-{i:04d}"
            name = ["cat", "dog", "bird"][i % 3]
            at = T0 + timedelta(seconds=i)
            labels[item] = {"label": name, "annotator": f"ann{i % 4}" if i % 5 else None, "revision": revision}
            events.append((item, name, None, revision))
            conn.execute(
                insert(Label).values(
                    item_id=item,
                    label=name,
                    annotator=labels[item]["annotator"],
                    created_at=at,
                    updated_at=at,
                    revision=revision,
                )
            )
            conn.execute(
                insert(LabelEvent).values(
                    item_id=item,
                    label=name,
                    previous_label=None,
                    annotator=labels[item]["annotator"],
                    batch_id="batch-old" if i < 10 else None,
                    created_at=at,
                    revision=revision,
                )
            )
        for i in range(0, n_labels, 7):  # relabels: history grows, the current label changes
            revision += 1
            item = f"item-{i:04d}"
            old = labels[item]["label"]
            new = "fish"
            labels[item] = {"label": new, "annotator": "fixer", "revision": revision}
            events.append((item, new, old, revision))
            at = T0 + timedelta(hours=1, seconds=i)
            conn.execute(
                Label.__table__.update()
                .where(Label.item_id == item)
                .values(label=new, annotator="fixer", updated_at=at, revision=revision)
            )
            conn.execute(
                insert(LabelEvent).values(
                    item_id=item,
                    label=new,
                    previous_label=old,
                    annotator="fixer",
                    batch_id=None,
                    created_at=at,
                    revision=revision,
                )
            )
        conn.execute(insert(Meta).values(key="labels_revision", value=revision))
        far, past = T0 + timedelta(days=3650), T0 + timedelta(minutes=5)
        for batch_id, expires, released, items in (
            ("batch-live", far, None, [f"free-{k}" for k in range(6)]),
            ("batch-expired", past, None, [f"free-{k}" for k in range(6, 9)]),
            ("batch-old", past, T0 + timedelta(minutes=1), []),
        ):
            conn.execute(
                insert(Batch).values(
                    batch_id=batch_id,
                    created_at=T0,
                    expires_at=expires,
                    released_at=released,
                    strategy="centroid",
                    model_version=2,
                    size=max(len(items), 10),
                )
            )
            for item in items:
                leases[item] = (batch_id, expires)
                conn.execute(insert(Lease).values(item_id=item, batch_id=batch_id, expires_at=expires))
        for v in (3, 4):
            conn.execute(
                insert(HeadRecord).values(
                    version=v,
                    revision=revision - (4 - v),
                    n_labels=n_labels,
                    classes=["bird", "cat", "dog", "fish"],
                    created_at=T0 + timedelta(hours=2, minutes=v),
                    payload=json.dumps({"version": v, "W": [[v]]}),
                )
            )
    engine.dispose()
    return {"labels": labels, "events": events, "leases": leases, "revision": revision, "heads": [3, 4]}
