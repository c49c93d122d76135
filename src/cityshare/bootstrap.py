"""Wires the platform together: engine, unit of work, bus and handlers, from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from cityshare.clock import Clock, SystemClock
from cityshare.config import Settings, get_settings
from cityshare.domain import commands
from cityshare.services import ledger
from cityshare.services.messagebus import MessageBus
from cityshare.services.unit_of_work import SqlUnitOfWork
from cityshare.store import migrate
from cityshare.store.db import make_engine


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    clock: Clock
    bus: MessageBus

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
    engine = make_engine(database_url or settings.database_url)
    if upgrade:
        migrate.upgrade(engine)
    clock = clock or SystemClock()
    bus = MessageBus(
        uow_factory=lambda: SqlUnitOfWork(engine, clock),
        command_handlers={
            commands.CreateAccounts: ledger.create_accounts,
            commands.CreateTransfers: ledger.create_transfers,
            commands.ExpirePendingTransfers: ledger.expire_pending_transfers,
        },
    )
    return Platform(settings, engine, clock, bus)
