"""The unit of work community's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.community.model import CommunityStore
from cityshare.identity.model import IdentityStore
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.ports import LedgerStore


class CommunityUnitOfWork(UnitOfWork, Protocol):
    community: CommunityStore
    identity: IdentityStore
    ledger: LedgerStore
