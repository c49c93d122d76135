"""Request bodies over the limit are refused with 413 as they stream, chunked or not, on every
route, and the server stops reading them."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cityshare.api.app import create_app
from cityshare.bootstrap import Platform
from processes import Server

CHUNK = 64 * 1024


def body_limit(platform: Platform) -> int:
    return platform.settings.max_batch * 1024 + 4096


@pytest.mark.parametrize(
    "path", ["/api/v1/readings", "/api/v1/transfers", "/api/v1/log/cosignatures"]
)
def test_a_chunked_flood_is_refused_before_it_is_read(platform: Platform, path: str) -> None:
    pulled = 0
    offered = 4 * body_limit(platform) // CHUNK

    async def flood() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < offered:
            pulled += 1
            yield b" " * CHUNK

    async def post() -> httpx.Response:
        app = create_app(platform, run_jobs=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                path, content=flood(), headers={"Content-Type": "application/json"}
            )

    # No token: the limit holds before anyone is authenticated.
    response = asyncio.run(post())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    # Reading stopped at the chunk that crossed the limit (the route's own, or the server's).
    assert pulled <= body_limit(platform) // CHUNK + 2


def test_a_chunked_body_over_the_limit_is_refused_by_the_test_client(
    client: TestClient, platform: Platform
) -> None:
    def chunks() -> object:
        for _ in range(body_limit(platform) // CHUNK + 2):
            yield b" " * CHUNK

    response = client.post(
        "/api/v1/readings", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_chunked_body_within_the_limit_is_served(client: TestClient) -> None:
    def chunks() -> object:
        yield b"["
        yield b'"not a reading"'
        yield b"]"

    response = client.post(
        "/api/v1/readings", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 0
    assert len(response.json()["results"]) == 1


def test_serve_refuses_a_chunked_flood_and_stays_healthy(tmp_path: Path) -> None:
    # max_batch 10 makes the limit 14 KiB; the client offers 64 MiB, far beyond any socket buffer.
    server = Server(tmp_path, token="e2e-token", env={"CITYSHARE_MAX_BATCH": "10"})
    server.start()
    try:
        offered = 1024 * CHUNK
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                b"POST /api/v1/readings HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            frame = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
            try:
                while sent < offered and not select.select([sock], [], [], 0)[0]:
                    sock.sendall(frame)
                    sent += CHUNK
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server closed the connection: it will not read the rest
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"connection: close" in head.lower()
        assert b'"payload_too_large"' in body
        assert sent < offered
        with server.api() as api:
            assert api.get("/healthz").json()["status"] == "ok"
            assert api.get("/api/v1/ledger/check").json()["ok"] is True
    finally:
        server.stop()
