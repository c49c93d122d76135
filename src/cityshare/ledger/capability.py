"""The ledger: accounts, transfers, holds (TigerBeetle's model), and its HTTP and CLI doors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.kernel.capability import Capability, CommandHandler, Job
from cityshare.ledger import commands, handlers
from cityshare.ledger.ports import LedgerStore
from cityshare.ledger.repo import LedgerRepository
from cityshare.ledger.uow import LedgerUnitOfWork

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_ledger(conn: Connection, _: Sealer | None) -> LedgerStore:
    """Ledger's store on a transaction; typed as the protocol its handlers see, so mypy
    checks here that `LedgerRepository` satisfies `LedgerStore`."""
    return LedgerRepository(conn)


def _handlers(_: Any) -> Mapping[type, CommandHandler]:
    return {
        commands.CreateAccounts: handlers.create_accounts,
        commands.CreateTransfers: handlers.create_transfers,
        commands.ExpirePendingTransfers: handlers.expire_pending_transfers,
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.ledger.api import router

    return [router]


def _cli() -> Sequence[tuple[str, typer.Typer]]:
    from cityshare.ledger.cli import app

    return [("ledger", app)]


def _lock_writers(uow: LedgerUnitOfWork) -> None:
    """Every writer of balances takes the ledger's write lock first (ledger/repo.py)."""
    uow.ledger.lock_ledger()


CAPABILITY = Capability(
    "ledger",
    repositories={"ledger": _open_ledger},
    handlers=_handlers,
    routers=_routers,
    cli=_cli,
    writer_lock=_lock_writers,
    jobs=[
        # Holds whose timeout passed are released by the clock, not by a client.
        Job(
            "expire-holds",
            lambda s: s.expiry_sweep_seconds,
            commands.ExpirePendingTransfers,
        )
    ],
)
