"""The unit of work energy's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.energy.model import EnergyStore
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.repo import LedgerRepository


class EnergyUnitOfWork(UnitOfWork, Protocol):
    energy: EnergyStore
    identity: IdentityRepository
    ledger: LedgerRepository
