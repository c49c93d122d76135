"""OCPP-J framing shared by the 1.6 and 2.0.1 handlers: every frame gets an answer or is
ignored on purpose, and nothing a charger sends can end the connection or the server.

The `ocpp` package routes a well-formed CALL to its handler, checks the payload against the
version's JSON schema and answers a failure with a CALLERROR; but a frame it cannot unpack
(not JSON, not an OCPP array) it only logs, and the charger waits for an answer that never
comes. Here every such frame is answered with a CALLERROR (message id "-1" when the frame's
own cannot be read, as OCPP 2.0.1 part 4 says), with the error code of the connection's OCPP
version (1.6 spells some of them differently). The CALL being handled is kept, so a reading
can carry the message it came from as evidence.

Before each frame the charger's admission is checked again (`ChargingDoor.admitted`): a
charger revoked, taken from its operator or given a new password since it connected is no
longer authenticated. Its CALL is answered with a CALLERROR `SecurityError` (what OCPP 2.0.1
B02.FR.09 and the OCPP 1.6 errata have a central system answer a station it has not
accepted) and the connection is closed with 1008 (policy violation); the same happens when
the revocation lands while the message is being handled (`ChargerRevokedError`). Nothing it
sends after the revocation is recorded or credited.

Logs name chargers, sessions and transactions, never a vehicle's token or its owner: the
`ocpp` package's own log lines (the frames it sends, a CALL whose handler failed) and the
`websockets` package's (each frame, at DEBUG) pass through `RedactTokens` first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from ocpp.exceptions import OCPPError, PropertyConstraintViolationError, SecurityError
from ocpp.messages import Call, CallError
from websockets.frames import Frame, Opcode

from cityshare.charging.handlers import Charger
from cityshare.charging.model import ChargingError, OcppVersion, Sample
from cityshare.charging.ocpp.door import ChargerRevokedError, ChargingDoor
from cityshare.charging.ocpp.sessions import TOKEN_KEYS, SampleError, evidence, redact

log = logging.getLogger("cityshare.charging.ocpp")
#: What the `ocpp` package itself logs (each frame at INFO, a handler's refusal with its
#: traceback at ERROR): its own logger, so a deployment can quieten it apart from ours.
package_log = logging.getLogger("cityshare.charging.ocpp.package")

#: A token field of an OCPP-J frame as JSON text (the value a JSON string).
_TOKEN_TEXT = re.compile(
    r'("(?:' + "|".join(sorted(TOKEN_KEYS)) + r')"\s*:\s*)"(?:[^"\\]|\\.)*"'
)
#: The close code for a charger no longer admitted (RFC 6455 1008: policy violation).
CLOSE_REVOKED = 1008


def redact_text(text: str) -> str:
    """A frame's JSON text with the tokens it names replaced."""
    return _TOKEN_TEXT.sub(r'\1"[redacted]"', text)


class RedactTokens(logging.Filter):
    """Replaces the tokens in the arguments of a log record (frames as text, `Call`s), and
    the content of WebSocket data frames (logged elided, so a token could be cut in two)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redacted(a) for a in args)
        return True


def _redacted(value: Any) -> Any:
    if isinstance(value, Call):
        payload = json.dumps(redact(value.payload), sort_keys=True, default=str)
        return f"<Call {value.unique_id} {value.action} {payload}>"
    if isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return redact_text(text)
    if isinstance(value, Frame) and value.opcode in _DATA_OPCODES:
        return f"{value.opcode.name} [{len(value.data)} bytes, not logged]"
    return value


_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})
for _logger in (log, package_log):
    _logger.addFilter(RedactTokens())

T = TypeVar("T")

#: Codes the `ocpp` package raises with the 2.0.1 spelling, as OCPP 1.6 names them.
_V16_CODES = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "FormationViolation",
    "MessageTypeNotSupported": "ProtocolError",
}
_MAX_ID = 36  # OCPP-J message ids are at most 36 characters
_REVOKED = "the charge point's credentials are no longer valid: reconnect with current ones"


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
    charger: Charger
    door: ChargingDoor
    _handle_call: Callable[[Call], Awaitable[Any]]
    _send: Callable[[str], Awaitable[None]]
    _connection: Any
    current: Call | None = None
    #: Set when the charger turns out no longer admitted while a CALL is handled.
    revoked: bool = False
    _closing: bool = False

    async def start(self) -> None:
        while True:
            await self.route_message(await self._connection.recv())

    async def route_message(self, raw: str | bytes) -> None:
        try:
            call = read_frame(raw)
        except FrameError as exc:
            if await self._still_admitted(None, exc.unique_id):
                log.info("charger %s sent a bad frame: %s", self.id, exc.description)
                await self._error(exc.unique_id, exc.code, exc.description)
            return
        if not await self._still_admitted(call, call.unique_id if call else None):
            return
        if call is None:
            log.info("charger %s answered a call the central system never made", self.id)
            return
        self.current = call
        try:
            await self._handle_call(call)
        except OCPPError as exc:
            log.info("charger %s: %s refused (%s): %s", self.id, call.action, exc.code,
                     exc.description)
            await self._error(call.unique_id, exc.code, exc.description, exc.details)
        except Exception:
            log.exception("charger %s: handling %s failed", self.id, call.action)
            await self._error(call.unique_id, "InternalError", "the central system failed")
        finally:
            self.current = None
        if self.revoked:
            await self._disconnect()

    async def _still_admitted(self, call: Call | None, unique_id: str | None) -> bool:
        """Whether the charger is still admitted; if not, its CALL (if any) is answered with
        a SecurityError and the connection closed. When the check itself fails (the database
        is unreachable), the message is answered InternalError (if it can be) and skipped,
        and the connection goes on: the charger is not taken for revoked."""
        if not self.revoked:
            try:
                admitted = await asyncio.to_thread(self.door.admitted, self.charger)
            except Exception:
                log.exception("charger %s: checking it is still admitted failed", self.id)
                if unique_id:
                    await self._error(unique_id, "InternalError", "the central system failed")
                return False
            if admitted:
                return True
        if call is not None:
            await self._error(call.unique_id, "SecurityError", _REVOKED)
        await self._disconnect()
        return False

    async def _disconnect(self) -> None:
        self.revoked = True
        if not self._closing:
            self._closing = True
            log.warning(
                "charger %s is no longer admitted (revoked, no longer its operator's, or its "
                "password changed): closing its connection", self.id,
            )
        await self._connection.close(CLOSE_REVOKED, "charger credentials no longer valid")

    async def _error(
        self, unique_id: str, code: str, description: str, details: Any = None
    ) -> None:
        if self.version == OcppVersion.V16:
            code = _V16_CODES.get(code, code)
        safe = details if isinstance(details, dict) and _jsonable(details) else {}
        await self._send(CallError(unique_id, code, description, safe).to_json())

    def evidence(self, samples: Sequence[Sample]) -> dict[int, str]:
        """The CALL being handled, as the evidence of the reading of each sample time (with
        that time's meter values only), made before anything is recorded."""
        call = self.current
        assert call is not None, "evidence outside a CALL"
        try:
            return {
                t: evidence(call.unique_id, call.action, call.payload, at=t)
                for t in {s.ts for s in samples}
            }
        except SampleError as exc:
            raise PropertyConstraintViolationError(str(exc)) from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (the database, scrypt) in a thread: other chargers go on. What
        the charger sent that cannot be recorded is answered with a CALLERROR; a charger no
        longer admitted with SecurityError (and the connection is closed after)."""
        try:
            return await asyncio.to_thread(fn, *args)
        except SampleError as exc:
            raise PropertyConstraintViolationError(str(exc)) from exc
        except ChargerRevokedError as exc:
            self.revoked = True
            raise SecurityError(_REVOKED) from exc
        except ChargingError as exc:
            raise PropertyConstraintViolationError(str(exc)) from exc


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
