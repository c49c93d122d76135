"""The double-entry ledger: accounts, transfers and the rules that move value between them.

Modelled on TigerBeetle's data model (DESIGN.md §2), written here in pure Python with no I/O.
The storage layer loads the accounts and pending transfers a batch touches, calls
:func:`apply_transfers` once for the whole batch, and writes back what it returns; so the rules
run in one tight loop per batch rather than one database round trip per transfer.

Amounts are integers in a ledger's minor unit and never floats. Every balance stays within a
signed 64-bit integer so that SQLite and PostgreSQL store it natively.

The values it works on (assets, flags, results, accounts, transfers, holds, a batch's outcome)
are in `ledger/values.py` and re-exported here: this module is the ledger model's public face.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from cityshare.ledger.values import (
    ACCOUNT_FLAGS_MASK,
    MAX_INT,
    MAX_TIMEOUT,
    NANOSECONDS,
    SUCCESSFUL_RESULTS,
    TRANSFER_FLAGS_MASK,
    AccountFlags,
    AccountState,
    BatchOutcome,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    NewAccount,
    PendingChange,
    PendingHold,
    PendingState,
    R,
    Transfer,
    TransferFlags,
    TransferRecord,
)

__all__ = [
    "ACCOUNT_FLAGS_MASK",
    "MAX_INT",
    "MAX_TIMEOUT",
    "NANOSECONDS",
    "SUCCESSFUL_RESULTS",
    "TRANSFER_FLAGS_MASK",
    "AccountFlags",
    "AccountState",
    "BatchOutcome",
    "CreateAccountResult",
    "CreateTransferResult",
    "Ledger",
    "NewAccount",
    "PendingChange",
    "PendingHold",
    "PendingState",
    "R",
    "Transfer",
    "TransferFlags",
    "TransferRecord",
    "apply_transfers",
    "expire_holds",
    "same_account",
    "validate_new_account",
]

_LINKED = int(TransferFlags.LINKED)
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_RESOLVING = _POST | _VOID
_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)


def validate_new_account(account: NewAccount) -> CreateAccountResult | None:
    """Return why `account` cannot be created, or None when it is well formed."""
    if not 0 < account.id <= MAX_INT:
        return CreateAccountResult.ID_OUT_OF_RANGE
    if account.ledger not in _LEDGERS:
        return CreateAccountResult.LEDGER_NOT_FOUND
    if not 0 <= account.code <= 0xFFFF:
        return CreateAccountResult.CODE_OUT_OF_RANGE
    if account.flags & ~ACCOUNT_FLAGS_MASK:
        return CreateAccountResult.RESERVED_FLAG
    if account.flags & _DMNEC and account.flags & _CMNED:
        return CreateAccountResult.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    return None


def same_account(existing: AccountState, account: NewAccount) -> bool:
    return (
        existing.ledger == account.ledger
        and existing.code == account.code
        and existing.flags == account.flags
        and existing.owner == account.owner
        and existing.user_data == account.user_data
    )


_LEDGERS = frozenset(int(ledger) for ledger in Ledger)
#: Builds a NamedTuple from a ready tuple without the keyword-handling __new__ (hot loop).
_new_record = tuple.__new__


def _same_transfer(record: TransferRecord, t: Transfer) -> bool:
    """Is `t` a retry of the stored `record`? Zero fields of a post/void mean "as pending"."""
    if t.flags & _RESOLVING:
        return (
            record.flags == t.flags
            and record.pending_id == t.pending_id
            and (t.debit_account_id == 0 or record.debit_account_id == t.debit_account_id)
            and (t.credit_account_id == 0 or record.credit_account_id == t.credit_account_id)
            and (t.amount == 0 or record.amount == t.amount)
            and (t.ledger == 0 or record.ledger == t.ledger)
            and (t.code == 0 or record.code == t.code)
            and record.user_data == t.user_data
        )
    return record[:10] == t


def apply_transfers(
    transfers: Sequence[Transfer],
    accounts: dict[int, AccountState],
    holds: dict[int, PendingHold],
    existing: dict[int, TransferRecord],
    *,
    now_ns: int,
    last_timestamp: int,
    max_id: int = MAX_INT,
    reserved_accounts: Collection[int] = frozenset(),
) -> BatchOutcome:
    """Apply a batch of transfers in order to the in-memory `accounts` and `holds`.

    `accounts` must hold every account the batch names, `holds` every pending transfer it posts
    or voids, `existing` every already-stored transfer whose id the batch reuses; missing keys
    mean "not found". Balances in `accounts` and states in `holds` are updated in place.

    Each transfer succeeds or fails on its own, except inside a linked chain, which succeeds or
    fails as one: on failure the chain's earlier effects are undone and its members answer
    `linked_event_failed` (the failing one answers its own reason).

    `max_id` is the largest id (and pending id) the caller may name: a client's batch passes
    `ledger.ids.MAX_CLIENT_ID`, and a larger id answers `reserved_id`, so a client can neither
    take an id the platform will mint nor resolve a transfer the platform made.
    `reserved_accounts` are accounts the caller may not debit or credit (a client's batch
    passes `ledger.ids.NAMED_PLATFORM_ACCOUNTS`): a transfer naming one, or resolving a hold
    on one, answers `reserved_id`, so only the platform's own postings move them.
    """
    n = len(transfers)
    results: list[CreateTransferResult] = [R.CREATED] * n
    outcome = BatchOutcome(results=results)
    records = outcome.records
    new_holds = outcome.new_holds
    pending_changes = outcome.pending_changes
    touched = outcome.touched_accounts
    created: dict[int, TransferRecord] = {}
    # Expiries found on the way stand even if the chain that found them fails.
    expired: list[PendingChange] = []
    timestamp = max(now_ns, last_timestamp + 1) - 1

    # Linked-chain bookkeeping: where the open chain starts and how to undo its effects.
    chain_start = -1
    chain_failed = False
    undo_accounts: dict[int, tuple[int, int, int, int]] = {}
    undo_holds: dict[int, int] = {}
    chain_marks = (0, 0, 0)

    for i in range(n):
        t = transfers[i]
        flags = t.flags
        linked = flags & _LINKED
        if linked and chain_start < 0:
            chain_start = i
            chain_failed = False
            undo_accounts = {}
            undo_holds = {}
            chain_marks = (len(records), len(new_holds), len(pending_changes))
        in_chain = chain_start >= 0

        if in_chain and chain_failed:
            results[i] = R.LINKED_EVENT_FAILED
            if not linked:
                chain_start = -1
            continue
        if linked and i == n - 1:
            result: CreateTransferResult | None = R.LINKED_EVENT_CHAIN_OPEN
        else:
            result = None

        tid = t.id
        amount = t.amount
        if result is not None:
            pass
        elif not 0 < tid <= MAX_INT:
            result = R.ID_OUT_OF_RANGE
        elif (
            tid > max_id
            or t.pending_id > max_id
            or t.debit_account_id in reserved_accounts
            or t.credit_account_id in reserved_accounts
        ):
            result = R.RESERVED_ID
        elif flags & ~TRANSFER_FLAGS_MASK:
            result = R.RESERVED_FLAG
        elif (flags & _PENDING and flags & _RESOLVING) or (flags & _RESOLVING == _RESOLVING):
            result = R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        elif not 0 <= amount <= MAX_INT:
            result = R.AMOUNT_OUT_OF_RANGE
        elif not 0 <= t.code <= 0xFFFF:
            result = R.CODE_OUT_OF_RANGE
        else:
            prior = created.get(tid) or existing.get(tid)
            if prior is not None:
                result = R.EXISTS if _same_transfer(prior, t) else R.EXISTS_WITH_DIFFERENT_FIELDS
                results[i] = result
                if result is R.EXISTS:
                    if in_chain and not linked:
                        chain_start = -1
                    continue

        if result is None and flags & _RESOLVING:
            # Post or void a pending transfer.
            pid = t.pending_id
            hold = holds.get(pid)
            if pid == 0:
                result = R.PENDING_ID_MUST_NOT_BE_ZERO
            elif pid == tid:
                result = R.PENDING_ID_MUST_BE_DIFFERENT
            elif t.timeout != 0:
                result = R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            elif hold is None:
                result = R.PENDING_TRANSFER_NOT_FOUND
            else:
                p = hold.transfer
                if not p.flags & _PENDING:
                    result = R.PENDING_TRANSFER_NOT_PENDING
                elif (
                    p.debit_account_id in reserved_accounts
                    or p.credit_account_id in reserved_accounts
                ):
                    result = R.RESERVED_ID
                elif t.debit_account_id and t.debit_account_id != p.debit_account_id:
                    result = R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
                elif t.credit_account_id and t.credit_account_id != p.credit_account_id:
                    result = R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
                elif t.ledger and t.ledger != p.ledger:
                    result = R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
                elif flags & _VOID and amount and amount != p.amount:
                    result = R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
                elif amount > p.amount:
                    result = R.EXCEEDS_PENDING_TRANSFER_AMOUNT
                elif hold.state == PendingState.POSTED:
                    result = R.PENDING_TRANSFER_ALREADY_POSTED
                elif hold.state == PendingState.VOIDED:
                    result = R.PENDING_TRANSFER_ALREADY_VOIDED
                elif hold.state == PendingState.EXPIRED:
                    result = R.PENDING_TRANSFER_EXPIRED
                elif hold.expired_at(now_ns):
                    # Found lapsed before the sweeper got to it: expire it now (outside any
                    # chain's undo, because expiry happens whether or not this transfer fails).
                    dr = accounts[p.debit_account_id]
                    cr = accounts[p.credit_account_id]
                    dr.debits_pending -= p.amount
                    cr.credits_pending -= p.amount
                    if in_chain:
                        # A failing chain restores its snapshots: they must not bring the hold back.
                        _release_in_snapshot(undo_accounts, dr.id, 0, p.amount)
                        _release_in_snapshot(undo_accounts, cr.id, 2, p.amount)
                    touched[dr.id] = dr
                    touched[cr.id] = cr
                    hold.state = PendingState.EXPIRED
                    expired.append(PendingChange(pid, PendingState.EXPIRED, 0))
                    result = R.PENDING_TRANSFER_EXPIRED
                else:
                    dr = accounts[p.debit_account_id]
                    cr = accounts[p.credit_account_id]
                    post_amount = (amount or p.amount) if flags & _POST else p.amount
                    if flags & _POST and (
                        dr.debits_posted + post_amount > MAX_INT
                        or cr.credits_posted + post_amount > MAX_INT
                    ):
                        result = (
                            R.OVERFLOWS_DEBITS
                            if dr.debits_posted + post_amount > MAX_INT
                            else R.OVERFLOWS_CREDITS
                        )
                    else:
                        if in_chain:
                            if dr.id not in undo_accounts:
                                undo_accounts[dr.id] = _snapshot(dr)
                            if cr.id not in undo_accounts:
                                undo_accounts[cr.id] = _snapshot(cr)
                            if pid not in undo_holds:
                                undo_holds[pid] = hold.state
                        dr.debits_pending -= p.amount
                        cr.credits_pending -= p.amount
                        if flags & _POST:
                            dr.debits_posted += post_amount
                            cr.credits_posted += post_amount
                            hold.state = PendingState.POSTED
                        else:
                            hold.state = PendingState.VOIDED
                        touched[dr.id] = dr
                        touched[cr.id] = cr
                        timestamp += 1
                        record = TransferRecord(
                            tid,
                            dr.id,
                            cr.id,
                            post_amount,
                            p.ledger,
                            t.code or p.code,
                            flags,
                            pid,
                            0,
                            t.user_data,
                            timestamp,
                            dr.credits_posted - dr.debits_posted,
                            cr.credits_posted - cr.debits_posted,
                        )
                        records.append(record)
                        created[tid] = record
                        pending_changes.append(PendingChange(pid, hold.state, tid))

        elif result is None:
            # An ordinary or pending transfer.
            dr_id = t.debit_account_id
            cr_id = t.credit_account_id
            dr_acc = accounts.get(dr_id)
            cr_acc = accounts.get(cr_id)
            timeout = t.timeout
            if amount == 0:
                result = R.AMOUNT_MUST_BE_POSITIVE
            elif dr_id == cr_id:
                result = R.ACCOUNTS_MUST_BE_DIFFERENT
            elif t.pending_id != 0:
                result = R.PENDING_ID_MUST_BE_ZERO
            elif timeout and not flags & _PENDING:
                result = R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            elif not 0 <= timeout <= MAX_TIMEOUT:
                result = R.TIMEOUT_OUT_OF_RANGE
            elif t.ledger not in _LEDGERS:
                result = R.LEDGER_NOT_FOUND
            elif dr_acc is None:
                result = R.DEBIT_ACCOUNT_NOT_FOUND
            elif cr_acc is None:
                result = R.CREDIT_ACCOUNT_NOT_FOUND
            elif dr_acc.ledger != cr_acc.ledger:
                result = R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
            elif t.ledger != dr_acc.ledger:
                result = R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
            else:
                dr_out = dr_acc.debits_posted + dr_acc.debits_pending + amount
                cr_in = cr_acc.credits_posted + cr_acc.credits_pending + amount
                if dr_out > MAX_INT:
                    result = R.OVERFLOWS_DEBITS
                elif cr_in > MAX_INT:
                    result = R.OVERFLOWS_CREDITS
                elif dr_acc.flags & _DMNEC and dr_out > dr_acc.credits_posted:
                    result = R.EXCEEDS_CREDITS
                elif cr_acc.flags & _CMNED and cr_in > cr_acc.debits_posted:
                    result = R.EXCEEDS_DEBITS
                else:
                    if in_chain:
                        if dr_id not in undo_accounts:
                            undo_accounts[dr_id] = _snapshot(dr_acc)
                        if cr_id not in undo_accounts:
                            undo_accounts[cr_id] = _snapshot(cr_acc)
                    if flags & _PENDING:
                        dr_acc.debits_pending += amount
                        cr_acc.credits_pending += amount
                    else:
                        dr_acc.debits_posted += amount
                        cr_acc.credits_posted += amount
                    touched[dr_id] = dr_acc
                    touched[cr_id] = cr_acc
                    timestamp += 1
                    # t[:10] is the request itself (pending_id is 0 here): the same fields.
                    record = _new_record(
                        TransferRecord,
                        (
                            *t,
                            timestamp,
                            dr_acc.credits_posted - dr_acc.debits_posted,
                            cr_acc.credits_posted - cr_acc.debits_posted,
                        ),
                    )
                    records.append(record)
                    created[tid] = record
                    if flags & _PENDING:
                        hold = PendingHold(
                            record,
                            PendingState.PENDING,
                            timestamp + timeout * NANOSECONDS if timeout else 0,
                        )
                        holds[tid] = hold
                        new_holds.append(hold)

        if result is not None:
            results[i] = result
            if in_chain:
                chain_failed = True
                for j in range(chain_start, i):
                    results[j] = R.LINKED_EVENT_FAILED
                for acc_id, snap in undo_accounts.items():
                    acc = accounts[acc_id]
                    (
                        acc.debits_pending,
                        acc.debits_posted,
                        acc.credits_pending,
                        acc.credits_posted,
                    ) = snap
                for pid, state in undo_holds.items():
                    holds[pid].state = state
                for record in records[chain_marks[0] :]:
                    del created[record.id]
                    if record.flags & _PENDING:
                        del holds[record.id]
                del records[chain_marks[0] :]
                del new_holds[chain_marks[1] :]
                del pending_changes[chain_marks[2] :]
                if not linked:
                    chain_start = -1
        elif in_chain and not linked:
            chain_start = -1

    pending_changes.extend(expired)
    # The clock moves only with a stored record, so it always equals the newest record's
    # timestamp and `audit verify` can re-derive it (a batch that only released lapsed holds,
    # or whose every transfer failed, leaves it where it was).
    outcome.last_timestamp = max(records[-1].timestamp if records else 0, last_timestamp)
    return outcome


def _snapshot(acc: AccountState) -> tuple[int, int, int, int]:
    return (acc.debits_pending, acc.debits_posted, acc.credits_pending, acc.credits_posted)


def _release_in_snapshot(
    snapshots: dict[int, tuple[int, int, int, int]], account_id: int, index: int, amount: int
) -> None:
    snap = snapshots.get(account_id)
    if snap is not None:
        values = list(snap)
        values[index] -= amount
        snapshots[account_id] = (values[0], values[1], values[2], values[3])


def expire_holds(
    holds: Iterable[PendingHold], accounts: dict[int, AccountState], now_ns: int
) -> list[PendingChange]:
    """Release every hold in `holds` whose timeout has passed; return the state changes."""
    changes: list[PendingChange] = []
    for hold in holds:
        if hold.state != PendingState.PENDING or not hold.expired_at(now_ns):
            continue
        p = hold.transfer
        accounts[p.debit_account_id].debits_pending -= p.amount
        accounts[p.credit_account_id].credits_pending -= p.amount
        hold.state = PendingState.EXPIRED
        changes.append(PendingChange(p.id, PendingState.EXPIRED, 0))
    return changes
