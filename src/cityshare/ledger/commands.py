"""Commands of the ledger: accounts, transfers, and the expiry of holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.kernel.messages import Command
from cityshare.ledger.model import NewAccount, Transfer


@dataclass(frozen=True, slots=True)
class CreateAccounts(Command):
    """A client opens accounts: ids the platform opens itself answer `reserved_id`."""

    accounts: Sequence[NewAccount]
    #: All or nothing: if any account fails, none is created.
    atomic: bool = True


@dataclass(frozen=True, slots=True)
class CreateTransfers(Command):
    """A client posts transfers, with ids of its own: 1 … 2^61-1 (`ledger.ids`); the platform's
    capabilities post theirs with `ledger.handlers.post_transfers` instead."""

    transfers: Sequence[Transfer]
    #: All or nothing: if any transfer fails, none is written (HTTP's default). When False each
    #: transfer (or linked chain) stands alone, as in TigerBeetle.
    atomic: bool = False


@dataclass(frozen=True, slots=True)
class ExpirePendingTransfers(Command):
    """Release the holds whose timeout has passed (at most `limit` in one transaction)."""

    limit: int = 10_000
