"""Skips: an answer is a class (``kind='label'``) or a skip (``kind='skip'``, no class, an optional reason), in the
current answers and in their history. Existing rows become ``kind='label'``. Export pages read labels by
(revision, item_id), so that index replaces the one on revision alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KIND_CHECK = "(kind = 'label' AND label IS NOT NULL AND reason IS NULL) OR (kind = 'skip' AND label IS NULL)"


def upgrade() -> None:
    for table in ("raydq_labels", "raydq_label_events"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="label"))
            batch.add_column(sa.Column("reason", sa.String(), nullable=True))
            batch.alter_column("label", existing_type=sa.String(), nullable=True)
            batch.create_check_constraint(f"ck_{table}_kind", KIND_CHECK)
    op.drop_index("ix_raydq_labels_revision", table_name="raydq_labels")
    op.create_index("ix_raydq_labels_revision_item_id", "raydq_labels", ["revision", "item_id"])


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
