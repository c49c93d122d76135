"""The unit of work: one database transaction, its repositories, and the events it raised.

Handlers use it as `with uow: ...; uow.commit()`. Leaving the block without committing rolls
everything back, so a handler that fails half way writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from cityshare.clock import Clock, SystemClock
from cityshare.domain.events import Event
from cityshare.store.db import WRITE
from cityshare.store.ledger_repo import LedgerRepository


class AbstractUnitOfWork(Protocol):
    ledger: LedgerRepository
    clock: Clock

    def __enter__(self) -> AbstractUnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def add_event(self, event: Event) -> None: ...

    def collect_new_events(self) -> Iterator[Event]: ...


class ConflictError(Exception):
    """Another transaction got in the way (deadlock, serialisation failure): run it again."""


#: SQLSTATEs after which PostgreSQL wants the whole transaction retried.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


class SqlUnitOfWork:
    def __init__(self, engine: Engine, clock: Clock | None = None, *, write: bool = True) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.write = write
        self._conn: Connection | None = None
        self._events: list[Event] = []

    def __enter__(self) -> SqlUnitOfWork:
        conn = self.engine.connect()
        if self.write:
            conn = conn.execution_options(**{WRITE: True})
        elif conn.dialect.name == "postgresql":
            # Queries that read several tables (statements, invariant checks) must see one
            # snapshot, as a deferred transaction in SQLite's WAL mode already does.
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        conn.begin()
        self._conn = conn
        self.ledger = LedgerRepository(conn)
        self._events = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        self._conn = None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                conn.rollback()
        finally:
            conn.close()
        if isinstance(exc, DBAPIError) and _sqlstate(exc) in _RETRYABLE_SQLSTATES:
            raise ConflictError(str(exc.orig)) from exc

    def commit(self) -> None:
        assert self._conn is not None, "commit outside `with uow:`"
        self._conn.commit()

    def rollback(self) -> None:
        assert self._conn is not None, "rollback outside `with uow:`"
        self._conn.rollback()

    def add_event(self, event: Event) -> None:
        self._events.append(event)

    def collect_new_events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.pop(0)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


UnitOfWorkFactory = Callable[[], AbstractUnitOfWork]
