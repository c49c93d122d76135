"""Shared fixtures: every ledger test runs on SQLite and on a real PostgreSQL it starts itself."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cityshare.api.app import create_app
from cityshare.bootstrap import Platform, bootstrap
from cityshare.kernel.clock import ManualClock
from cityshare.settings import Settings
from cityshare.tlog import note
from identity_helpers import ISSUER_KEY
from services import (
    MosquittoServer,
    PostgresServer,
    mosquitto_unavailable_reason,
    needs,
    postgres_unavailable_reason,
)

OPERATOR_TOKEN = "test-operator-token"
LOG_KEY = note.Signer.generate("test.cityshare.local/log")
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    needs("PostgreSQL", postgres_unavailable_reason())
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[MosquittoServer]:
    """A Mosquitto broker for the session; tests keep apart by their own devices and groups."""
    needs("Mosquitto", mosquitto_unavailable_reason())
    with MosquittoServer() as server:
        yield server


@pytest.fixture
def own_mqtt_broker() -> Iterator[MosquittoServer]:
    """A Mosquitto broker of one test's own: to restart it, or so its groups meet no other's."""
    needs("Mosquitto", mosquitto_unavailable_reason())
    with MosquittoServer() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cityshare.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def platform(database_url: str, clock: ManualClock) -> Iterator[Platform]:
    settings = Settings(
        database_url=database_url,
        operator_token=SecretStr(OPERATOR_TOKEN),
        log_key=SecretStr(LOG_KEY.skey),
        issuer_keys=ISSUER_KEY.verifier.vkey,
        max_batch=1000,
    )
    p = bootstrap(settings, clock=clock)
    yield p
    p.close()


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    app = create_app(platform, run_jobs=False)
    with TestClient(app, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as c:
        yield c
