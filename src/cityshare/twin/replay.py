"""Recompute the ledger from the audit log alone, and check every claim the log's entries make.

This is what a digital twin (or any auditor holding the entries) runs: it needs no database
and trusts nothing the primary computed. Each entry is applied in log order, as the ledger
engine (`ledger/model.py`) applied it when it was committed:

- an account entry opens an account with zero balances;
- a plain transfer moves `amount` from the debit to the credit account's *posted* balances;
- a pending transfer moves it into the *pending* balances (a hold);
- a post of pending transfer P releases P's whole amount from pending and posts the entry's
  amount (the engine stores a post's resolved amount, never 0, so it is taken as is);
- a void, and a hold-expired entry, release P's whole amount from pending.

And it checks what each entry claims: both accounts exist and are on the transfer's ledger,
the balances recorded in the entry (`debit_account_balance`, `credit_account_balance`: the
net posted balance, credits posted less debits posted, right after the transfer) equal the
recomputed ones, ledger timestamps strictly increase, ids are unique, account flags hold,
holds are resolved at most once, and at the end each ledger's debits equal its credits. A
problem names the leaf index, so it can be proven with an inclusion proof against a
checkpoint. Non-ledger records (JSON) are counted and skipped.

Invalid transfers are still applied when both their accounts exist: the twin's balances then
equal what the primary holds, and the problem list says why that state is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cityshare.ledger.model import (
    MAX_INT,
    NANOSECONDS,
    AccountFlags,
    AccountState,
    PendingState,
    TransferFlags,
    TransferRecord,
)
from cityshare.tlog import entries as log_entries

_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)

#: Problems kept in full; beyond this only the count grows (a wholly corrupt log of millions
#: of entries must not exhaust memory in the tool meant to diagnose it).
MAX_PROBLEMS = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    index: int
    message: str

    def __str__(self) -> str:
        return f"leaf {self.index}: {self.message}"


@dataclass(slots=True)
class LedgerTotals:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    accounts: int = 0


@dataclass(slots=True)
class _Hold:
    record: TransferRecord
    state: int = PendingState.PENDING


@dataclass
class ReplayResult:
    accounts: dict[int, AccountState]
    ledgers: dict[int, LedgerTotals]
    problems: list[Problem]
    #: How many problems were found (more than `problems` holds past MAX_PROBLEMS).
    problem_count: int
    entries: int
    account_entries: int
    transfer_entries: int
    hold_expired_entries: int
    record_entries: int
    #: Holds still pending at the end of the log.
    open_holds: int

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


@dataclass
class Replayer:
    """Feed leaves in log order with :meth:`feed`; read the state with :meth:`result`.

    Streaming, so a twin replays a log of any length holding only accounts and live holds.
    """

    #: Index of the next leaf fed (start above 0 to replay a tail, e.g. in tests).
    next_index: int = 0
    accounts: dict[int, AccountState] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    _holds: dict[int, _Hold] = field(default_factory=dict)
    _transfer_ids: set[int] = field(default_factory=set)
    _last_timestamp: int = 0
    #: Entries fed, by kind: accounts, transfers, hold expiries, records, malformed.
    _counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])

    def feed(self, data: bytes) -> None:
        """Replay one leaf's bytes."""
        index = self.next_index
        try:
            entry = log_entries.decode(data)
        except log_entries.EntryError as exc:
            self.next_index += 1
            self._counts[4] += 1
            self._problem(index, f"not an entry this version understands: {exc}")
            return
        self.feed_entry(entry)

    def feed_all(self, leaves: Iterable[bytes]) -> None:
        for data in leaves:
            self.feed(data)

    def feed_entry(self, entry: log_entries.Entry) -> None:
        """Replay one decoded entry."""
        index = self.next_index
        self.next_index += 1
        if isinstance(entry, TransferRecord):
            self._counts[1] += 1
            self._transfer(index, entry)
        elif isinstance(entry, log_entries.AccountEntry):
            self._counts[0] += 1
            self._account(index, entry)
        elif isinstance(entry, log_entries.HoldExpiredEntry):
            self._counts[2] += 1
            self._expired(index, entry)
        else:
            self._counts[3] += 1

    # -- the entry kinds -------------------------------------------------------------------

    def _problem(self, index: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(index, message))

    def _tick(self, index: int, timestamp: int, what: str) -> None:
        # Accounts and transfers share the ledger clock: each gets a later timestamp.
        if timestamp <= self._last_timestamp:
            self._problem(
                index,
                f"{what} has timestamp {timestamp}, not after the previous {self._last_timestamp}",
            )
        self._last_timestamp = max(self._last_timestamp, timestamp)

    def _account(self, index: int, entry: log_entries.AccountEntry) -> None:
        a = entry.account
        self._tick(index, entry.timestamp, f"account {a.id}")
        if a.id in self.accounts:
            self._problem(index, f"account {a.id} is opened a second time")
            return
        if a.flags & _DMNEC and a.flags & _CMNED:
            self._problem(index, f"account {a.id} has mutually exclusive flags {a.flags}")
        self.accounts[a.id] = AccountState(
            a.id, a.ledger, a.code, a.flags, a.owner, a.user_data, timestamp=entry.timestamp
        )

    def _transfer(self, index: int, t: TransferRecord) -> None:
        what = f"transfer {t.id}"
        self._tick(index, t.timestamp, what)
        if t.id in self._transfer_ids:
            self._problem(index, f"{what} reuses an id already in the log")
        self._transfer_ids.add(t.id)
        if not 0 < t.amount <= MAX_INT:
            self._problem(index, f"{what} has amount {t.amount}, not between 1 and 2^63-1")
        if t.debit_account_id == t.credit_account_id:
            self._problem(index, f"{what} debits and credits the same account")
        dr = self.accounts.get(t.debit_account_id)
        cr = self.accounts.get(t.credit_account_id)
        if dr is None:
            self._problem(index, f"{what} names debit account {t.debit_account_id}, never opened")
        if cr is None:
            self._problem(index, f"{what} names credit account {t.credit_account_id}, never opened")
        if dr is None or cr is None:
            return
        for acc in (dr, cr):
            if acc.ledger != t.ledger:
                self._problem(
                    index, f"{what} is on ledger {t.ledger} but account {acc.id} on {acc.ledger}"
                )

        kind = t.flags & (_PENDING | _POST | _VOID)
        if kind & (_POST | _VOID):
            if kind not in (_POST, _VOID):
                self._problem(index, f"{what} has mutually exclusive flags {t.flags}")
            if not self._resolve(index, t, dr, cr):
                return
        else:
            if t.pending_id != 0:
                self._problem(
                    index, f"{what} names pending transfer {t.pending_id} but is not a post or void"
                )
            if t.flags & _PENDING:
                dr.debits_pending += t.amount
                cr.credits_pending += t.amount
                self._holds[t.id] = _Hold(t)
            else:
                if t.timeout:
                    self._problem(index, f"{what} has a timeout but is not pending")
                dr.debits_posted += t.amount
                cr.credits_posted += t.amount
            # The engine refuses a transfer that would take a flagged account past its limit,
            # counting holds, so after it the limit must still hold.
            if dr.flags & _DMNEC and dr.debits_posted + dr.debits_pending > dr.credits_posted:
                self._problem(
                    index,
                    f"{what} overdraws account {dr.id} (debits_must_not_exceed_credits: debits "
                    f"{dr.debits_posted} + held {dr.debits_pending} > credits {dr.credits_posted})",
                )
            if cr.flags & _CMNED and cr.credits_posted + cr.credits_pending > cr.debits_posted:
                self._problem(
                    index,
                    f"{what} takes account {cr.id} past credits_must_not_exceed_debits (credits "
                    f"{cr.credits_posted} + held {cr.credits_pending} > debits {cr.debits_posted})",
                )
        for side, acc, claimed in (
            ("debit", dr, t.debit_account_balance),
            ("credit", cr, t.credit_account_balance),
        ):
            if claimed != acc.balance:
                self._problem(
                    index,
                    f"{what} records {side} account {acc.id}'s balance as {claimed}; "
                    f"the entries before it add up to {acc.balance}",
                )

    def _resolve(self, index: int, t: TransferRecord, dr: AccountState, cr: AccountState) -> bool:
        """Apply a post or void of a pending transfer; False when there is nothing to resolve."""
        what = f"transfer {t.id}"
        hold = self._holds.get(t.pending_id)
        if hold is None:
            self._problem(
                index, f"{what} resolves {t.pending_id}, which is not an earlier pending transfer"
            )
            return False
        p = hold.record
        if (p.debit_account_id, p.credit_account_id, p.ledger) != (dr.id, cr.id, t.ledger):
            self._problem(
                index, f"{what} differs from pending transfer {p.id} in accounts or ledger"
            )
            return False
        if hold.state != PendingState.PENDING:
            state = PendingState(hold.state).name.lower()
            self._problem(index, f"{what} resolves pending transfer {p.id}, already {state}")
            return False
        if t.flags & _POST and t.amount > p.amount:
            self._problem(
                index,
                f"{what} posts {t.amount}, more than the {p.amount} pending transfer {p.id} held",
            )
        if t.flags & _VOID and t.amount != p.amount:
            self._problem(
                index, f"{what} voids {t.amount}, but pending transfer {p.id} held {p.amount}"
            )
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        if t.flags & _POST:
            dr.debits_posted += t.amount
            cr.credits_posted += t.amount
            hold.state = PendingState.POSTED
        else:
            hold.state = PendingState.VOIDED
        return True

    def _expired(self, index: int, entry: log_entries.HoldExpiredEntry) -> None:
        what = f"expiry of pending transfer {entry.pending_id}"
        hold = self._holds.get(entry.pending_id)
        if hold is None:
            self._problem(index, f"{what}: no such pending transfer earlier in the log")
            return
        p = hold.record
        if hold.state != PendingState.PENDING:
            state = PendingState(hold.state).name.lower()
            self._problem(index, f"{what}: it was already {state}")
            return
        expected = p.timestamp + p.timeout * NANOSECONDS if p.timeout else 0
        if entry.expires_at != expected:
            self._problem(
                index,
                f"{what}: logged as lapsing at {entry.expires_at}, but its timeout "
                + (f"makes that {expected}" if p.timeout else "is 0 (it never lapses)"),
            )
        dr = self.accounts[p.debit_account_id]
        cr = self.accounts[p.credit_account_id]
        dr.debits_pending -= p.amount
        cr.credits_pending -= p.amount
        hold.state = PendingState.EXPIRED

    # -- the end ---------------------------------------------------------------------------

    def result(self) -> ReplayResult:
        """The state after every leaf fed so far, with the ledger-wide checks."""
        problems = list(self.problems)
        count = self.problem_count
        ledgers: dict[int, LedgerTotals] = {}
        for acc in self.accounts.values():
            totals = ledgers.setdefault(acc.ledger, LedgerTotals())
            totals.accounts += 1
            totals.debits_pending += acc.debits_pending
            totals.debits_posted += acc.debits_posted
            totals.credits_pending += acc.credits_pending
            totals.credits_posted += acc.credits_posted
        end = self.next_index
        for ledger, t in sorted(ledgers.items()):
            for kind, debits, credits in (
                ("posted", t.debits_posted, t.credits_posted),
                ("pending", t.debits_pending, t.credits_pending),
            ):
                if debits != credits:
                    count += 1
                    problems.append(
                        Problem(
                            end,
                            f"after the last entry, ledger {ledger}'s {kind} debits {debits} "
                            f"differ from its {kind} credits {credits}",
                        )
                    )
        open_holds = sum(1 for h in self._holds.values() if h.state == PendingState.PENDING)
        return ReplayResult(
            accounts=self.accounts,
            ledgers=ledgers,
            problems=problems,
            problem_count=count,
            entries=sum(self._counts),
            account_entries=self._counts[0],
            transfer_entries=self._counts[1],
            hold_expired_entries=self._counts[2],
            record_entries=self._counts[3],
            open_holds=open_holds,
        )


def replay(leaves: Iterable[bytes]) -> ReplayResult:
    """Replay a whole log from leaf 0."""
    replayer = Replayer()
    replayer.feed_all(leaves)
    return replayer.result()
