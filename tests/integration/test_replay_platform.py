"""The audit log alone is enough to rebuild the ledger: replaying a real platform's entries
gives every stored balance (SQLite and PostgreSQL)."""

from __future__ import annotations

from cityshare.bootstrap import Platform
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands
from cityshare.ledger.model import AccountFlags, Ledger, NewAccount, Transfer, TransferFlags
from cityshare.twin.replay import replay
from ledger_helpers import ISSUER, fund, open_accounts, post

CREDIT = int(Ledger.CREDIT)
ENERGY = int(Ledger.ENERGY)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
LINKED = int(TransferFlags.LINKED)


def make_history(platform: Platform, clock: ManualClock) -> None:
    open_accounts(platform, [10, 11, 12])
    platform.bus.handle(
        commands.CreateAccounts(
            [
                NewAccount(50, ENERGY, 1),
                NewAccount(51, ENERGY, 2, int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)),
            ]
        )
    )
    fund(platform, 10, 10_000, transfer_id=1)
    fund(platform, 11, 4_000, transfer_id=2)
    assert post(platform, Transfer(3, 50, 51, 900, ENERGY), Transfer(4, 51, 50, 100, ENERGY)) == [
        "created",
        "created",
    ]
    clock.advance(1)
    assert post(
        platform,
        Transfer(5, 10, 11, 3_000, CREDIT, flags=PENDING, timeout=30),
        Transfer(6, 10, 12, 1_000, CREDIT, flags=PENDING, timeout=5),
        Transfer(7, 11, 12, 700, CREDIT, flags=PENDING),
        Transfer(8, 11, 12, 400, CREDIT, flags=PENDING, timeout=5),
        Transfer(9, 12, 10, 1, CREDIT),  # 12 has nothing posted yet
    ) == ["created", "created", "created", "created", "exceeds_credits"]
    clock.advance(1)
    assert post(
        platform,
        Transfer(10, 0, 0, 2_500, 0, flags=POST, pending_id=5),
        Transfer(11, 0, 0, 0, 0, flags=VOID, pending_id=7),
        Transfer(12, 11, 12, 5, CREDIT, flags=LINKED),
        Transfer(13, 12, 11, 10**9, CREDIT),
    ) == ["created", "created", "linked_event_failed", "exceeds_credits"]
    # An atomic batch with one failure writes nothing.
    assert post(
        platform, Transfer(14, 10, 11, 1, CREDIT), Transfer(15, 10, 99, 1, CREDIT), atomic=True
    ) == ["created", "credit_account_not_found"]
    clock.advance(10)
    # A post finds hold 6 lapsed; the sweeper releases hold 8.
    assert post(platform, Transfer(16, 0, 0, 0, 0, flags=POST, pending_id=6)) == [
        "pending_transfer_expired"
    ]
    assert platform.bus.handle(commands.ExpirePendingTransfers()) == 1
    assert post(platform, Transfer(17, 11, 12, 1_234, CREDIT), Transfer(18, ISSUER, 12, 7, CREDIT))
    # A hold left open at the end.
    assert post(platform, Transfer(19, 12, 10, 200, CREDIT, flags=PENDING)) == ["created"]


def test_replaying_the_log_gives_every_stored_balance(
    platform: Platform, clock: ManualClock
) -> None:
    make_history(platform, clock)
    with platform.uow() as uow:
        leaves = [data for _, data in uow.log.entries(0, uow.log.size())]
        stored = uow.ledger.all_balances()
        accounts = {i: uow.ledger.get_account(i) for i in stored}

    result = replay(leaves)
    assert result.problems == []
    assert result.ok
    assert result.entries == len(leaves)
    assert result.hold_expired_entries == 2
    assert result.open_holds == 1
    replayed = {
        i: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for i, a in result.accounts.items()
    }
    assert replayed == stored
    for account_id, account in accounts.items():
        assert account is not None
        mine = result.accounts[account_id]
        assert (mine.ledger, mine.code, mine.flags, mine.owner, mine.timestamp) == (
            account.ledger,
            account.code,
            account.flags,
            account.owner,
            account.timestamp,
        )
    assert result.ledgers[ENERGY].credits_posted == 1_000
    credit = result.ledgers[CREDIT]
    assert credit.debits_pending == credit.credits_pending == 200
