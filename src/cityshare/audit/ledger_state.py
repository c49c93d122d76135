"""The ledger's derived state against its records (audit check 3).

Account balances, the state of pending transfers and the ledger clock are not in the log; they
are recomputed from the transfers (and the lapsed-hold leaves) by audit/repo.py and compared
here with what is stored: the clock is the newest record's timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cityshare.audit.repo import AuditRepo
from cityshare.audit.report import AuditReport, ProblemSink
from cityshare.ledger.model import NANOSECONDS, AccountFlags, PendingState, TransferFlags

_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)


class LedgerStateChecks:
    def __init__(
        self, repo: AuditRepo, report: AuditReport, problem: ProblemSink, max_problems: int
    ) -> None:
        self.repo = repo
        self.report = report
        self.problem = problem
        self.max_problems = max_problems

    def check_balances(self) -> None:
        """Each account's four balances equal what the transfers add up to, per ledger
        debits equal credits, and no flagged account is overdrawn. Raises
        :class:`~cityshare.audit.repo.SumOverflowError` when the amounts cannot be summed."""
        totals: dict[int, list[int]] = {}
        for row in self.repo.balances():
            self.report.accounts += 1
            self._check_account(row[0], row[1], row[2], row[3:7], row[7:11], totals)
        for ledger, (dpo, cpo, dp, cp) in sorted(totals.items()):
            where = f"accounts of ledger {ledger}"
            if dpo != cpo:
                self.problem(
                    "accounts", None, None, f"{where}: posted debits {dpo} but credits {cpo}"
                )
            if dp != cp:
                self.problem(
                    "accounts", None, None, f"{where}: pending debits {dp} but credits {cp}"
                )
        for account_id in self.repo.unknown_accounts(self.max_problems + 1):
            self.problem(
                "transfers",
                None,
                None,
                f"transfers: name account {account_id}, which is not in accounts",
            )

    def _check_account(
        self,
        account_id: int,
        ledger: int,
        flags: int,
        stored: Sequence[Any],
        replayed: Sequence[Any],
        totals: dict[int, list[int]],
    ) -> None:
        dp, dpo, cp, cpo = (int(v) for v in stored)
        want = tuple(int(v) for v in replayed)
        if (dp, dpo, cp, cpo) != want:
            self.problem(
                "accounts",
                account_id,
                None,
                f"accounts {account_id}: balances (debits pending, debits posted, credits "
                f"pending, credits posted) are {(dp, dpo, cp, cpo)} but its transfers add up "
                f"to {want}",
            )
        if (flags & _DMNEC and dpo + dp > cpo) or (flags & _CMNED and cpo + cp > dpo):
            self.problem(
                "accounts",
                account_id,
                None,
                f"accounts {account_id}: its balances break its flags ({flags})",
            )
        sums = totals.setdefault(ledger, [0, 0, 0, 0])
        sums[0] += dpo
        sums[1] += cpo
        sums[2] += dp
        sums[3] += cp

    def check_pending_transfers(self) -> None:
        """`pending_transfers` holds exactly what the transfers imply: one row per pending
        transfer, its expiry from the transfer's timestamp and timeout, and its state and
        `resolved_by` from the post or void that names it (lapsed holds were matched with
        their leaves above)."""
        for row in self.repo.pending_rows():
            self.report.pending_transfers += 1
            self._check_pending_row(*row)
        for transfer_id in self.repo.pending_without_row(self.max_problems + 1):
            self.problem(
                "pending_transfers",
                transfer_id,
                None,
                f"pending_transfers {transfer_id}: missing (transfers {transfer_id} is pending)",
            )
        for resolver_id, pending_id in self.repo.resolvers_of_non_pending(self.max_problems + 1):
            self.problem(
                "transfers",
                resolver_id,
                None,
                f"transfers {resolver_id}: posts or voids transfer {pending_id}, which is not a "
                "pending transfer",
            )

    def _check_pending_row(
        self,
        pending_id: int,
        state: int,
        expires_at: int,
        resolved_by: int,
        transfer_id: int | None,
        flags: int | None,
        timestamp: int | None,
        timeout: int | None,
        resolvers: int | None,
        resolver_id: int | None,
        resolver_flags: int | None,
    ) -> None:
        where = f"pending_transfers {pending_id}"

        def bad(message: str) -> None:
            self.problem("pending_transfers", pending_id, None, f"{where}: {message}")

        if transfer_id is None or flags is None or not flags & _PENDING:
            bad(f"there is no pending transfer {pending_id} in transfers")
            return
        assert timestamp is not None
        assert timeout is not None
        # As ledger/model.py sets it: the transfer's timestamp plus its timeout, 0 for none.
        expected = timestamp + timeout * NANOSECONDS if timeout else 0
        if expires_at != expected:
            bad(f"expires_at is {expires_at} but transfer {pending_id} implies {expected}")
        if resolvers:
            assert resolver_id is not None
            assert resolver_flags is not None
            if resolvers > 1:
                bad(f"{resolvers} transfers post or void it (at most one may)")
            want = PendingState.POSTED if resolver_flags & _POST else PendingState.VOIDED
            if state != want or resolved_by != resolver_id:
                bad(
                    f"state {state_name(state)}, resolved_by {resolved_by}, but transfer "
                    f"{resolver_id} {want.name.lower()} it (state {want.name}, resolved_by "
                    f"{resolver_id})"
                )
        else:
            if state not in (PendingState.PENDING, PendingState.EXPIRED):
                bad(f"state {state_name(state)} but no transfer posts or voids it")
            if resolved_by != 0:
                bad(f"resolved_by {resolved_by} but no transfer posts or voids it")

    def check_clock(self, last: int | None, max_record_timestamp: int) -> None:
        """The ledger clock is the timestamp of the newest account or transfer (0 before the
        first): the ledger moves it only with a stored record (ledger/model.py). Behind, the
        next record could repeat a timestamp; ahead, every later record would carry a time
        in the future (or, near 2^63, none could be written at all). `last` is the stored
        clock (None when its row is missing, a problem reported already) and
        `max_record_timestamp` the newest timestamp the log's records carry."""
        if last is None:
            return
        newest = max([max_record_timestamp, *self.repo.newest_timestamps()])
        if last != newest:
            where = "before" if last < newest else "after"
            self.problem(
                "ledger_clock",
                1,
                None,
                f"ledger_clock 1: last_timestamp {last} is {where} the newest record timestamp "
                f"{newest} (it must equal it)",
            )


def state_name(state: int) -> str:
    try:
        return PendingState(state).name
    except ValueError:
        return f"{state} (not a state)"
