"""Idempotency: the response to each (caller, idempotency key, endpoint) with a hash of its request, so a retry gets
the original answer and a reused key with another body is refused.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raydq_idempotency",
        sa.Column("caller", sa.String(256), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_raydq_idempotency_created_at", "raydq_idempotency", ["created_at"])


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
