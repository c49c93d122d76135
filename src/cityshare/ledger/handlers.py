"""Ledger capability: command handlers (accounts, transfers, expiry) and read-side queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cityshare.ledger import commands
from cityshare.ledger.ids import MAX_CLIENT_ID, NAMED_PLATFORM_ACCOUNTS, reserved_account_id
from cityshare.ledger.model import (
    MAX_INT,
    AccountState,
    BatchOutcome,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    NewAccount,
    PendingHold,
    PendingState,
    Transfer,
    TransferFlags,
    TransferRecord,
    apply_transfers,
    expire_holds,
    same_account,
    validate_new_account,
)
from cityshare.ledger.uow import LedgerUnitOfWork
from cityshare.tlog import entries

_RESOLVING = int(TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER)


# -- command handlers ------------------------------------------------------------------------


def create_accounts(
    cmd: commands.CreateAccounts, uow: LedgerUnitOfWork
) -> list[CreateAccountResult]:
    """A client's accounts: ids the platform opens itself (`ledger.ids`) answer `reserved_id`."""
    with uow:
        last = uow.ledger.lock_ledger()
        results = open_accounts(
            uow, list(cmd.accounts), last_timestamp=last, atomic=cmd.atomic, client=True
        )
        uow.commit()
    return results


def open_accounts(
    uow: LedgerUnitOfWork,
    new: list[NewAccount],
    *,
    last_timestamp: int,
    atomic: bool,
    client: bool = False,
) -> list[CreateAccountResult]:
    """Create accounts (and their log leaves) inside the caller's locked, open transaction.

    Other capabilities open accounts this way in their own transactions (enrolling a resident
    opens their wallets); the caller commits. With `atomic`, nothing is written if any fails.
    With `client`, an id the platform keeps for itself (a wallet, a named platform account)
    answers `reserved_id`: taken first by a client, it would make enrolment or crediting fail.
    """
    existing = uow.ledger.load_accounts({a.id for a in new})
    seen: dict[int, int] = {}
    to_create = []
    results: list[CreateAccountResult] = []
    for i, account in enumerate(new):
        problem = validate_new_account(account)
        if problem is None and client and reserved_account_id(account.id):
            problem = CreateAccountResult.RESERVED_ID
        if problem is None:
            prior = existing.get(account.id)
            if prior is not None:
                problem = (
                    CreateAccountResult.EXISTS
                    if same_account(prior, account)
                    else CreateAccountResult.EXISTS_WITH_DIFFERENT_FIELDS
                )
            elif account.id in seen:
                problem = (
                    CreateAccountResult.EXISTS
                    if new[seen[account.id]] == account
                    else CreateAccountResult.EXISTS_WITH_DIFFERENT_FIELDS
                )
        if problem is None:
            seen[account.id] = i
            to_create.append(account)
        results.append(problem or CreateAccountResult.CREATED)
    failed = any(r not in _ACCOUNT_OK for r in results)
    if (failed and atomic) or not to_create:
        return results
    timestamp = max(uow.clock.now_ns(), last_timestamp + 1)
    uow.ledger.insert_accounts(to_create, timestamp)
    uow.ledger.set_last_timestamp(timestamp + len(to_create) - 1)
    uow.log.append([entries.encode_account(a, timestamp + i) for i, a in enumerate(to_create)])
    return results


_ACCOUNT_OK = frozenset({CreateAccountResult.CREATED, CreateAccountResult.EXISTS})


def create_transfers(cmd: commands.CreateTransfers, uow: LedgerUnitOfWork) -> BatchOutcome:
    """A client's transfers: an id or pending id from 2^61 up (`ledger.ids`) answers
    `reserved_id`, so no client can take an id the platform mints for its own postings; so does
    a transfer debiting or crediting one of the platform's named accounts (901-904), which only
    the platform's own postings move (an INR top-up has its record, energy its interval)."""
    with uow:
        last = uow.ledger.lock_ledger()
        outcome = post_transfers(
            uow, cmd.transfers, last_timestamp=last, atomic=cmd.atomic, client=True
        )
        if outcome.records or outcome.pending_changes:
            uow.commit()
    return outcome


def post_transfers(
    uow: LedgerUnitOfWork,
    batch: Sequence[Transfer],
    *,
    last_timestamp: int,
    atomic: bool,
    client: bool = False,
) -> BatchOutcome:
    """Apply transfers (and write them and their log leaves) inside the caller's locked, open
    transaction; the caller commits. With `client`, ids are held to the client range and the
    platform's named accounts (`NAMED_PLATFORM_ACCOUNTS`) may not be debited or credited.

    Other capabilities post this way in their own transactions (ingesting readings credits the
    wallets in the same commit as the readings). With `atomic`, nothing is written if any
    transfer fails (the outcome is discarded and says why). Returns the engine's outcome, whose
    `last_timestamp` is the ledger clock after the batch.
    """
    repo = uow.ledger
    account_ids = {t.debit_account_id for t in batch} | {t.credit_account_id for t in batch}
    pending_ids = {t.pending_id for t in batch if t.flags & _RESOLVING}
    holds = repo.load_holds(pending_ids)
    if len(holds) < len(pending_ids):
        # Name a stored transfer that was never pending: the rules answer "not pending".
        for record in repo.load_transfers(pending_ids - holds.keys()).values():
            holds[record.id] = PendingHold(record, 0, 0)
    for hold in holds.values():
        account_ids.add(hold.transfer.debit_account_id)
        account_ids.add(hold.transfer.credit_account_id)
    accounts = repo.load_accounts(account_ids)
    existing = repo.load_transfers([t.id for t in batch])
    outcome = apply_transfers(
        batch,
        accounts,
        holds,
        existing,
        now_ns=uow.clock.now_ns(),
        last_timestamp=last_timestamp,
        max_id=MAX_CLIENT_ID if client else MAX_INT,
        reserved_accounts=NAMED_PLATFORM_ACCOUNTS if client else frozenset(),
    )
    if atomic and outcome.failed:
        outcome.discard()
        return outcome
    if outcome.records or outcome.pending_changes:
        repo.insert_transfers(outcome.records)
        repo.insert_holds(outcome.new_holds)
        repo.save_pending_changes(outcome.pending_changes)
        repo.save_balances(outcome.touched_accounts.values())
        repo.set_last_timestamp(outcome.last_timestamp)
        # Holds found lapsed while resolving are released before the batch's transfers.
        lapsed = [
            entries.encode_hold_expired(c.pending_id, holds[c.pending_id].expires_at)
            for c in outcome.pending_changes
            if c.state == PendingState.EXPIRED
        ]
        uow.log.append(lapsed + entries.encode_transfers(outcome.records))
    return outcome


def expire_pending_transfers(cmd: commands.ExpirePendingTransfers, uow: LedgerUnitOfWork) -> int:
    with uow:
        repo = uow.ledger
        repo.lock_ledger()
        now = uow.clock.now_ns()
        holds = repo.load_expired_holds(now, cmd.limit)
        if not holds:
            return 0
        ids = {h.transfer.debit_account_id for h in holds}
        ids |= {h.transfer.credit_account_id for h in holds}
        accounts = repo.load_accounts(ids)
        changes = expire_holds(holds, accounts, now)
        repo.save_pending_changes(changes)
        repo.save_balances(accounts.values())
        expires_at = {h.transfer.id: h.expires_at for h in holds}
        uow.log.append(
            [entries.encode_hold_expired(c.pending_id, expires_at[c.pending_id]) for c in changes]
        )
        uow.commit()
    return len(changes)


# -- queries (read side) ---------------------------------------------------------------------


def get_account(uow: LedgerUnitOfWork, account_id: int) -> AccountState | None:
    with uow:
        return uow.ledger.get_account(account_id)


def find_accounts(
    uow: LedgerUnitOfWork,
    *,
    owner: str | None = None,
    ledger: int | None = None,
    limit: int = 100,
) -> list[AccountState]:
    with uow:
        return uow.ledger.find_accounts(owner=owner, ledger=ledger, limit=limit)


def account_owners(uow: LedgerUnitOfWork, account_ids: list[int]) -> list[str | None]:
    with uow:
        found = uow.ledger.load_accounts(set(account_ids))
    return [found[i].owner if i in found else None for i in account_ids]


@dataclass(frozen=True, slots=True)
class TransferView:
    record: TransferRecord
    #: For a pending transfer: its state now (pending, posted, voided, expired) and expiry.
    pending_state: PendingState | None = None
    expires_at: int = 0
    resolved_by: int = 0


def get_transfer(uow: LedgerUnitOfWork, transfer_id: int) -> TransferView | None:
    with uow:
        record = uow.ledger.get_transfer(transfer_id)
        if record is None:
            return None
        state = (
            uow.ledger.pending_state(transfer_id) if record.flags & TransferFlags.PENDING else None
        )
    if state is None:
        return TransferView(record)
    return TransferView(record, PendingState(state[0]), state[1], state[2])


@dataclass(frozen=True, slots=True)
class StatementLine:
    transfer_id: int
    timestamp: int
    kind: str  # transfer, pending, post, void
    direction: str  # debit (out of the account) or credit (into it)
    #: The transfer's other account; None where the reader may not know it (a resident's
    #: account outside an organisation's reach: `access.PersonalData.account_statement`).
    counterparty: int | None
    amount: int
    #: Change to the account's posted balance (0 for holds and voids).
    change: int
    balance: int
    code: int
    user_data: int


@dataclass(frozen=True, slots=True)
class Statement:
    account: AccountState
    lines: list[StatementLine] = field(default_factory=list)
    #: Pass as `after` to get the next page; None when this page is the last.
    next_after: int | None = None


def statement(
    uow: LedgerUnitOfWork, account_id: int, *, after: int = 0, limit: int = 100
) -> Statement | None:
    """An account's history, oldest first, with the running posted balance after each line."""
    with uow:
        account = uow.ledger.get_account(account_id)
        if account is None:
            return None
        rows = uow.ledger.statement_rows(account_id, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    lines = []
    for record, side in rows:
        if record.flags & TransferFlags.PENDING:
            kind = "pending"
        elif record.flags & TransferFlags.POST_PENDING_TRANSFER:
            kind = "post"
        elif record.flags & TransferFlags.VOID_PENDING_TRANSFER:
            kind = "void"
        else:
            kind = "transfer"
        moves = kind in ("transfer", "post")
        debit = side == "debit"
        lines.append(
            StatementLine(
                transfer_id=record.id,
                timestamp=record.timestamp,
                kind=kind,
                direction=side,
                counterparty=record.credit_account_id if debit else record.debit_account_id,
                amount=record.amount,
                change=(-record.amount if debit else record.amount) if moves else 0,
                balance=record.debit_account_balance if debit else record.credit_account_balance,
                code=record.code,
                user_data=record.user_data,
            )
        )
    return Statement(account, lines, lines[-1].timestamp if more and lines else None)


@dataclass(frozen=True, slots=True)
class InvariantReport:
    ledgers: list[dict[str, int | str]]
    problems: list[str]
    accounts_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_invariants(uow: LedgerUnitOfWork, *, max_problems: int = 100) -> InvariantReport:
    """Per ledger debits equal credits; no flagged account below zero; and every balance equals
    what the transfers themselves add up to (so an edited balance or transfer shows)."""
    problems: list[str] = []
    ledgers: list[dict[str, int | str]] = []
    with uow:
        repo = uow.ledger
        for ledger, dpo, cpo, dp, cp in repo.ledger_totals():
            name = Ledger(ledger).name if ledger in Ledger._value2member_map_ else str(ledger)
            ledgers.append(
                {
                    "ledger": name,
                    "debits_posted": dpo,
                    "credits_posted": cpo,
                    "debits_pending": dp,
                    "credits_pending": cp,
                }
            )
            if dpo != cpo:
                problems.append(f"ledger {name}: posted debits {dpo} != posted credits {cpo}")
            if dp != cp:
                problems.append(f"ledger {name}: pending debits {dp} != pending credits {cp}")
        for acc in repo.overdrawn_accounts(max_problems):
            problems.append(
                f"account {acc.id}: flags {acc.flags} broken (debits posted {acc.debits_posted}, "
                f"pending {acc.debits_pending}; credits posted {acc.credits_posted}, "
                f"pending {acc.credits_pending})"
            )
        stored = repo.all_balances()
        replayed = repo.replayed_balances()
    zero = (0, 0, 0, 0)
    for account_id in sorted(stored.keys() | replayed.keys()):
        want = replayed.get(account_id, zero)
        have = stored.get(account_id)
        if have is None:
            problems.append(f"account {account_id}: named by transfers but does not exist")
        elif have != want:
            problems.append(
                f"account {account_id}: balances (debits pending, debits posted, credits pending, "
                f"credits posted) are {have} but its transfers add up to {want}"
            )
        if len(problems) >= max_problems:
            problems.append("… more problems not listed")
            break
    return InvariantReport(ledgers, problems, len(stored))


def transfer_failed(result: CreateTransferResult) -> bool:
    return result not in (CreateTransferResult.CREATED, CreateTransferResult.EXISTS)
