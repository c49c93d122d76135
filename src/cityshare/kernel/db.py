"""Engines for SQLite (embedded default, WAL, durable commits) and PostgreSQL, one code path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url

from cityshare.kernel.errors import StoreUnavailable
from cityshare.kernel.files import private_database

#: Execution option that marks a connection as about to write (SQLite then takes the write lock
#: up front with BEGIN IMMEDIATE, so read-then-write sequences never hit a lock upgrade failure).
WRITE = "cityshare_write"

SQLITE_BUSY_TIMEOUT_MS = 60_000


def normalise_url(url: str) -> str:
    """Accept the usual spellings and pick the drivers cityshare uses (sqlite3, psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or a `file:` URI."""
    parsed = make_url(url)
    if parsed.query.get("uri") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`. A SQLite database file is made owner-only before SQLite opens it
    (`files.private_database`): it holds residents' records, as its keys beside it do."""
    url = normalise_url(url)
    if is_sqlite(url):
        path = sqlite_file(url)
        if path is not None:
            private_database(path)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    return create_engine(url, **kwargs)


def ping(engine: Engine) -> None:
    """Ask the database for `SELECT 1` on a connection of its own; raise `StoreUnavailable`
    when it does not answer, whatever stopped it (a health check reports, it does not crash)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise StoreUnavailable(str(exc)) from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own transaction
        # handling defers it and cannot take the write lock up front).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when COMMIT returns (NORMAL may lose the last commits).
        cursor.execute("PRAGMA synchronous = FULL")
        # Checkpoint every ~40 MB of WAL rather than 4 MB: hot pages (balances, index tails) that
        # every batch rewrites are then copied into the database once per many commits.
        cursor.execute("PRAGMA wal_autocheckpoint = 10000")
        cursor.execute("PRAGMA temp_store = MEMORY")
        cursor.execute("PRAGMA cache_size = -65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
