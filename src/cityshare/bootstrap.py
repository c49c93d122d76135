"""Wires the platform together: engine, unit of work, bus and handlers, from settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, make_url

from cityshare.clock import Clock, SystemClock
from cityshare.config import Settings, get_settings
from cityshare.domain import commands
from cityshare.services import ledger
from cityshare.services.messagebus import MessageBus
from cityshare.services.unit_of_work import SqlUnitOfWork
from cityshare.store import migrate
from cityshare.store.db import make_engine
from cityshare.trust import keys, note


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    clock: Clock
    bus: MessageBus
    log_signer: note.Signer

    def uow(self) -> SqlUnitOfWork:
        """A read-only unit of work for queries."""
        return SqlUnitOfWork(self.engine, self.clock, write=False)

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    upgrade: bool = True,
) -> Platform:
    settings = settings or get_settings()
    url = database_url or settings.database_url
    key_dir = settings.key_dir or default_key_dir(url)
    log_signer = keys.signer_from(settings.log_key, key_dir / "log.skey", settings.log_name)
    engine = make_engine(url)
    if upgrade:
        migrate.upgrade(engine)
    clock = clock or SystemClock()
    bus = MessageBus(
        uow_factory=lambda: SqlUnitOfWork(engine, clock, log_signer=log_signer),
        command_handlers={
            commands.CreateAccounts: ledger.create_accounts,
            commands.CreateTransfers: ledger.create_transfers,
            commands.ExpirePendingTransfers: ledger.expire_pending_transfers,
        },
    )
    return Platform(settings, engine, clock, bus, log_signer)


def default_key_dir(database_url: str) -> Path:
    """Keys the platform made itself live beside its SQLite file, so each database keeps its
    own log identity; a server database has no file, so they go to ./keys."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "keys"
    return Path("keys")
