"""Replaying the audit log: the ledger engine's own history replays clean, and every kind of
lie an entry can tell is named with its leaf index."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cityshare.ledger.model import (
    AccountFlags,
    AccountState,
    Ledger,
    NewAccount,
    PendingHold,
    PendingState,
    Transfer,
    TransferFlags,
    TransferRecord,
    apply_transfers,
    expire_holds,
)
from cityshare.tlog import entries
from cityshare.twin.replay import MAX_PROBLEMS, Replayer, replay

CREDIT = int(Ledger.CREDIT)
ENERGY = int(Ledger.ENERGY)
WALLET = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
BOUNDED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
LINKED = int(TransferFlags.LINKED)
SECOND = 1_000_000_000


@dataclass
class Book:
    """The real ledger engine in memory, writing the leaves the platform would log."""

    now: int = 1_700_000_000 * SECOND
    last: int = 0
    accounts: dict[int, AccountState] = field(default_factory=dict)
    holds: dict[int, PendingHold] = field(default_factory=dict)
    existing: dict[int, TransferRecord] = field(default_factory=dict)
    leaves: list[bytes] = field(default_factory=list)

    def open(self, *ids: int, flags: int = WALLET, ledger: int = CREDIT) -> None:
        for account_id in ids:
            ts = max(self.now, self.last + 1)
            account = NewAccount(account_id, ledger, 2, flags, f"owner-{account_id}", 7)
            self.accounts[account_id] = AccountState(
                account_id, ledger, 2, flags, account.owner, 7, timestamp=ts
            )
            self.leaves.append(entries.encode_account(account, ts))
            self.last = ts

    def transfer(self, *transfers: Transfer) -> list[str]:
        outcome = apply_transfers(
            transfers,
            self.accounts,
            self.holds,
            self.existing,
            now_ns=self.now,
            last_timestamp=self.last,
        )
        self.last = outcome.last_timestamp
        for change in outcome.pending_changes:
            if change.state == PendingState.EXPIRED:
                hold = self.holds[change.pending_id]
                self.leaves.append(entries.encode_hold_expired(change.pending_id, hold.expires_at))
        self.leaves += entries.encode_transfers(outcome.records)
        self.existing.update({r.id: r for r in outcome.records})
        return [r.value for r in outcome.results]

    def expire(self) -> None:
        for change in expire_holds(list(self.holds.values()), self.accounts, self.now):
            hold = self.holds[change.pending_id]
            self.leaves.append(entries.encode_hold_expired(change.pending_id, hold.expires_at))

    def balances(self) -> dict[int, tuple[int, int, int, int]]:
        return {i: _balances(a) for i, a in self.accounts.items()}


def _balances(a: AccountState) -> tuple[int, int, int, int]:
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def history() -> Book:
    """Plain, pending, post (partial and whole), void, expiry by sweep and by a late post,
    linked chains with a failure, rejected transfers, two ledgers, and a JSON record."""
    book = Book()
    book.open(1, flags=0)
    book.open(2, flags=BOUNDED)
    book.open(10, 11, 12)
    book.open(50, 51, ledger=ENERGY, flags=0)
    assert book.transfer(
        Transfer(1, 1, 10, 10_000, CREDIT),
        Transfer(2, 1, 11, 5_000, CREDIT),
        Transfer(3, 10, 12, 99_999, CREDIT),  # exceeds credits: not logged
        Transfer(4, 50, 51, 700, ENERGY),
    ) == ["created", "created", "exceeds_credits", "created"]
    book.leaves.append(entries.encode_record("resident.enrolled", {"id": 1, "ward": "A"}))
    book.now += SECOND
    book.transfer(
        Transfer(5, 10, 11, 2_000, CREDIT, flags=PENDING, timeout=60),
        Transfer(6, 10, 12, 1_000, CREDIT, flags=PENDING, timeout=5),
        Transfer(7, 11, 12, 500, CREDIT, flags=PENDING),
        Transfer(8, 11, 12, 300, CREDIT, flags=PENDING, timeout=5),
        Transfer(9, 2, 10, 100, CREDIT),  # bounded account 2 may not credit beyond debits
        Transfer(10, 10, 2, 100, CREDIT),  # back within its bound
    )
    book.now += SECOND
    assert book.transfer(
        Transfer(11, 0, 0, 1_500, 0, flags=POST, pending_id=5),  # partial post
        Transfer(12, 0, 0, 0, 0, flags=VOID, pending_id=7),
        Transfer(13, 11, 12, 10, CREDIT, flags=LINKED),
        Transfer(14, 12, 11, 10**9, CREDIT),  # fails the chain: neither is logged
        Transfer(15, 2, 11, 50, CREDIT, flags=LINKED),
        Transfer(16, 11, 12, 50, CREDIT),
    ) == [
        "created",
        "created",
        "linked_event_failed",
        "exceeds_credits",
        "created",
        "created",
    ]
    book.now += 10 * SECOND
    # A post finds hold 6 lapsed (logged as expired, the post fails); the sweep takes hold 8.
    assert book.transfer(Transfer(17, 0, 0, 0, 0, flags=POST, pending_id=6)) == [
        "pending_transfer_expired"
    ]
    book.expire()
    book.transfer(Transfer(18, 11, 10, 1, CREDIT))
    return book


def test_the_engines_own_history_replays_clean_and_to_the_same_balances() -> None:
    book = history()
    result = replay(book.leaves)
    assert result.problems == []
    assert result.ok
    assert {i: _balances(a) for i, a in result.accounts.items()} == book.balances()
    assert (
        result.account_entries,
        result.transfer_entries,
        result.hold_expired_entries,
        result.record_entries,
    ) == (7, 14, 2, 1)
    assert result.entries == len(book.leaves)
    assert result.open_holds == 0
    credit = result.ledgers[CREDIT]
    moved = 10_000 + 5_000 + 100 + 100 + 1_500 + 50 + 50 + 1
    assert credit.debits_posted == credit.credits_posted == moved
    assert (credit.debits_pending, credit.credits_pending, credit.accounts) == (0, 0, 5)
    assert result.ledgers[ENERGY].credits_posted == 700
    # Ordinary fields carry over: what an auditor reads is the account as it was opened.
    wallet = result.accounts[10]
    assert (wallet.owner, wallet.user_data, wallet.code, wallet.flags) == ("owner-10", 7, 2, WALLET)


def test_a_streaming_replay_equals_a_whole_one() -> None:
    book = history()
    replayer = Replayer()
    for leaf in book.leaves:
        replayer.feed(leaf)
        replayer.result()  # reading midway changes nothing
    assert {i: _balances(a) for i, a in replayer.result().accounts.items()} == book.balances()


def test_holds_left_open_count_as_pending() -> None:
    book = Book()
    book.open(1, flags=0)
    book.open(10)
    book.transfer(Transfer(1, 1, 10, 100, CREDIT), Transfer(2, 10, 1, 60, CREDIT, flags=PENDING))
    result = replay(book.leaves)
    assert result.ok
    assert result.open_holds == 1
    assert _balances(result.accounts[10]) == (60, 0, 0, 100)


# -- lies ------------------------------------------------------------------------------------


def simple() -> Book:
    book = Book()
    book.open(1, flags=0)
    book.open(10, 11)
    book.transfer(Transfer(1, 1, 10, 1_000, CREDIT))  # leaf 3
    book.transfer(Transfer(2, 10, 11, 300, CREDIT))  # leaf 4
    book.transfer(Transfer(3, 10, 11, 200, CREDIT, flags=PENDING, timeout=1))  # leaf 5
    return book


def record_at(book: Book, index: int) -> TransferRecord:
    decoded = entries.decode(book.leaves[index])
    assert isinstance(decoded, TransferRecord)
    return decoded


def rewrite(book: Book, index: int, **changes: int) -> list[bytes]:
    leaves = list(book.leaves)
    leaves[index] = entries.encode_transfer(record_at(book, index)._replace(**changes))
    return leaves


def messages(leaves: list[bytes]) -> list[str]:
    return [str(p) for p in replay(leaves).problems]


def test_an_edited_amount_contradicts_the_recorded_balances() -> None:
    found = messages(rewrite(simple(), 4, amount=301))
    assert found[0] == (
        "leaf 4: transfer 2 records debit account 10's balance as 700; "
        "the entries before it add up to 699"
    )
    assert any("credit account 11's balance as 300" in m for m in found)


def test_an_edited_amount_with_recomputed_balances_still_breaks_the_next_entry() -> None:
    book = simple()
    leaves = rewrite(book, 4, amount=301, debit_account_balance=699, credit_account_balance=301)
    assert messages(leaves) == [
        "leaf 5: transfer 3 records debit account 10's balance as 700; "
        "the entries before it add up to 699",
        "leaf 5: transfer 3 records credit account 11's balance as 300; "
        "the entries before it add up to 301",
    ]


def test_timestamps_must_increase() -> None:
    book = simple()
    earlier = record_at(book, 3).timestamp
    found = messages(rewrite(book, 4, timestamp=earlier))
    assert found == [
        f"leaf 4: transfer 2 has timestamp {earlier}, not after the previous {earlier}"
    ]


def test_ids_are_unique() -> None:
    book = simple()
    leaves = [*book.leaves, book.leaves[3]]
    found = messages(leaves)
    assert "leaf 6: transfer 1 reuses an id already in the log" in found
    twice = [*book.leaves, book.leaves[1]]
    assert any(m.startswith("leaf 6: account 10 is opened a second time") for m in messages(twice))


def test_accounts_must_exist_and_share_the_transfers_ledger() -> None:
    book = simple()
    assert "leaf 4: transfer 2 names credit account 99, never opened" in messages(
        rewrite(book, 4, credit_account_id=99)
    )
    found = messages(rewrite(book, 4, ledger=ENERGY))
    assert "leaf 4: transfer 2 is on ledger 2 but account 10 on 1" in found

    mixed = Book()
    mixed.open(1, flags=0)
    mixed.open(50, ledger=ENERGY, flags=0)
    forged = TransferRecord(1, 1, 50, 10, CREDIT, 0, 0, 0, 0, 0, mixed.last + 1, -10, 10)
    result = replay([*mixed.leaves, entries.encode_transfer(forged)])
    texts = [str(p) for p in result.problems]
    assert "leaf 2: transfer 1 is on ledger 1 but account 50 on 2" in texts
    # Per ledger the books no longer balance.
    assert any("ledger 1's posted debits 10 differ from its posted credits 0" in t for t in texts)
    assert any("ledger 2's posted debits 0 differ from its posted credits 10" in t for t in texts)


def test_a_wallet_may_not_be_overdrawn_even_with_consistent_claims() -> None:
    book = simple()
    leaves = rewrite(
        book, 4, amount=1_500, debit_account_balance=-500, credit_account_balance=1_500
    )
    found = messages(leaves)
    assert found[0].startswith("leaf 4: transfer 2 overdraws account 10")
    bounded = Book()
    bounded.open(1, flags=0)
    bounded.open(2, flags=BOUNDED)
    forged = TransferRecord(1, 1, 2, 10, CREDIT, 0, 0, 0, 0, 0, bounded.last + 1, -10, 10)
    assert messages([*bounded.leaves, entries.encode_transfer(forged)])[0].startswith(
        "leaf 2: transfer 1 takes account 2 past credits_must_not_exceed_debits"
    )


def test_holds_resolve_once_and_only_as_held() -> None:
    book = simple()
    book.transfer(Transfer(4, 0, 0, 150, 0, flags=POST, pending_id=3))  # leaf 6
    assert replay(book.leaves).ok
    post = record_at(book, 6)
    again = post._replace(id=5, timestamp=post.timestamp + 1)
    assert messages([*book.leaves, entries.encode_transfer(again)])[0] == (
        "leaf 7: transfer 5 resolves pending transfer 3, already posted"
    )
    assert messages(rewrite(book, 6, amount=201))[0] == (
        "leaf 6: transfer 4 posts 201, more than the 200 pending transfer 3 held"
    )
    assert messages(rewrite(book, 6, pending_id=2))[0] == (
        "leaf 6: transfer 4 resolves 2, which is not an earlier pending transfer"
    )
    assert messages(rewrite(book, 6, flags=VOID))[0] == (
        "leaf 6: transfer 4 voids 150, but pending transfer 3 held 200"
    )


def test_expiries_must_name_a_live_hold_and_its_real_deadline() -> None:
    book = simple()
    book.now += 2 * SECOND
    book.expire()  # leaf 6
    result = replay(book.leaves)
    assert result.ok
    assert _balances(result.accounts[10]) == (0, 300, 0, 1_000)
    hold = record_at(book, 5)
    wrong_time = entries.encode_hold_expired(3, hold.timestamp + 5 * SECOND)
    assert messages([*book.leaves[:6], wrong_time])[0].startswith(
        "leaf 6: expiry of pending transfer 3: logged as lapsing at"
    )
    assert messages([*book.leaves, book.leaves[6]]) == [
        "leaf 7: expiry of pending transfer 3: it was already expired"
    ]
    assert messages([*book.leaves, entries.encode_hold_expired(2, 1)]) == [
        "leaf 7: expiry of pending transfer 2: no such pending transfer earlier in the log"
    ]


def test_records_are_counted_and_garbage_is_named() -> None:
    book = simple()
    leaves = [*book.leaves, entries.encode_record("device.registered", {"owner_id": 3}), b"\x09"]
    result = replay(leaves)
    assert result.record_entries == 1
    assert [str(p) for p in result.problems] == [
        "leaf 7: not an entry this version understands: unknown entry kind 0x09 or wrong length 1"
    ]
    assert result.entries == 8


def test_problems_are_capped_but_counted() -> None:
    book = simple()
    junk = [b"\x09"] * (MAX_PROBLEMS + 5)
    result = replay([*book.leaves, *junk])
    assert len(result.problems) == MAX_PROBLEMS
    assert result.problem_count == MAX_PROBLEMS + 5
    assert not result.ok


@pytest.mark.parametrize("amount", [0, -5])
def test_amounts_are_positive(amount: int) -> None:
    found = messages(rewrite(simple(), 4, amount=amount))
    assert f"leaf 4: transfer 2 has amount {amount}, not between 1 and 2^63-1" in found
