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
from starlette.routing import BaseRoute, Match
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


#: Validation errors raised with a code of their own (`PydanticCustomError`), answered as that
#: code rather than `invalid_request`: `reserved_id`, an id only the platform may choose.
_OWN_CODES = frozenset({"reserved_id"})

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


#: The methods an `Allow` header may name.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers to, for the `Allow` header of a 405 (RFC 9110
    15.5.6). Each FastAPI route serves one method, so the router's own 405 names only the first
    route whose path matched; the header must list them all. Each method is asked of the
    routes as the router would (`matches`), so included routers are searched too."""
    routes: list[BaseRoute] = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "the request body is not valid JSON"), status_code=400
            )
        # A refusal with a code of its own (an id the platform keeps) names it, and leads.
        errors = sorted(errors, key=lambda e: e.get("type") not in _OWN_CODES)
        details = [
            {"loc": [str(part) for part in e.get("loc", ())], "message": e.get("msg", "")}
            for e in errors[:50]
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"]) if first["loc"] else "request"
        code = errors[0].get("type") if errors else None
        return JSONResponse(
            error_body(
                code if code in _OWN_CODES else "invalid_request",
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
