"""The reference identity issuer: its directory, its VIDs, and assertions the platform accepts."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cityshare.identity.assertion import AssertionInvalid, verify_assertion
from cityshare.identity.model import derive_pseudonym, is_valid_vid, verhoeff_check_digit
from cityshare.issuer import Issuer, IssuerError
from cityshare.issuer.store import DB_FILE, DIR_ENV, KEY_FILE, SECRET_FILE
from cityshare.kernel.clock import ManualClock
from cityshare.tlog import note


def national_id(body: str) -> str:
    return body + verhoeff_check_digit(body)


ALICE = national_id("23456789012")
BOB = national_id("98765432109")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def issuer(tmp_path: Path, clock: ManualClock) -> Iterator[Issuer]:
    with Issuer.init(tmp_path / "issuer", "issuer.test.example", clock=clock) as made:
        yield made


def now(clock: ManualClock) -> int:
    return clock.now_ns() // 1_000_000_000


def verify(issuer: Issuer, token: str, clock: ManualClock, audience: str = "cityshare") -> object:
    return verify_assertion(token, [issuer.verifier], audience=audience, now=now(clock))


# -- the issuer directory -----------------------------------------------------------------------


def test_init_creates_an_owner_only_directory_with_key_secret_and_database(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "nested" / "issuer"
    with Issuer.init(directory, "issuer.city.example") as issuer:
        assert issuer.name == "issuer.city.example"
        vkey = issuer.verifier.vkey
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in (KEY_FILE, SECRET_FILE, DB_FILE):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    assert len((directory / SECRET_FILE).read_bytes()) == 32
    assert note.Signer.parse((directory / KEY_FILE).read_text().strip()).verifier.vkey == vkey
    with Issuer.open(directory) as reopened:
        assert reopened.verifier.vkey == vkey
    assert note.Verifier.parse(vkey).name == "issuer.city.example"


def test_init_refuses_to_overwrite_an_existing_issuer(tmp_path: Path) -> None:
    Issuer.init(tmp_path).close()
    key = (tmp_path / KEY_FILE).read_bytes()
    with pytest.raises(IssuerError, match="already holds an issuer"):
        Issuer.init(tmp_path)
    assert (tmp_path / KEY_FILE).read_bytes() == key


def test_init_refuses_even_a_partial_issuer(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_bytes(b"x" * 32)
    with pytest.raises(IssuerError, match="already holds an issuer"):
        Issuer.init(tmp_path)


def test_init_refuses_a_bad_key_name(tmp_path: Path) -> None:
    with pytest.raises(IssuerError, match="issuer name"):
        Issuer.init(tmp_path, "has space")
    assert list(tmp_path.iterdir()) == []


def test_open_explains_a_missing_or_broken_issuer(tmp_path: Path) -> None:
    with pytest.raises(IssuerError, match=r"no issuer in .*cityshare issuer init"):
        Issuer.open(tmp_path / "nowhere")
    Issuer.init(tmp_path).close()
    (tmp_path / SECRET_FILE).write_bytes(b"short")
    with pytest.raises(IssuerError, match="not 32 bytes"):
        Issuer.open(tmp_path)


def test_the_directory_defaults_to_the_environment_then_to_dot_issuer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "from-env"))
    Issuer.init().close()
    assert (tmp_path / "from-env" / KEY_FILE).exists()
    monkeypatch.delenv(DIR_ENV)
    Issuer.init().close()
    assert (tmp_path / "issuer" / KEY_FILE).exists()


# -- enrolment ----------------------------------------------------------------------------------


def test_an_enrolment_assertion_verifies_against_the_issuers_key(
    issuer: Issuer, clock: ManualClock
) -> None:
    enrolment = issuer.enroll(ALICE, "cityshare", {"ward": "12", "age_band": "30-39"})
    got = verify_assertion(
        enrolment.assertion, [issuer.verifier], audience="cityshare", now=now(clock)
    )
    assert got.issuer == "issuer.test.example"
    assert (got.pseudonym, got.vid) == (enrolment.pseudonym, enrolment.vid)
    assert got.attrs == {"ward": "12", "age_band": "30-39"}
    assert got.expires_at == enrolment.expires_at == now(clock) + 600
    assert is_valid_vid(enrolment.vid)
    secret = (issuer.directory / SECRET_FILE).read_bytes()
    assert enrolment.pseudonym == derive_pseudonym(secret, "cityshare", ALICE)


def test_the_platform_trusts_the_issuer_through_its_published_vkey(
    issuer: Issuer, clock: ManualClock
) -> None:
    trusted = [note.Verifier.parse(issuer.verifier.vkey)]
    token = issuer.enroll(ALICE, "cityshare").assertion
    assert verify_assertion(token, trusted, audience="cityshare", now=now(clock)).attrs == {}


def test_the_same_person_keeps_one_vid_and_one_pseudonym_per_sector(issuer: Issuer) -> None:
    first = issuer.enroll(ALICE, "cityshare")
    again = issuer.enroll(f"{ALICE[:4]} {ALICE[4:8]} {ALICE[8:]}", "cityshare")
    health = issuer.enroll(ALICE, "health")
    bob = issuer.enroll(BOB, "cityshare")
    assert again.vid == first.vid == health.vid
    assert again.pseudonym == first.pseudonym
    assert health.pseudonym != first.pseudonym  # two sectors cannot link her
    assert bob.vid != first.vid
    assert bob.pseudonym != first.pseudonym
    assert again.assertion != first.assertion  # a fresh jti every time


def test_enrolment_refuses_bad_input_without_repeating_the_national_id(issuer: Issuer) -> None:
    wrong = ALICE[:-1] + str((int(ALICE[-1]) + 1) % 10)
    for bad in (wrong, ALICE[:-1], "1" + ALICE[1:], f"{ALICE[:4]}-{ALICE[4:]}"):
        with pytest.raises(IssuerError, match="national id is not valid") as raised:
            issuer.enroll(bad, "cityshare")
        assert ALICE[:8] not in str(raised.value)
    with pytest.raises(IssuerError, match="sector"):
        issuer.enroll(ALICE, "City Share")
    with pytest.raises(IssuerError, match="'email' is not allowed"):
        issuer.enroll(ALICE, "cityshare", {"email": "a@b.example"})
    with pytest.raises(IssuerError, match="age band"):
        issuer.enroll(ALICE, "cityshare", {"age_band": "35"})
    with pytest.raises(IssuerError, match="1 to 3600 seconds"):
        issuer.enroll(ALICE, "cityshare", ttl=7200)


# -- what the platform refuses ------------------------------------------------------------------


def _flip(segment: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_tampered_payload_or_signature_is_refused(issuer: Issuer, clock: ManualClock) -> None:
    head, body, sig = issuer.enroll(ALICE, "cityshare").assertion.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["attrs"] = {"ward": "99"}
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for token in (f"{head}.{forged_body}.{sig}", f"{head}.{body}.{_flip(sig)}"):
        with pytest.raises(AssertionInvalid, match="signature does not verify"):
            verify(issuer, token, clock)


def test_an_assertion_from_another_issuer_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    with (
        Issuer.init(tmp_path / "ours", "issuer.test.example", clock=clock) as ours,
        Issuer.init(tmp_path / "rogue", "issuer.test.example", clock=clock) as rogue,
    ):
        token = rogue.enroll(ALICE, "cityshare").assertion
        with pytest.raises(AssertionInvalid, match="unknown issuer key"):
            verify(ours, token, clock)


def test_an_expired_assertion_is_refused(issuer: Issuer, clock: ManualClock) -> None:
    token = issuer.enroll(ALICE, "cityshare", ttl=60).assertion
    clock.advance(60 + 29)
    verify(issuer, token, clock)  # within the 30 s leeway
    clock.advance(1)
    with pytest.raises(AssertionInvalid, match="expired"):
        verify(issuer, token, clock)


def test_an_assertion_for_another_sector_is_refused(issuer: Issuer, clock: ManualClock) -> None:
    token = issuer.enroll(ALICE, "health").assertion
    with pytest.raises(AssertionInvalid, match="not meant for 'cityshare'"):
        verify(issuer, token, clock)


# -- VIDs ---------------------------------------------------------------------------------------


def test_regenerate_replaces_the_vid_and_keeps_the_pseudonym(
    issuer: Issuer, clock: ManualClock
) -> None:
    before = issuer.enroll(ALICE, "cityshare")
    clock.advance(5)
    new = issuer.regenerate_vid(ALICE)
    after = issuer.enroll(ALICE, "cityshare")
    assert new != before.vid
    assert after.vid == new
    assert after.pseudonym == before.pseudonym
    old = issuer.vid_status(before.vid)
    assert old is not None
    assert (old.state, old.revoked_at) == ("revoked", now(clock))
    current = issuer.vid_status(new)
    assert current is not None
    assert (current.state, current.created_at, current.revoked_at) == ("active", now(clock), None)


def test_after_a_revoke_the_next_enrolment_gets_a_fresh_vid(issuer: Issuer) -> None:
    before = issuer.enroll(ALICE, "cityshare")
    assert issuer.revoke_vid(ALICE) == before.vid
    status = issuer.vid_status(before.vid)
    assert status is not None
    assert status.state == "revoked"
    with pytest.raises(IssuerError, match="no active VID"):
        issuer.revoke_vid(ALICE)
    after = issuer.enroll(ALICE, "cityshare")
    assert after.vid != before.vid
    assert after.pseudonym == before.pseudonym
    assert issuer.enroll(ALICE, "cityshare").vid == after.vid


def test_vid_changes_need_an_enrolled_person(issuer: Issuer) -> None:
    with pytest.raises(IssuerError, match="never been enrolled"):
        issuer.revoke_vid(ALICE)
    with pytest.raises(IssuerError, match="never been enrolled"):
        issuer.regenerate_vid(ALICE)


def test_vid_status_of_unknown_and_malformed_vids(issuer: Issuer) -> None:
    vid = issuer.enroll(ALICE, "cityshare").vid
    unknown = str(int(vid[:15]) % 900_000_000_000_000 + 100_000_000_000_000)
    assert issuer.vid_status(unknown + verhoeff_check_digit(unknown)) is None
    with pytest.raises(IssuerError, match="16 digits"):
        issuer.vid_status("1234")


def test_the_database_itself_allows_one_active_vid_per_person(issuer: Issuer) -> None:
    issuer.enroll(ALICE, "cityshare")
    conn = sqlite3.connect(issuer.directory / DB_FILE)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO vids (vid, person_id, state, created_at) "
                "SELECT '5000000000000000', person_id, 'active', 0 FROM vids"
            )
    finally:
        conn.close()


def test_concurrent_first_enrolments_of_one_person_agree_on_one_vid(tmp_path: Path) -> None:
    Issuer.init(tmp_path).close()

    def enroll(_: int) -> str:
        with Issuer.open(tmp_path) as issuer:
            return issuer.enroll(ALICE, "cityshare").vid

    with ThreadPoolExecutor(8) as pool:
        vids = set(pool.map(enroll, range(16)))
    assert len(vids) == 1


# -- what the issuer keeps ----------------------------------------------------------------------


def _every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_the_issuer_keeps_no_raw_national_id_in_any_file(issuer: Issuer) -> None:
    vids = []
    for person in (ALICE, BOB):
        vids.append(issuer.enroll(person, "cityshare", {"ward": "12"}).vid)
        vids.append(issuer.regenerate_vid(person))
    issuer.revoke_vid(BOB)
    forms = [
        person.encode(encoding)
        for person in (ALICE, BOB)
        for encoding in ("ascii", "utf-16-le", "utf-16-be")
    ]
    forms += [int(person).to_bytes(8, "big") for person in (ALICE, BOB)]  # an INTEGER column
    forms += [int(person).to_bytes(8, "little") for person in (ALICE, BOB)]

    directory = issuer.directory
    assert (directory / f"{DB_FILE}-wal").exists()  # the recent writes are still in the WAL
    while_open = _every_byte(directory)
    conn = sqlite3.connect(directory / DB_FILE)
    try:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        conn.close()
    after_checkpoint = _every_byte(directory)
    issuer.close()
    after_close = _every_byte(directory)

    assert all(vid.encode() in after_close for vid in vids)  # the scan sees the stored rows
    for data in (while_open, after_checkpoint, after_close):
        for form in forms:
            assert form not in data
