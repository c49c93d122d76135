"""The audit log's tables: leaves, perfect subtree nodes, the head, checkpoints, cosignatures."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from cityshare.kernel.tables import Id, metadata

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


#: The log's signed checkpoint after each commit (the note signs origin, size and root).
log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", Id, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
)


#: Witness cosignatures (C2SP tlog-cosignature) of a checkpoint, one line per witness key
#: (the line carries its time, under the witness's signature).
log_cosignatures = Table(
    "log_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),
    Column("line", Text, nullable=False),
)
