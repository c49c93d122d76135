"""The MQTT door's batching, independent of paho: what a worker handles (a `Delivery`), the
transport's own checks (`screen`), and the `BatchProcessor` that hands a batch to the bus as one
`IngestReadings(source="mqtt")`, dead-letters the rejected messages and acknowledges the batch
only after it committed, retrying what fails (see `energy.mqtt` for the whole door: the broker
session, exactly-once delivery, readiness).

The transport is whatever publishes dead letters and acknowledges (`Transport`): the paho
worker (`mqtt.MqttWorker`) in production, a fake in the unit tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cityshare.energy import commands
from cityshare.energy.handlers import EnergyError, IngestOutcome, ItemResult
from cityshare.energy.model import Verdict
from cityshare.energy.readings import MAX_BYTES, ReadingError, known_device, parse
from cityshare.kernel.errors import ConflictError, StoreUnavailable

#: The door's one logger (`energy.mqtt`'s), whichever of its modules logs.
log = logging.getLogger("cityshare.energy.mqtt")

READINGS_PREFIX = "cityshare/readings/"
REJECTED_PREFIX = "cityshare/rejected/"
SOURCE = "mqtt"

Handle = Callable[[commands.IngestReadings], IngestOutcome]


def reading_topic(device_id: str) -> str:
    return READINGS_PREFIX + device_id


def reading_message(token: str) -> tuple[str, bytes]:
    """A reading as a device publishes it: to its device's topic (ReadingError if the token is
    not a well-formed reading; its signature is not checked)."""
    token = token.strip()
    return reading_topic(parse(token).device_id), token.encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    #: Unix seconds, when it reached the worker.
    received_at: float
    mid: int = 0
    qos: int = 1
    #: The connection it came on: an acknowledgement goes back on that connection only (after
    #: a reconnect the broker sends it again, and its packet id may name another message).
    session: int = 0

    @property
    def device(self) -> str:
        """The device the topic names."""
        return self.topic.removeprefix(READINGS_PREFIX)


@dataclass(frozen=True, slots=True)
class Rejection:
    delivery: Delivery
    reason: str

    @property
    def topic(self) -> str:
        return REJECTED_PREFIX + self.delivery.device

    def dead_letter(self) -> bytes:
        """The JSON published to the dead-letter topic: the payload itself only when it is a
        text of at most 1 KiB, its SHA-256 always."""
        d = self.delivery
        body: dict[str, Any] = {
            "reason": self.reason,
            "topic": d.topic,
            "device": d.device,
            "received_at": _rfc3339(d.received_at),
            "bytes": len(d.payload),
            "sha256": hashlib.sha256(d.payload).hexdigest(),
        }
        if len(d.payload) <= MAX_BYTES:
            with contextlib.suppress(UnicodeDecodeError):
                body["payload"] = d.payload.decode("utf-8")
        return json.dumps(body, separators=(",", ":")).encode()


def _rfc3339(unix_s: float) -> str:
    moment = dt.datetime.fromtimestamp(unix_s, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def screen(delivery: Delivery) -> str | Rejection:
    """The transport's own checks: the reading as text, or why it is refused. A payload that is
    text but no well-formed reading goes on to the handler, which says what is wrong with it."""
    if len(delivery.payload) > MAX_BYTES:
        return Rejection(delivery, "too_large")
    try:
        token = delivery.payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(delivery, "malformed")
    # The handler parses each reading anyway, so the worker parses only a header not seen yet.
    kid = known_device(token)
    if kid is None:
        try:
            kid = parse(token).device_id
        except ReadingError:
            return token
    if kid != delivery.device:
        return Rejection(delivery, "topic_mismatch")
    return token




@dataclass(slots=True)
class Counts:
    accepted: int = 0
    anomaly: int = 0
    duplicate: int = 0
    rejected: int = 0
    batches: int = 0
    #: Handler runs that failed and were tried again.
    retries: int = 0

    def line(self) -> str:
        return _logfmt(
            accepted=self.accepted,
            anomaly=self.anomaly,
            duplicate=self.duplicate,
            rejected=self.rejected,
            batches=self.batches,
            retries=self.retries,
        )


def _logfmt(**fields: object) -> str:
    """`key=value` pairs; a value with spaces, quotes, `=` or control characters is quoted as
    JSON, so a hostile topic cannot forge a log line."""
    out = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\\') or not text.isprintable():
            text = json.dumps(text)
        out.append(f"{key}={text}")
    return " ".join(out)


class Transport(Protocol):
    def dead_letter(self, rejections: Sequence[Rejection]) -> bool:
        """Publish the dead letters; True once the broker has taken every one."""

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge the deliveries to the broker (it then forgets them)."""


def transient(exc: BaseException) -> bool:
    """A failure that goes away by itself (the database is down, busy or lost a race), or once
    an operator mends the platform (`EnergyError`: its energy accounts or tariffs are wrong):
    either way the readings are sound, so they are retried, never dead-lettered."""
    return isinstance(
        exc,
        ConflictError | StoreUnavailable | EnergyError | OSError,
    )


class BatchProcessor:
    """Handles batches of deliveries: screen, one `IngestReadings`, dead-letter, then ack.

    Independent of paho: the transport is whatever publishes dead letters and acknowledges.
    """

    def __init__(
        self,
        handle: Handle,
        transport: Transport,
        *,
        stop: threading.Event | None = None,
        first_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self.handle = handle
        self.transport = transport
        self.stop = stop or threading.Event()
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.attempts = attempts
        self.counts = Counts()

    def process(self, batch: Sequence[Delivery]) -> bool:
        """Handle one batch; True when it committed and was acknowledged, False when it was
        abandoned unacknowledged (the worker is stopping while the store fails; or the broker
        did not take the dead letters), so the broker delivers it again."""
        rejections: list[Rejection] = []
        items: list[tuple[Delivery, str]] = []
        for delivery in batch:
            screened = screen(delivery)
            if isinstance(screened, Rejection):
                rejections.append(screened)
            else:
                items.append((delivery, screened))
        results = self._ingest(items) if items else []
        if results is None:
            log.warning("batch of %d left unacknowledged: stopping", len(batch))
            return False
        counts = Counts()
        for (delivery, _), result in zip(items, results, strict=True):
            if result.verdict is Verdict.ACCEPTED:
                counts.accepted += 1
            elif result.verdict is Verdict.DUPLICATE:
                counts.duplicate += 1
            elif result.verdict is Verdict.ANOMALY:
                counts.anomaly += 1
            else:
                rejections.append(Rejection(delivery, str(result.detail)))
        for rejection in rejections:
            d = rejection.delivery
            log.warning(
                "reading rejected %s",
                _logfmt(
                    reason=rejection.reason,
                    topic=d.topic,
                    device=d.device,
                    bytes=len(d.payload),
                    sha256=hashlib.sha256(d.payload).hexdigest()[:16],
                ),
            )
        if rejections and not self.transport.dead_letter(rejections):
            log.warning(
                "the broker did not take %d dead letters; batch of %d left unacknowledged",
                len(rejections),
                len(batch),
            )
            return False
        self.transport.ack(batch)
        counts.rejected = len(rejections)
        self._add(counts)
        return True

    def _add(self, c: Counts) -> None:
        total = self.counts
        total.accepted += c.accepted
        total.anomaly += c.anomaly
        total.duplicate += c.duplicate
        total.rejected += c.rejected
        total.batches += 1

    def _ingest(self, items: list[tuple[Delivery, str]]) -> list[ItemResult] | None:
        """Each item's result, from one handler run when it succeeds; None when abandoned."""
        delay = self.first_delay_s
        failures = 0
        while True:
            try:
                outcome = self.handle(commands.IngestReadings([t for _, t in items], SOURCE))
                return outcome.results
            except Exception as exc:
                failures += 1
                if not transient(exc):
                    if failures == 1:
                        log.exception("ingesting a batch of %d failed", len(items))
                    if failures >= self.attempts:
                        return self._split(items)
                log.warning(
                    "ingesting a batch of %d failed (%s: %s); retrying in %.1f s",
                    len(items),
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    delay,
                )
            self.counts.retries += 1
            if self.stop.wait(delay):
                return None
            delay = min(delay * 2, self.max_delay_s)

    def _split(self, items: list[tuple[Delivery, str]]) -> list[ItemResult] | None:
        """Halve a batch that keeps failing until the message that fails it is alone."""
        if len(items) == 1:
            log.error(
                "a reading keeps failing the handler; dead-lettered %s",
                _logfmt(topic=items[0][0].topic),
            )
            return [ItemResult(0, Verdict.REJECTED, "internal_error")]
        half = len(items) // 2
        first = self._ingest(items[:half])
        if first is None:
            return None
        second = self._ingest(items[half:])
        return None if second is None else first + second
