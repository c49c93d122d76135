"""The ledger's rules, on the pure domain (no database)."""

from __future__ import annotations

import copy

import pytest

from cityshare.ledger.model import (
    MAX_INT,
    NANOSECONDS,
    AccountFlags,
    AccountState,
    CreateTransferResult,
    Ledger,
    PendingHold,
    PendingState,
    Transfer,
    TransferFlags,
    TransferRecord,
    apply_transfers,
    expire_holds,
)

R = CreateTransferResult
CREDIT = int(Ledger.CREDIT)
WALLET = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
LINKED = int(TransferFlags.LINKED)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
NOW = 1_000 * NANOSECONDS


def book() -> dict[int, AccountState]:
    """An issuer (1) and two wallets: 2 holds 100, 3 holds nothing; 4 is on another ledger."""
    return {
        1: AccountState(1, CREDIT, 1, 0, debits_posted=100),
        2: AccountState(2, CREDIT, 2, WALLET, credits_posted=100),
        3: AccountState(3, CREDIT, 2, WALLET),
        4: AccountState(4, int(Ledger.ENERGY), 2, 0),
    }


def run(
    transfers: list[Transfer],
    accounts: dict[int, AccountState] | None = None,
    holds: dict[int, PendingHold] | None = None,
    existing: dict[int, TransferRecord] | None = None,
    now: int = NOW,
):
    accounts = book() if accounts is None else accounts
    outcome = apply_transfers(
        transfers,
        accounts,
        {} if holds is None else holds,
        existing or {},
        now_ns=now,
        last_timestamp=0,
    )
    return outcome, accounts


def test_a_transfer_moves_the_amount_and_records_balances_after() -> None:
    outcome, acc = run([Transfer(10, 2, 3, 30, CREDIT)])
    assert outcome.results == [R.CREATED]
    assert (acc[2].balance, acc[3].balance) == (70, 30)
    record = outcome.records[0]
    assert (record.debit_account_balance, record.credit_account_balance) == (70, 30)


def test_a_wallet_cannot_spend_more_than_it_received() -> None:
    outcome, acc = run([Transfer(10, 2, 3, 101, CREDIT)])
    assert outcome.results == [R.EXCEEDS_CREDITS]
    assert acc[2].balance == 100
    assert not outcome.records


def test_credits_must_not_exceed_debits_bounds_an_issuance_account() -> None:
    accounts = book()
    accounts[3] = AccountState(3, CREDIT, 2, int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS))
    outcome, _ = run([Transfer(10, 1, 3, 1, CREDIT)], accounts)
    assert outcome.results == [R.EXCEEDS_DEBITS]


@pytest.mark.parametrize(
    ("transfer", "result"),
    [
        (Transfer(0, 2, 3, 1, CREDIT), R.ID_OUT_OF_RANGE),
        (Transfer(MAX_INT + 1, 2, 3, 1, CREDIT), R.ID_OUT_OF_RANGE),
        (Transfer(10, 2, 3, 0, CREDIT), R.AMOUNT_MUST_BE_POSITIVE),
        (Transfer(10, 2, 3, -5, CREDIT), R.AMOUNT_OUT_OF_RANGE),
        (Transfer(10, 2, 2, 1, CREDIT), R.ACCOUNTS_MUST_BE_DIFFERENT),
        (Transfer(10, 2, 99, 1, CREDIT), R.CREDIT_ACCOUNT_NOT_FOUND),
        (Transfer(10, 99, 2, 1, CREDIT), R.DEBIT_ACCOUNT_NOT_FOUND),
        (Transfer(10, 1, 4, 1, CREDIT), R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER),
        (Transfer(10, 2, 3, 1, int(Ledger.INR)), R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
        (Transfer(10, 2, 3, 1, 9), R.LEDGER_NOT_FOUND),
        (Transfer(10, 2, 3, 1, CREDIT, flags=1 << 9), R.RESERVED_FLAG),
        (Transfer(10, 2, 3, 1, CREDIT, flags=PENDING | POST), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        (Transfer(10, 2, 3, 1, CREDIT, timeout=5), R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
        (Transfer(10, 2, 3, 1, CREDIT, pending_id=7), R.PENDING_ID_MUST_BE_ZERO),
    ],
)
def test_malformed_transfers_are_rejected_with_a_reason(transfer: Transfer, result: R) -> None:
    outcome, acc = run([transfer])
    assert outcome.results == [result]
    assert not outcome.records
    assert acc[2].balance == 100


def test_overflowing_a_balance_is_refused() -> None:
    accounts = book()
    accounts[3].credits_posted = MAX_INT
    outcome, _ = run([Transfer(10, 1, 3, 1, CREDIT)], accounts)
    assert outcome.results == [R.OVERFLOWS_CREDITS]


def test_a_retry_answers_exists_and_posts_nothing_twice() -> None:
    first, acc = run([Transfer(10, 2, 3, 30, CREDIT)])
    stored = {10: first.records[0]}
    again, acc = run([Transfer(10, 2, 3, 30, CREDIT)], acc, existing=stored)
    assert again.results == [R.EXISTS]
    assert not again.records
    assert acc[3].balance == 30
    changed, _ = run([Transfer(10, 2, 3, 31, CREDIT)], acc, existing=stored)
    assert changed.results == [R.EXISTS_WITH_DIFFERENT_FIELDS]


def test_the_same_id_twice_in_one_batch_posts_once() -> None:
    outcome, acc = run(
        [
            Transfer(10, 2, 3, 30, CREDIT),
            Transfer(10, 2, 3, 30, CREDIT),
            Transfer(10, 2, 3, 5, CREDIT),
        ]
    )
    assert outcome.results == [R.CREATED, R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert acc[3].balance == 30


def test_a_linked_chain_succeeds_or_fails_as_one() -> None:
    chain = [Transfer(10, 2, 3, 60, CREDIT, flags=LINKED), Transfer(11, 2, 3, 60, CREDIT)]
    outcome, acc = run([*chain, Transfer(12, 2, 3, 10, CREDIT)])
    assert outcome.results == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS, R.CREATED]
    assert [r.id for r in outcome.records] == [12]
    assert (acc[2].balance, acc[3].balance) == (90, 10)


def test_a_chain_left_open_at_the_end_of_the_batch_fails() -> None:
    outcome, acc = run(
        [Transfer(10, 2, 3, 1, CREDIT, flags=LINKED), Transfer(11, 2, 3, 1, CREDIT, flags=LINKED)]
    )
    assert outcome.results == [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert acc[3].balance == 0
    assert not outcome.records


def test_events_after_a_failure_in_a_chain_fail_too_and_the_next_chain_stands() -> None:
    outcome, acc = run(
        [
            Transfer(10, 2, 3, 500, CREDIT, flags=LINKED),
            Transfer(11, 2, 3, 1, CREDIT, flags=LINKED),
            Transfer(12, 2, 3, 1, CREDIT),
            Transfer(13, 2, 3, 2, CREDIT, flags=LINKED),
            Transfer(14, 3, 2, 1, CREDIT),
        ]
    )
    assert outcome.results == [
        R.EXCEEDS_CREDITS,
        R.LINKED_EVENT_FAILED,
        R.LINKED_EVENT_FAILED,
        R.CREATED,
        R.CREATED,
    ]
    assert acc[3].balance == 1


def test_a_pending_transfer_holds_then_posts_part_and_releases_the_rest() -> None:
    holds: dict[int, PendingHold] = {}
    outcome, acc = run([Transfer(10, 2, 3, 80, CREDIT, flags=PENDING)], holds=holds)
    assert outcome.results == [R.CREATED]
    assert (acc[2].available, acc[2].balance, acc[3].credits_pending) == (20, 100, 80)
    spend, _ = run([Transfer(11, 2, 3, 30, CREDIT)], acc, holds)
    assert spend.results == [R.EXCEEDS_CREDITS]  # the hold is reserved
    posted, _ = run([Transfer(12, 0, 0, 50, 0, flags=POST, pending_id=10)], acc, holds)
    assert posted.results == [R.CREATED]
    assert (acc[2].balance, acc[2].debits_pending, acc[3].balance) == (50, 0, 50)
    assert holds[10].state == PendingState.POSTED
    again, _ = run([Transfer(13, 0, 0, 0, 0, flags=VOID, pending_id=10)], acc, holds)
    assert again.results == [R.PENDING_TRANSFER_ALREADY_POSTED]


def test_a_void_releases_the_hold_and_moves_nothing() -> None:
    holds: dict[int, PendingHold] = {}
    _, acc = run([Transfer(10, 2, 3, 80, CREDIT, flags=PENDING)], holds=holds)
    outcome, _ = run([Transfer(11, 0, 0, 0, 0, flags=VOID, pending_id=10)], acc, holds)
    assert outcome.results == [R.CREATED]
    assert (acc[2].available, acc[3].balance, acc[3].credits_pending) == (100, 0, 0)


@pytest.mark.parametrize(
    ("resolve", "result"),
    [
        (Transfer(11, 0, 0, 81, 0, flags=POST, pending_id=10), R.EXCEEDS_PENDING_TRANSFER_AMOUNT),
        (
            Transfer(11, 0, 0, 5, 0, flags=VOID, pending_id=10),
            R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        ),
        (
            Transfer(11, 3, 0, 0, 0, flags=POST, pending_id=10),
            R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        ),
        (Transfer(11, 0, 0, 0, 0, flags=POST, pending_id=77), R.PENDING_TRANSFER_NOT_FOUND),
        (Transfer(11, 0, 0, 0, 0, flags=POST), R.PENDING_ID_MUST_NOT_BE_ZERO),
        (Transfer(11, 0, 0, 0, 0, flags=POST, pending_id=11), R.PENDING_ID_MUST_BE_DIFFERENT),
    ],
)
def test_a_post_or_void_must_match_its_pending_transfer(resolve: Transfer, result: R) -> None:
    holds: dict[int, PendingHold] = {}
    _, acc = run([Transfer(10, 2, 3, 80, CREDIT, flags=PENDING)], holds=holds)
    outcome, _ = run([resolve], acc, holds)
    assert outcome.results == [result]
    assert acc[2].debits_pending == 80


def test_a_hold_expires_after_its_timeout_and_cannot_be_posted() -> None:
    holds: dict[int, PendingHold] = {}
    _, acc = run([Transfer(10, 2, 3, 80, CREDIT, flags=PENDING, timeout=60)], holds=holds)
    before, _ = run(
        [Transfer(11, 0, 0, 0, 0, flags=POST, pending_id=10)],
        copy.deepcopy(acc),
        copy.deepcopy(holds),
        now=NOW + 59 * NANOSECONDS,
    )
    assert before.results == [R.CREATED]
    late, _ = run(
        [Transfer(11, 0, 0, 0, 0, flags=POST, pending_id=10)],
        acc,
        holds,
        now=NOW + 61 * NANOSECONDS,
    )
    assert late.results == [R.PENDING_TRANSFER_EXPIRED]
    assert late.pending_changes
    assert holds[10].state == PendingState.EXPIRED
    assert acc[2].debits_pending == 0


def test_the_expiry_sweep_releases_only_lapsed_holds() -> None:
    holds: dict[int, PendingHold] = {}
    _, acc = run(
        [
            Transfer(10, 2, 3, 10, CREDIT, flags=PENDING, timeout=60),
            Transfer(11, 2, 3, 10, CREDIT, flags=PENDING, timeout=600),
        ],
        holds=holds,
    )
    changes = expire_holds(holds.values(), acc, NOW + 120 * NANOSECONDS)
    assert [c.pending_id for c in changes] == [10]
    assert acc[2].debits_pending == 10


def test_a_failed_chain_undoes_a_post_inside_it() -> None:
    holds: dict[int, PendingHold] = {}
    _, acc = run([Transfer(10, 2, 3, 80, CREDIT, flags=PENDING)], holds=holds)
    outcome, _ = run(
        [
            Transfer(11, 0, 0, 0, 0, flags=POST | LINKED, pending_id=10),
            Transfer(12, 2, 3, 999, CREDIT),
        ],
        acc,
        holds,
    )
    assert outcome.results == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert holds[10].state == PendingState.PENDING
    assert (acc[2].debits_pending, acc[2].balance) == (80, 100)


def test_timestamps_strictly_increase_even_when_the_clock_stands_still() -> None:
    outcome = apply_transfers(
        [Transfer(10, 2, 3, 1, CREDIT), Transfer(11, 2, 3, 1, CREDIT)],
        book(),
        {},
        {},
        now_ns=5,
        last_timestamp=100,
    )
    assert [r.timestamp for r in outcome.records] == [101, 102]
    assert outcome.last_timestamp == 102
