"""The OCPP central system: a WebSocket server at `ws://HOST:PORT/ocpp/<charge_point_id>`.

The handshake is where a charger is let in or not: the path must be /ocpp/<a device id> (else
404), name a live charger of an operator, and HTTP Basic auth must carry its id and the
password its operator set (OCPP security profile 1; else 401 either way, so nobody learns which
charger ids exist), and it must offer `ocpp2.0.1` or `ocpp1.6` (else 400;
2.0.1 is chosen when both are). Every refusal is logged. A charger that connects again
replaces its older connection. A connected charger is checked again at each message (see
frames.py) and every `CITYSHARE_OCPP_RECHECK_SECONDS`, so one revoked (or given another
password) while it sends nothing is disconnected too (close code 1008). Each connection is
served by the handler class of its OCPP version; what they do with the database runs in
threads, so one slow charger holds up none.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from cityshare.bootstrap import Platform
from cityshare.charging.handlers import Charger
from cityshare.charging.ocpp.door import ChargingDoor, HandshakeError
from cityshare.charging.ocpp.frames import CLOSE_REVOKED
from cityshare.charging.ocpp.v16 import CentralSystem16
from cityshare.charging.ocpp.v201 import CentralSystem201

log = logging.getLogger("cityshare.charging.ocpp")

PATH_PREFIX = "/ocpp/"
SUBPROTOCOLS = {"ocpp2.0.1": CentralSystem201, "ocpp1.6": CentralSystem16}
#: The largest frame accepted (a MeterValues with many samples is a few KiB); a larger one
#: closes the connection (1009), as no OCPP answer can name a message it could not read.
MAX_FRAME = 64 * 1024


class OcppServer:
    def __init__(
        self,
        platform: Platform,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        recheck_seconds: float | None = None,
    ) -> None:
        """`recheck_seconds`: how often connected chargers are checked again (default: the
        `ocpp_recheck_seconds` setting; 0: never)."""
        self.door = ChargingDoor(platform)
        self.host = host
        self.port = port
        self.recheck_seconds = (
            platform.settings.ocpp_recheck_seconds if recheck_seconds is None else recheck_seconds
        )
        # Weak: a request admitted here that then fails the upgrade never reaches
        # _serve_connection to be taken out.
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, Charger] = (
            weakref.WeakKeyDictionary()
        )
        self._live: dict[str, tuple[ServerConnection, Charger]] = {}
        self._server: Server | None = None
        self._recheck: asyncio.Task[None] | None = None

    @property
    def bound_port(self) -> int:
        """The port listened on (useful with port 0)."""
        assert self._server is not None, "the server is not started"
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    async def start(self) -> Server:
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
            process_request=self._handshake,
            max_size=MAX_FRAME,
            logger=log,
        )
        if self.recheck_seconds > 0:
            self._recheck = asyncio.create_task(self._recheck_forever())
        return self._server

    async def stop(self) -> None:
        """Stop re-checking and close the server (and every connection)."""
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_seconds)
            try:
                await self.disconnect_withdrawn()
            except Exception:
                log.exception("re-checking connected chargers failed; will try again")

    async def disconnect_withdrawn(self) -> list[str]:
        """Close the connection of every connected charger the handshake would refuse now
        (revoked, no longer its operator's, or its password changed); their ids."""
        live = dict(self._live)
        if not live:
            return []
        gone = await asyncio.to_thread(
            self.door.no_longer_admitted, [charger for _, charger in live.values()]
        )
        for charger_id in gone:
            connection = live[charger_id][0]
            log.info("charger %s is no longer admitted: closing its connection", charger_id)
            await connection.close(CLOSE_REVOKED, "no longer admitted")
        return gone

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = request.path.split("?", 1)[0].removeprefix(PATH_PREFIX)
        peer = connection.remote_address
        if not request.path.startswith(PATH_PREFIX) or "/" in charger_id:
            return _refuse(connection, HandshakeError(404, "not an OCPP path"), request.path, peer)
        offered = _offered(request.headers)
        if not offered & SUBPROTOCOLS.keys():
            supported = ", ".join(SUBPROTOCOLS)
            reason = HandshakeError(400, f"offers no supported subprotocol ({supported})")
            return _refuse(connection, reason, charger_id, peer)
        try:
            charger = await asyncio.to_thread(
                self.door.authenticate, charger_id, request.headers.get("Authorization")
            )
        except HandshakeError as exc:
            return _refuse(connection, exc, charger_id, peer)
        self._admitted[connection] = charger
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        charger = self._admitted.pop(connection, None)
        handler_class = SUBPROTOCOLS.get(connection.subprotocol or "")
        if charger is None or handler_class is None:
            await connection.close(1008, "not admitted")
            return
        older = self._live.get(charger.device_id)
        self._live[charger.device_id] = (connection, charger)
        if older is not None:
            log.info("charger %s connected again: closing its older connection",
                     charger.device_id)
            await older[0].close(1000, "replaced by a newer connection")
        log.info("charger %s connected (%s)", charger.device_id, connection.subprotocol)
        handler: Any = handler_class(charger, connection, self.door)
        try:
            await handler.start()
        except ConnectionClosed:
            pass
        finally:
            if self._live.get(charger.device_id, (None,))[0] is connection:
                del self._live[charger.device_id]
            log.info("charger %s disconnected", charger.device_id)


def _offered(headers: Headers) -> set[str]:
    return {
        p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",")
    }


def _refuse(connection: ServerConnection, refused: HandshakeError, who: str, peer: Any) -> Response:
    log.warning("OCPP handshake of %r from %s refused (%d): %s",
                who[:60], peer, refused.status, refused.reason)
    return connection.respond(http.HTTPStatus(refused.status), refused.reason + "\n")


class ServerThread:
    """The central system on its own event loop in a background thread (for tests and for
    embedding); `with ServerThread(platform) as server:` serves on `server.port`."""

    def __init__(
        self,
        platform: Platform,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        recheck_seconds: float | None = None,
    ) -> None:
        self.server = OcppServer(platform, host, port, recheck_seconds=recheck_seconds)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ocpp-server", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = self.server.bound_port
        self._ready.set()
        await self._stop.wait()
        await self.server.stop()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_: object) -> None:
        stop = self._stop
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        self._thread.join(30)
        self.loop.close()


def run(
    platform: Platform, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until interrupted (what `cityshare ocpp serve` runs)."""

    async def main() -> None:
        server = OcppServer(platform, host, port)
        ws = await server.start()
        if ready is not None:
            ready(server.bound_port)
        await ws.serve_forever()

    asyncio.run(main())
