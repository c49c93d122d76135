"""The unit of work ledger's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class LedgerUnitOfWork(UnitOfWork, Protocol):
    ledger: LedgerStore
