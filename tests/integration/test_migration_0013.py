"""Revision 0013 on a database written before it: the ledger clock, which a sweep of lapsed
holds used to move ahead of every record, is set back to the newest record (what `audit verify`
now requires), and the uncovered signing times are dropped while the checkpoints stay."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from cityshare import migrate
from cityshare.kernel.db import make_engine


def test_0013_sets_the_clock_to_the_newest_record_and_drops_the_signing_times(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    try:
        migrate.upgrade(engine, "0012")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts VALUES (10, 1, 1, 0, NULL, 0, 0, 0, 0, 0, 100), "
                    "(11, 1, 1, 0, NULL, 0, 0, 0, 0, 0, 101)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO transfers VALUES (1, 10, 11, 5, 1, 1, 0, 0, 0, 0, 150, -5, 5)"
                )
            )
            conn.execute(text("UPDATE ledger_clock SET last_timestamp = 999"))  # a sweep's
            conn.execute(text("INSERT INTO log_checkpoints VALUES (3, x'00', 'note', 7)"))
            conn.execute(text("INSERT INTO log_cosignatures VALUES (3, 'w', 'line', 7)"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT last_timestamp FROM ledger_clock")).scalar() == 150
            assert conn.execute(text("SELECT size, note FROM log_checkpoints")).all() == [
                (3, "note")
            ]
        columns = inspect(engine).get_columns
        assert "timestamp" not in {c["name"] for c in columns("log_checkpoints")}
        assert "timestamp" not in {c["name"] for c in columns("log_cosignatures")}
    finally:
        engine.dispose()
