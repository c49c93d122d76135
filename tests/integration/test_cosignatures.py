"""The log keeps witness cosignatures of its own checkpoints (SQLite and PostgreSQL), and only
those: from configured witness keys, on a checkpoint it signed, dated no later than soon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cityshare.api.app import create_app
from cityshare.bootstrap import Platform, bootstrap
from cityshare.kernel import keys
from cityshare.kernel.clock import ManualClock
from cityshare.tlog import commands, merkle, note
from cityshare.tlog import handlers as audit_log
from cityshare.tlog.cosignature import Cosigner
from conftest import OPERATOR_TOKEN
from ledger_helpers import fund, open_accounts

TWIN = Cosigner.generate("twin.example/witness")
OTHER = Cosigner.generate("other.example/witness")
STRANGER = Cosigner.generate("stranger.example/witness")


@pytest.fixture
def witnessed(platform: Platform, clock: ManualClock, tmp_path: Path) -> Iterator[Platform]:
    """The same database and log key, with two witness keys configured."""
    settings = platform.settings.model_copy(
        update={"witness_keys": f"{TWIN.vkey}\n{OTHER.vkey}", "key_dir": tmp_path / "keys"}
    )
    p = bootstrap(settings, clock=clock)
    open_accounts(p, [10, 11])
    fund(p, 10, 500, transfer_id=1)
    yield p
    p.close()


def now_s(clock: ManualClock) -> int:
    return clock.now_ns() // 1_000_000_000


def latest(p: Platform) -> audit_log.CheckpointView:
    return audit_log.latest_checkpoint(p.uow(), p.log_signer)


def body_of(signed: str) -> str:
    return signed[: signed.rfind("\n\n") + 1]


def add(p: Platform, signed: str, *lines: str) -> audit_log.CosignaturesAdded:
    result: audit_log.CosignaturesAdded = p.bus.handle(
        commands.AddCosignatures(signed + "".join(line + "\n" for line in lines))
    )
    return result


def stored_lines(p: Platform) -> list[str]:
    with p.engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT line FROM log_cosignatures"))]


def test_a_configured_witness_cosignature_is_kept_and_served(
    witnessed: Platform, clock: ManualClock
) -> None:
    view = latest(witnessed)
    body = body_of(view.note)
    line = TWIN.cosign(body, now_s(clock))
    # A line from a witness the log does not know rides along and is ignored.
    result = add(witnessed, view.note, line, STRANGER.cosign(body, now_s(clock)))
    assert (result.size, result.accepted) == (view.size, [TWIN.name])

    served = latest(witnessed).note
    assert served == view.note + line + "\n"
    opened = note.open_note(served, witnessed.log_signer.verifier)
    assert TWIN.verifier.verify(opened.text, opened.other_signatures[0]) == now_s(clock)
    at_size = audit_log.checkpoint_at(witnessed.uow(), view.size)
    assert at_size is not None
    assert at_size.note == served


def test_one_line_per_witness_and_size_the_newest_wins(
    witnessed: Platform, clock: ManualClock
) -> None:
    view = latest(witnessed)
    body = body_of(view.note)
    first = TWIN.cosign(body, now_s(clock))
    newer = TWIN.cosign(body, now_s(clock) + 60)
    other = OTHER.cosign(body, now_s(clock))
    assert add(witnessed, view.note, first).accepted == [TWIN.name]
    assert add(witnessed, view.note, newer, other).accepted == [TWIN.name, OTHER.name]
    # An older cosignature sent again is verified and acknowledged, but does not replace.
    assert add(witnessed, view.note, first).accepted == [TWIN.name]
    assert sorted(stored_lines(witnessed)) == sorted([newer, other])
    assert latest(witnessed).note == view.note + other + "\n" + newer + "\n"


def test_an_older_checkpoint_of_the_log_may_be_cosigned(
    witnessed: Platform, clock: ManualClock
) -> None:
    older = audit_log.checkpoint_at(witnessed.uow(), 3)
    assert older is not None
    line = TWIN.cosign(body_of(older.note), now_s(clock))
    assert add(witnessed, older.note, line).size == 3
    assert line not in latest(witnessed).note


def test_only_lines_from_unknown_witnesses_are_rejected(
    witnessed: Platform, clock: ManualClock
) -> None:
    view = latest(witnessed)
    with pytest.raises(audit_log.CosignatureRejected, match="no cosignature from a witness"):
        add(witnessed, view.note, STRANGER.cosign(body_of(view.note), now_s(clock)))
    with pytest.raises(audit_log.CosignatureRejected, match="no cosignature from a witness"):
        add(witnessed, view.note)  # the log's note alone
    assert stored_lines(witnessed) == []


def test_a_log_without_witnesses_keeps_nothing(platform: Platform, clock: ManualClock) -> None:
    open_accounts(platform, [10])
    view = latest(platform)
    line = TWIN.cosign(body_of(view.note), now_s(clock))
    with pytest.raises(audit_log.CosignatureRejected, match="configured: none"):
        add(platform, view.note, line)


def test_a_checkpoint_the_log_did_not_sign_is_rejected(
    witnessed: Platform, clock: ManualClock
) -> None:
    view = latest(witnessed)
    body = body_of(view.note)
    # Same origin and body, but signed by some other key claiming the log's name.
    impostor = note.Signer.generate(witnessed.log_signer.name)
    forged = note.sign_note(body, impostor)
    with pytest.raises(audit_log.CosignatureRejected, match="not a checkpoint signed by this log"):
        add(witnessed, forged, TWIN.cosign(body, now_s(clock)))
    # The log's signature line on a changed body does not verify.
    changed = view.note.replace(str(view.size), str(view.size + 1), 1)
    with pytest.raises(audit_log.CosignatureRejected, match="does not verify"):
        add(witnessed, changed, TWIN.cosign(body_of(changed), now_s(clock)))
    assert stored_lines(witnessed) == []


def test_a_tree_head_the_log_never_published_is_rejected(
    witnessed: Platform, clock: ManualClock
) -> None:
    """Even carrying the log's own valid signature (a leaked key, a stray test note): the body
    must be the one the log stored at that size."""
    view = latest(witnessed)
    signer = witnessed.log_signer
    wrong_root = note.sign_note(note.Checkpoint(signer.name, view.size, bytes(32)).text(), signer)
    with pytest.raises(audit_log.CosignatureRejected, match=f"signed at size {view.size}"):
        add(witnessed, wrong_root, TWIN.cosign(body_of(wrong_root), now_s(clock)))
    unknown_size = note.sign_note(
        note.Checkpoint(signer.name, view.size + 5, merkle.EMPTY_ROOT).text(), signer
    )
    with pytest.raises(
        audit_log.CosignatureRejected, match=f"no checkpoint at size {view.size + 5}"
    ):
        add(witnessed, unknown_size, TWIN.cosign(body_of(unknown_size), now_s(clock)))
    empty = note.sign_note(note.Checkpoint(signer.name, 0, merkle.EMPTY_ROOT).text(), signer)
    with pytest.raises(audit_log.CosignatureRejected, match="no checkpoint at size 0"):
        add(witnessed, empty, TWIN.cosign(body_of(empty), now_s(clock)))
    assert stored_lines(witnessed) == []


def test_a_bad_or_future_cosignature_rejects_the_whole_note(
    witnessed: Platform, clock: ManualClock
) -> None:
    view = latest(witnessed)
    body = body_of(view.note)
    good = OTHER.cosign(body, now_s(clock))
    other_body = body.replace(str(view.size), str(view.size - 1), 1)
    bad = TWIN.cosign(other_body, now_s(clock))  # the right key, the wrong message
    with pytest.raises(audit_log.CosignatureRejected, match="does not verify"):
        add(witnessed, view.note, good, bad)
    future = TWIN.cosign(body, now_s(clock) + 601)
    with pytest.raises(audit_log.CosignatureRejected, match="in the future"):
        add(witnessed, view.note, good, future)
    with pytest.raises(audit_log.CosignatureRejected, match="two cosignatures"):
        add(witnessed, view.note, TWIN.cosign(body, 1), TWIN.cosign(body, 2))
    assert stored_lines(witnessed) == []
    # Ten minutes ahead is still fine (clocks differ).
    assert add(witnessed, view.note, TWIN.cosign(body, now_s(clock) + 600)).accepted == [TWIN.name]


@pytest.mark.parametrize(
    "garbage",
    ["", "hello", "\n\n", "a\n\n\u2014 x AAAA\n", "\u2014 x y\n" * 3, "x\n\n" + "\x00" * 10],
)
def test_garbage_is_rejected(witnessed: Platform, garbage: str) -> None:
    with pytest.raises(audit_log.CosignatureRejected):
        witnessed.bus.handle(commands.AddCosignatures(garbage))


def test_a_bad_witness_key_in_settings_stops_bootstrap(platform: Platform, tmp_path: Path) -> None:
    log_vkey = platform.log_signer.verifier.vkey  # a plain note key, type 0x01
    for bad in ("nonsense", f"{TWIN.vkey} {log_vkey}"):
        settings = platform.settings.model_copy(
            update={"witness_keys": bad, "key_dir": tmp_path / "keys"}
        )
        with pytest.raises(keys.KeyStoreError, match="CITYSHARE_WITNESS_KEYS"):
            bootstrap(settings)


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def witnessed_client(witnessed: Platform) -> Iterator[TestClient]:
    app = create_app(witnessed, run_jobs=False)
    with TestClient(app) as c:  # no token: cosignatures need none
        yield c


def test_post_cosignatures_over_http(
    witnessed_client: TestClient, witnessed: Platform, clock: ManualClock
) -> None:
    signed = witnessed_client.get("/api/v1/log/checkpoint").text
    line = TWIN.cosign(body_of(signed), now_s(clock))
    response = witnessed_client.post(
        "/api/v1/log/cosignatures",
        content=signed + line + "\n",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"size": latest(witnessed).size, "accepted": [TWIN.name]}
    assert witnessed_client.get("/api/v1/log/checkpoint").text == signed + line + "\n"

    refused = witnessed_client.post(
        "/api/v1/log/cosignatures", content=signed + STRANGER.cosign(body_of(signed), 1) + "\n"
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "cosignature_rejected"
    assert "configured" in refused.json()["error"]["message"]

    for bad in (b"", b"\xff\xfe", b"garbage"):
        response = witnessed_client.post("/api/v1/log/cosignatures", content=bad)
        assert response.status_code == 422
        assert response.json()["error"]["message"]

    huge = signed + (line + "\n") * 200
    too_big = witnessed_client.post("/api/v1/log/cosignatures", content=huge)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"


def test_the_operator_token_is_not_needed_but_does_no_harm(
    witnessed_client: TestClient, clock: ManualClock
) -> None:
    signed = witnessed_client.get("/api/v1/log/checkpoint").text
    response = witnessed_client.post(
        "/api/v1/log/cosignatures",
        content=signed + OTHER.cosign(body_of(signed), now_s(clock)) + "\n",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert response.status_code == 200
