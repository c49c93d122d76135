"""The unit of work billing's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.repo import BillingRepository
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class BillingUnitOfWork(UnitOfWork, Protocol):
    billing: BillingRepository
    identity: IdentityStore
    ledger: LedgerStore
