"""Identities and the audit log: per-annotator API tokens (SHA-256 only, a role, an optional expiry, revocation; one
live token per name) and one audit row per action (caller, role, request id, time, batch, JSON detail).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "raydq_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=True),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint("role IN ('annotator', 'admin')", name="ck_raydq_tokens_role"),
    )
    op.create_index(
        "uq_raydq_tokens_live_name",
        "raydq_tokens",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "raydq_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("caller", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_raydq_audit_at", "raydq_audit", ["at"])
    op.create_index("ix_raydq_audit_caller", "raydq_audit", ["caller"])
    op.create_index("ix_raydq_audit_action", "raydq_audit", ["action"])


def downgrade() -> None:
    raise NotImplementedError("raydq migrations go forward only; restore the backup taken before the upgrade")
