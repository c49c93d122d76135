"""The table of idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
)

from cityshare.kernel.tables import metadata

#: The first answer (status and JSON body) to each write a principal sent with an
#: `Idempotency-Key`, stored in the transaction of the write itself; a retry with the same key
#: gets it again. Derived from requests, not facts of the platform: not logged, purged after
#: `idempotency_retention_seconds` (kernel/idempotency.py).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    #: Hex SHA-256 of the method, path and canonical body: the same key for another request
    #: is refused.
    Column("fingerprint", String(64), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    #: The row's seal (kernel/seals.py): a reply changed in the database is never replayed.
    Column("seal", String(64), nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),
)
