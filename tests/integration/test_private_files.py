"""Databases, keys and secrets on disk are owner-only, whatever the umask lets others read."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from cityshare.bootstrap import bootstrap
from cityshare.identity.model import verhoeff_check_digit
from cityshare.issuer import Issuer
from cityshare.issuer.store import DB_FILE, KEY_FILE, SECRET_FILE
from cityshare.kernel.db import make_engine
from cityshare.settings import Settings
from cityshare.twin import replica as twin
from cityshare.twin import witness as twin_witness


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default: new files 0644 and folders 0755 unless the code says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_platform_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "cityshare.db"
    settings = Settings(database_url=f"sqlite:///{db}", operator_token=SecretStr("t"))
    platform = bootstrap(settings)  # migrations write: the WAL and its index exist while open
    try:
        with platform.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            for side in ("", "-wal", "-shm"):
                assert mode(tmp_path / f"cityshare.db{side}") == 0o600, side
    finally:
        platform.close()
    keys = tmp_path / "keys"
    assert mode(keys) == 0o700
    assert {p.name: mode(p) for p in keys.iterdir()} == {
        "log.skey": 0o600,
        "token.skey": 0o600,
        "pseudonym.secret": 0o600,
        "seal.secret": 0o600,
    }


def test_an_existing_database_readable_by_others_is_made_owner_only_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    make_engine(f"sqlite:///{db}").dispose()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cityshare.kernel.files"):
        engine = make_engine(f"sqlite:///{db}")
    engine.dispose()
    assert mode(db) == 0o600
    assert "owner-only" in caplog.text
    assert str(db) in caplog.text


def test_an_in_memory_database_needs_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_the_issuer_keeps_its_key_secret_and_database_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "issuer"
    with Issuer.init(directory, "issuer.test.example") as issuer:
        # A write: the WAL and its index exist while the issuer is open.
        issuer.enroll("23456789012" + verhoeff_check_digit("23456789012"), "cityshare")
        assert mode(directory) == 0o700
        for name in (KEY_FILE, SECRET_FILE, DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm"):
            assert mode(directory / name) == 0o600, name


def test_the_twin_keeps_its_folder_key_and_replica_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "twin"
    twin_witness.init(directory)
    replica = twin.Replica(directory / twin.REPLICA_FILE)
    try:
        assert mode(directory) == 0o700
        for name in (
            twin_witness.WITNESS_KEY_FILE,
            twin.REPLICA_FILE,
            "replica.db-wal",
            "replica.db-shm",
        ):
            assert mode(directory / name) == 0o600, name
    finally:
        replica.close()
