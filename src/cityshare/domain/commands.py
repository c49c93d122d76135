"""Commands: what someone asks the platform to do, named in the imperative."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.domain.ledger import NewAccount, Transfer


class Command:
    """Base class of every command."""


@dataclass(frozen=True, slots=True)
class CreateAccounts(Command):
    accounts: Sequence[NewAccount]
    #: All or nothing: if any account fails, none is created.
    atomic: bool = True


@dataclass(frozen=True, slots=True)
class CreateTransfers(Command):
    transfers: Sequence[Transfer]
    #: All or nothing: if any transfer fails, none is written (HTTP's default). When False each
    #: transfer (or linked chain) stands alone, as in TigerBeetle.
    atomic: bool = False


@dataclass(frozen=True, slots=True)
class ExpirePendingTransfers(Command):
    """Release the holds whose timeout has passed (at most `limit` in one transaction)."""

    limit: int = 10_000
