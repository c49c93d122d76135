"""Request bodies are limited by the bytes that arrive, not by what the headers claim.

`BodyLimit` is a pure ASGI middleware (Starlette's `BaseHTTPMiddleware` would buffer): it counts
the body as the application reads it and refuses it with one JSON 413 the moment it passes the
limit, with or without a `Content-Length` and whatever that header says; the excess is never read
and never accumulated. A `Content-Length` over the limit is refused before anything is read.

A response that starts before the body has been read to its end (a 413, or any early answer such
as a 401) carries `Connection: close` when the rest of the body is unbounded (chunked) or over the
limit: the server then closes the connection instead of reading and discarding an endless body.
(Recent Starlette has a `RequestBodyLimitMiddleware`, but it answers in plain text, keeps the
connection open, and needs versions newer than this project requires.)
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityshare.api.errors import ApiError, error_body


def _length(declared: str) -> int:
    """A Content-Length as a number, or past any limit when it is not ASCII digits
    (`str.isdigit` takes '²', which `int` then refuses)."""
    return int(declared) if declared.isascii() and declared.isdigit() else 1 << 63

class PayloadTooLarge(HTTPException):
    """What `receive` raises once the body passes the limit. An `HTTPException`, so FastAPI's
    body parsing lets it through (it turns other errors into a 400) and no handler logs it as a
    crash; the middleware answers the 413 itself whatever the application makes of it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")


class BodyLimit:
    """Refuse any HTTP request body over `limit` bytes with 413 `payload_too_large`."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self.app, self.limit, scope, receive, send).run()


class _Exchange:
    """One request's count of body bytes and the state of its response."""

    def __init__(self, app: ASGIApp, limit: int, scope: Scope, receive: Receive, send: Send):
        self.app = app
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        headers = Headers(scope=scope)
        self.declared = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        # Whether the server could be left reading an unbounded or oversized rest of the body.
        self.unbounded = chunked or not (
            self.declared is None or (_length(self.declared) <= limit)
        )
        self.received = 0
        self.finished = not chunked and (self.declared is None or self.declared == "0")
        self.exceeded = False
        self.started = False
        self.started_before_exceeding = False

    async def run(self) -> None:
        if self.declared is not None and (
            _length(self.declared) > self.limit
        ):
            await self.refuse()
            return
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if not self.exceeded or self.started_before_exceeding:
                raise
            await self.refuse()
            if not _caused_by_limit(exc):
                raise
            return
        if self.exceeded and not self.started_before_exceeding:
            await self.refuse()

    async def receive(self) -> Message:
        if self.exceeded:
            raise PayloadTooLarge(self.limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                self.started_before_exceeding = self.started
                raise PayloadTooLarge(self.limit)
            if not message.get("more_body", False):
                self.finished = True
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded and not self.started_before_exceeding:
            # The application's own answer to a body it could not read is dropped: the client
            # gets the middleware's one 413 instead.
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.finished and self.unbounded:
                MutableHeaders(scope=message).append("connection", "close")
        await self._send(message)

    async def refuse(self) -> None:
        message = f"request bodies are limited to {self.limit} bytes"
        response = JSONResponse(
            error_body("payload_too_large", message),
            status_code=413,
            headers={"connection": "close"},
        )
        await response(self.scope, self._receive, self._send)


def _caused_by_limit(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PayloadTooLarge):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


async def read_at_most(request: Request, limit: int, what: str) -> bytes:
    """The whole body of `request`, refused with 413 as soon as it passes `limit` bytes (a
    route's own limit, below the application's): the excess is never read."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", f"{what} is at most {limit} bytes")
    return bytes(body)
