"""Idempotency keys: the stored first answer to each keyed write, per principal.

One row per (principal, key); the primary key is what makes a second insert of the same key
lose, on SQLite and PostgreSQL alike (`INSERT ... ON CONFLICT DO NOTHING`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from cityshare.kernel import seals
from cityshare.kernel.idempotency_tables import idempotency_keys
from cityshare.kernel.seal import Sealer

t = idempotency_keys


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    principal: str
    key: str
    fingerprint: str  # hex SHA-256 of the request (kernel/idempotency.fingerprint)
    status: int
    body: str  # the JSON answer, as sent
    created_at: int  # ns since the epoch


class IdempotencyRepository:
    """Reads and writes idempotency keys on one open connection inside one transaction; each
    row is sealed (kernel/seals.py) with `sealer`, needed to read or write one."""

    def __init__(self, conn: Connection, sealer: Sealer | None = None) -> None:
        self.conn = conn
        self.sealer = sealer

    def get(self, principal: str, key: str) -> IdempotencyRow | None:
        """The stored row, None if there is none; :class:`BrokenSealError` (logged) if its
        seal fails: it is neither replayed nor may the key be taken as unused."""
        row = self.conn.execute(
            select(t).where(t.c.principal == principal, t.c.key == key)
        ).one_or_none()
        if row is None:
            return None
        # Named by its principal alone in the log line: the key is the client's text.
        if not seals.intact(self.sealer, t, row._mapping, f"of {principal}"):
            raise seals.BrokenSealError(f"idempotency_keys {principal}")
        return IdempotencyRow(**seals.fields(t, row._mapping))

    def insert(self, row: IdempotencyRow) -> bool:
        """Store `row`; False (and nothing written) if its key is already taken."""
        values = seals.sealed(
            self.sealer, t, {f: getattr(row, f) for f in IdempotencyRow.__dataclass_fields__}
        )
        insert = (
            sqlite.insert(t) if self.conn.dialect.name == "sqlite" else postgresql.insert(t)
        ).on_conflict_do_nothing(index_elements=[t.c.principal, t.c.key])
        # RETURNING names the row only if it was inserted (psycopg's rowcount is not reliable).
        return self.conn.execute(insert.values(values).returning(t.c.key)).first() is not None

    def delete(self, principal: str, key: str) -> None:
        self.conn.execute(delete(t).where(t.c.principal == principal, t.c.key == key))

    def purge(self, before: int, limit: int) -> int:
        """Delete up to `limit` of the oldest keys stored before `before` (ns); how many."""
        oldest = (
            select(t.c.principal, t.c.key)
            .where(t.c.created_at < before)
            .order_by(t.c.created_at)
            .limit(limit)
        )
        result = self.conn.execute(delete(t).where(tuple_(t.c.principal, t.c.key).in_(oldest)))
        return int(result.rowcount)

    def count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t)).scalar_one())
