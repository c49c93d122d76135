"""The database schema, as SQLAlchemy Core tables (migrations in `store/migrations` create it).

Ids are client-chosen signed 64-bit integers. On SQLite the primary keys are declared `INTEGER`
so that they become the table's rowid (the clustered key), which is what makes batch inserts fast.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

#: A 64-bit primary key that is the rowid on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

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

log_leaves = Table(
    "log_leaves",
    metadata,
    Column("idx", Id, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

#: Perfect Merkle subtrees of level >= 1, keyed by (level << 48) | index.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

#: One row: how many leaves the log has.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", Id, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

#: Witness cosignatures (C2SP tlog-cosignature) of a checkpoint, one line per witness key.
log_cosignatures = Table(
    "log_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),
    Column("line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)
