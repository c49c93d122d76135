"""The body limit counts the bytes that arrive, answers one JSON 413 and never reads past it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from cityshare.api.body_limit import BodyLimit, PayloadTooLarge

LIMIT = 100


def http_scope(**headers: str) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


class Client:
    """Feeds a body in chunks of 30 bytes (endless unless `total` is given) and records what
    comes back."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        size = 30 if self.total is None else min(30, self.total - self.pulled)
        self.pulled += size
        more = self.total is None or self.pulled < self.total
        return {"type": "http.request", "body": b"x" * size, "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def starts(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.start"]

    @property
    def status(self) -> int:
        [start] = self.starts
        status: int = start["status"]
        return status

    def header(self, name: str) -> str | None:
        [start] = self.starts
        values = [v.decode() for k, v in start["headers"] if k.decode().lower() == name]
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def run(app: Any, scope: Scope, client: Client) -> None:
    asyncio.run(BodyLimit(app, limit=LIMIT)(scope, client.receive, client.send))


async def answer(send: Send, status: int, body: bytes = b"{}") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def read_all(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def reads_then_answers(scope: Scope, receive: Receive, send: Send) -> None:
    await read_all(receive)
    await answer(send, 200)


def test_an_endless_chunked_body_is_refused_at_the_limit_with_one_json_413() -> None:
    client = Client()
    run(reads_then_answers, http_scope(transfer_encoding="chunked"), client)
    assert client.status == 413
    assert client.json()["error"]["code"] == "payload_too_large"
    assert client.header("connection") == "close"
    # Nothing was read past the chunk that crossed the limit.
    assert client.pulled <= LIMIT + 30


def test_a_content_length_smaller_than_the_body_does_not_raise_the_limit() -> None:
    client = Client()
    run(reads_then_answers, http_scope(content_length="10"), client)
    assert client.status == 413


def test_a_content_length_over_the_limit_is_refused_before_the_application_runs() -> None:
    called = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    client = Client()
    run(app, http_scope(content_length=str(LIMIT + 1)), client)
    assert client.status == 413
    assert (called, client.pulled) == ([], 0)


def test_a_body_within_the_limit_reaches_the_application_whole() -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await read_all(receive))
        await answer(send, 200)

    client = Client(total=LIMIT)
    run(app, http_scope(transfer_encoding="chunked"), client)
    assert client.status == 200
    assert seen == [b"x" * LIMIT]
    assert client.header("connection") is None


def test_the_application_answering_its_own_error_still_gives_the_client_one_413() -> None:
    # As FastAPI does with errors while parsing a body: catch and answer 400.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await read_all(receive)
        except Exception:
            await answer(send, 400)
            return
        await answer(send, 200)

    client = Client()
    run(app, http_scope(transfer_encoding="chunked"), client)
    assert client.status == 413


def test_reading_again_after_the_limit_is_refused_again_and_reads_nothing() -> None:
    attempts: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(2):
            try:
                await read_all(receive)
            except PayloadTooLarge:
                attempts.append("refused")
        raise RuntimeError("the application gives up") from PayloadTooLarge(LIMIT)

    client = Client()
    run(app, http_scope(transfer_encoding="chunked"), client)
    assert attempts == ["refused", "refused"]
    assert client.status == 413
    assert client.pulled <= LIMIT + 30


def test_a_response_already_started_is_not_interrupted_by_a_second_one() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await read_all(receive)
        except PayloadTooLarge:
            await send({"type": "http.response.body", "body": b"partial"})

    client = Client()
    run(app, http_scope(transfer_encoding="chunked"), client)
    assert client.status == 200
    assert client.sent[1:] == [{"type": "http.response.body", "body": b"partial"}]
    # The server closes the connection rather than read the rest of the body.
    assert client.header("connection") == "close"


def test_an_early_answer_to_an_unread_chunked_body_closes_the_connection() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(send, 401)

    chunked = Client()
    run(app, http_scope(transfer_encoding="chunked"), chunked)
    assert (chunked.status, chunked.header("connection")) == (401, "close")
    # A bounded body within the limit keeps the connection: the server reads the rest.
    bounded = Client(total=50)
    run(app, http_scope(content_length="50"), bounded)
    assert (bounded.status, bounded.header("connection")) == (401, None)


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    client = Client()
    scope: Scope = {"type": "websocket", "headers": []}
    run(app, scope, client)
    assert seen == [(scope, client.receive, client.send)]
