"""Revision 0015 on a database written before it: the rows of the tables it seals are sealed
as they stand, with the platform's seal key; without the key a database with such rows is not
upgraded (rather than left with unsealed rows), and an empty one needs none."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

import cityshare.capabilities  # noqa: F401  (declares every capability's tables)
from cityshare import migrate
from cityshare.kernel import seals
from cityshare.kernel.db import make_engine
from cityshare.kernel.seal import Sealer

OLD_ROWS = {
    "charger_secrets": "INSERT INTO charger_secrets VALUES (1, 'dev-1', 'scrypt$x', 5)",
    "idempotency_keys": "INSERT INTO idempotency_keys VALUES ('resident:r-1', 'k-1', "
    "'ab12', 201, '{\"id\": 1}', 7)",
}


@pytest.fixture
def old(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(engine, "0014")
    with engine.begin() as conn:
        for insert in OLD_ROWS.values():
            conn.execute(text(insert))
    yield engine
    engine.dispose()


def test_0015_seals_the_rows_there_are_with_the_platforms_key(old: Engine) -> None:
    sealer = Sealer(os.urandom(32))
    migrate.upgrade(old, sealer=sealer)
    with old.connect() as conn:
        for table in seals.sealed_tables():
            rows = conn.execute(table.select()).mappings().all()
            assert len(rows) == 1
            assert all(seals.intact(sealer, table, row, "old") for row in rows)
        for table in seals.sealed_tables():
            [seal] = [c for c in inspect(conn).get_columns(table.name) if c["name"] == "seal"]
            assert not seal["nullable"]


def test_0015_stops_without_the_key_when_there_are_rows_to_seal(old: Engine) -> None:
    with pytest.raises(RuntimeError, match="seals the 1 existing rows of charger_secrets"):
        migrate.upgrade(old)
    assert migrate.current_revision(old) == "0014"


def test_0015_needs_no_key_on_an_empty_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/new.db")
    try:
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_the_sealed_tables_are_those_with_a_seal_column() -> None:
    """Found from the schema, so a capability seals a table by declaring the column: today the
    charger passwords and the stored answers to keyed writes, exactly as revision 0015 seals."""
    assert {t.name for t in seals.sealed_tables()} == {"charger_secrets", "idempotency_keys"}
