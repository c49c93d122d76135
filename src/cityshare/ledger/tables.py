"""The ledger's tables: accounts, transfers, holds and the ledger clock.

Ids are client-chosen signed 64-bit integers. On SQLite the primary keys are declared `INTEGER`
so that they become the table's rowid (the clustered key), which is what makes batch inserts fast.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    text,
)

from cityshare.kernel.tables import Id, metadata

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("ledger", SmallInteger, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("owner", String(64), nullable=True),
    Column("user_data", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_accounts_owner", "owner"),
)


transfers = Table(
    "transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("ledger", SmallInteger, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("pending_id", BigInteger, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("user_data", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("debit_account_balance", BigInteger, nullable=False),
    Column("credit_account_balance", BigInteger, nullable=False),
    Index("ix_transfers_debit_account", "debit_account_id", "timestamp"),
    Index("ix_transfers_credit_account", "credit_account_id", "timestamp"),
)


#: The live state of each pending transfer (the transfer row itself never changes).
pending_transfers = Table(
    "pending_transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("state", SmallInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("resolved_by", BigInteger, nullable=False),
    Index(
        "ix_pending_transfers_expiry",
        "expires_at",
        sqlite_where=text("state = 1 AND expires_at > 0"),
        postgresql_where=text("state = 1 AND expires_at > 0"),
    ),
)


#: One row: the last timestamp the ledger handed out, so timestamps stay strictly increasing.
ledger_clock = Table(
    "ledger_clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_timestamp", BigInteger, nullable=False),
)
