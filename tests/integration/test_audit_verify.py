"""`audit verify` on SQLite and PostgreSQL: a clean history checks out, and every tamper with a
stored row, leaf, node, head or checkpoint is named (table, key and leaf index)."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import sqlite3
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    and_,
    func,
    make_url,
    select,
    text,
    update,
)

from cityshare.audit import registry as audit_registry
from cityshare.audit import verify as audit
from cityshare.audit.report import AuditReport
from cityshare.billing import commands as billing_commands
from cityshare.bootstrap import Platform, unit_of_work
from cityshare.charging import commands as charging_commands
from cityshare.charging.model import OcppVersion, Sample
from cityshare.charging.ocpp.door import ChargingDoor
from cityshare.community import commands as community_commands
from cityshare.identity import commands as identity_commands
from cityshare.identity.devices import parse_public_key
from cityshare.identity.residents import wallet_account_id
from cityshare.kernel import idempotency, tables
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.db import make_engine
from cityshare.kernel.seal import Sealer
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger.model import Ledger, NewAccount, Transfer, TransferFlags, TransferRecord
from cityshare.tlog import entries, merkle, note
from cityshare.tlog.cosignature import Cosigner
from cityshare.tlog.repo import LogRepository
from energy_helpers import add_device, enrol, ingest, sign
from identity_helpers import assertion, new_key
from ledger_helpers import ISSUER, fund, open_accounts, post
from services import PostgresServer

CREDIT = int(Ledger.CREDIT)
ENERGY = int(Ledger.ENERGY)
LINKED = int(TransferFlags.LINKED)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING_TRANSFER)
VOID = int(TransferFlags.VOID_PENDING_TRANSFER)

# Transfer ids the seed uses, so tampers can aim at a known record.
PLAIN = 100  # a plain transfer 10 -> 11
POSTED_HOLD, POST_OF_IT = 200, 201  # a hold posted in part
VOIDED_HOLD, VOID_OF_IT = 210, 211
SWEPT_HOLD = 220  # lapses and is released by the sweeper
LAPSED_HOLD = 221  # lapses and is found so by a post that then fails
LIVE_HOLD = 230  # still held at the end


def seed(platform: Platform, clock: ManualClock) -> None:
    """A small history with every kind of record: accounts with and without owners on two
    ledgers, plain and linked transfers, a failed chain, holds posted in part, voided, swept
    and found lapsed, one still live, and enough leaves for nodes of level 4 and 8."""
    open_accounts(platform, [10, 11, 12, 13])
    platform.bus.handle(
        ledger_commands.CreateAccounts(
            [
                NewAccount(20, CREDIT, 3, 0, "resident:7", 99),
                NewAccount(21, ENERGY, 4, 0, "meter.21"),
                NewAccount(22, ENERGY, 4),
            ]
        )
    )
    fund(platform, 10, 1_000_000, transfer_id=1)
    fund(platform, 11, 500_000, transfer_id=2)
    assert post(platform, Transfer(PLAIN, 10, 11, 1_234, CREDIT, code=7, user_data=5)) == [
        "created"
    ]
    assert post(
        platform,
        Transfer(110, 10, 12, 100, CREDIT, flags=LINKED),
        Transfer(111, 12, 13, 60, CREDIT),
    ) == ["created", "created"]
    # A chain that fails leaves no record and no leaf.
    assert post(
        platform,
        Transfer(120, 12, 13, 10, CREDIT, flags=LINKED),
        Transfer(121, 13, 12, 10**9, CREDIT),
    ) == ["linked_event_failed", "exceeds_credits"]
    post(platform, Transfer(130, ISSUER, 20, 777, CREDIT), Transfer(131, 22, 21, 5, ENERGY))
    assert (
        post(
            platform,
            Transfer(POSTED_HOLD, 10, 11, 900, CREDIT, flags=PENDING, timeout=3600),
            Transfer(VOIDED_HOLD, 11, 10, 300, CREDIT, flags=PENDING),
            Transfer(SWEPT_HOLD, 10, 13, 50, CREDIT, flags=PENDING, timeout=5),
            Transfer(LAPSED_HOLD, 11, 13, 40, CREDIT, flags=PENDING, timeout=5),
            Transfer(LIVE_HOLD, 10, 12, 25, CREDIT, flags=PENDING),
        )
        == ["created"] * 5
    )
    assert post(
        platform,
        Transfer(POST_OF_IT, 0, 0, 600, 0, flags=POST, pending_id=POSTED_HOLD),
        Transfer(VOID_OF_IT, 0, 0, 0, 0, flags=VOID, pending_id=VOIDED_HOLD),
    ) == ["created", "created"]
    clock.advance(10)
    assert post(platform, Transfer(240, 0, 0, 0, 0, flags=POST, pending_id=LAPSED_HOLD)) == [
        "pending_transfer_expired"
    ]
    assert platform.bus.handle(ledger_commands.ExpirePendingTransfers()) == 1
    # Enough leaves for a node of level 8 (256 leaves), in a few commits.
    next_id = 1_000
    for size in (90, 130, 60):
        batch = [Transfer(next_id + i, 10 + i % 2, 12 + i % 2, 1 + i, CREDIT) for i in range(size)]
        assert set(post(platform, *batch)) == {"created"}
        next_id += size
    # Identity records: a resident (and wallets), a device whose key is rotated, access records.
    resident = platform.bus.handle(
        identity_commands.EnrolResident(assertion(platform, "asha"))
    ).resident_id
    device = platform.bus.handle(
        identity_commands.RegisterDevice(resident, "meter", parse_public_key(new_key()[1]), "roof")
    )
    meter_key, meter_public = new_key()
    platform.bus.handle(
        identity_commands.RotateDeviceKey(resident, device.id, parse_public_key(meter_public))
    )
    # An organisation (and its wallets) owning a device.
    org = platform.bus.handle(identity_commands.CreateOrganisation("community", "Ward 9 Rooftops"))
    platform.bus.handle(
        identity_commands.RegisterDevice(org.id, "meter", parse_public_key(new_key()[1]))
    )
    # Billing records: the organisation sells energy (a price list), the resident buys from it
    # (a choice) before the readings below begin.
    dear = {"normal": 100_000, "solar": 100_000, "peak": 100_000}  # 100 paise a Wh
    platform.bus.handle(billing_commands.SetPriceList(org.id, {"prices": dear}, "admin"))
    platform.bus.handle(billing_commands.ChooseProvider(resident, org.id))
    clock.advance(300)
    # Energy records: the tariff, readings (one waiting for a missing one), their intervals
    # (one anomalous) and the platform accounts and transfers that credit them.
    now = clock.now_ns() // 10**9
    readings = [
        sign(meter_key, device.id, seq=seq, ts=now - 250 + 20 * seq, import_wh=seq, export_wh=e)
        for seq, e in ((0, 0), (1, 50), (2, 90_000), (3, 90_100), (4, 90_170), (9, 90_900))
    ]
    ingest(platform, readings)
    # Its imports billed (bills and a run record); the empty INR wallet leaves them in arrears.
    billed = platform.bus.handle(billing_commands.BillEnergy())
    assert billed.bills == billed.unpaid_bills == 3
    # A top-up of the resident's INR wallet (a top-up record, the settlement account, its
    # transfer); no billing run after it, so the bills stay in arrears.
    platform.bus.handle(billing_commands.TopUpWallet(resident, 1_000, "UTR-SEED-1", "admin"))
    platform.bus.handle(
        identity_commands.RecordAccess(
            [
                identity_commands.AccessRequest(
                    resident, "operator:energy-co", "operator", "billing", "vid"
                )
            ]
        )
    )
    # Community records: shares of the organisation issued to the resident, and its earnings
    # paid out to them when the month is settled (a share event, a distribution, a payout).
    with platform.uow() as uow:
        enrolment = uow.identity.latest_enrolment(resident)
    assert enrolment is not None
    platform.bus.handle(
        community_commands.IssueShares(
            org.id, [community_commands.ShareGrant(enrolment.vid, 3)], "admin"
        )
    )
    earnings = Transfer(next_id, ISSUER, wallet_account_id(org.id, Ledger.CREDIT), 700, CREDIT)
    assert post(platform, earnings) == ["created"]
    next_id += 1
    clock.advance(30 * 86400)  # past the end of the month
    [settled] = platform.bus.handle(community_commands.SettleCommunityAssets(org.id))
    assert settled.distribution is not None
    # The last commit is a transfer, so the ledger clock equals the newest record's timestamp.
    assert post(platform, Transfer(next_id, 11, 10, 3, CREDIT)) == ["created"]


def run_verify(target: Platform | Engine, verifier: note.Verifier, **kw: Any) -> AuditReport:
    """`audit verify` as the platform runs it: with its seal key (a platform's own, or `sealer`
    given with an engine)."""
    if isinstance(target, Platform):
        kw.setdefault("sealer", target.sealer)
        return audit.verify(target.uow(), verifier, **kw)
    return audit.verify(unit_of_work(target, write=False), verifier, **kw)


def leaf_of(platform: Platform, table: str, key: int) -> int:
    with platform.uow() as uow:
        rows = uow.log.entries(0, uow.log.size())
    for idx, data in rows:
        if audit_registry.entry_key(entries.decode(data)) == (table, key):
            return idx
    raise AssertionError(f"no leaf for {table} {key}")


def execute(platform: Platform, sql: str, **params: Any) -> None:
    with platform.engine.begin() as conn:
        conn.execute(text(sql), params)


def messages(report: AuditReport) -> str:
    return "\n".join(str(p) for p in report.problems)


@pytest.fixture
def seeded(platform: Platform, clock: ManualClock) -> Platform:
    seed(platform, clock)
    return platform


# -- a clean history -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [7, audit.CHUNK])
def test_a_clean_history_verifies_clean(seeded: Platform, chunk_size: int) -> None:
    seen: list[tuple[int, int]] = []
    report = run_verify(
        seeded,
        seeded.log_signer.verifier,
        chunk_size=chunk_size,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert report.ok, messages(report)
    with seeded.uow() as uow:
        size = uow.log.size()
    assert report.leaves == size > 256
    assert seen[-1] == (size, size)
    # The seeded accounts, the resident's and the organisation's wallets, energy accounts.
    assert report.records["accounts"] == 8 + 4 + 4 + 3 + 1  # and the INR settlement account
    assert report.records["pending_transfers"] == 2  # the swept and the found-lapsed hold
    identity_records = {
        "residents": 1,
        "enrolments": 1,
        "devices": 2,
        "device_keys": 3,
        "device_key_revocations": 1,
        "access_records": 1,
        "organisations": 1,
    }
    assert {t: report.records[t] for t in identity_records} == identity_records
    energy_records = {"tariffs": 1, "meter_readings": 6, "meter_intervals": 5}
    assert {t: report.records[t] for t in energy_records} == energy_records
    community_records = {"share_events": 1, "community_distributions": 1, "community_payouts": 1}
    assert {t: report.records[t] for t in community_records} == community_records
    billing_records = {
        "price_lists": 1,
        "provider_choices": 1,
        "energy_bills": 3,
        "billing_runs": 1,
        "top_ups": 1,
    }
    assert {t: report.records[t] for t in billing_records} == billing_records
    others = (
        sum(identity_records.values())
        + sum(energy_records.values())
        + sum(community_records.values())
        + sum(billing_records.values())
    )
    assert report.records["transfers"] + 20 + 2 + others == size
    with seeded.engine.connect() as conn:
        stored_nodes = conn.execute(text("SELECT count(*) FROM log_nodes")).scalar_one()
    assert report.nodes == stored_nodes > 0  # each stored node compared, whatever levels exist
    assert report.checkpoints >= 10
    assert report.accounts == 20
    assert report.pending_transfers == 5


def test_an_empty_log_verifies_clean(platform: Platform) -> None:
    report = run_verify(platform, platform.log_signer.verifier)
    assert report.ok, messages(report)
    assert (report.leaves, report.checkpoints) == (0, 0)


def test_another_log_key_fails_every_checkpoint(seeded: Platform) -> None:
    other = note.Signer.generate(seeded.log_signer.name).verifier
    report = run_verify(seeded, other, max_problems=1000)
    assert not report.ok
    assert all(p.table == "log_checkpoints" for p in report.problems)
    assert len(report.problems) == report.checkpoints
    assert "does not verify with the log key" in report.problems[0].message


# -- specific tampers, each named ------------------------------------------------------------


def test_a_transfer_amount(seeded: Platform) -> None:
    leaf = leaf_of(seeded, "transfers", PLAIN)
    execute(seeded, "UPDATE transfers SET amount = amount + 1 WHERE id = :id", id=PLAIN)
    report = run_verify(seeded, seeded.log_signer.verifier)
    found = messages(report)
    assert (
        f"transfers {PLAIN} (leaf {leaf}): the stored row does not match its log entry "
        "(amount: 1235 in the row, 1234 in the log)"
    ) in found
    assert "accounts 10: balances" in found  # and the balances no longer add up
    first = report.problems[0]
    assert (first.table, first.key, first.leaf) == ("transfers", PLAIN, leaf)


def test_an_account_code(seeded: Platform) -> None:
    leaf = leaf_of(seeded, "accounts", 20)
    execute(seeded, "UPDATE accounts SET code = 9 WHERE id = 20")
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert [str(p) for p in report.problems] == [
        f"accounts 20 (leaf {leaf}): the stored row does not match its log entry "
        "(code: 9 in the row, 3 in the log)"
    ]


def test_a_balance(seeded: Platform) -> None:
    execute(seeded, "UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = 11")
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert "accounts 11: balances (debits pending, debits posted, credits pending" in found
    assert "posted debits" in found  # the ledger's debits no longer equal its credits


def test_a_leaf_rewritten_with_its_hash_recomputed(seeded: Platform) -> None:
    leaf = leaf_of(seeded, "transfers", PLAIN)
    with seeded.uow() as uow:
        record = uow.ledger.get_transfer(PLAIN)
    assert record is not None
    forged = entries.encode_transfer(record._replace(amount=1))
    execute(
        seeded,
        "UPDATE log_leaves SET data = :data, hash = :hash WHERE idx = :idx",
        data=forged,
        hash=merkle.leaf_hash(forged),
        idx=leaf,
    )
    report = run_verify(seeded, seeded.log_signer.verifier, max_problems=1000)
    found = messages(report)
    assert f"transfers {PLAIN} (leaf {leaf}): the stored row does not match" in found
    # The signed roots of every checkpoint from then on give the rewrite away.
    assert "the root is not the root recomputed from the first" in found
    assert "log_leaves" not in found  # the leaf's own hash is consistent


def test_a_stored_node(seeded: Platform) -> None:
    with seeded.engine.connect() as conn:
        key, stored = conn.execute(text("SELECT id, hash FROM log_nodes ORDER BY id")).first()
    flipped = bytes([stored[0] ^ 1]) + bytes(stored[1:])
    execute(seeded, "UPDATE log_nodes SET hash = :h WHERE id = :id", h=flipped, id=key)
    report = run_verify(seeded, seeded.log_signer.verifier)
    level, index = key >> 48, key & ((1 << 48) - 1)
    assert [p.message for p in report.problems] == [
        f"log_nodes {key} (level {level}, index {index}: leaves {index << level} to "
        f"{((index + 1) << level) - 1}): the stored hash is not the hash recomputed from the leaves"
    ]


def test_nodes_of_every_level_are_checked_when_stored(seeded: Platform) -> None:
    """Databases written when every level was stored: the extra levels are compared too."""
    with seeded.uow() as uow:
        leaves = [merkle.leaf_hash(data) for _, data in uow.log.entries(0, uow.log.size())]
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    with seeded.engine.begin() as conn:
        stored = set(conn.execute(text("SELECT id FROM log_nodes")).scalars().all())
        for level in range(1, len(tree.levels)):
            for index, h in enumerate(tree.levels[level]):
                if (level << 48 | index) not in stored:
                    conn.execute(
                        text("INSERT INTO log_nodes (id, hash) VALUES (:id, :h)"),
                        {"id": level << 48 | index, "h": h},
                    )
        total = conn.execute(text("SELECT count(*) FROM log_nodes")).scalar_one()
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert report.ok, messages(report)
    assert report.nodes == total == sum(len(level) for level in tree.levels[1:])
    execute(seeded, "UPDATE log_nodes SET hash = :h WHERE id = :id", h=bytes(32), id=1 << 48 | 3)
    assert [p.key for p in run_verify(seeded, seeded.log_signer.verifier).problems] == [1 << 48 | 3]


def test_a_stored_node_that_is_no_subtree_of_the_log(seeded: Platform) -> None:
    with seeded.uow() as uow:
        size = uow.log.size()
    key = (4 << 48) | (size // 16 + 3)
    execute(seeded, "INSERT INTO log_nodes (id, hash) VALUES (:id, :h)", id=key, h=bytes(32))
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"log_nodes {key} (level 4, index {size // 16 + 3}): not a complete subtree" in found


def test_a_checkpoint_note(seeded: Platform) -> None:
    with seeded.engine.connect() as conn:
        size, signed = conn.execute(
            text("SELECT size, note FROM log_checkpoints ORDER BY size LIMIT 1 OFFSET 2")
        ).first()
    body, _, signature = signed.partition("\n\n")
    lines = body.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claim one more leaf, keep the signature
    execute(
        seeded,
        "UPDATE log_checkpoints SET note = :n WHERE size = :s",
        n="\n".join(lines) + "\n\n" + signature,
        s=size,
    )
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert [p.message for p in report.problems] == [
        f"log_checkpoints {size}: the note does not verify with the log key "
        f"{seeded.log_signer.name}: the signature of {seeded.log_signer.name} does not verify"
    ]


def test_a_checkpoint_signature_in_non_canonical_base64(seeded: Platform) -> None:
    """The last base64 digit of a 68-byte signature blob carries 2 unused bits: flipping them
    leaves the decoded signature the same, so only a canonical-encoding check can see it."""
    with seeded.engine.connect() as conn:
        size, signed = conn.execute(
            text("SELECT size, note FROM log_checkpoints ORDER BY size LIMIT 1")
        ).first()
    assert signed.endswith("=\n")
    last = signed[-3]
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    malleated = signed[:-3] + alphabet[alphabet.index(last) ^ 1] + "=\n"
    with pytest.raises(note.NoteError, match="base64"):
        note.open_note(malleated, seeded.log_signer.verifier)
    execute(seeded, "UPDATE log_checkpoints SET note = :n WHERE size = :s", n=malleated, s=size)
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"log_checkpoints {size}: " in found


def test_a_checkpoint_root_column_and_size(seeded: Platform) -> None:
    with seeded.engine.connect() as conn:
        sizes = conn.execute(text("SELECT size FROM log_checkpoints ORDER BY size")).scalars().all()
    execute(seeded, "UPDATE log_checkpoints SET root = :r WHERE size = :s", r=bytes(32), s=sizes[1])
    execute(seeded, "UPDATE log_checkpoints SET size = size + 100000 WHERE size = :s", s=sizes[3])
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"log_checkpoints {sizes[1]}: the root column is not the root the note signs" in found
    moved = sizes[3] + 100_000
    assert f"log_checkpoints {moved}: the note signs size {sizes[3]}, not {moved}" in found
    assert f"log_checkpoints {moved}: signs a tree of {moved} leaves but the log has only" in found


def test_the_log_head_size(seeded: Platform) -> None:
    with seeded.uow() as uow:
        size = uow.log.size()
    execute(seeded, "UPDATE log_head SET size = size - 1")
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert [p.message for p in report.problems] == [
        f"log_head 1: size is {size - 1} but the log has {size} leaves"
    ]


def test_a_deleted_transfer_row(seeded: Platform) -> None:
    leaf = leaf_of(seeded, "transfers", 111)
    execute(seeded, "DELETE FROM transfers WHERE id = 111")
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"transfers 111 (leaf {leaf}): the log has it but the table has no row" in found
    assert "accounts 12: balances" in found


def test_a_transfer_row_with_no_leaf(seeded: Platform) -> None:
    execute(
        seeded,
        "INSERT INTO transfers SELECT 999999, credit_account_id, debit_account_id, amount, "
        "ledger, code, flags, pending_id, timeout, user_data, timestamp, 0, 0 "
        "FROM transfers WHERE id = :id",
        id=PLAIN,
    )
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert "transfers 999999: the row has no log entry" in found


def test_extra_leaves_with_their_nodes_but_no_record(seeded: Platform) -> None:
    """Appended by hand (with the tree nodes they complete): no checkpoint covers them and no
    row matches them; appended by someone holding the log key, only the missing rows show."""
    with seeded.uow() as uow:
        size = uow.log.size()
        record = uow.ledger.get_transfer(PLAIN)
    assert record is not None
    with seeded.engine.connect() as conn:
        newest = conn.execute(text("SELECT max(timestamp) FROM transfers")).scalar_one()
    extra = 16 - size % 16  # enough to complete a stored node of level 4
    fakes = [
        record._replace(id=777_000 + i, timestamp=newest + 10**12 + i) for i in range(extra + 1)
    ]
    with seeded.engine.begin() as conn:
        nodes = conn.execute(text("SELECT count(*) FROM log_nodes")).scalar_one()
        LogRepository(conn).append(entries.encode_transfers(fakes[:extra]))
        assert conn.execute(text("SELECT count(*) FROM log_nodes")).scalar_one() > nodes
    report = run_verify(seeded, seeded.log_signer.verifier)
    end = size + extra - 1
    assert [p.message for p in report.problems[: extra + 1]] == [
        *(
            f"transfers {777_000 + i} (leaf {size + i}): the log has it but the table has no row"
            for i in range(extra)
        ),
        f"log_leaves {size}..{end} (leaves {size} to {end}): not covered by any signed "
        f"checkpoint (the newest is of size {size})",
    ]
    # The forged timestamps are also ones the ledger clock never handed out.
    assert [p.table for p in report.problems[extra + 1 :]] == ["ledger_clock"]

    signed = unit_of_work(seeded.engine, log_signer=seeded.log_signer)
    with signed:
        signed.log.append([entries.encode_transfer(fakes[extra])])
        signed.commit()
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert [p.table for p in report.problems] == ["transfers"] * (extra + 1) + ["ledger_clock"]


def test_a_leaf_moved_to_another_index(seeded: Platform) -> None:
    execute(seeded, "UPDATE log_leaves SET idx = 100000 WHERE idx = 5")
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert "log_leaves 6: found where leaf 5 should be" in found


def test_pending_transfer_states(seeded: Platform) -> None:
    swept_leaf = leaf_of(seeded, "pending_transfers", SWEPT_HOLD)
    execute(seeded, "UPDATE pending_transfers SET state = 2 WHERE id = :id", id=LIVE_HOLD)
    execute(seeded, "UPDATE pending_transfers SET state = 1 WHERE id = :id", id=SWEPT_HOLD)
    execute(seeded, "UPDATE pending_transfers SET resolved_by = 0 WHERE id = :id", id=POSTED_HOLD)
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"pending_transfers {LIVE_HOLD}: state POSTED but no transfer posts or voids it" in (
        found
    )
    assert (
        f"pending_transfers {SWEPT_HOLD} (leaf {swept_leaf}): the log says the hold lapsed but "
        "its state is PENDING"
    ) in found
    assert (
        f"pending_transfers {POSTED_HOLD}: state POSTED, resolved_by 0, but transfer "
        f"{POST_OF_IT} posted it"
    ) in found


def test_a_hold_marked_expired_without_a_leaf(seeded: Platform) -> None:
    execute(seeded, "UPDATE pending_transfers SET state = 4 WHERE id = :id", id=LIVE_HOLD)
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert f"pending_transfers {LIVE_HOLD}: the row has no log entry" in found


def test_the_ledger_clock_set_back(seeded: Platform) -> None:
    execute(seeded, "UPDATE ledger_clock SET last_timestamp = last_timestamp - 1")
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert "ledger_clock 1: last_timestamp" in found


def test_the_ledger_clock_set_ahead(seeded: Platform) -> None:
    """Ahead of every record, the clock would date every later record in the future: the
    clock is the newest record's timestamp, and anything else is reported."""
    execute(seeded, "UPDATE ledger_clock SET last_timestamp = last_timestamp + 1")
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert "ledger_clock 1: last_timestamp" in found
    assert "is after the newest record timestamp" in found


def test_a_sweep_of_lapsed_holds_alone_leaves_the_clock_on_the_newest_record(
    platform: Platform, clock: ManualClock
) -> None:
    """A batch that only releases lapsed holds (by a post that finds its hold lapsed, or the
    sweeper) writes no timestamped record, so the clock stays where the newest record put it."""
    open_accounts(platform, [10, 11])
    fund(platform, 10, 1_000, transfer_id=1)
    post(platform, Transfer(5, 10, 11, 10, CREDIT, flags=PENDING, timeout=5))
    post(platform, Transfer(6, 10, 11, 10, CREDIT, flags=PENDING, timeout=5))
    clock.advance(60)
    assert post(platform, Transfer(7, 0, 0, 0, 0, flags=POST, pending_id=5)) == [
        "pending_transfer_expired"
    ]
    assert platform.bus.handle(ledger_commands.ExpirePendingTransfers()) == 1
    with platform.engine.connect() as conn:
        last = conn.execute(text("SELECT last_timestamp FROM ledger_clock")).scalar_one()
        newest = conn.execute(text("SELECT max(timestamp) FROM transfers")).scalar_one()
    assert last == newest
    report = run_verify(platform, platform.log_signer.verifier)
    assert report.ok, messages(report)


def test_cosignature_lines_must_parse_and_belong_to_a_checkpoint(seeded: Platform) -> None:
    witness = note.Signer.generate("witness.example")
    with seeded.engine.connect() as conn:
        size, signed = conn.execute(
            text("SELECT size, note FROM log_checkpoints ORDER BY size LIMIT 1")
        ).first()
    line = note.sign_note(signed.partition("\n\n")[0] + "\n", witness).splitlines()[-1]
    add = "INSERT INTO log_cosignatures (size, witness, line) VALUES (:s, :w, :l)"
    execute(seeded, add, s=size, w="witness.example", l=line)
    report = run_verify(seeded, seeded.log_signer.verifier)
    assert report.ok, messages(report)
    assert report.cosignatures == report.cosignatures_unchecked == 1  # no key to check it with
    execute(seeded, add, s=size, w="broken.example", l="not a signature line")
    execute(seeded, add, s=10**9, w="witness.example", l=line)
    found = messages(run_verify(seeded, seeded.log_signer.verifier))
    assert (
        f"log_cosignatures {size}/broken.example: the cosignature line does not start with an "
        "em dash"
    ) in found
    assert f"log_cosignatures {10**9}/witness.example: cosigns a checkpoint the log does not" in (
        found
    )


def test_cosignatures_of_a_configured_witness_must_verify_with_its_key(seeded: Platform) -> None:
    """A line is covered by its witness's signature: given the witness keys (as the CLI takes
    them from CITYSHARE_WITNESS_KEYS), `audit verify` checks it, its time included."""
    witness = Cosigner.generate("twin.example/witness")
    with seeded.engine.connect() as conn:
        size, signed = conn.execute(
            text("SELECT size, note FROM log_checkpoints ORDER BY size LIMIT 1")
        ).first()
    body = signed.partition("\n\n")[0] + "\n"
    line = witness.cosign(body, 1_700_000_000)
    add = "INSERT INTO log_cosignatures (size, witness, line) VALUES (:s, :w, :l)"
    execute(seeded, add, s=size, w=witness.name, l=line)
    keys = [witness.verifier]
    report = run_verify(seeded, seeded.log_signer.verifier, witnesses=keys)
    assert report.ok, messages(report)
    assert (report.cosignatures, report.cosignatures_unchecked) == (1, 0)
    # The same witness's line dated otherwise (a valid line, but not one it signed).
    forged = witness.cosign(body, 1_700_000_001)
    kid_time = note.b64decode_canonical(forged.rpartition(" ")[2])[:12]
    sig = note.b64decode_canonical(line.rpartition(" ")[2])[12:]
    retimed = f"— {witness.name} {base64.b64encode(kid_time + sig).decode()}"
    execute(seeded, "UPDATE log_cosignatures SET line = :l", l=retimed)
    found = messages(run_verify(seeded, seeded.log_signer.verifier, witnesses=keys))
    assert (
        f"log_cosignatures {size}/{witness.name}: the cosignature does not verify with the "
        f"configured key of {witness.name}"
    ) in found


def test_sealed_rows_are_checked_with_the_seal_key_and_only_counted_without_it(
    platform: Platform,
) -> None:
    """A charger's password hash is not logged; its row's seal (kernel/seals.py) covers every
    field of it, its key included, and only the platform's seal key checks it."""
    org = platform.bus.handle(
        identity_commands.CreateOrganisation("operator", "Volt Bays", "energy")
    )
    for _ in range(3):
        charger = platform.bus.handle(
            identity_commands.RegisterDevice(org.id, "charger", parse_public_key(new_key()[1]))
        )
        platform.bus.handle(
            charging_commands.SetChargerPassword(org.id, charger.id, "s3cret-pass-word")
        )
    verifier = platform.log_signer.verifier
    report = run_verify(platform, verifier)
    assert report.ok, messages(report)
    assert (report.seals, report.seals_unchecked) == (3, 0)
    assert report.as_dict()["checked"]["seals"] == 3
    # The hash of one charger swapped with another's, each row's seal kept.
    execute(
        platform,
        "UPDATE charger_secrets SET secret_hash = (SELECT secret_hash FROM charger_secrets "
        "WHERE id = 3) WHERE id = 2",
    )
    found = messages(run_verify(platform, verifier))
    assert found == (
        "charger_secrets 2: the row's seal does not verify (a field was changed outside the "
        "platform, or the row was sealed with another key)"
    )
    # An auditor without the seal key cannot check them, and is told so.
    unchecked = run_verify(platform, verifier, sealer=None)
    assert unchecked.ok
    assert (unchecked.seals, unchecked.seals_unchecked) == (0, 3)
    # Another key fails every seal.
    other = run_verify(platform, verifier, sealer=Sealer(os.urandom(32)))
    assert [p.key for p in other.problems] == [1, 2, 3]


def test_values_at_the_64_bit_limit_are_reported_not_crashed_on(seeded: Platform) -> None:
    top = 2**63 - 1
    execute(seeded, "UPDATE transfers SET amount = :v WHERE id = :id", v=top, id=PLAIN)
    execute(seeded, "UPDATE accounts SET debits_posted = :v WHERE id = 12", v=top)
    execute(seeded, "UPDATE pending_transfers SET expires_at = :v WHERE id = :id", v=top, id=1)
    found = messages(run_verify(seeded, seeded.log_signer.verifier, max_problems=1000))
    assert f"transfers {PLAIN} (leaf" in found
    # PostgreSQL sums into numeric and names the account; SQLite's SUM stops at 64 bits.
    assert "accounts 12: its balances break its flags" in found or "beyond 64 bits" in found


def test_an_interval_id_out_of_range_is_reported_not_crashed_on(seeded: Platform) -> None:
    """An `ok` interval's id names its credits' transfers; one changed to a value no interval
    can have names none (and `audit verify` must still finish and say so)."""
    execute(
        seeded,
        "UPDATE meter_intervals SET id = -482 WHERE id = "
        "(SELECT min(id) FROM meter_intervals WHERE status = 'ok')",
    )
    found = messages(run_verify(seeded, seeded.log_signer.verifier, max_problems=1000))
    assert "has an id out of range, so it names no credits" in found


def test_problems_beyond_the_limit_are_counted(seeded: Platform) -> None:
    execute(seeded, "UPDATE transfers SET user_data = user_data + 1")
    report = run_verify(seeded, seeded.log_signer.verifier, max_problems=5)
    assert len(report.problems) == 5
    assert report.omitted > 200
    assert not report.ok
    assert report.as_dict()["problem_count"] == report.problem_count


# -- the record registry (JSON record types plug in with one registration) -------------------


def test_json_record_types_plug_in_with_one_registration() -> None:
    registry: dict[str, audit_registry.RecordType] = {}

    def encode(row: Any) -> bytes:
        return entries.encode_record("resident", {"id": row["id"], "pseudonym": row["pseudonym"]})

    audit_registry.register_record_type("resident", "residents", encode, registry=registry)
    data = encode({"id": 7, "pseudonym": "p-7"})
    assert audit_registry.entry_key(entries.decode(data), registry) == ("residents", 7)
    assert registry["resident"].encode({"id": 7, "pseudonym": "p-7"}) == data
    for record_type, table in (("resident", "others"), ("other", "residents"), ("x", "accounts")):
        with pytest.raises(ValueError, match="already"):
            audit_registry.register_record_type(record_type, table, encode, registry=registry)
    unknown = entries.decode(entries.encode_record("device", {"id": "d-1"}))
    with pytest.raises(audit_registry.UnknownEntryError, match="'device' record"):
        audit_registry.entry_key(unknown, registry)
    no_id = entries.decode(entries.encode_record("resident", {"pseudonym": "p"}))
    with pytest.raises(audit_registry.UnknownEntryError, match="without"):
        audit_registry.entry_key(no_id, registry)
    # Ledger entries are keyed whatever the registry holds.
    record = TransferRecord(5, 1, 2, 3, 1, 0, 0, 0, 0, 0, 9, -3, 3)
    assert audit_registry.entry_key(entries.decode(entries.encode_transfer(record)), registry) == (
        "transfers",
        5,
    )


# -- THE randomized test: one random field changed at a time, on a fresh copy ----------------

#: The witness whose cosignature the full seed keeps (and whose key `audit verify` is given).
WITNESS = Cosigner.generate("twin.example/witness")

#: The stored fields `audit verify` is NOT expected to catch a change of, each with the reason.
#: Every other column of every table in `kernel/tables.py` is tampered with below (at least once)
#: and must be reported: so a new column that is neither caught nor listed here fails the test
#: (the "every stored field" rule made executable: covered by a signature or a leaf,
#: re-derived by `audit verify`, or shown by a test to change no answer).
#: (Of the platform's records, none: the rows no log entry covers are sealed, kernel/seals.py,
#: or re-derived, like the OCPP plan of a session's samples, audit/verify.planned_chain_problems.
#: The scheduler's lease is no record: it only picks which process runs the periodic jobs.)
_LEASE = (
    "the scheduler's lease (kernel/scheduler.py) only picks which serve or worker process "
    "runs the periodic jobs, which are idempotent: a changed lease only moves them to another "
    "process or delays them (as a stopped worker does); no answer the platform gives is read "
    "from it"
)
EXEMPT: dict[tuple[str, str], str] = {
    ("scheduler_leases", "name"): _LEASE,
    ("scheduler_leases", "holder"): _LEASE,
    ("scheduler_leases", "expires_at"): _LEASE,
}

#: The columns tampered with: every column of every table, less EXEMPT.
TAMPERABLE: dict[str, list[str]] = {
    table.name: [c.name for c in table.columns if (table.name, c.name) not in EXEMPT]
    for table in tables.metadata.sorted_tables
}
TAMPERABLE = {name: columns for name, columns in TAMPERABLE.items() if columns}


def test_every_exemption_names_a_stored_column_and_says_why() -> None:
    for (table, column), reason in EXEMPT.items():
        assert column in tables.metadata.tables[table].c, (table, column)
        assert len(reason) > 20, (table, column)
    counted = sum(len(t.columns) for t in tables.metadata.sorted_tables)
    assert sum(len(c) for c in TAMPERABLE.values()) + len(EXEMPT) == counted


def seed_everything(platform: Platform, clock: ManualClock) -> None:
    """`seed`, and what it leaves out: an OCPP operator's charger with a password, a vehicle's
    id token registered and one removed, a charging session with planned readings and its stop,
    a witness's cosignature, and an idempotent request's stored reply."""
    seed(platform, clock)
    org = platform.bus.handle(
        identity_commands.CreateOrganisation("operator", "Volt Bays", "energy")
    )
    charger = platform.bus.handle(
        identity_commands.RegisterDevice(org.id, "charger", parse_public_key(new_key()[1]), "Bay 1")
    )
    password = "s3cret-charger-pass"
    platform.bus.handle(charging_commands.SetChargerPassword(org.id, charger.id, password))
    driver = enrol(platform, "ravi")
    vehicle = add_device(platform, driver, "vehicle").device_id
    card, lost = "04a2b3c4d5e6f7", "04ffffffffffff"
    platform.bus.handle(charging_commands.RegisterIdToken(driver, vehicle, card))
    removed = platform.bus.handle(charging_commands.RegisterIdToken(driver, vehicle, lost))
    platform.bus.handle(charging_commands.RemoveIdToken(driver, vehicle, removed.id))
    door = ChargingDoor(platform)
    basic = base64.b64encode(f"{charger.id}:{password}".encode()).decode()
    bay = door.authenticate(charger.id, f"Basic {basic}")
    now = clock.now_ns() // 10**9
    session = door.start(bay, OcppVersion.V16, f"1@{now - 1200}", 1, card, now - 1200, 1_000)
    samples = [Sample(now - 1200 + 300 * i, None, 5_000 + 200 * i) for i in range(4)]
    door.meter_values(bay, session, samples, "{}")
    door.stop(bay, session, now - 300, 1_000, "Local")
    # A keyed write (a device registered under an Idempotency-Key) and its stored reply.
    key = new_key()[1]
    idempotency.run(
        platform.bus,
        idempotency.keyed_request(
            "operator:volt-desk", "add-bay-2", "POST", f"/api/v1/organisations/{org.id}/devices",
            {"kind": "charger", "public_key": key},
        ),
        identity_commands.RegisterDevice(org.id, "charger", parse_public_key(key), "Bay 2"),
        lambda device, uow: (201, json.dumps({"id": device.id})),
        retention_seconds=86_400,
    )  # fmt: skip
    # A witness cosigns the newest checkpoint (the log keeps its line): a write, so not through
    # `platform.uow()`, which is read-only (and refuses to write on PostgreSQL).
    with platform.bus.uow_factory() as uow:
        stored = uow.log.latest_checkpoint()
        assert stored is not None
        body = stored.note[: stored.note.rfind("\n\n") + 1]
        uow.log.save_cosignature(stored.size, WITNESS.name, WITNESS.cosign(body, now))
        uow.commit()


TAMPER_SEED = int(os.environ.get("CITYSHARE_TAMPER_SEED", "20261124"))


def _bounds(column: Column[Any]) -> int:
    if isinstance(column.type, SmallInteger):
        return 2**15 - 1
    if isinstance(column.type, BigInteger):
        return 2**63 - 1
    return 2**31 - 1


def _changed(rng: random.Random, column: Column[Any], value: Any) -> Any:
    """A different valid value of the same type: an integer moved by a random nonzero amount,
    bytes with one bit flipped, text with one character changed."""
    if isinstance(column.type, LargeBinary):
        data = bytearray(value)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if isinstance(column.type, String | Text):
        if not value:
            return "x" + str(rng.randrange(1000))
        i = rng.randrange(len(value))
        pool = [c for c in string.ascii_letters + string.digits + "-:\n" if c != value[i]]
        return value[:i] + rng.choice(pool) + value[i + 1 :]
    if value is None:
        return rng.randint(1, 1000)
    limit = _bounds(column)
    delta = rng.randint(1, 1000) * rng.choice((-1, 1))
    if not -limit - 1 <= value + delta <= limit:
        delta = -delta
    return value + delta


def tamper(conn: Connection, rng: random.Random, table_name: str, column_name: str) -> str:
    """Change one field of one random row (named by its whole primary key); return what was
    done."""
    table = tables.metadata.tables[table_name]
    key_columns = list(table.primary_key.columns)
    column = table.c[column_name]
    keys = {tuple(row) for row in conn.execute(select(*key_columns)).all()}
    key = rng.choice(sorted(keys))
    where = and_(*(c == v for c, v in zip(key_columns, key, strict=True)))
    value = conn.execute(select(column).where(where)).scalar_one()
    new = _changed(rng, column, value)
    if column in key_columns:  # a key must stay unique
        position = key_columns.index(column)
        while (*key[:position], new, *key[position + 1 :]) in keys:
            new = _changed(rng, column, value)
    conn.execute(update(table).where(where).values({column_name: new}))
    return f"{table_name}.{column_name} of row {key}: {value!r} -> {new!r}"


class Copies:
    """Fresh copies of a seeded database: a file copy on SQLite, a template on PostgreSQL."""

    def __init__(self, url: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.url = make_url(url)
        self.tmp_path = tmp_path
        self.server: PostgresServer | None = None
        if self.url.get_backend_name() == "sqlite":
            path = str(self.url.database)
            with sqlite3.connect(path) as db:  # fold the WAL in, so the file is the database
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            self.server = request.getfixturevalue("pg_server")
        self.count = 0

    def fresh(self) -> Iterator[str]:
        while True:
            self.count += 1
            if self.server is None:
                copy = self.tmp_path / f"copy{self.count}.db"
                shutil.copyfile(str(self.url.database), copy)
                yield f"sqlite:///{copy}"
                copy.unlink()
            else:
                name = f"{self.url.database}_c{self.count}"
                yield self.server.create_database(name, template=self.url.database)
                conninfo = self.server.conninfo_for("postgres")
                with psycopg.connect(conninfo, autocommit=True) as admin:
                    admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


@pytest.mark.slow
def test_every_random_tamper_is_detected(
    platform: Platform,
    clock: ManualClock,
    database_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    seed_everything(platform, clock)
    verifier = platform.log_signer.verifier
    witnesses = [WITNESS.verifier]
    sealer = platform.sealer
    clean = run_verify(platform, verifier, witnesses=witnesses)
    assert clean.ok, messages(clean)
    assert (clean.cosignatures, clean.cosignatures_unchecked) == (1, 0)
    assert clean.seals > 0
    assert clean.seals_unchecked == 0
    with platform.engine.connect() as conn:
        empty = [
            name
            for name in TAMPERABLE
            if not conn.execute(
                select(func.count()).select_from(tables.metadata.tables[name])
            ).scalar_one()
        ]
    assert not empty, f"the seed leaves these tables empty, so nothing in them is tried: {empty}"
    platform.close()

    sqlite = database_url.startswith("sqlite")
    # Every (table, column) pair in turn, in a shuffled order, until there are enough tampers:
    # at least 100 on SQLite; one round (each pair once) on PostgreSQL, where a copy costs more.
    rng = random.Random(TAMPER_SEED)
    pairs = [(t, c) for t, columns in TAMPERABLE.items() for c in columns]
    wanted = max(100, 3 * len(pairs)) if sqlite else len(pairs)
    plan: list[tuple[str, str]] = []
    while len(plan) < wanted:
        plan += rng.sample(pairs, len(pairs))
    copies = Copies(database_url, request, tmp_path).fresh()
    missed: list[str] = []
    for table_name, column_name in plan[:wanted]:
        url = next(copies)
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                done = tamper(conn, rng, table_name, column_name)
            report = run_verify(engine, verifier, witnesses=witnesses, sealer=sealer)
        finally:
            engine.dispose()
        if report.ok:
            missed.append(done)
    assert not missed, f"seed {TAMPER_SEED}: {len(missed)} tampers went unnoticed: {missed}"
