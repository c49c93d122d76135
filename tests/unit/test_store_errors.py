"""The unit of work states the store's failures as the service's (`kernel/errors.py`), so that
doors tell "try again later" from a bug without importing SQLAlchemy: a store that cannot serve
is `StoreUnavailable`, a transaction PostgreSQL wants retried is `ConflictError`, and an
integrity error passes as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from cityshare.energy.mqtt_batching import transient
from cityshare.kernel.db import make_engine, ping
from cityshare.kernel.errors import ConflictError, StoreUnavailable
from cityshare.kernel.uow import SqlUnitOfWork


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path}/store.db")


class _SerialisationError(Exception):
    sqlstate = "40001"


def test_a_store_that_fails_inside_the_block_is_unavailable(engine: Engine) -> None:
    lost = OperationalError("SELECT 1", {}, Exception("connection reset"))
    with (
        pytest.raises(StoreUnavailable, match="connection reset") as raised,
        SqlUnitOfWork(engine, {}),
    ):
        raise lost
    assert raised.value.__cause__ is lost


def test_an_interface_error_is_unavailable_too(engine: Engine) -> None:
    with pytest.raises(StoreUnavailable), SqlUnitOfWork(engine, {}):
        raise InterfaceError("SELECT 1", {}, Exception("connection already closed"))


def test_a_retryable_sqlstate_stays_a_conflict(engine: Engine) -> None:
    with pytest.raises(ConflictError), SqlUnitOfWork(engine, {}):
        raise OperationalError("COMMIT", {}, _SerialisationError("could not serialize access"))


def test_an_integrity_error_passes_as_it_is(engine: Engine) -> None:
    taken = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    with pytest.raises(IntegrityError) as raised, SqlUnitOfWork(engine, {}):
        raise taken
    assert raised.value is taken


def test_a_store_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    nowhere = make_engine(f"sqlite:///{tmp_path}/store.db")
    (tmp_path / "store.db").unlink()
    (tmp_path / "store.db").mkdir()  # a folder where the database file should be
    with pytest.raises(StoreUnavailable), SqlUnitOfWork(nowhere, {}):
        pass
    with pytest.raises(StoreUnavailable):
        ping(nowhere)


def test_ping_answers_for_a_store_that_serves(engine: Engine) -> None:
    ping(engine)


def test_the_mqtt_door_retries_a_store_that_is_unavailable() -> None:
    assert transient(StoreUnavailable("database is locked"))
    assert transient(ConflictError("could not serialize access"))
    assert not transient(ValueError("a bug"))
