"""Tables of the label store (SQLAlchemy 2.0 declarative), as the newest migration leaves them.

The schema is owned by the Alembic migrations in ``raydq/labels/migrations``; these classes must match the head
revision (a test compares them). Changing a table here means writing a migration.

- ``labels``: the current answer for each answered item: a class (``kind='label'``) or a skip (``kind='skip'``,
  no label, an optional reason). One row per item id.
- ``label_events``: every change of an answer, relabels and skips included (append-only history).
- ``batches`` / ``batch_items`` / ``leases``: what ``select_batch`` handed out, to whom and until when;
  ``leases.item_id`` is the primary key, so the database itself refuses to lease one item twice.
- ``heads``: trained heads by model version, with a sanity verdict; versions come from the ``head_version`` counter.
- ``tokens``: per-annotator API tokens (SHA-256 only) with a role, an optional expiry and revocation.
- ``audit``: who did what, when, in which request and batch.
- ``idempotency``: the stored response of each (caller, key, endpoint), replayed on a retry.
- ``meta``: counters. ``labels_revision`` rises in every transaction that changes an answer; its row also
  serialises label writes and leasing on PostgreSQL (``SELECT ... FOR UPDATE``). ``head_version`` allocates model
  versions; ``pinned_head`` (when present) is the version an admin pinned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC, PostgreSQL ``timestamptz``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the label store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


LABEL, SKIP = "label", "skip"
_KIND_CHECK = "(kind = 'label' AND label IS NOT NULL AND reason IS NULL) OR (kind = 'skip' AND label IS NULL)"


class Meta(Base):
    __tablename__ = "raydq_meta"
    LABELS_REVISION = "labels_revision"
    HEAD_VERSION = "head_version"
    PINNED_HEAD = "pinned_head"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Label(Base):
    __tablename__ = "raydq_labels"
    __table_args__ = (
        CheckConstraint(_KIND_CHECK, name="ck_raydq_labels_kind"),
        Index("ix_raydq_labels_revision_item_id", "revision", "item_id"),  # export pages and the mirror's catch-up
    )

    item_id: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False, server_default=LABEL)
    label: Mapped[str | None] = mapped_column(String, nullable=True)
    reason: Mapped[str | None] = mapped_column(String, nullable=True)
    annotator: Mapped[str | None] = mapped_column(String, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)  # of the last change


class LabelEvent(Base):
    __tablename__ = "raydq_label_events"
    __table_args__ = (CheckConstraint(_KIND_CHECK, name="ck_raydq_label_events_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String, nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False, server_default=LABEL)
    label: Mapped[str | None] = mapped_column(String, nullable=True)
    reason: Mapped[str | None] = mapped_column(String, nullable=True)
    previous_label: Mapped[str | None] = mapped_column(String, nullable=True)
    annotator: Mapped[str | None] = mapped_column(String, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)


class Batch(Base):
    __tablename__ = "raydq_batches"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    strategy: Mapped[str] = mapped_column(String(64), nullable=False)
    model_version: Mapped[int] = mapped_column(Integer, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)  # None: made before owners


class BatchItem(Base):
    """The items a batch handed out (kept after their leases end, so a late label can be told apart)."""

    __tablename__ = "raydq_batch_items"

    batch_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("raydq_batches.batch_id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String, primary_key=True, index=True)


class Lease(Base):
    __tablename__ = "raydq_leases"

    item_id: Mapped[str] = mapped_column(String, primary_key=True)
    batch_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("raydq_batches.batch_id", ondelete="CASCADE"), nullable=False, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class HeadRecord(Base):
    __tablename__ = "raydq_heads"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    n_labels: Mapped[int] = mapped_column(Integer, nullable=False)
    classes: Mapped[list] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # LinearHead.to_dict() as JSON
    sane: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it is not sane


class Token(Base):
    __tablename__ = "raydq_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('annotator', 'admin')", name="ck_raydq_tokens_role"),
        # one live (unrevoked) token per name; revoked rows stay for the record
        Index(
            "uq_raydq_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    __tablename__ = "raydq_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    caller: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class IdempotencyRecord(Base):
    __tablename__ = "raydq_idempotency"

    caller: Mapped[str] = mapped_column(String(256), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response: Mapped[str] = mapped_column(Text, nullable=False)  # the JSON answer, replayed as is
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
