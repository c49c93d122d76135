"""The ledger through the message bus and unit of work, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text

from cityshare.bootstrap import Platform, unit_of_work
from cityshare.energy import model as energy
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger, NewAccount, PendingState, Transfer, TransferFlags
from ledger_helpers import ISSUER, account, fund, open_accounts, post

CREDIT = int(Ledger.CREDIT)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
CREDIT_ISSUANCE = 901


def test_accounts_are_idempotent_by_id(platform: Platform) -> None:
    bus = platform.bus
    first = bus.handle(commands.CreateAccounts([NewAccount(5, CREDIT, 2)]))
    again = bus.handle(commands.CreateAccounts([NewAccount(5, CREDIT, 2)]))
    other = bus.handle(commands.CreateAccounts([NewAccount(5, CREDIT, 3)]))
    assert [r.value for r in first + again + other] == [
        "created",
        "exists",
        "exists_with_different_fields",
    ]


def test_an_atomic_account_batch_with_one_bad_account_creates_none(platform: Platform) -> None:
    results = platform.bus.handle(
        commands.CreateAccounts([NewAccount(5, CREDIT, 2), NewAccount(6, 99, 2)])
    )
    assert [r.value for r in results] == ["created", "ledger_not_found"]
    assert ledger_service.get_account(platform.uow(), 5) is None


def test_transfers_persist_and_a_retried_batch_changes_nothing(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 1_000, 1)
    batch = [Transfer(100 + i, 10, 11, 10 * (i + 1), CREDIT) for i in range(5)]
    assert post(platform, *batch) == ["created"] * 5
    assert post(platform, *batch) == ["exists"] * 5
    assert account(platform, 10).balance == 1_000 - 150
    assert account(platform, 11).balance == 150
    assert ledger_service.check_invariants(platform.uow()).ok


def test_an_atomic_batch_with_one_failure_writes_nothing(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    results = post(
        platform, Transfer(2, 10, 11, 50, CREDIT), Transfer(3, 10, 99, 1, CREDIT), atomic=True
    )
    assert results == ["created", "credit_account_not_found"]
    assert account(platform, 11).balance == 0
    assert ledger_service.get_transfer(platform.uow(), 2) is None


def test_a_statement_pages_through_history_with_running_balance(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 1_000, 1)
    post(platform, *[Transfer(100 + i, 10, 11, 1 + i, CREDIT) for i in range(7)])
    post(platform, Transfer(200, 11, 10, 5, CREDIT))
    lines = []
    after = 0
    while True:
        page = ledger_service.statement(platform.uow(), 11, after=after, limit=3)
        assert page is not None
        lines += page.lines
        if page.next_after is None:
            break
        after = page.next_after
    assert [x.transfer_id for x in lines] == [*range(100, 107), 200]
    running = 0
    for line in lines:
        running += line.change
        assert line.balance == running
    assert lines[-1].direction == "debit"
    assert lines[-1].change == -5
    assert running == account(platform, 11).balance == 28 - 5


def test_holds_expire_by_the_clock_and_release_funds(
    platform: Platform, clock: ManualClock
) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    assert post(platform, Transfer(2, 10, 11, 70, CREDIT, flags=PENDING, timeout=30)) == ["created"]
    assert account(platform, 10).available == 30
    clock.advance(31)
    assert platform.bus.handle(commands.ExpirePendingTransfers()) == 1
    assert account(platform, 10).available == 100
    view = ledger_service.get_transfer(platform.uow(), 2)
    assert view is not None
    assert view.pending_state is PendingState.EXPIRED
    late = post(platform, Transfer(3, 0, 0, 0, 0, flags=POST, pending_id=2))
    assert late == ["pending_transfer_expired"]
    assert ledger_service.check_invariants(platform.uow()).ok


def test_a_lapsed_hold_found_by_a_post_is_expired_in_the_same_commit(
    platform: Platform, clock: ManualClock
) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    post(platform, Transfer(2, 10, 11, 70, CREDIT, flags=PENDING, timeout=30))
    clock.advance(60)
    assert post(platform, Transfer(3, 0, 0, 0, 0, flags=POST, pending_id=2)) == [
        "pending_transfer_expired"
    ]
    assert account(platform, 10).debits_pending == 0
    assert ledger_service.check_invariants(platform.uow()).ok


def test_the_invariant_check_catches_an_edited_balance(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    post(platform, Transfer(2, 10, 11, 40, CREDIT))
    assert ledger_service.check_invariants(platform.uow()).ok
    with platform.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = 11"))
    report = ledger_service.check_invariants(platform.uow())
    assert not report.ok
    assert any("account 11" in p for p in report.problems)
    assert any("posted debits" in p for p in report.problems)


def test_the_invariant_check_catches_an_edited_transfer_amount(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    post(platform, Transfer(2, 10, 11, 40, CREDIT))
    with platform.engine.begin() as conn:
        conn.execute(text("UPDATE transfers SET amount = 4 WHERE id = 2"))
    report = ledger_service.check_invariants(platform.uow())
    assert not report.ok
    assert any("account 10" in p for p in report.problems)


def test_issuer_balance_goes_negative_but_ledgers_still_balance(platform: Platform) -> None:
    open_accounts(platform, [10])
    fund(platform, 10, 500, 1)
    assert account(platform, ISSUER).balance == -500
    report = ledger_service.check_invariants(platform.uow())
    assert report.ok
    assert report.ledgers[0]["debits_posted"] == report.ledgers[0]["credits_posted"] == 500


def test_posting_a_transfer_that_was_never_pending_is_refused(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    post(platform, Transfer(2, 10, 11, 40, CREDIT))
    assert post(platform, Transfer(3, 0, 0, 0, 0, flags=POST, pending_id=2)) == [
        "pending_transfer_not_pending"
    ]
    assert post(platform, Transfer(4, 0, 0, 0, 0, flags=POST, pending_id=999)) == [
        "pending_transfer_not_found"
    ]


def test_a_client_cannot_name_an_id_the_platform_mints_at_any_door(platform: Platform) -> None:
    """`CreateTransfers` is every client door's command (HTTP, and anything else on the bus):
    ids and pending ids from 2^61 up answer `reserved_id`, alone or breaking their chain, while
    the rest of a non-atomic batch goes through."""
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    linked = int(TransferFlags.LINKED)
    results = post(
        platform,
        Transfer(2**62 + 44, 10, 11, 5, CREDIT),
        Transfer(2, 10, 11, 5, CREDIT),
        Transfer(3, 10, 11, 5, CREDIT, flags=linked),
        Transfer(2**61, 10, 11, 5, CREDIT),
        Transfer(4, 0, 0, 0, 0, flags=POST, pending_id=2**62 + 44),
    )
    assert results == [
        "reserved_id", "created", "linked_event_failed", "reserved_id", "reserved_id",
    ]  # fmt: skip
    assert account(platform, 11).balance == 5
    assert ledger_service.get_transfer(platform.uow(), 2**62 + 44) is None


def test_a_client_cannot_open_an_account_the_platform_opens_itself(platform: Platform) -> None:
    wallet = 2**62 | (1 << 3) | CREDIT  # resident 1's CREDIT wallet
    results = platform.bus.handle(
        commands.CreateAccounts(
            [NewAccount(5, CREDIT, 2), NewAccount(wallet, CREDIT, 2), NewAccount(901, CREDIT, 20)],
            atomic=False,
        )
    )
    assert [r.value for r in results] == ["created", "reserved_id", "reserved_id"]
    assert ledger_service.get_account(platform.uow(), wallet) is None
    assert ledger_service.get_account(platform.uow(), 901) is None


def test_a_client_cannot_move_the_platforms_named_accounts_but_the_platform_can(
    platform: Platform,
) -> None:
    """Accounts 901-904 are the platform's (energy issuance, the grid, INR settlement): only its
    own postings move them, each with its record (an interval, a top-up). A client's transfer
    debiting or crediting one, or resolving a hold on one, answers `reserved_id`."""
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, 1)
    signer = platform.log_signer
    with unit_of_work(platform.engine, platform.clock, log_signer=signer) as uow:
        last = uow.ledger.lock_ledger()
        ledger_service.open_accounts(
            uow, list(energy.PLATFORM_ACCOUNTS), last_timestamp=last, atomic=True
        )
        last = uow.ledger.lock_ledger()
        # The platform's own postings are unaffected (and a client's hold from before the rule).
        platform_posted = ledger_service.post_transfers(
            uow,
            [Transfer(2**62 + 8, CREDIT_ISSUANCE, 10, 50, CREDIT),
             Transfer(7, 10, CREDIT_ISSUANCE, 5, CREDIT, flags=PENDING)],
            last_timestamp=last,
            atomic=True,
        )  # fmt: skip
        assert not platform_posted.failed
        uow.commit()

    results = post(
        platform,
        Transfer(2, 10, CREDIT_ISSUANCE, 5, CREDIT),
        Transfer(3, CREDIT_ISSUANCE, 11, 5, CREDIT),
        Transfer(4, 10, 11, 5, CREDIT),
        Transfer(5, 0, 0, 0, 0, flags=POST, pending_id=7),
    )
    assert results == ["reserved_id", "reserved_id", "created", "reserved_id"]
    assert account(platform, CREDIT_ISSUANCE).balance == -50
    assert account(platform, 11).balance == 5
