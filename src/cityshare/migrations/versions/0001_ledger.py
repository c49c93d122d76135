"""The double-entry ledger: accounts, transfers, pending transfer states, the ledger clock.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Rowid primary keys on SQLite, BIGINT on PostgreSQL (see kernel/tables.py).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("ledger", sa.SmallInteger, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("user_data", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_accounts_owner", "accounts", ["owner"])
    op.create_table(
        "transfers",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("debit_account_id", sa.BigInteger, nullable=False),
        sa.Column("credit_account_id", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("ledger", sa.SmallInteger, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("pending_id", sa.BigInteger, nullable=False),
        sa.Column("timeout", sa.Integer, nullable=False),
        sa.Column("user_data", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("debit_account_balance", sa.BigInteger, nullable=False),
        sa.Column("credit_account_balance", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_transfers_debit_account", "transfers", ["debit_account_id", "timestamp"])
    op.create_index("ix_transfers_credit_account", "transfers", ["credit_account_id", "timestamp"])
    op.create_table(
        "pending_transfers",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("resolved_by", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_pending_transfers_expiry",
        "pending_transfers",
        ["expires_at"],
        sqlite_where=sa.text("state = 1 AND expires_at > 0"),
        postgresql_where=sa.text("state = 1 AND expires_at > 0"),
    )
    clock = op.create_table(
        "ledger_clock",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_timestamp", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(clock, [{"id": 1, "last_timestamp": 0}])


def downgrade() -> None:
    op.drop_table("ledger_clock")
    op.drop_table("pending_transfers")
    op.drop_table("transfers")
    op.drop_table("accounts")
