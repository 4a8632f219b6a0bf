"""The schema raydq 0.1 created with ``create_all``: labels, their history, batches, leases, heads, the revision.

A database made by that code (tables present, no version table) is stamped at this revision and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "raydq_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.create_table(
        "raydq_labels",
        sa.Column("item_id", sa.String(), primary_key=True),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("annotator", sa.String(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    op.create_index("ix_raydq_labels_revision", "raydq_labels", ["revision"])
    op.create_table(
        "raydq_label_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("previous_label", sa.String(), nullable=True),
        sa.Column("annotator", sa.String(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    )
    op.create_index("ix_raydq_label_events_item_id", "raydq_label_events", ["item_id"])
    op.create_table(
        "raydq_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("released_at", UTC_DATETIME, nullable=True),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
    )
    op.create_table(
        "raydq_leases",
        sa.Column("item_id", sa.String(), primary_key=True),
        sa.Column(
            "batch_id", sa.String(64), sa.ForeignKey("raydq_batches.batch_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_raydq_leases_batch_id", "raydq_leases", ["batch_id"])
    op.create_index("ix_raydq_leases_expires_at", "raydq_leases", ["expires_at"])
    op.create_table(
        "raydq_heads",
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    meta = sa.table("raydq_meta", sa.column("key", sa.String), sa.column("value", sa.Integer))
    op.bulk_insert(meta, [{"key": "labels_revision", "value": 0}])


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
