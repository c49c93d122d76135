"""The MQTT door of reading ingestion: a worker that takes signed readings from a broker.

A device publishes each reading (one JWS, `cityshare.energy.readings`, UTF-8) with QoS 1 to
`cityshare/readings/<device id>`. Workers share the topic through the shared subscription
`$share/<group>/cityshare/readings/+`, so the broker hands each message to one of them.

Exactly once, despite crashes, in three parts:

- **The broker keeps what is not acknowledged.** A worker connects with MQTT 5, a stable
  client id, `clean_start` off and a session expiry, so its subscription and every message it
  has not acknowledged outlive the worker and the connection.
- **A message is acknowledged only after the batch that holds it has committed** (paho's
  `manual_ack`): a worker killed anywhere before that gets the message again when it is back.
- **The store deduplicates by (device, seq)**: a message delivered again after its batch
  committed comes back as "duplicate", changes nothing, and is acknowledged then.

Batching for throughput: paho's network thread puts messages on a queue; the worker takes up
to `batch` of them, waiting at most `linger_ms` after the first, and hands ONE
`IngestReadings(source="mqtt")` to the message bus. The broker never has more than
`receive_maximum` messages in flight to a worker (its flow control), the rest wait at the
broker, in the worker's session.

Rejections never stop a batch. Before the handler, the transport's own checks: a payload over
1 KiB (`too_large`), not UTF-8 (`malformed`) or signed by another device than the topic names
(`topic_mismatch`); then the handler's (`bad_signature`, `revoked_key`, ...). Each rejected
message is logged (one `key=value` line: reason, topic, device, payload hash) and published
as JSON to `cityshare/rejected/<device id>` (at least once: the worker waits for the broker
to take it before acknowledging the message).

A batch whose handler fails (the database is down or busy) is not acknowledged and is retried
with backoff; one that keeps failing for another reason is split until the message that fails
it is found, which is dead-lettered as `internal_error` (payload included, so it can be
published again) rather than stopping the worker.

**Readiness.** The broker keeps a reading only for a session subscribed when it is published:
one published before any worker's session exists is lost (MQTT keeps nothing for a topic no
one subscribes to). Once the broker has confirmed the subscription, the worker logs
`subscribed topic=… client_id=… ready=true` and, with `ready_file`, writes that file (its
client id, and the time). From then on every reading published is kept for this worker's
session, also while the worker is stopped (up to the session expiry). `setup_only` creates the
session and its subscription, signals readiness the same way and disconnects without taking
any message (those delivered meanwhile are not acknowledged, so the broker redelivers them),
so a deployment can create its workers' sessions before devices start publishing.

This module is the paho side (the broker's address, the client, its callbacks and loop, and
publishing); the batching (screening, one `IngestReadings` per batch, dead letters, retries,
acknowledgements after the commit) is `energy.mqtt_batching`, which knows no paho.

Sections: addresses and topics; the worker (`MqttWorker`: paho's callbacks on its network thread,
and the loop that hands batches to `mqtt_batching.BatchProcessor`, which owns batching, retries
and dead letters); publishing, as a device does. A little over 500 lines: the worker's callbacks
and its loop share its state, and read best together.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cityshare.energy.mqtt_batching import (
    READINGS_PREFIX,
    BatchProcessor,
    Counts,
    Delivery,
    Handle,
    Rejection,
    _logfmt,
    _rfc3339,
)

log = logging.getLogger(__name__)

DEFAULT_GROUP = "cityshare"
#: How long the worker waits for the broker to take its dead letters before it gives up on
#: the batch (left unacknowledged, so it comes back after a reconnect).
DEAD_LETTER_TIMEOUT_S = 10.0
#: CONNACK / DISCONNECT reason codes that no retry can fix.
_FATAL_CONNECT = {
    0x84: "the broker does not speak MQTT 5",
    0x85: "the broker refuses this client id",
    0x86: "bad user name or password (CITYSHARE_MQTT_USERNAME / CITYSHARE_MQTT_PASSWORD)",
    0x87: "not authorised",
    0x8A: "banned by the broker",
}
_SESSION_TAKEN_OVER = 0x8E
_GROUP_RE = re.compile(r"^[^/+#\s]+$")


class MqttError(RuntimeError):
    """The broker cannot be used (bad URL, refused connection or credentials)."""


# -- addresses and topics --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """`mqtt://host[:port]` (port 1883) or `mqtts://host[:port]` (TLS, port 8883)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise MqttError(f"bad broker URL {url!r}: {exc}") from exc
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttError(f"bad broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
    if parts.username is not None or parts.password is not None:
        raise MqttError(
            "the broker URL holds credentials; give them in CITYSHARE_MQTT_USERNAME and "
            "CITYSHARE_MQTT_PASSWORD instead (so they stay out of command lines and logs)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttError(f"bad broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return Broker(parts.hostname, port or (8883 if tls else 1883), tls)


def shared_subscription(group: str) -> str:
    return f"$share/{group}/{READINGS_PREFIX}+"


def check_group(group: str) -> str:
    if not _GROUP_RE.match(group):
        raise MqttError(f"bad group {group!r}: a share name has no '/', '+', '#' or spaces")
    return group


# -- the worker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    broker: Broker
    client_id: str
    group: str = DEFAULT_GROUP
    batch: int = 500
    linger_ms: int = 50
    #: How long the broker keeps the session (and messages for it) while the worker is away.
    session_expiry_s: int = 7 * 86400
    #: Messages the broker may have in flight (delivered, unacknowledged) to this worker.
    receive_maximum: int = 0  # 0: four batches
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    #: Written once the broker has confirmed the subscription (see the module docstring).
    ready_file: Path | None = None
    #: Create the session and its subscription, then disconnect without taking any message.
    setup_only: bool = False
    #: With `setup_only`: how long to wait for the broker to confirm the subscription.
    setup_timeout_s: float = 30.0

    @property
    def in_flight(self) -> int:
        return min(self.receive_maximum or max(4 * self.batch, 100), 65_535)


def default_client_id(group: str = DEFAULT_GROUP) -> str:
    return f"cityshare-{group}-{socket.gethostname()}"


def _client(
    client_id: str,
    broker: Broker,
    username: str | None,
    password: str | None,
    ca_file: Path | None,
    *,
    manual_ack: bool = False,
) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if broker.tls:
        client.tls_set(
            ca_certs=str(ca_file) if ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
        )
    client.reconnect_delay_set(1, 30)
    return client


class MqttWorker:
    """One worker: paho's network thread fills a queue, `run` drains it in batches.

    `run` returns when `stop` is set (it finishes the batch in hand, acknowledges it and
    disconnects) or on a fatal broker error (`MqttError`)."""

    def __init__(
        self,
        handle: Handle,
        config: WorkerConfig,
        *,
        stop: threading.Event | None = None,
        stats_every_s: float = 10.0,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.processor = BatchProcessor(handle, self, stop=self.stop)
        self.stats_every_s = stats_every_s
        #: Set once the subscription is in place (messages published from then on reach us).
        self.ready = threading.Event()
        # Not SimpleQueue: on CPython 3.11 its get(timeout), interrupted by SIGTERM, was seen
        # to block for good, so the worker never noticed it should stop.
        self._queue: queue.Queue[Delivery] = queue.Queue()
        self._lock = threading.Lock()
        self._session = 0
        self._connected = False
        self._fatal: str | None = None
        self._client = self._make_client()

    @property
    def counts(self) -> Counts:
        return self.processor.counts

    def _make_client(self) -> paho.Client:
        c = self.config
        client = _client(c.client_id, c.broker, c.username, c.password, c.ca_file, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        # The worker's own outgoing messages are dead letters: a few at a time.
        client.max_inflight_messages_set(1_000)
        return client

    # paho's network thread ----------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            self._connect_failed(reason)
            return
        with self._lock:
            self._session += 1
            self._connected = True
        log.info(
            "connected %s",
            _logfmt(
                broker=self.config.broker.url,
                client_id=self.config.client_id,
                session_present=bool(flags.session_present),
            ),
        )
        client.subscribe(shared_subscription(self.config.group), options=SubscribeOptions(qos=1))

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        if not self.stop.is_set():
            log.warning("cannot reach the broker %s; trying again", self.config.broker.url)

    def _connect_failed(self, reason: ReasonCode) -> None:
        fatal = _FATAL_CONNECT.get(reason.value)
        if fatal is not None:
            self._fail(f"the broker {self.config.broker.url} refused the connection: {fatal}")
        else:
            log.warning("the broker refused the connection (%s); trying again", reason)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            self._fail(f"the broker refused the subscription: {', '.join(map(str, reasons))}")
            return
        if self.config.ready_file is not None and not self.ready.is_set():
            try:
                self.config.ready_file.write_text(
                    f"client_id={self.config.client_id} subscribed_at={_rfc3339(time.time())}\n"
                )
            except OSError as exc:
                self._fail(f"cannot write the ready file {self.config.ready_file}: {exc}")
                return
        log.info(
            "subscribed %s",
            _logfmt(
                topic=shared_subscription(self.config.group),
                client_id=self.config.client_id,
                ready="true",
            ),
        )
        self.ready.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        with self._lock:
            self._session += 1  # acknowledgements of what came before go nowhere now
            self._connected = False
        if self.stop.is_set():
            return
        if reason.value == _SESSION_TAKEN_OVER:
            self._fail(
                f"another client connected with client id {self.config.client_id!r}: give each "
                "worker its own --client-id"
            )
        else:
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never trust that
            topic = READINGS_PREFIX + "?"
        with self._lock:
            session = self._session
        self._queue.put(Delivery(topic, bytes(msg.payload), time.time(), msg.mid, msg.qos, session))

    def _fail(self, reason: str) -> None:
        log.error("%s", reason)
        self._fatal = reason
        self.stop.set()

    # Transport (the worker's thread) ------------------------------------------------------

    def dead_letter(self, rejections: Sequence[Rejection]) -> bool:
        infos = [self._client.publish(r.topic, r.dead_letter(), qos=1) for r in rejections]
        deadline = time.monotonic() + DEAD_LETTER_TIMEOUT_S
        for info in infos:
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.0))
            except (RuntimeError, ValueError) as exc:
                log.warning("publishing a dead letter failed: %s", exc)
                return False
            if not info.is_published():
                return False
        return True

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        # Under the lock: a disconnect cannot slip in between the check and the ack.
        with self._lock:
            for d in deliveries:
                if d.qos > 0 and d.session == self._session and self._connected:
                    self._client.ack(d.mid, d.qos)

    # the loop -----------------------------------------------------------------------------

    def run(self) -> Counts:
        c = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = c.session_expiry_s
        props.ReceiveMaximum = c.in_flight
        address = (c.broker.host, c.broker.port, c.keepalive_s)
        # A first attempt in the foreground, to tell a TLS problem (no retry fixes it) from a
        # broker that is not up yet (paho's thread then retries until it is).
        try:
            self._client.connect(*address, clean_start=False, properties=props)
        except ssl.SSLError as exc:
            raise MqttError(f"TLS with the broker {c.broker.url} failed: {exc}") from exc
        except OSError as exc:
            log.warning("cannot reach the broker %s (%s); trying again", c.broker.url, exc)
            self._client.connect_async(*address, clean_start=False, properties=props)
        self._client.loop_start()
        if c.setup_only:
            return self._set_up_only()
        last_stats = time.monotonic()
        reported = Counts()
        try:
            while not self.stop.is_set():
                batch = self._take_batch()
                if batch:
                    self.processor.process(batch)
                if time.monotonic() - last_stats >= self.stats_every_s and reported != self.counts:
                    log.info("ingested %s", self.counts.line())
                    reported = dataclasses.replace(self.counts)
                    last_stats = time.monotonic()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        log.info("stopped %s", self.counts.line())
        if self._fatal is not None:
            raise MqttError(self._fatal)
        return self.counts

    def _set_up_only(self) -> Counts:
        """Wait for the subscription, then disconnect: the session stays at the broker, and
        any message delivered meanwhile, never acknowledged, is delivered again later."""
        deadline = time.monotonic() + self.config.setup_timeout_s
        try:
            while not (self.ready.is_set() or self.stop.is_set()):
                if time.monotonic() > deadline:
                    self._fatal = self._fatal or (
                        f"the broker {self.config.broker.url} did not confirm the subscription "
                        f"within {self.config.setup_timeout_s:g} s"
                    )
                    break
                self.ready.wait(0.05)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        if self._fatal is not None:
            raise MqttError(self._fatal)
        if not self.ready.is_set():
            raise MqttError("stopped before the broker confirmed the subscription")
        log.info(
            "session ready %s",
            _logfmt(
                client_id=self.config.client_id,
                session_expiry_s=self.config.session_expiry_s,
            ),
        )
        return self.counts

    def _take_batch(self) -> list[Delivery]:
        """Up to `batch` deliveries: waits for a first one (checking `stop` now and then), then
        at most `linger_ms` for more."""
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.linger_ms / 1000
        while len(batch) < self.config.batch:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    batch.append(self._queue.get(timeout=remaining))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch


# -- publishing ------------------------------------------------------------------------------


def publish_messages(
    broker: Broker,
    messages: Iterable[tuple[str, bytes]],
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    timeout_s: float = 60.0,
    window: int = 10_000,
) -> int:
    """Publish (topic, payload) pairs with QoS 1 and wait until the broker has taken each one;
    the number published. `timeout_s` bounds each wait for the broker."""
    client = _client(
        f"cityshare-publish-{uuid.uuid4().hex[:12]}", broker, username, password, ca_file
    )
    # paho's own in-flight limit rescans every queued message on each PUBACK; the window below
    # bounds what is in flight instead.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: ReasonCode, props: Any) -> None:
        nonlocal window
        if reason.is_failure:
            refused.append(str(reason))
        # The broker's Receive Maximum, which paho does not keep to by itself.
        window = min(window, getattr(props, "ReceiveMaximum", window))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, 30, clean_start=True)
    except OSError as exc:
        raise MqttError(f"cannot reach the broker {broker.url}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s) or refused:
            reason = refused[0] if refused else "no answer"
            raise MqttError(f"the broker {broker.url} refused the connection: {reason}")
        # Packet ids are 16 bits: at most `window` messages wait for their PUBACK at a time.
        pending: collections.deque[paho.MQTTMessageInfo] = collections.deque()
        sent = 0

        def settle(keep: int) -> None:
            while len(pending) > keep:
                info = pending.popleft()
                info.wait_for_publish(timeout_s)
                if not info.is_published():
                    raise MqttError(f"the broker {broker.url} took no message for {timeout_s} s")

        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise MqttError(f"publishing to {topic!r} failed: {paho.error_string(info.rc)}")
            pending.append(info)
            sent += 1
            settle(window)
        settle(0)
        return sent
    finally:
        client.disconnect()
        client.loop_stop()
