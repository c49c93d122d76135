"""The audit log: Merkle leaves, stored perfect subtrees, the log head, signed checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "log_leaves",
        sa.Column("idx", Id, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    # Perfect subtrees of level >= 1, keyed by (level << 48) | index (one integer: the rowid).
    op.create_table(
        "log_nodes",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    head = op.create_table(
        "log_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "size": 0}])
    op.create_table(
        "log_checkpoints",
        sa.Column("size", Id, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_checkpoints")
    op.drop_table("log_head")
    op.drop_table("log_nodes")
    op.drop_table("log_leaves")
