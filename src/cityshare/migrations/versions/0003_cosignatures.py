"""Witness cosignatures of audit-log checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(200), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_cosignatures")
