"""The unit of work community's handlers and queries use: the repositories they reach."""

from __future__ import annotations

from typing import Protocol

from cityshare.community.model import CommunityStore
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel.uow import UnitOfWork
from cityshare.ledger.repo import LedgerRepository


class CommunityUnitOfWork(UnitOfWork, Protocol):
    community: CommunityStore
    identity: IdentityRepository
    ledger: LedgerRepository
