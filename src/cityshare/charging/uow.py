"""The unit of work charging's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.charging.repo import ChargingRepository
from cityshare.energy.model import EnergyStore
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.repo import LedgerRepository


class ChargingUnitOfWork(UnitOfWork, Protocol):
    charging: ChargingRepository
    energy: EnergyStore
    identity: IdentityRepository
    ledger: LedgerRepository
