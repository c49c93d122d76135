"""The twin's sync against a real primary app behind a meddling transport: entries changed in
transit, garbage answers, a sync cut off half way, a replica edited on disk."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from cityshare.ledger import commands
from cityshare.ledger.model import Ledger, NewAccount
from cityshare.tlog import note
from cityshare.twin import evidence as twin_evidence
from cityshare.twin import replica as twin
from cityshare.twin import sync as twin_sync
from cityshare.twin import verify as twin_verify
from cityshare.twin import witness as twin_witness
from conftest import OPERATOR_TOKEN
from ledger_helpers import fund, open_accounts

Meddler = Callable[[httpx.Request, httpx.Response], httpx.Response]


def passthrough(_: httpx.Request, response: httpx.Response) -> httpx.Response:
    return response


class Proxy:
    """An httpx client whose answers come from the real app, then pass through `meddle`."""

    def __init__(self, app_client: TestClient) -> None:
        self.app_client = app_client
        self.meddle: Meddler = passthrough

    def _handle(self, request: httpx.Request) -> httpx.Response:
        answer = self.app_client.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers=dict(request.headers),
        )
        response = httpx.Response(
            answer.status_code, headers=answer.headers, content=answer.content
        )
        return self.meddle(request, response)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self._handle), base_url="http://primary")


@pytest.fixture
def proxy(client: TestClient) -> Proxy:
    return Proxy(client)


@pytest.fixture
def twin_dir(tmp_path: Path) -> Path:
    twin_witness.init(tmp_path / "twin")
    return tmp_path / "twin"


@pytest.fixture
def http(proxy: Proxy) -> Iterator[httpx.Client]:
    with proxy.client() as c:
        yield c


def run_sync(http: httpx.Client, twin_dir: Path, platform: Platform) -> twin_sync.SyncReport:
    return twin_sync.sync(
        http, twin_dir, log_key=platform.log_signer.verifier.vkey, token=OPERATOR_TOKEN
    )


def history(platform: Platform, accounts: int = 5) -> None:
    open_accounts(platform, list(range(10, 10 + accounts)))
    fund(platform, 10, 1_000, transfer_id=1)


def trusted_size(twin_dir: Path) -> int | None:
    replica = twin.Replica(twin_dir / twin.REPLICA_FILE)
    try:
        trusted = replica.trusted()
        return None if trusted is None else trusted.size
    finally:
        replica.close()


def replace_json(response: httpx.Response, body: object) -> httpx.Response:
    return httpx.Response(response.status_code, content=json.dumps(body).encode())


def test_an_entry_changed_in_transit_is_caught_by_the_root_check(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    history(platform)

    def flip_a_byte(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/entries"):
            body = response.json()
            data = bytearray(base64.b64decode(body["entries"][2]))
            data[-1] ^= 1
            body["entries"][2] = base64.b64encode(bytes(data)).decode()
            return replace_json(response, body)
        return response

    proxy.meddle = flip_a_byte
    with pytest.raises(twin.TamperError, match="do not hash to the root of its checkpoint"):
        run_sync(http, twin_dir, platform)
    assert trusted_size(twin_dir) is None
    assert not (twin_dir / twin.CHECKPOINT_FILE).exists()

    proxy.meddle = passthrough
    report = run_sync(http, twin_dir, platform)
    assert report.fetched == report.size == 7
    assert twin_verify.verify(twin_dir).ok


def test_a_same_size_checkpoint_with_another_root_is_caught(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    history(platform)
    size = run_sync(http, twin_dir, platform).size
    signer = platform.log_signer
    forged = note.sign_note(note.Checkpoint(signer.name, size, bytes(32)).text(), signer)

    def fork(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/checkpoint"):
            return httpx.Response(200, content=forged.encode())
        return response

    proxy.meddle = fork
    with pytest.raises(twin.TamperError, match=f"checkpoint of size {size} has root"):
        run_sync(http, twin_dir, platform)


def serve_instead(proxy: Proxy, signed: str) -> None:
    """The primary answers GET /log/checkpoint with `signed` (a note its own key signed)."""

    def swap(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/checkpoint"):
            return httpx.Response(200, content=signed.encode())
        return response

    proxy.meddle = swap


def trusted_note(twin_dir: Path) -> str:
    return (twin_dir / twin.CHECKPOINT_FILE).read_text()


def only_evidence(twin_dir: Path) -> dict[str, object]:
    [path] = (twin_dir / twin_evidence.EVIDENCE_DIR).iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    return dict(json.loads(path.read_text()))


def test_a_fork_at_the_trusted_size_is_kept_as_evidence_and_reported_by_verify(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    """Two roots signed for one size prove the log equivocated: the twin keeps both signed
    notes as received, once however often it is shown them, and `verify` fails while they
    are held, though the replica itself is sound."""
    history(platform)
    size = run_sync(http, twin_dir, platform).size
    trusted = trusted_note(twin_dir)
    signer = platform.log_signer
    forged = note.sign_note(note.Checkpoint(signer.name, size, bytes(32)).text(), signer)
    serve_instead(proxy, forged)
    for _ in range(2):
        with pytest.raises(twin.TamperError, match="both signed checkpoints are kept in") as err:
            run_sync(http, twin_dir, platform)
        assert err.value.evidence is not None
    evidence = only_evidence(twin_dir)
    assert (evidence["kind"], evidence["trusted"], evidence["offered"]) == (
        "fork",
        trusted,
        forged,
    )
    report = twin_verify.verify(twin_dir)
    assert not report.ok
    assert report.problems == []
    assert report.replay.ok
    [item] = twin_verify.verify_json(report)["evidence"]
    assert item["kind"] == "fork"
    assert item["problem"] is None
    assert item["trusted"]["size"] == item["offered"]["size"] == size
    assert item["offered"]["root"] == base64.b64encode(bytes(32)).decode()
    # What is kept is checked, not believed: a note the log did not sign is not evidence.
    path = next((twin_dir / twin_evidence.EVIDENCE_DIR).iterdir())
    record = json.loads(path.read_text())
    record["offered"] = forged.replace("\n\n", "\n\n— nobody AAAAAA==\n", 1).rpartition(
        "\n— "
    )[0]
    path.write_text(json.dumps(record))
    [item] = twin_verify.verify_json(twin_verify.verify(twin_dir))["evidence"]
    assert "the offered note" in item["problem"]


@pytest.mark.parametrize("forked", [False, True])
def test_a_rollback_is_kept_as_evidence_and_told_apart_from_a_fork(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path, forked: bool
) -> None:
    """A checkpoint of a smaller tree than the trusted one is refused and kept; the replica's
    own entries say whether the log served an old checkpoint again (same root at that size)
    or a history that forks below the trusted one (another root)."""
    history(platform)
    old = run_sync(http, twin_dir, platform)
    old_note = trusted_note(twin_dir)
    fund(platform, 11, 50, transfer_id=2)
    assert run_sync(http, twin_dir, platform).size > old.size
    signer = platform.log_signer
    offered = (
        note.sign_note(note.Checkpoint(signer.name, old.size, bytes(32)).text(), signer)
        if forked
        else old_note
    )
    serve_instead(proxy, offered)
    shrank = f"the log shrank: its checkpoint is of size {old.size}"
    with pytest.raises(twin.TamperError, match=shrank):
        run_sync(http, twin_dir, platform)
    evidence = only_evidence(twin_dir)
    assert (evidence["kind"], evidence["offered"]) == ("rollback", offered)
    [item] = twin_verify.verify_json(twin_verify.verify(twin_dir))["evidence"]
    assert item["problem"] is None
    assert ("a forked history" if forked else "an old checkpoint served again") in item["detail"]


def test_a_bigger_tree_not_consistent_with_the_trusted_one_is_kept_with_its_proof(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    history(platform)
    size = run_sync(http, twin_dir, platform).size
    fund(platform, 11, 50, transfer_id=2)
    signer = platform.log_signer
    rewritten = note.sign_note(note.Checkpoint(signer.name, size + 1, bytes(32)).text(), signer)
    serve_instead(proxy, rewritten)
    with pytest.raises(twin.TamperError, match="inconsistent"):
        run_sync(http, twin_dir, platform)
    evidence = only_evidence(twin_dir)
    assert evidence["kind"] == "inconsistent"
    assert isinstance(evidence["proof"], list)
    assert evidence["proof"]
    report = twin_verify.verify(twin_dir)
    assert not report.ok
    [item] = twin_verify.verify_json(report)["evidence"]
    assert (item["problem"], item["offered"]["size"]) == (None, size + 1)


def test_a_refusal_that_is_no_equivocation_keeps_no_evidence(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    """Entries changed in transit contradict no signed checkpoint: nothing to keep."""
    history(platform)
    run_sync(http, twin_dir, platform)
    other = note.Signer.generate(platform.log_signer.name)
    serve_instead(proxy, note.sign_note(note.Checkpoint(other.name, 1, bytes(32)).text(), other))
    with pytest.raises(twin.TamperError, match="does not verify"):
        run_sync(http, twin_dir, platform)
    assert not (twin_dir / twin_evidence.EVIDENCE_DIR).exists()
    assert twin_verify.verify(twin_dir).ok


@pytest.mark.parametrize(
    ("path", "garbage", "message"),
    [
        ("/checkpoint", b"hello", "does not verify"),
        ("/checkpoint", b"\xff\xfe\x00", "not UTF-8"),
        ("/entries", b"<html>", "not JSON"),
        ("/entries", b'{"start": 0}', "is not"),
        ("/entries", b'{"start": 3, "entries": ["AA=="]}', "is not"),
        ("/entries", b'{"start": 0, "entries": []}', "is not"),
        ("/entries", b'{"start": 0, "entries": ["!!"]}', "not base64"),
        ("/entries", b'{"start": 0, "entries": [' + b'"AA==",' * 8 + b'"AA=="]}', "is not"),
        ("/consistency", b'{"proof": ["AAAA"]}', "32-byte"),
        ("/consistency", b'{"proof": "x"}', "is not"),
        ("/consistency", b"[]", "is not"),
    ],
)
def test_garbage_from_the_primary_fails_the_sync_and_trusts_nothing_new(
    platform: Platform,
    proxy: Proxy,
    http: httpx.Client,
    twin_dir: Path,
    path: str,
    garbage: bytes,
    message: str,
) -> None:
    history(platform)
    if path == "/consistency":
        run_sync(http, twin_dir, platform)  # a proof is only asked for from a trusted size
        fund(platform, 11, 5, transfer_id=2)
    before = trusted_size(twin_dir)

    def junk(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith(path):
            return httpx.Response(200, content=garbage)
        return response

    proxy.meddle = junk
    with pytest.raises(twin.TwinError, match=message):
        run_sync(http, twin_dir, platform)
    assert trusted_size(twin_dir) == before


def test_error_statuses_are_reported_with_the_primarys_reason(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    history(platform)

    def refuse(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/checkpoint"):
            body = {"error": {"code": "maintenance", "message": "back soon"}}
            return httpx.Response(503, content=json.dumps(body).encode())
        return response

    proxy.meddle = refuse
    with pytest.raises(twin.TwinError, match="503 \\(maintenance: back soon\\)"):
        run_sync(http, twin_dir, platform)


def test_a_sync_cut_off_half_way_leaves_nothing_and_simply_reruns(
    platform: Platform, proxy: Proxy, http: httpx.Client, twin_dir: Path
) -> None:
    platform.bus.handle(
        commands.CreateAccounts([NewAccount(i, Ledger.CREDIT, 2) for i in range(1_000, 2_400)])
    )
    history(platform)
    calls: list[str] = []

    def cut(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/entries"):
            calls.append(str(request.url.params["start"]))
            if request.url.params["start"] == "1000":
                raise httpx.ReadError("connection reset", request=request)
        return response

    proxy.meddle = cut
    with pytest.raises(twin.TwinError, match="cannot reach the primary"):
        run_sync(http, twin_dir, platform)
    assert calls == ["0", "1000"]
    assert trusted_size(twin_dir) is None
    with sqlite3.connect(twin_dir / twin.REPLICA_FILE) as conn:
        assert conn.execute("SELECT count(*) FROM leaves").fetchone() == (0,)

    proxy.meddle = passthrough
    progress: list[tuple[int, int]] = []
    report = twin_sync.sync(
        http,
        twin_dir,
        log_key=platform.log_signer.verifier.vkey,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert report.fetched == report.size == 1_400 + 7
    assert progress == [(0, 1_407), (1_000, 1_407), (1_407, 1_407)]
    result = twin_verify.verify(twin_dir)
    assert result.ok
    assert result.replay.account_entries == 1_406


def test_a_replica_edited_on_disk_fails_verify(
    platform: Platform, http: httpx.Client, twin_dir: Path
) -> None:
    history(platform)
    run_sync(http, twin_dir, platform)
    assert twin_verify.verify(twin_dir).ok
    with sqlite3.connect(twin_dir / twin.REPLICA_FILE) as conn:
        data = conn.execute("SELECT data FROM leaves WHERE idx = 6").fetchone()[0]
        edited = bytearray(data)
        edited[30] ^= 1  # inside the amount of transfer 1
        conn.execute("UPDATE leaves SET data = ? WHERE idx = 6", (bytes(edited),))
    report = twin_verify.verify(twin_dir)
    assert not report.ok
    assert any("the replica was changed" in p for p in report.problems)
    data_json = twin_verify.verify_json(report)
    assert data_json["ok"] is False
    assert any(p.startswith("leaf 6: transfer 1 records") for p in data_json["problems"])


def test_verify_without_a_replica_says_so(tmp_path: Path) -> None:
    with pytest.raises(twin.TwinError, match="twin sync"):
        twin_verify.verify(tmp_path / "nothing")


def test_init_keeps_an_existing_key(tmp_path: Path) -> None:
    first, created = twin_witness.init(tmp_path / "t", "a.example/twin")
    again, created_again = twin_witness.init(tmp_path / "t", "b.example/twin")
    assert (created, created_again) == (True, False)
    assert again.vkey == first.vkey
    assert (tmp_path / "t" / twin_witness.WITNESS_KEY_FILE).stat().st_mode & 0o777 == 0o600
