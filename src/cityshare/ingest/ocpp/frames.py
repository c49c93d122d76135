"""OCPP-J framing shared by the 1.6 and 2.0.1 handlers: every frame gets an answer or is
ignored on purpose, and nothing a charger sends can end the connection or the server.

The `ocpp` package routes a well-formed CALL to its handler, checks the payload against the
version's JSON schema and answers a failure with a CALLERROR; but a frame it cannot unpack
(not JSON, not an OCPP array) it only logs, and the charger waits for an answer that never
comes. Here every such frame is answered with a CALLERROR (message id "-1" when the frame's
own cannot be read, as OCPP 2.0.1 part 4 says), with the error code of the connection's OCPP
version (1.6 spells some of them differently). The CALL being handled is kept, so a reading
can carry the message it came from as evidence.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from ocpp.exceptions import OCPPError, PropertyConstraintViolationError
from ocpp.messages import Call, CallError

from cityshare.domain.charging import OcppVersion
from cityshare.ingest.ocpp.sessions import SampleError, evidence

log = logging.getLogger("cityshare.ingest.ocpp")
#: What the `ocpp` package itself logs (each frame at INFO, a handler's refusal with its
#: traceback at ERROR): its own logger, so a deployment can quieten it apart from ours.
package_log = logging.getLogger("cityshare.ingest.ocpp.package")

T = TypeVar("T")

#: Codes the `ocpp` package raises with the 2.0.1 spelling, as OCPP 1.6 names them.
_V16_CODES = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "FormationViolation",
    "MessageTypeNotSupported": "ProtocolError",
}
_MAX_ID = 36  # OCPP-J message ids are at most 36 characters


class FrameError(Exception):
    """A frame that is not an OCPP-J CALL: answered with this code (2.0.1 spelling)."""

    def __init__(self, code: str, description: str, unique_id: str = "-1") -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.unique_id = unique_id


def read_frame(raw: str | bytes) -> Call | None:
    """The CALL in a frame; None for a CALLRESULT or CALLERROR (the central system sends no
    CALLs, so any answer is stale and ignored). Raises FrameError for anything else."""
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError("RpcFrameworkError", "the frame is not JSON") from exc
    if not isinstance(frame, list) or not frame:
        raise FrameError("RpcFrameworkError", "an OCPP-J frame is a JSON array")
    unique_id = frame[1] if len(frame) > 1 else None
    if not isinstance(unique_id, str) or not 0 < len(unique_id) <= _MAX_ID:
        raise FrameError("RpcFrameworkError", "the message id is not a string of 1-36 characters")
    kind = frame[0]
    if kind in (3, 4) and not isinstance(kind, bool):
        return None
    if kind != 2 or isinstance(kind, bool):
        raise FrameError("MessageTypeNotSupported", f"message type {kind!r} is not 2, 3 or 4",
                         unique_id)
    if len(frame) != 4 or not isinstance(frame[2], str):
        raise FrameError("RpcFrameworkError", "a CALL is [2, id, action, payload]", unique_id)
    if not isinstance(frame[3], dict):
        raise FrameError("FormatViolation", "a CALL's payload is a JSON object", unique_id)
    return Call(unique_id, frame[2], frame[3])


class OcppFrames:
    """Mixin for the `ocpp` package's ChargePoint: frame checking, error codes by version,
    the CALL being handled, and blocking work (the database) off the event loop."""

    version: ClassVar[OcppVersion]
    id: str
    _handle_call: Callable[[Call], Awaitable[Any]]
    _send: Callable[[str], Awaitable[None]]
    _connection: Any
    current: Call | None = None

    async def start(self) -> None:
        while True:
            await self.route_message(await self._connection.recv())

    async def route_message(self, raw: str | bytes) -> None:
        try:
            call = read_frame(raw)
        except FrameError as exc:
            log.info("charger %s sent a bad frame: %s", self.id, exc.description)
            await self._error(exc.unique_id, exc.code, exc.description)
            return
        if call is None:
            log.info("charger %s answered a call the central system never made", self.id)
            return
        self.current = call
        try:
            await self._handle_call(call)
        except OCPPError as exc:
            log.info("charger %s: %s refused: %s", self.id, call.action, exc)
            await self._error(call.unique_id, exc.code, exc.description, exc.details)
        except Exception:
            log.exception("charger %s: handling %s failed", self.id, call.action)
            await self._error(call.unique_id, "InternalError", "the central system failed")
        finally:
            self.current = None

    async def _error(
        self, unique_id: str, code: str, description: str, details: Any = None
    ) -> None:
        if self.version == OcppVersion.V16:
            code = _V16_CODES.get(code, code)
        safe = details if isinstance(details, dict) and _jsonable(details) else {}
        await self._send(CallError(unique_id, code, description, safe).to_json())

    def evidence(self) -> str:
        """The CALL being handled, as a reading's evidence."""
        assert self.current is not None, "evidence outside a CALL"
        try:
            return evidence(self.current.unique_id, self.current.action, self.current.payload)
        except SampleError as exc:
            raise PropertyConstraintViolationError(str(exc)) from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (the database, scrypt) in a thread: other chargers go on."""
        try:
            return await asyncio.to_thread(fn, *args)
        except SampleError as exc:
            raise PropertyConstraintViolationError(str(exc)) from exc


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
