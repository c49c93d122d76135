"""The unit of work billing's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.billing.model import BillingStore
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class BillingUnitOfWork(UnitOfWork, Protocol):
    billing: BillingStore
    identity: IdentityStore
    ledger: LedgerStore
