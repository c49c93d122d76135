"""The unit of work billing's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.model import BillingStore
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.repo import LedgerRepository


class BillingUnitOfWork(UnitOfWork, Protocol):
    billing: BillingStore
    identity: IdentityRepository
    ledger: LedgerRepository
