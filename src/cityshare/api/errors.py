"""Every error leaves the API as JSON `{"error": {"code", "message"}}`, bad input as a 4xx."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class Refusal(Protocol):
    """What every capability raises when it refuses a request: a stable code and a reason."""

    code: str


def refused(exc: Refusal, statuses: Mapping[str, int] = MappingProxyType({})) -> ApiError:
    """The API error for a capability's refusal: 404 for `not_found`, the router's own status
    for the codes it names (409 for conflicts, ...), else 422."""
    status = 404 if exc.code == "not_found" else statuses.get(exc.code, 422)
    return ApiError(status, exc.code, str(exc))


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "the request body is not valid JSON"), status_code=400
            )
        details = [
            {"loc": [str(part) for part in e.get("loc", ())], "message": e.get("msg", "")}
            for e in errors[:50]
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"]) if first["loc"] else "request"
        return JSONResponse(
            error_body(
                "invalid_request",
                f"{where}: {first['message']}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                details=details,
            ),
            status_code=422,
        )

    app.add_middleware(UnexpectedErrors)


#: A request id a client (or a proxy in front) may choose with `X-Request-ID`; anything else is
#: replaced by one of ours, so the log never carries what a client smuggled into it.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class UnexpectedErrors:
    """Answers an unexpected exception with a 500 `internal_error` and logs it once, with the
    request id that the answer carries (`X-Request-ID` header and message), method and path.

    Why a middleware and not `app.exception_handler(Exception)`: Starlette runs that handler in
    its outermost `ServerErrorMiddleware`, which answers and then re-raises, so uvicorn logged the
    same traceback a second time ("Exception in ASGI application"). Here the exception stops: the
    server only sees a finished 500. An exception after the answer has begun cannot change it;
    it is logged once, and the server closes the incomplete response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = _request_id(scope)
            log.exception(
                "unhandled error request_id=%s method=%s path=%s",
                request_id,
                scope.get("method"),
                scope.get("path"),
            )
            if started:
                return
            response = JSONResponse(
                error_body(
                    "internal_error",
                    f"an unexpected error occurred; it has been logged as request {request_id}",
                ),
                status_code=500,
                headers={"X-Request-ID": request_id},
            )
            await response(scope, receive, send)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex
