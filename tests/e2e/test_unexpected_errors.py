"""An unexpected error is answered with a 500 `internal_error` and logged exactly once, under a
request id the answer names, so an operator finds the one traceback a client reports."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cityshare.bootstrap import Platform
from processes import Server


def test_a_500_is_logged_once_by_serve_with_the_request_id_it_answers(tmp_path: Path) -> None:
    server = Server(tmp_path, token="e2e-token")
    server.start()
    try:
        with sqlite3.connect(server.db) as db:  # a broken database: the statement cannot run
            db.execute("ALTER TABLE accounts RENAME TO accounts_gone")
        with server.api() as api:
            answer = api.get("/api/v1/accounts/1", headers={"X-Request-ID": "probe-42"})
    finally:
        server.stop()
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert answer.headers["X-Request-ID"] == "probe-42"
    assert "probe-42" in answer.json()["error"]["message"]
    logged = server.log_file.read_text()
    assert logged.count("Traceback") == 1, logged
    assert "Exception in ASGI application" not in logged
    assert "request_id=probe-42 method=GET path=/api/v1/accounts/1" in logged


def test_the_app_answers_its_own_500_and_never_hands_the_exception_to_the_server(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    from cityshare.api.app import create_app

    app = create_app(platform, run_jobs=False)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    # raise_server_exceptions: an exception reaching the server would fail this request.
    with TestClient(app) as client, caplog.at_level(logging.ERROR):
        answer = client.get("/boom", headers={"X-Request-ID": "a\nforged line"})
    assert answer.status_code == 500
    request_id = answer.headers["X-Request-ID"]
    assert request_id != "a\nforged line"  # a client cannot write into the log
    assert [r.getMessage() for r in caplog.records] == [
        f"unhandled error request_id={request_id} method=GET path=/boom"
    ]
    assert request_id in answer.json()["error"]["message"]
