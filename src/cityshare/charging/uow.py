"""The unit of work charging's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.charging.model import ChargingStore
from cityshare.energy.model import EnergyStore
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class ChargingUnitOfWork(UnitOfWork, Protocol):
    charging: ChargingStore
    energy: EnergyStore
    identity: IdentityStore
    ledger: LedgerStore
