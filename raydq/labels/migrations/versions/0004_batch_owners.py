"""Lease lifecycle: a batch records its owner (the caller that selected it; NULL for batches made before) and the
items it handed out, which stay after their leases end so a late label can be told from a foreign one. The items of
existing batches are known only while leased: they are copied from the leases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("raydq_batches", sa.Column("owner", sa.String(256), nullable=True))
    op.create_index("ix_raydq_batches_owner", "raydq_batches", ["owner"])
    op.create_table(
        "raydq_batch_items",
        sa.Column(
            "batch_id", sa.String(64), sa.ForeignKey("raydq_batches.batch_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("item_id", sa.String(), primary_key=True),
    )
    op.create_index("ix_raydq_batch_items_item_id", "raydq_batch_items", ["item_id"])
    op.execute("INSERT INTO raydq_batch_items (batch_id, item_id) SELECT batch_id, item_id FROM raydq_leases")


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
