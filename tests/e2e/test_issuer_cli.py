"""`cityshare issuer` as a resident's helper or an operator runs it: the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cityshare.identity.assertion import verify_assertion
from cityshare.identity.model import is_valid_vid, verhoeff_check_digit
from cityshare.tlog import note

CITYSHARE = Path(sys.executable).parent / "cityshare"
ALICE = "23456789012" + verhoeff_check_digit("23456789012")


def issuer(
    *args: str, cwd: Path, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CITYSHARE_ISSUER_DIR"}
    result = subprocess.run(
        [str(CITYSHARE), "issuer", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def vkey(tmp_path: Path) -> str:
    """An issuer in ./issuer (the default directory) and its vkey, as `issuer key` prints it."""
    issuer("init", "--name", "issuer.e2e.example", cwd=tmp_path)
    key = issuer("key", cwd=tmp_path).stdout
    assert key.count("\n") == 1
    return key.strip()


def test_init_prints_the_key_to_trust_and_how(tmp_path: Path) -> None:
    out = issuer("init", "--dir", "auth", "--name", "issuer.e2e.example", cwd=tmp_path).stdout
    vkey = issuer("key", "--dir", "auth", cwd=tmp_path).stdout.strip()
    assert note.Verifier.parse(vkey).name == "issuer.e2e.example"
    assert f"CITYSHARE_ISSUER_KEYS={vkey}\n" in out
    assert (tmp_path / "auth" / "issuer.skey").exists()
    again = issuer("init", "--dir", "auth", cwd=tmp_path, check=False)
    assert again.returncode == 2
    assert "already holds an issuer" in again.stderr
    assert "Traceback" not in again.stderr


def test_the_directory_comes_from_the_environment(tmp_path: Path) -> None:
    env_dir = tmp_path / "vault"
    result = subprocess.run(
        [str(CITYSHARE), "issuer", "init"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "CITYSHARE_ISSUER_DIR": str(env_dir)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (env_dir / "issuer.skey").exists()
    assert not (tmp_path / "issuer").exists()


def test_enroll_prints_an_assertion_the_platform_verifies(tmp_path: Path, vkey: str) -> None:
    token = issuer(
        "enroll",
        "--national-id",
        ALICE,
        "--sector",
        "cityshare",
        "--attr",
        "ward=12",
        "--attr",
        "age_band=30-39",
        cwd=tmp_path,
    ).stdout
    assert token.count("\n") == 1  # the assertion alone: `$(cityshare issuer enroll ...)` works
    got = verify_assertion(
        token.strip(), [note.Verifier.parse(vkey)], audience="cityshare", now=int(time.time())
    )
    assert got.attrs == {"ward": "12", "age_band": "30-39"}
    assert got.issuer == "issuer.e2e.example"


def test_enroll_json_and_the_vid_lifecycle(tmp_path: Path, vkey: str) -> None:
    enrol = ("enroll", "--national-id", ALICE, "--sector", "cityshare", "--json")
    first = json.loads(issuer(*enrol, "--ttl", "120", cwd=tmp_path).stdout)
    assert set(first) == {"assertion", "vid", "pseudonym", "expires_at"}
    assert is_valid_vid(first["vid"])
    got = verify_assertion(
        first["assertion"], [note.Verifier.parse(vkey)], audience="cityshare", now=int(time.time())
    )
    assert (got.vid, got.pseudonym, got.expires_at) == (
        first["vid"],
        first["pseudonym"],
        first["expires_at"],
    )
    assert got.expires_at - got.issued_at == 120

    status = json.loads(issuer("vid", "status", first["vid"], "--json", cwd=tmp_path).stdout)
    assert status["state"] == "active"
    assert status["revoked_at"] is None
    assert "active" in issuer("vid", "status", first["vid"], cwd=tmp_path).stdout

    new_vid = issuer("vid", "regenerate", "--national-id", ALICE, cwd=tmp_path).stdout.strip()
    assert is_valid_vid(new_vid)
    assert new_vid != first["vid"]
    assert "revoked" in issuer("vid", "status", first["vid"], cwd=tmp_path).stdout
    second = json.loads(issuer(*enrol, cwd=tmp_path).stdout)
    assert (second["vid"], second["pseudonym"]) == (new_vid, first["pseudonym"])

    # The national id may come on stdin, out of the process list and shell history.
    revoked = issuer("vid", "revoke", "--national-id", "-", stdin=ALICE + "\n", cwd=tmp_path)
    assert new_vid in revoked.stdout
    status = json.loads(issuer("vid", "status", new_vid, "--json", cwd=tmp_path).stdout)
    assert status["state"] == "revoked"
    third = json.loads(issuer(*enrol, cwd=tmp_path).stdout)
    assert third["vid"] not in (first["vid"], new_vid)
    assert third["pseudonym"] == first["pseudonym"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enroll", "--sector", "cityshare", "--national-id", ALICE[:-1] + "x"), "national id"),
        (("enroll", "--sector", "cityshare", "--national-id", "1" + ALICE[1:]), "national id"),
        (("enroll", "--sector", "Bad Sector", "--national-id", ALICE), "sector"),
        (("enroll", "--sector", "cityshare", "--national-id", ALICE, "--attr", "email=a"), "email"),
        (("enroll", "--sector", "cityshare", "--national-id", ALICE, "--attr", "ward"), "NAME="),
        (("vid", "revoke", "--national-id", ALICE), "never been enrolled"),
        (("vid", "regenerate", "--national-id", ALICE[:-1] + "0"), "national id"),
        (("vid", "status", "12345"), "16 digits"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_never_echoes_the_national_id(
    tmp_path: Path, vkey: str, args: tuple[str, ...], message: str
) -> None:
    result = issuer(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert ALICE[:11] not in result.stderr


def test_an_unknown_vid_exits_1(tmp_path: Path, vkey: str) -> None:
    body = "512345678901234"
    result = issuer("vid", "status", body + verhoeff_check_digit(body), cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "unknown VID" in result.stderr


def test_commands_without_an_issuer_say_how_to_make_one(tmp_path: Path) -> None:
    result = issuer("key", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "cityshare issuer init" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_explains_itself(tmp_path: Path) -> None:
    top = issuer("--help", cwd=tmp_path).stdout
    assert "national identity authority" in top
    assert "never sees a national id" in top
    for command in (("init",), ("key",), ("enroll",), ("vid", "revoke"), ("vid", "status")):
        assert "Usage" in issuer(*command, "--help", cwd=tmp_path).stdout
    assert "stdin" in issuer("vid", "regenerate", "--help", cwd=tmp_path).stdout
    assert (
        "issuer"
        in subprocess.run(
            [str(CITYSHARE), "--help"], capture_output=True, text=True, check=True, timeout=120
        ).stdout
    )
