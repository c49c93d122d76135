"""The unit of work energy's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.energy.model import EnergyStore
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class EnergyUnitOfWork(UnitOfWork, Protocol):
    energy: EnergyStore
    identity: IdentityStore
    ledger: LedgerStore
