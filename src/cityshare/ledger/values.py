"""The ledger's values: its assets, flags, results and the records the engine reads and writes.

Pure data, no rules: the rules that move value between accounts (validation and the batch
engine) are in `ledger/model.py`, which re-exports every name here, so the ledger's model is
still imported as `cityshare.ledger.model`. Amounts are integers in a ledger's minor unit and
never floats; every id, amount and balance fits a signed 64-bit integer (`MAX_INT`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

#: The largest id, amount or balance: SQLite and PostgreSQL both store a signed 64-bit integer.
MAX_INT = 2**63 - 1
NANOSECONDS = 1_000_000_000
#: Largest pending timeout, in seconds (about 68 years): keeps `timestamp + timeout` in range.
MAX_TIMEOUT = 2**31 - 1


class Ledger(enum.IntEnum):
    """The assets cityshare keeps, each in its own integer minor unit."""

    CREDIT = 1  #: smart credit points, in milli-points (1 point = 1000)
    ENERGY = 2  #: watt-hours
    CARBON = 3  #: grams of CO2 equivalent
    INR = 4  #: Indian rupees, in paise

    @property
    def unit(self) -> str:
        return _UNITS[self]


_UNITS = {
    Ledger.CREDIT: "milli-points",
    Ledger.ENERGY: "Wh",
    Ledger.CARBON: "g CO2e",
    Ledger.INR: "paise",
}


class AccountFlags(enum.IntFlag):
    NONE = 0
    #: The account may never spend more than it has received (a resident's wallet).
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    #: The account may never receive more than it has given (a bounded issuance account).
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2


ACCOUNT_FLAGS_MASK = int(
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
)


class TransferFlags(enum.IntFlag):
    NONE = 0
    #: This transfer succeeds or fails together with the next one in the batch.
    LINKED = 1 << 0
    #: Reserve the amount (a hold) until a later transfer posts or voids it, or it times out.
    PENDING = 1 << 1
    #: Post (all or part of) the pending transfer named by `pending_id`.
    POST_PENDING_TRANSFER = 1 << 2
    #: Release the pending transfer named by `pending_id` without moving anything.
    VOID_PENDING_TRANSFER = 1 << 3


TRANSFER_FLAGS_MASK = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
)


class PendingState(enum.IntEnum):
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


class CreateAccountResult(enum.StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ID_OUT_OF_RANGE = "id_out_of_range"
    #: A client asked for an id only the platform may open (see `ledger.ids`).
    RESERVED_ID = "reserved_id"
    LEDGER_NOT_FOUND = "ledger_not_found"
    CODE_OUT_OF_RANGE = "code_out_of_range"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"


class CreateTransferResult(enum.StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_OUT_OF_RANGE = "id_out_of_range"
    #: A client named an id (or pending id) only the platform may mint (see `ledger.ids`).
    RESERVED_ID = "reserved_id"
    RESERVED_FLAG = "reserved_flag"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    LEDGER_NOT_FOUND = "ledger_not_found"
    CODE_OUT_OF_RANGE = "code_out_of_range"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    TIMEOUT_OUT_OF_RANGE = "timeout_out_of_range"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = "accounts_must_have_the_same_ledger"
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = (
        "transfer_must_have_the_same_ledger_as_accounts"
    )
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = (
        "pending_transfer_has_different_debit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = (
        "pending_transfer_has_different_credit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = "pending_transfer_has_different_ledger"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"


R = CreateTransferResult
#: Results after which the transfer is in the ledger (just now, or by an earlier identical call).
SUCCESSFUL_RESULTS = frozenset({R.CREATED, R.EXISTS})


class NewAccount(NamedTuple):
    """What a client asks for when opening an account; the id is the idempotency key."""

    id: int
    ledger: int
    code: int
    flags: int = 0
    owner: str | None = None
    user_data: int = 0


@dataclass(slots=True)
class AccountState:
    """An account as the engine sees it: immutable apart from its four balances."""

    id: int
    ledger: int
    code: int
    flags: int
    owner: str | None = None
    user_data: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0

    @property
    def balance(self) -> int:
        """Net posted balance seen from the holder: what came in less what went out."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What a wallet can still spend: posted balance less what is held by pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending


class Transfer(NamedTuple):
    """A request to move `amount` from the debit account to the credit account.

    The `id` is chosen by the client and is the idempotency key: sending the same transfer again
    answers `exists` and posts nothing. For a post or void of a pending transfer, the account ids,
    ledger and amount may be left 0 to take them from the pending transfer (amount 0 posts the
    whole pending amount).
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int = 0
    flags: int = 0
    pending_id: int = 0
    timeout: int = 0  # seconds; only for pending transfers; 0 = never expires
    user_data: int = 0


class TransferRecord(NamedTuple):
    """A committed transfer as stored: the resolved request plus what the engine assigned.

    Field order is the column order of the `transfers` table, so a record is a ready row.
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: int
    code: int
    flags: int
    pending_id: int
    timeout: int
    user_data: int
    timestamp: int  # unique and strictly increasing across the ledger, in ns since the epoch
    debit_account_balance: int  # net posted balance of the debit account right after
    credit_account_balance: int  # net posted balance of the credit account right after


@dataclass(slots=True)
class PendingHold:
    """The live state of a pending transfer (the record itself never changes)."""

    transfer: TransferRecord
    state: int
    expires_at: int  # ns since the epoch; 0 = never

    def expired_at(self, now_ns: int) -> bool:
        return self.expires_at != 0 and now_ns >= self.expires_at


class PendingChange(NamedTuple):
    """A pending transfer's state change to write back: (id, new state, resolving transfer)."""

    pending_id: int
    state: int
    resolved_by: int


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: a result per transfer, and the rows to persist if it is committed."""

    results: list[CreateTransferResult]
    records: list[TransferRecord] = field(default_factory=list)
    new_holds: list[PendingHold] = field(default_factory=list)
    pending_changes: list[PendingChange] = field(default_factory=list)
    touched_accounts: dict[int, AccountState] = field(default_factory=dict)
    last_timestamp: int = 0

    @property
    def failed(self) -> list[tuple[int, CreateTransferResult]]:
        return [(i, r) for i, r in enumerate(self.results) if r not in SUCCESSFUL_RESULTS]

    @property
    def created(self) -> int:
        return len(self.records)

    def discard(self) -> None:
        """Forget every effect (the caller rolls back instead of writing)."""
        self.records.clear()
        self.new_holds.clear()
        self.pending_changes.clear()
        self.touched_accounts.clear()
