"""Idempotency keys at the service layer, on SQLite and PostgreSQL: a keyed write runs once and
its answer is stored in the same transaction as its effect; the same key and request again
replays that answer and changes nothing; the same key with another request is refused; keys of
different principals never meet; refusals are not kept; racing retries make one effect; and
keys are forgotten after the retention period."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform
from cityshare.community import commands as community_commands
from cityshare.community import tables as community_tables
from cityshare.community.model import CommunityError, ShareEventRow
from cityshare.community.uow import CommunityUnitOfWork
from cityshare.identity import commands as identity_commands
from cityshare.identity import tables as identity_tables
from cityshare.identity.devices import parse_public_key
from cityshare.kernel import idempotency
from cityshare.kernel import idempotency_commands as kernel_idempotency_commands
from cityshare.kernel import idempotency_tables as kernel_idempotency_tables
from cityshare.kernel import messages as kernel_messages
from cityshare.kernel.bus import MessageBus
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.idempotency import Answer, IdempotencyError, KeyedRequest
from cityshare.ledger import tables as ledger_tables
from identity_helpers import a_vid, assertion, new_key

DAY = 86_400
STAFF = "operator:ward9-desk"


class Resident:
    def __init__(self, platform: Platform, person: str) -> None:
        self.vid = a_vid()
        self.id: int = platform.bus.handle(
            identity_commands.EnrolResident(assertion(platform, person, vid=self.vid))
        ).resident_id
        self.principal = f"resident:resident-{self.id}"


@pytest.fixture
def asset(platform: Platform) -> int:
    org: int = platform.bus.handle(
        identity_commands.CreateOrganisation("community", "Ward 9 Solar")
    ).id
    return org


@pytest.fixture
def asha(platform: Platform) -> Resident:
    return Resident(platform, "asha")


@pytest.fixture
def bala(platform: Platform) -> Resident:
    return Resident(platform, "bala")


def issue_request(principal: str, key: str, asset: int, vid: str, shares: int) -> KeyedRequest:
    return idempotency.keyed_request(
        principal, key, "POST", f"/api/v1/organisations/{asset}/shares",
        {"vid": vid, "shares": shares},
    )  # fmt: skip


def answer_issue(rows: list[ShareEventRow], uow: CommunityUnitOfWork) -> tuple[int, str]:
    """What the API answers: the event and the holder's holding, read in the transaction."""
    [row] = rows
    with uow:
        holding = uow.community.holding(row.asset_id, row.to_id)
    return 201, json.dumps({"id": row.id, "shares": row.shares, "holding": holding})


def issue(
    platform: Platform, principal: str, key: str, asset: int, vid: str, shares: int
) -> Answer:
    return idempotency.run(
        platform.bus,
        issue_request(principal, key, asset, vid, shares),
        community_commands.IssueShares(
            asset, [community_commands.ShareGrant(vid, shares)], principal
        ),
        answer_issue,
        retention_seconds=DAY,
    )


def count(platform: Platform, table: Any) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def log_size(platform: Platform) -> int:
    with platform.uow() as uow:
        return uow.log.size()


def holding(platform: Platform, asset: int, resident: int) -> int:
    with platform.uow() as uow:
        return uow.community.holding(asset, resident)


def audit_ok(platform: Platform) -> None:
    report = audit.verify(platform.uow(), platform.log_signer.verifier, sealer=platform.sealer)
    assert report.ok, "\n".join(str(p) for p in report.problems)
    assert report.seals_unchecked == 0


# -- keys and fingerprints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "x" * 255, "0b1c8a3e-1f2d-4c55-9a6e-7d1c2b3a4f5e", "with spaces ~!", '"sf-string"'],
    ids=["one-char", "255-chars", "uuid", "spaces-and-punctuation", "quoted"],
)
def test_a_key_is_1_to_255_printable_ascii_characters(key: str) -> None:
    assert idempotency.check_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\there", "new\nline", "caf\u00e9", "\x7f"],
    ids=["empty", "256-chars", "tab", "newline", "non-ascii", "delete"],
)
def test_any_other_key_is_refused_with_a_reason(key: str) -> None:
    with pytest.raises(IdempotencyError, match="1-255 printable ASCII") as refused:
        idempotency.check_key(key)
    assert refused.value.code == "invalid_idempotency_key"


def test_the_fingerprint_covers_method_path_and_body_but_not_json_spelling() -> None:
    fp = idempotency.fingerprint
    same = fp("POST", "/api/v1/me/devices", {"kind": "meter", "label": None})
    assert same == fp("post", "/api/v1/me/devices", {"label": None, "kind": "meter"})
    assert len(same) == 64
    others = {
        fp("PUT", "/api/v1/me/devices", {"kind": "meter", "label": None}),
        fp("POST", "/api/v1/organisations/1/devices", {"kind": "meter", "label": None}),
        fp("POST", "/api/v1/me/devices", {"kind": "meter", "label": "roof"}),
        fp("POST", "/api/v1/me/devices", {"kind": "meter"}),
    }
    assert same not in others
    assert len(others) == 4


# -- exactly once ----------------------------------------------------------------------------


def test_a_retry_replays_the_first_answer_and_changes_nothing(
    platform: Platform, asset: int, asha: Resident
) -> None:
    first = issue(platform, STAFF, "issue-1", asset, asha.vid, 5)
    assert first.status == 201
    assert not first.replayed
    assert json.loads(first.body)["holding"] == 5
    events, leaves = count(platform, community_tables.share_events), log_size(platform)

    again = issue(platform, STAFF, "issue-1", asset, asha.vid, 5)

    assert again == Answer(first.status, first.body, replayed=True)
    assert holding(platform, asset, asha.id) == 5
    assert count(platform, community_tables.share_events) == events
    assert log_size(platform) == leaves  # no new leaf, no new checkpoint
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 1
    audit_ok(platform)


def test_the_answer_is_stored_with_the_effect_or_not_at_all(
    platform: Platform, asset: int, asha: Resident
) -> None:
    """A failure after the handler did its work but before the commit (here: rendering the
    answer breaks) leaves neither the effect nor the key; the retry then runs it once."""

    def broken(rows: list[ShareEventRow], uow: CommunityUnitOfWork) -> tuple[int, str]:
        raise RuntimeError("the process died here")

    request = issue_request(STAFF, "crash-1", asset, asha.vid, 5)
    command = community_commands.IssueShares(
        asset, [community_commands.ShareGrant(asha.vid, 5)], STAFF
    )
    with pytest.raises(RuntimeError, match="died"):
        idempotency.run(platform.bus, request, command, broken, retention_seconds=DAY)
    assert count(platform, community_tables.share_events) == 0
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 0
    assert holding(platform, asset, asha.id) == 0

    retried = idempotency.run(platform.bus, request, command, answer_issue, retention_seconds=DAY)
    assert not retried.replayed
    assert holding(platform, asset, asha.id) == 5
    assert count(platform, community_tables.share_events) == 1
    audit_ok(platform)


def test_the_same_key_with_another_request_is_refused_and_writes_nothing(
    platform: Platform, asset: int, asha: Resident, bala: Resident
) -> None:
    issue(platform, STAFF, "issue-1", asset, asha.vid, 5)
    events, leaves = count(platform, community_tables.share_events), log_size(platform)
    for vid, shares in ((asha.vid, 6), (bala.vid, 5)):
        with pytest.raises(IdempotencyError, match="different request") as refused:
            issue(platform, STAFF, "issue-1", asset, vid, shares)
        assert refused.value.code == "idempotency_key_reused"
    assert count(platform, community_tables.share_events) == events
    assert log_size(platform) == leaves
    assert (holding(platform, asset, asha.id), holding(platform, asset, bala.id)) == (5, 0)


#: Changes made to a stored answer in the database, outside the platform: one the client would
#: be told as what happened, and one that makes the key look expired (so the write would run a
#: second time).
FORGERIES = {
    "answer": "UPDATE idempotency_keys SET body = replace(body, '\"holding\": 5', "
    "'\"holding\": 500')",
    "expired": "UPDATE idempotency_keys SET created_at = 0",
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_stored_answer_changed_in_the_database_is_neither_replayed_nor_run_again(
    platform: Platform,
    asset: int,
    asha: Resident,
    forgery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each stored answer is sealed with the platform's seal key (not in the database, not
    in the log): one that fails its seal is refused with a reason and logged, the effect of
    the first request stays the only one, and `audit verify` names the row."""
    issue(platform, STAFF, "issue-1", asset, asha.vid, 5)
    with platform.engine.begin() as conn:
        assert conn.execute(text(forgery)).rowcount == 1
    events, leaves = count(platform, community_tables.share_events), log_size(platform)
    with (
        caplog.at_level(logging.ERROR, logger="cityshare.kernel.seals"),
        pytest.raises(IdempotencyError, match="fails its integrity check") as refused,
    ):
        issue(platform, STAFF, "issue-1", asset, asha.vid, 5)
    assert refused.value.code == "idempotency_key_unverifiable"
    assert holding(platform, asset, asha.id) == 5
    assert (count(platform, community_tables.share_events), log_size(platform)) == (events, leaves)
    assert any(
        r.levelno == logging.ERROR and "the row's seal does not verify" in r.getMessage()
        for r in caplog.records
    )
    report = audit.verify(platform.uow(), platform.log_signer.verifier, sealer=platform.sealer)
    assert [str(p) for p in report.problems] == [
        f"idempotency_keys {STAFF}/issue-1: the row's seal does not verify (a field was "
        "changed outside the platform, or the row was sealed with another key)"
    ]


def test_principals_with_the_same_key_are_independent(
    platform: Platform, asset: int, asha: Resident, bala: Resident
) -> None:
    """Two members of staff, and then two residents, pick the same key: each gets their own
    effect and their own answer."""
    first = issue(platform, "operator:desk-1", "same-key", asset, asha.vid, 4)
    second = issue(platform, "operator:desk-2", "same-key", asset, asha.vid, 4)
    assert not first.replayed
    assert not second.replayed
    assert holding(platform, asset, asha.id) == 8

    def give(resident: Resident, to: Resident, shares: int) -> Answer:
        request = idempotency.keyed_request(
            resident.principal, "same-key", "POST", "/api/v1/me/shares/transfers",
            {"asset_id": asset, "to_vid": to.vid, "shares": shares},
        )  # fmt: skip
        command = community_commands.TransferShares(
            asset, resident.id, to.vid, shares, resident.principal
        )
        return idempotency.run(
            platform.bus,
            request,
            command,
            lambda row, uow: (201, json.dumps({"id": row.id})),
            retention_seconds=DAY,
        )

    assert not give(asha, bala, 3).replayed
    assert not give(bala, asha, 1).replayed  # the same key, another principal: runs
    assert give(asha, bala, 3).replayed
    assert (holding(platform, asset, asha.id), holding(platform, asset, bala.id)) == (6, 2)
    with platform.uow() as uow:
        keys = {p: uow.idempotency.get(p, "same-key") for p in (asha.principal, bala.principal)}
    assert all(row is not None and row.status == 201 for row in keys.values())
    audit_ok(platform)


def test_a_refusal_is_not_kept_so_the_corrected_request_may_reuse_the_key(
    platform: Platform, asset: int, asha: Resident, bala: Resident
) -> None:
    def give(shares: int) -> Answer:
        request = idempotency.keyed_request(
            asha.principal, "give-1", "POST", "/api/v1/me/shares/transfers",
            {"asset_id": asset, "to_vid": bala.vid, "shares": shares},
        )  # fmt: skip
        return idempotency.run(
            platform.bus,
            request,
            community_commands.TransferShares(asset, asha.id, bala.vid, shares, asha.principal),
            lambda row, uow: (201, json.dumps({"id": row.id})),
            retention_seconds=DAY,
        )

    issue(platform, STAFF, "issue-1", asset, asha.vid, 2)
    with pytest.raises(CommunityError, match="you hold 2 shares") as refused:
        give(3)
    assert refused.value.code == "insufficient_shares"
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 1  # only the issue's key
    assert not give(2).replayed  # the corrected request, the same key
    assert give(2).replayed
    assert (holding(platform, asset, asha.id), holding(platform, asset, bala.id)) == (0, 2)


def test_a_retried_device_registration_answers_the_same_device(
    platform: Platform, asha: Resident
) -> None:
    """Without a key a second registration of one public key is refused (`key_in_use`): no
    double effect, but not the first answer either. With a key the retry gets that answer."""
    _, public = new_key()
    command = identity_commands.RegisterDevice(asha.id, "meter", parse_public_key(public), "roof")
    request = idempotency.keyed_request(
        asha.principal, "meter-1", "POST", "/api/v1/me/devices",
        {"kind": "meter", "public_key": public, "label": "roof"},
    )  # fmt: skip

    def run() -> Answer:
        return idempotency.run(
            platform.bus,
            request,
            command,
            lambda device, uow: (201, json.dumps({"id": device.id})),
            retention_seconds=DAY,
        )

    first = run()
    leaves = log_size(platform)
    assert run() == Answer(201, first.body, replayed=True)
    assert count(platform, identity_tables.devices) == 1
    assert log_size(platform) == leaves
    with pytest.raises(ValueError, match="already registered"):
        platform.bus.handle(command)  # the same registration without a key


def test_racing_retries_of_one_request_make_one_effect(
    platform: Platform, asset: int, asha: Resident
) -> None:
    """Eight threads send the same keyed request at once: one issues the shares, the others
    wait for the ledger lock and replay its answer; none fails."""
    threads = 8
    start = threading.Barrier(threads)

    def send(_: int) -> Answer:
        start.wait(timeout=60)  # all threads begin together, so they really race
        return issue(platform, STAFF, "race-1", asset, asha.vid, 7)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(send, range(threads)))  # re-raises a thread's error

    assert [a.replayed for a in answers].count(False) == 1
    assert {(a.status, a.body) for a in answers} == {(answers[0].status, answers[0].body)}
    assert holding(platform, asset, asha.id) == 7
    assert count(platform, community_tables.share_events) == 1
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 1
    audit_ok(platform)


def test_a_handler_that_writes_in_two_transactions_is_refused_not_merged(
    platform: Platform,
) -> None:
    """The helper joins one transaction; a handler that would commit twice cannot be made
    all-or-nothing with its answer, so it fails and writes nothing."""

    class Twice(kernel_messages.Command):
        pass

    def handler(_: Twice, uow: CommunityUnitOfWork) -> None:
        for _round in range(2):
            with uow:
                last = uow.ledger.lock_ledger()
                uow.ledger.set_last_timestamp(last + 1)
                uow.commit()

    def ledger_clock() -> int:
        with platform.engine.connect() as conn:
            return int(
                conn.execute(select(ledger_tables.ledger_clock.c.last_timestamp)).scalar_one()
            )

    before = ledger_clock()
    bus = MessageBus(platform.bus.uow_factory, {Twice: handler}, middleware=platform.bus.middleware)
    request = idempotency.keyed_request(STAFF, "twice", "POST", "/x", {})
    with pytest.raises(RuntimeError, match="one transaction"):
        idempotency.run(bus, request, Twice(), lambda _, uow: (200, "{}"), retention_seconds=DAY)
    assert ledger_clock() == before
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 0


# -- retention -------------------------------------------------------------------------------


def test_keys_are_kept_a_day_then_forgotten(
    platform: Platform, clock: ManualClock, asset: int, asha: Resident
) -> None:
    issue(platform, STAFF, "old", asset, asha.vid, 1)
    clock.advance(DAY - 1)
    assert issue(platform, STAFF, "old", asset, asha.vid, 1).replayed  # within the day
    assert not issue(platform, STAFF, "newer", asset, asha.vid, 1).replayed
    clock.advance(2)

    # Past the retention the key names a new request: it runs again.
    assert not issue(platform, STAFF, "old", asset, asha.vid, 1).replayed
    assert holding(platform, asset, asha.id) == 3
    clock.advance(DAY + 1)
    # Each keyed write purges expired keys on its way; the command purges the rest.
    issue(platform, STAFF, "fresh", asset, asha.vid, 1)
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 1
    clock.advance(DAY + 1)
    assert platform.bus.handle(kernel_idempotency_commands.PurgeIdempotencyKeys()) == 1
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 0


def test_the_purge_works_in_batches(platform: Platform, clock: ManualClock, asset: int) -> None:
    people = [Resident(platform, f"holder{i}") for i in range(5)]
    for i, person in enumerate(people):
        issue(platform, STAFF, f"k{i}", asset, person.vid, 1)
    clock.advance(DAY + 1)
    assert platform.bus.handle(kernel_idempotency_commands.PurgeIdempotencyKeys(limit=2)) == 5
    assert count(platform, kernel_idempotency_tables.idempotency_keys) == 0
