"""Smoke test for the throwaway PostgreSQL server used by integration tests."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine, text

from services import (
    PostgresServer,
    postgres_unavailable_reason,
    process_alive,
    require_services,
)


def _skip_or_fail_without_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if require_services():
        pytest.fail(reason)
    pytest.skip(reason)


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.postgres
def test_postgres_server_starts_serves_and_cleans_up() -> None:
    _skip_or_fail_without_postgres()

    with PostgresServer() as server:
        base_dir = server.base_dir
        port = server.port
        pid = server.pid
        assert pid is not None
        assert server.is_running()
        assert server.admin_url == f"postgresql+psycopg://cityshare@127.0.0.1:{port}/postgres"

        url = server.create_database("cityshare_smoke")
        assert url == server.url_for("cityshare_smoke")
        copy_url = server.create_database("cityshare_smoke_copy", template="cityshare_smoke")

        for db_url, dbname in ((url, "cityshare_smoke"), (copy_url, "cityshare_smoke_copy")):
            engine = create_engine(db_url)
            try:
                with engine.connect() as conn:
                    assert conn.execute(text("select 1")).scalar_one() == 1
                    assert conn.execute(text("select current_database()")).scalar_one() == dbname
                    encoding = conn.execute(text("show server_encoding")).scalar_one()
                    assert encoding == "UTF8"
            finally:
                engine.dispose()

    assert not server.is_running()
    assert not process_alive(pid)
    assert not _port_accepts(port)
    assert not base_dir.exists()
