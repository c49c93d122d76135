"""The unit of work: one database transaction, its repositories, and the events it raised.

Handlers use it as `with uow: ...; uow.commit()`. Leaving the block without committing rolls
everything back, so a handler that fails half way writes nothing.

The driver's failures leave it as the service's (`kernel/errors.py`): a transaction PostgreSQL
wants retried as `ConflictError`, a store that cannot serve (connection refused or lost, pool
exhausted, SQLite locked past its timeout) as `StoreUnavailable`; integrity errors pass as they
are. So no door needs to import SQLAlchemy to tell "try again later" from a bug.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from cityshare.kernel.capability import RepositoryFactory
from cityshare.kernel.clock import Clock, SystemClock
from cityshare.kernel.db import WRITE
from cityshare.kernel.errors import ConflictError, StoreUnavailable
from cityshare.kernel.messages import Event
from cityshare.kernel.seal import Sealer
from cityshare.tlog import note
from cityshare.tlog.repo import LogRepository, StoredCheckpoint


class UnitOfWork(Protocol):
    """What every unit of work offers: one transaction, the clock, the audit log (every
    capability appends its records to it), and the events raised. Each capability states the
    repositories its handlers use in a protocol of its own that extends this one (e.g.
    `ledger.uow.LedgerUnitOfWork`); `SqlUnitOfWork` has them all, as registered."""

    log: LogRepository
    clock: Clock

    def __enter__(self) -> Self: ...

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


class SqlReadUnitOfWork(UnitOfWork, Protocol):
    """A unit of work whose one connection reads across every table in one snapshot: what
    `audit verify` and the derived checks it runs need."""

    @property
    def connection(self) -> Connection: ...


#: SQLSTATEs after which PostgreSQL wants the whole transaction retried.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


class SqlUnitOfWork:
    """A transaction on `engine`, with each capability's repository opened on it under its name
    (`repositories`, from `kernel/capability.py`: `uow.ledger`, `uow.energy`, …).

    A writer that appended to the audit log signs a checkpoint of the new tree with
    `log_signer` inside the same transaction, as the last thing before it commits: each commit
    is one "block" of the log, and its checkpoint cannot be missing. `sealer` seals and checks
    the rows of sealed tables (kernel/seals.py) its repositories write and read.
    """

    def __init__(
        self,
        engine: Engine,
        repositories: Mapping[str, RepositoryFactory],
        clock: Clock | None = None,
        *,
        write: bool = True,
        log_signer: note.Signer | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.engine = engine
        self.repositories = repositories
        self.clock = clock or SystemClock()
        self.write = write
        self.log_signer = log_signer
        self.sealer = sealer
        self._conn: Connection | None = None
        self._events: list[Event] = []

    def __enter__(self) -> SqlUnitOfWork:
        with _service_errors():
            conn = self.engine.connect()
            try:
                if self.write:
                    conn = conn.execution_options(**{WRITE: True})
                elif conn.dialect.name == "postgresql":
                    # Queries that read several tables (statements, invariant checks) must see
                    # one snapshot, as a deferred transaction in SQLite's WAL mode already does.
                    conn = conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                conn.begin()
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        for name, open_repository in self.repositories.items():
            setattr(self, name, open_repository(conn, self.sealer))
        self._events = []
        return self

    @property
    def connection(self) -> Connection:
        """The transaction's connection, for what reads across every table in one snapshot
        (`audit verify` and the derived checks it runs); handlers use repositories."""
        assert self._conn is not None, "the connection outside `with uow:`"
        return self._conn

    if TYPE_CHECKING:
        # The repositories are attributes set from the registrations; each capability's
        # handlers see them typed through their own unit-of-work protocol.
        log: LogRepository

        def __getattr__(self, name: str) -> Any: ...

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
        with _service_errors():
            try:
                if conn.in_transaction():
                    conn.rollback()
            finally:
                conn.close()
        if isinstance(exc, DBAPIError | PoolTimeoutError):
            translated = _translated(exc)
            if translated is not None:
                raise translated from exc

    def commit(self) -> None:
        assert self._conn is not None, "commit outside `with uow:`"
        if self.log.appended is not None:
            self._sign_checkpoint()
        with _service_errors():
            self._conn.commit()

    def _sign_checkpoint(self) -> None:
        frontier = self.log.appended
        assert frontier is not None
        if self.log_signer is None:
            raise RuntimeError("this unit of work appends to the audit log but has no log key")
        root = frontier.root()
        body = note.Checkpoint(self.log_signer.name, frontier.size, root).text()
        signed = note.sign_note(body, self.log_signer)
        self.log.insert_checkpoint(StoredCheckpoint(frontier.size, root, signed))
        self.log.appended = None

    def rollback(self) -> None:
        assert self._conn is not None, "rollback outside `with uow:`"
        self.log.appended = None
        self._conn.rollback()

    def add_event(self, event: Event) -> None:
        self._events.append(event)

    def collect_new_events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.pop(0)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


@contextlib.contextmanager
def _service_errors() -> Iterator[None]:
    """Raise the service's error for a driver's error raised inside (see `_translated`)."""
    try:
        yield
    except (DBAPIError, PoolTimeoutError) as exc:
        translated = _translated(exc)
        if translated is None:
            raise
        raise translated from exc


def _translated(exc: DBAPIError | PoolTimeoutError) -> Exception | None:
    """The service's error for a driver's (None: not the store's availability, e.g. an
    integrity error, which passes as it is)."""
    if isinstance(exc, PoolTimeoutError):
        return StoreUnavailable(str(exc))
    if _sqlstate(exc) in _RETRYABLE_SQLSTATES:
        return ConflictError(str(exc.orig))
    if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
        return StoreUnavailable(str(exc.orig))
    return None


UnitOfWorkFactory = Callable[[], UnitOfWork]
