"""Every committed ledger record becomes a leaf of the audit log in the same transaction, and
every commit that appends signs one checkpoint of the new tree (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from cityshare.bootstrap import Platform
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands
from cityshare.ledger.model import Ledger, NewAccount, Transfer, TransferFlags, TransferRecord
from cityshare.tlog import entries, merkle, note
from cityshare.tlog import handlers as audit_log
from ledger_helpers import ISSUER, fund, open_accounts, post

CREDIT = int(Ledger.CREDIT)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)


def log_entries(platform: Platform) -> list[entries.Entry]:
    with platform.uow() as uow:
        rows = uow.log.entries(0, uow.log.size())
    return [entries.decode(data) for _, data in rows]


def checkpoint_count(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM log_checkpoints")).scalar_one())


def test_accounts_and_transfers_are_logged_exactly_as_stored(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 5_000, transfer_id=1)
    post(platform, Transfer(2, 10, 11, 1_200, CREDIT, user_data=7))

    logged = log_entries(platform)
    assert [type(e).__name__ for e in logged] == [
        "AccountEntry",
        "AccountEntry",
        "AccountEntry",
        "TransferRecord",
        "TransferRecord",
    ]
    assert [e.account.id for e in logged[:3] if isinstance(e, entries.AccountEntry)] == [
        ISSUER,
        10,
        11,
    ]
    with platform.uow() as uow:
        stored = uow.ledger.load_transfers([1, 2])
    assert logged[3:] == [stored[1], stored[2]]
    transfer = logged[4]
    assert isinstance(transfer, TransferRecord)
    assert (transfer.amount, transfer.user_data, transfer.debit_account_balance) == (
        1_200,
        7,
        3_800,
    )


def test_each_commit_signs_one_checkpoint_of_the_whole_tree(platform: Platform) -> None:
    open_accounts(platform, [10])  # commit 1: two accounts
    fund(platform, 10, 100, transfer_id=1)  # commit 2
    assert checkpoint_count(platform) == 2

    view = audit_log.latest_checkpoint(platform.uow(), platform.log_signer)
    opened = note.open_note(view.note, platform.log_signer.verifier)
    checkpoint = note.Checkpoint.parse(opened.text)
    assert checkpoint.origin == platform.log_signer.name
    assert checkpoint.size == view.size == 3
    with platform.uow() as uow:
        leaves = [merkle.leaf_hash(data) for _, data in uow.log.entries(0, 3)]
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    assert checkpoint.root_hash == tree.root()

    first = audit_log.checkpoint_at(platform.uow(), 2)
    assert first is not None
    assert note.Checkpoint.parse(note.open_note(first.note, platform.log_signer.verifier).text) == (
        note.Checkpoint(platform.log_signer.name, 2, tree.root(2))
    )


def test_what_is_not_committed_is_not_logged(platform: Platform) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 100, transfer_id=1)
    before = (len(log_entries(platform)), checkpoint_count(platform))

    # A rejected atomic batch, a retry of a committed transfer, and an account that exists.
    rejected = post(
        platform, Transfer(2, 10, 11, 50, CREDIT), Transfer(3, 10, 11, 10**6, CREDIT), atomic=True
    )
    assert rejected[1] == "exceeds_credits"
    assert post(platform, Transfer(1, ISSUER, 10, 100, CREDIT)) == ["exists"]
    platform.bus.handle(commands.CreateAccounts([NewAccount(10, CREDIT, 2, 2)]))

    assert (len(log_entries(platform)), checkpoint_count(platform)) == before


def test_lapsed_holds_are_logged_whether_swept_or_found_by_a_post(
    platform: Platform, clock: ManualClock
) -> None:
    open_accounts(platform, [10, 11])
    fund(platform, 10, 1_000, transfer_id=1)
    post(
        platform,
        Transfer(2, 10, 11, 100, CREDIT, flags=PENDING, timeout=5),
        Transfer(3, 10, 11, 100, CREDIT, flags=PENDING, timeout=5),
    )
    clock.advance(6 * 10**9)
    # The post finds hold 2 lapsed (and fails); the sweeper then releases hold 3.
    assert post(platform, Transfer(4, 0, 0, 0, 0, flags=POST, pending_id=2)) == [
        "pending_transfer_expired"
    ]
    assert platform.bus.handle(commands.ExpirePendingTransfers()) == 1

    with platform.uow() as uow:
        holds = uow.ledger.load_holds([2, 3])
    expired = [e for e in log_entries(platform) if isinstance(e, entries.HoldExpiredEntry)]
    assert expired == [
        entries.HoldExpiredEntry(2, holds[2].expires_at),
        entries.HoldExpiredEntry(3, holds[3].expires_at),
    ]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_inclusion_proofs_of_logged_records_verify_against_the_checkpoint(
    platform: Platform, size: int
) -> None:
    open_accounts(platform, [10, 11])  # 3 leaves
    view = audit_log.latest_checkpoint(platform.uow(), platform.log_signer)
    with platform.uow() as uow:
        data = [d for _, d in uow.log.entries(0, view.size)]
    for index in range(min(size, view.size)):
        proof = audit_log.inclusion_proof(platform.uow(), index, view.size)
        merkle.verify_inclusion(index, view.size, merkle.leaf_hash(data[index]), proof, view.root)


def test_ranges_outside_the_log_are_refused(platform: Platform) -> None:
    open_accounts(platform, [10])
    for bad in (
        lambda: audit_log.entries(platform.uow(), 5, 9),
        lambda: audit_log.entries(platform.uow(), 1, 1),
        lambda: audit_log.inclusion_proof(platform.uow(), 2, 2),
        lambda: audit_log.inclusion_proof(platform.uow(), 0, 3),
        lambda: audit_log.consistency_proof(platform.uow(), 0, 2),
        lambda: audit_log.consistency_proof(platform.uow(), 2, 1),
    ):
        with pytest.raises(audit_log.LogRangeError):
            bad()
