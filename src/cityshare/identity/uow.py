"""The unit of work identity's handlers and queries use: the repositories they reach.

Reads of personal data (`access.py`) show a resident's statement, energy and shares, so they
reach billing, energy and community too."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.model import BillingStore
from cityshare.community.model import CommunityStore
from cityshare.energy.model import EnergyStore
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class IdentityUnitOfWork(UnitOfWork, Protocol):
    billing: BillingStore
    community: CommunityStore
    energy: EnergyStore
    identity: IdentityStore
    ledger: LedgerStore
