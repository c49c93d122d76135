"""Small builders so ledger tests read like specifications."""

from __future__ import annotations

from cityshare.bootstrap import Platform
from cityshare.ledger import commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import (
    AccountFlags,
    AccountState,
    CreateTransferResult,
    Ledger,
    NewAccount,
    Transfer,
)

WALLET = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
ISSUER = 1


def open_accounts(
    platform: Platform, ids: list[int], *, ledger: int = Ledger.CREDIT, flags: int = WALLET
) -> None:
    new = [NewAccount(ISSUER, ledger, 1)] + [NewAccount(i, ledger, 2, flags) for i in ids]
    platform.bus.handle(commands.CreateAccounts(new, atomic=False))


def fund(platform: Platform, account_id: int, amount: int, transfer_id: int) -> None:
    outcome = platform.bus.handle(
        commands.CreateTransfers([Transfer(transfer_id, ISSUER, account_id, amount, Ledger.CREDIT)])
    )
    assert outcome.results == [CreateTransferResult.CREATED]


def post(platform: Platform, *transfers: Transfer, atomic: bool = False) -> list[str]:
    outcome = platform.bus.handle(commands.CreateTransfers(list(transfers), atomic=atomic))
    return [r.value for r in outcome.results]


def account(platform: Platform, account_id: int) -> AccountState:
    found = ledger_service.get_account(platform.uow(), account_id)
    assert found is not None
    return found
