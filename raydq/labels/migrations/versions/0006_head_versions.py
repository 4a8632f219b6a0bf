"""Trainer storage: model versions come from a counter row (``head_version``) that the database locks, so two
trainers never allocate the same version; a head carries a sanity verdict (``sane``, ``reason``). Existing heads were
served, so they count as sane; the counter starts at the newest stored version.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("raydq_heads", sa.Column("sane", sa.Boolean(), nullable=False, server_default=sa.text("true")))
    op.add_column("raydq_heads", sa.Column("reason", sa.Text(), nullable=True))
    op.execute("INSERT INTO raydq_meta (key, value) SELECT 'head_version', COALESCE(MAX(version), 0) FROM raydq_heads")


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
