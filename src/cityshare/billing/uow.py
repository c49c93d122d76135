"""The unit of work billing's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.repo import BillingRepository
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.repo import LedgerRepository


class BillingUnitOfWork(UnitOfWork, Protocol):
    billing: BillingRepository
    identity: IdentityRepository
    ledger: LedgerRepository
