"""The ledger's repository protocol: what handlers, queries and other capabilities may ask of
the ledger's store, in the model's own types (no SQLAlchemy).

Each capability's unit of work (`<cap>/uow.py`) types `uow.ledger` with `LedgerStore`, so a
handler depends on these methods only and a test can hand it an in-memory fake;
`ledger.repo.LedgerRepository` is the store that satisfies it (mypy checks that, structurally,
where `ledger/capability.py` registers it). It lives beside `model.py`, not in it, because the
model is the ledger's rules and already near 500 lines; it is as pure (the model contract
covers it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from cityshare.ledger.model import (
    AccountState,
    NewAccount,
    PendingChange,
    PendingHold,
    TransferRecord,
)


class LedgerStore(Protocol):
    """Ledger rows on one open transaction: the write lock and clock, a batch's loads and bulk
    writes, the read side, and the whole-ledger checks."""

    # -- the write lock and clock ----------------------------------------------------------

    def lock_ledger(self) -> int:
        """Take the ledger's write lock for this transaction; return the last timestamp issued."""
        ...

    def set_last_timestamp(self, timestamp: int) -> None: ...

    # -- loads for a batch -----------------------------------------------------------------

    def load_accounts(self, ids: Collection[int]) -> dict[int, AccountState]: ...

    def load_transfers(self, ids: Collection[int]) -> dict[int, TransferRecord]: ...

    def load_holds(self, ids: Collection[int]) -> dict[int, PendingHold]: ...

    def load_expired_holds(self, now_ns: int, limit: int) -> list[PendingHold]: ...

    # -- bulk writes -----------------------------------------------------------------------

    def insert_accounts(self, new: Sequence[NewAccount], timestamp: int) -> None: ...

    def insert_transfers(self, records: Sequence[TransferRecord]) -> None: ...

    def save_balances(self, changed: Iterable[AccountState]) -> None: ...

    def insert_holds(self, holds: Sequence[PendingHold]) -> None: ...

    def save_pending_changes(self, changes: Sequence[PendingChange]) -> None: ...

    # -- read side -------------------------------------------------------------------------

    def get_account(self, account_id: int) -> AccountState | None: ...

    def find_accounts(
        self, *, owner: str | None = None, ledger: int | None = None, limit: int = 100
    ) -> list[AccountState]: ...

    def get_transfer(self, transfer_id: int) -> TransferRecord | None: ...

    def pending_state(self, transfer_id: int) -> tuple[int, int, int] | None:
        """(state, expires_at, resolved_by) of a pending transfer; None if it is not one."""
        ...

    def statement_rows(
        self, account_id: int, *, after: int, limit: int
    ) -> list[tuple[TransferRecord, str]]:
        """Transfers touching the account with timestamp > `after`, oldest first, and the side."""
        ...

    def balance_at(self, account_id: int, at_ns: int) -> int:
        """The account's net posted balance right after the last transfer touching it with a
        ledger timestamp at or before `at_ns` (0 if there was none)."""
        ...

    def posted_debits_after(self, account_id: int, after_ns: int) -> int:
        """What was posted out of the account by transfers with a ledger timestamp after
        `after_ns` (holds and their voids are not counted)."""
        ...

    # -- whole-ledger checks ---------------------------------------------------------------

    def ledger_totals(self) -> list[tuple[int, int, int, int, int]]:
        """Per ledger: (ledger, debits_posted, credits_posted, debits_pending, credits_pending)."""
        ...

    def overdrawn_accounts(self, limit: int = 100) -> list[AccountState]:
        """Flagged accounts whose balances break their own flag."""
        ...

    def replayed_balances(self) -> dict[int, tuple[int, int, int, int]]:
        """Each account's balances recomputed from the transfers alone: {account id:
        (debits_pending, debits_posted, credits_pending, credits_posted)}."""
        ...

    def all_balances(self) -> dict[int, tuple[int, int, int, int]]:
        """Each account's stored balances, in the order `replayed_balances` gives them."""
        ...
