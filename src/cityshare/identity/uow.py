"""The unit of work identity's handlers and queries use: the repositories they reach.

Reads of personal data (`access.py`) show a resident's statement, energy and shares, so they
reach billing, energy and community too."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.repo import BillingRepository
from cityshare.community.repo import CommunityRepository
from cityshare.energy.repo import EnergyRepository
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class IdentityUnitOfWork(UnitOfWork, Protocol):
    billing: BillingRepository
    community: CommunityRepository
    energy: EnergyRepository
    identity: IdentityStore
    ledger: LedgerStore
