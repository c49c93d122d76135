"""Over MQTT: meters publish signed readings to a real Mosquitto, `cityshare ingest mqtt` workers
(real processes) credit them exactly once, whatever the broker, the network or a kill -9 does.

Every test compares the residents' wallets with a reference platform that took the same readings
through the HTTP door's handler: the balances must be identical, to the unit.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import func, select

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform, bootstrap
from cityshare.energy import mqtt, mqtt_batching, tables
from cityshare.identity import commands
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import handlers as ledger_service
from cityshare.settings import Settings
from energy_helpers import Meter, add_device, ingest, resident_with_meter, sign, wallets
from identity_helpers import ISSUER_KEY
from processes import cityshare
from services import (
    MosquittoServer,
    PostgresServer,
)

#: Five-minute readings, so no meter's readings here span the tariff's gap horizon (6 h): two
#: workers, or a kill, reorder them across batches, and a reading waiting that much newer than
#: its chain's top is bridged to (domain.energy), which may round credits differently.
INTERVAL = 300
#: Readings cover hours that ended before the workers' real clocks started.
DAY = (int(time.time()) // 86400 - 3) * 86400


# -- the two platforms: the one the workers write to, and the reference -----------------------


@dataclass
class World:
    platform: Platform
    url: str
    key_dir: Path
    meters: list[Meter]
    #: The same residents and keys on a fresh platform fed through the HTTP door's handler.
    reference: Platform
    reference_meters: list[Meter]

    def readings(self, meter: int, seqs: range | list[int]) -> list[str]:
        return [self.meters[meter].reading(s, *claims(meter, s)) for s in seqs]

    def expect(self, meter: int, seqs: range | list[int]) -> None:
        """Feed the reference the same readings (signed for its own device ids)."""
        ref = self.reference_meters[meter]
        ingest(self.reference, [ref.reading(s, *claims(meter, s)) for s in seqs])

    def stored(self) -> int:
        with self.platform.engine.connect() as conn:
            count: int = conn.execute(
                select(func.count()).select_from(tables.meter_readings)
            ).scalar_one()
            return count

    def assert_same_wallets_as_reference(self) -> None:
        for meter, ref in zip(self.meters, self.reference_meters, strict=True):
            assert wallets(self.platform, meter.resident_id) == wallets(
                self.reference, ref.resident_id
            )
        assert any(wallets(self.platform, m.resident_id)["CREDIT"] for m in self.meters)

    def assert_every_reading_stored_once(self, n: int) -> None:
        with self.platform.engine.connect() as conn:
            rows = conn.execute(
                select(tables.meter_readings.c.device_id, tables.meter_readings.c.seq)
            ).all()
        assert len(rows) == len(set(rows)) == n
        report = audit.verify(self.platform.uow(), self.platform.log_signer.verifier)
        assert report.ok, "\n".join(str(p) for p in report.problems)
        assert ledger_service.check_invariants(self.platform.uow()).ok


def claims(meter: int, seq: int) -> tuple[int, int, int]:
    """(ts, import_wh, export_wh) of reading `seq`: cumulative registers that vary by meter."""
    imported = sum((j * 7 + meter) % 90 for j in range(seq + 1))
    exported = sum((j * 53 + meter * 31) % 700 for j in range(seq + 1))
    return DAY + INTERVAL * seq, imported, exported


def make_platform(url: str, key_dir: Path) -> Platform:
    settings = Settings(database_url=url, issuer_keys=ISSUER_KEY.verifier.vkey, key_dir=key_dir)
    return bootstrap(settings, clock=ManualClock((DAY - 3600) * 10**9))


def same_meter(platform: Platform, resident_id: int, key: Ed25519PrivateKey) -> Meter:
    public = key.public_key().public_bytes_raw()
    device = platform.bus.handle(commands.RegisterDevice(resident_id, "meter", public, "roof"))
    return Meter(resident_id, device.id, key, platform.clock.now_ns() // 10**9)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    opened: list[Platform] = []

    def make(residents: int, url: str | None = None) -> World:
        key_dir = tmp_path / "keys"
        url = url or f"sqlite:///{tmp_path}/cityshare.db"
        platform = make_platform(url, key_dir)
        reference = make_platform(f"sqlite:///{tmp_path}/reference.db", tmp_path / "ref-keys")
        opened.extend([platform, reference])
        meters, reference_meters = [], []
        for i in range(residents):
            meter = resident_with_meter(platform, f"resident-{i}")
            ref_resident = resident_with_meter(reference, f"resident-{i}").resident_id
            meters.append(meter)
            reference_meters.append(same_meter(reference, ref_resident, meter.key))
        # The workers receive the readings now, by the real clock; so does the reference.
        for p in (platform, reference):
            assert isinstance(p.clock, ManualClock)
            p.clock.advance(time.time() - p.clock.now_ns() / 10**9)
        return World(platform, url, key_dir, meters, reference, reference_meters)

    yield make
    for platform in opened:
        platform.close()


# -- workers: `cityshare ingest mqtt` as real processes ---------------------------------------

_COUNTS_RE = re.compile(
    r"(?:ingested|stopped) accepted=(\d+) anomaly=(\d+) duplicate=(\d+) rejected=(\d+)"
)


@dataclass
class Worker:
    folder: Path
    broker: str
    db: str
    key_dir: Path
    group: str
    client_id: str = "worker-1"
    batch: int = 20
    proc: subprocess.Popen[bytes] | None = None
    #: Where the current run's output starts in the log.
    offset: int = 0
    runs: int = field(default=0)

    @property
    def log_file(self) -> Path:
        return self.folder / f"{self.client_id}.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def run_log(self) -> str:
        return self.log()[self.offset :]

    def start(self) -> Worker:
        self.offset = len(self.log())
        command = [
            *(sys.executable, "-m", "cityshare", "ingest", "mqtt", "--broker", self.broker),
            *("--group", self.group, "--client-id", self.client_id, "--db", self.db),
            *("--batch", str(self.batch), "--linger-ms", "20", "--stats-every", "0.1"),
        ]
        env = {**os.environ, "CITYSHARE_KEY_DIR": str(self.key_dir), "CITYSHARE_LOG_LEVEL": "INFO"}
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_subscribed()
        return self

    def wait_subscribed(self, times: int = 1) -> None:
        wait_until(
            lambda: self.run_log().count("subscribed topic=") >= times,
            f"{self.client_id} subscribed",
            self,
        )

    def counts(self) -> tuple[int, int, int, int]:
        """(accepted, anomaly, duplicate, rejected) as this run last logged them."""
        found = _COUNTS_RE.findall(self.run_log())
        if not found:
            return (0, 0, 0, 0)
        accepted, anomaly, duplicate, rejected = map(int, found[-1])
        return accepted, anomaly, duplicate, rejected

    def handled(self) -> int:
        return sum(self.counts())

    def kill(self) -> None:
        """SIGKILL: no batch finished, nothing acknowledged, no goodbye to the broker."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        proc, self.proc = self.proc, None
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            raise

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []
    group = f"g{uuid.uuid4().hex[:10]}"  # a group of this test's own on the shared broker

    def make(broker: str, world: World, client_id: str = "worker-1", batch: int = 20) -> Worker:
        # Client ids of this test's own too: a session on the shared broker outlives its test.
        worker = Worker(
            tmp_path, broker, world.url, world.key_dir, group, f"{group}-{client_id}", batch
        )
        started.append(worker)
        return worker.start()

    yield make
    for worker in started:
        worker.close()


def wait_until(check: Callable[[], bool], what: str, *watch: Worker, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for worker in watch:
            if worker.proc is not None and worker.proc.poll() is not None:
                pytest.fail(f"{worker.client_id} exited while waiting for {what}:\n{worker.log()}")
        if time.monotonic() > deadline:
            logs = "\n".join(w.log()[-3000:] for w in watch)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.02)


def publish(broker: str, messages: list[tuple[str, bytes]]) -> None:
    assert mqtt.publish_messages(mqtt.parse_broker(broker), messages) == len(messages)


def as_messages(tokens: list[str]) -> list[tuple[str, bytes]]:
    return [mqtt_batching.reading_message(t) for t in tokens]


class DeadLetters:
    """A subscriber to cityshare/rejected/+ collecting what the workers dead-letter."""

    def __init__(self, broker: str) -> None:
        address = mqtt.parse_broker(broker)
        self.letters: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dlq-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = lambda _c, _u, msg: self._add(msg.topic, msg.payload)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.subscribe(mqtt_batching.REJECTED_PREFIX + "+", qos=1)
        self.client.loop_start()
        assert subscribed.wait(30), "the dead-letter subscription was not confirmed"

    def _add(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.letters.append((topic, json.loads(payload)))

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.letters)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the tests --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"mqtt_{uuid.uuid4().hex[:10]}")


def test_readings_published_over_mqtt_are_credited_exactly_as_over_http(
    mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
    store_url: str | None,
    tmp_path: Path,
) -> None:
    world = make_world(3, store_url)
    worker = workers(mqtt_broker.url, world)
    tokens = [t for m in range(3) for t in world.readings(m, range(12))]
    for m in range(3):
        world.expect(m, range(12))
    # A device (here the CLI publisher, as a person would try it) sends one JWS per message.
    lines = tmp_path / "readings.jws"
    lines.write_text("\n".join([*tokens[:5], "not a reading", *tokens[5:]]) + "\n")
    sent = cityshare("ingest", "publish", "--broker", mqtt_broker.url, str(lines), cwd=tmp_path)
    assert sent.returncode == 1, sent.stdout + sent.stderr  # one line was not sent ...
    assert "line 6: not sent (malformed" in sent.stderr
    assert "published 36 readings" in sent.stdout  # ... and every other one was
    wait_until(lambda: world.stored() == 36, "36 readings stored", worker)
    world.assert_same_wallets_as_reference()
    with world.platform.engine.connect() as conn:
        sources = conn.execute(select(tables.meter_readings.c.source).distinct()).scalars().all()
    assert sources == ["mqtt"]

    # SIGTERM: the batch in hand is finished and acknowledged before the worker disconnects,
    # so after a restart nothing comes back: the next reading is the only thing it handles.
    wait_until(lambda: worker.handled() == 36, "36 readings counted", worker)
    assert worker.stop() == 0
    assert "stopped accepted=36 anomaly=0 duplicate=0 rejected=0" in worker.run_log()
    worker.start()
    publish(mqtt_broker.url, as_messages(world.readings(0, [12])))
    world.expect(0, [12])
    wait_until(lambda: world.stored() == 37, "the 37th reading stored", worker)
    assert worker.stop() == 0
    assert "stopped accepted=1 anomaly=0 duplicate=0 rejected=0" in worker.run_log()
    world.assert_same_wallets_as_reference()
    world.assert_every_reading_stored_once(37)


def test_a_replay_storm_credits_exactly_what_an_orderly_run_does(
    mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
) -> None:
    world = make_world(4)
    worker = workers(mqtt_broker.url, world, batch=50)
    tokens = [t for m in range(4) for t in world.readings(m, range(40))]
    for m in range(4):
        world.expect(m, range(40))  # the orderly run: each reading once, in order
    storm = tokens * 3
    random.Random(20261124).shuffle(storm)
    publish(mqtt_broker.url, as_messages(storm))
    wait_until(lambda: worker.handled() == 480, "480 messages handled", worker)
    assert worker.counts() == (160, 0, 320, 0)
    world.assert_same_wallets_as_reference()
    world.assert_every_reading_stored_once(160)
    assert worker.stop() == 0


def test_a_worker_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
    mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
) -> None:
    world = make_world(8)
    worker = workers(mqtt_broker.url, world, batch=5)
    tokens = [t for m in range(8) for t in world.readings(m, range(60))]
    for m in range(8):
        world.expect(m, range(60))
    publish(mqtt_broker.url, as_messages(tokens))  # the broker holds them all for the worker
    for at_least in (120, 280):
        wait_until(lambda n=at_least: world.stored() >= n, f"{at_least} stored", worker)
        worker.kill()
        assert world.stored() < 480, "the worker finished before it could be killed"
        worker.start()  # the same client id: the broker hands back what was not acknowledged
    wait_until(lambda: world.stored() == 480, "480 readings stored", worker)
    world.assert_every_reading_stored_once(480)
    world.assert_same_wallets_as_reference()
    assert worker.stop() == 0


def test_bad_messages_are_logged_and_dead_lettered_while_the_good_ones_around_them_credit(
    mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
) -> None:
    world = make_world(2)
    meter, other = world.meters
    revoked = add_device(world.platform, meter.resident_id)
    world.platform.bus.handle(commands.RevokeDevice(meter.resident_id, revoked.device_id))
    dead_letters = DeadLetters(mqtt_broker.url)
    worker = workers(mqtt_broker.url, world)
    ts, imported, exported = claims(0, 20)
    stranger = Ed25519PrivateKey.generate()
    unsigned = jwt.encode(
        {"seq": 20, "ts": ts, "import_wh": imported, "export_wh": exported},
        None,
        algorithm="none",
        headers={"kid": meter.device_id},
    )
    good = world.readings(0, range(10))
    topic = mqtt_batching.reading_topic(meter.device_id)
    bad: list[tuple[str, tuple[str, bytes]]] = [
        ("bad_signature", (topic, sign(stranger, meter.device_id, seq=20, ts=ts,
                                       import_wh=imported, export_wh=exported).encode())),
        ("unsupported_alg", (topic, unsigned.encode())),
        ("malformed", (topic, good[9].rsplit(".", 1)[0].encode() + b".")),  # no signature
        ("revoked_key", mqtt_batching.reading_message(revoked.reading(0, ts, 0, 0))),
        ("malformed", (topic, b"this is not a JWS")),
        ("malformed", (topic, b"\xff\xfe\x00 binary, not UTF-8")),
        ("topic_mismatch", (mqtt_batching.reading_topic(other.device_id), good[9].encode())),
        ("too_large", (topic, b"A" * 1025)),
    ]  # fmt: skip
    messages = as_messages(good[:2])
    for (_, message), token in zip(bad, good[2:], strict=True):  # each between good ones
        messages += [message, mqtt_batching.reading_message(token)]
    world.expect(0, range(10))
    publish(mqtt_broker.url, messages)
    wait_until(lambda: worker.handled() == len(messages), "every message handled", worker)
    accepted, anomaly, _duplicates, rejected = worker.counts()
    assert (accepted, anomaly, rejected) == (10, 0, 8)
    world.assert_same_wallets_as_reference()

    logged = worker.run_log()
    for reason, (topic_name, _) in bad:
        device = topic_name.removeprefix(mqtt_batching.READINGS_PREFIX)
        assert f"reading rejected reason={reason} topic={topic_name} device={device}" in logged
    wait_until(lambda: len(dead_letters.received()) == 8, "8 dead letters", worker)
    letters = dead_letters.received()
    dead_letters.close()
    assert sorted((t, body["reason"], body["topic"]) for t, body in letters) == sorted(
        (
            mqtt_batching.REJECTED_PREFIX + t.removeprefix(mqtt_batching.READINGS_PREFIX),
            reason,
            t,
        )
        for reason, (t, _) in bad
    )
    by_reason = {body["reason"]: body for _, body in letters}
    assert "payload" not in by_reason["too_large"]  # big or binary: a hash is enough
    assert len(by_reason["too_large"]["sha256"]) == 64
    assert by_reason["topic_mismatch"]["payload"] == good[9]
    assert worker.stop() == 0


def test_two_workers_in_a_shared_subscription_split_the_readings_and_the_total_is_exact(
    mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
) -> None:
    world = make_world(4)
    first = workers(mqtt_broker.url, world, "worker-1")
    second = workers(mqtt_broker.url, world, "worker-2")
    tokens = [t for m in range(4) for t in world.readings(m, range(50))]
    for m in range(4):
        world.expect(m, range(50))
    publish(mqtt_broker.url, as_messages(tokens))
    wait_until(lambda: first.handled() + second.handled() == 200, "200 handled", first, second)
    assert first.stop() == 0
    assert second.stop() == 0
    one, two = first.counts(), second.counts()
    assert one[0] > 0, (one, two)  # each took its share ...
    assert two[0] > 0, (one, two)
    assert one[0] + two[0] == 200  # ... and together exactly every reading once
    assert one[2] + two[2] == 0
    world.assert_every_reading_stored_once(200)
    world.assert_same_wallets_as_reference()


def test_a_worker_reconnects_when_the_broker_comes_back(
    own_mqtt_broker: MosquittoServer,
    make_world: Callable[..., World],
    workers: Callable[..., Worker],
) -> None:
    world = make_world(2)
    worker = workers(own_mqtt_broker.url, world)
    for m in range(2):
        world.expect(m, range(30))
    publish(own_mqtt_broker.url, as_messages(world.readings(0, range(30))))
    wait_until(lambda: world.stored() == 30, "the first meter's readings stored", worker)
    own_mqtt_broker.restart()
    worker.wait_subscribed(times=2)
    assert "lost the broker" in worker.run_log()
    publish(own_mqtt_broker.url, as_messages(world.readings(1, range(30))))
    wait_until(lambda: world.stored() == 60, "every reading stored", worker)
    world.assert_every_reading_stored_once(60)
    world.assert_same_wallets_as_reference()
    assert worker.stop() == 0


def test_the_worker_refuses_a_bad_broker_url_with_a_reason(tmp_path: Path) -> None:
    for url, exit_code in (("http://127.0.0.1:1883", 2), ("mqtt://user:hunter2@host", 2)):
        result = cityshare("ingest", "mqtt", "--broker", url, cwd=tmp_path)
        assert result.returncode == exit_code, result.stdout + result.stderr
        assert "error:" in result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_session_created_before_devices_publish_keeps_their_readings_for_its_worker(
    mqtt_broker: MosquittoServer, make_world: Callable[..., World], tmp_path: Path
) -> None:
    """A reading published before any worker's session exists is lost (the broker keeps
    nothing for a topic no one subscribes to); `--create-session-only` creates the session
    first and says when it is ready, and the worker later gets every reading published since."""
    world = make_world(1)
    group = f"g{uuid.uuid4().hex[:10]}"
    client_id = f"{group}-worker-1"
    ready = tmp_path / "worker-1.ready"
    made = cityshare(
        "ingest", "mqtt", "--broker", mqtt_broker.url, "--group", group, "--client-id", client_id,
        "--create-session-only", "--ready-file", str(ready), cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    said = made.stdout + made.stderr
    assert f"subscribed topic=$share/{group}/cityshare/readings/+ client_id={client_id}" in said
    assert "ready=true" in said
    assert f"client_id={client_id}" in ready.read_text()

    # No worker is running: the broker keeps what devices publish for the session.
    publish(mqtt_broker.url, as_messages(world.readings(0, range(6))))
    world.expect(0, range(6))
    worker = Worker(tmp_path, mqtt_broker.url, world.url, world.key_dir, group, client_id)
    try:
        worker.start()
        wait_until(lambda: world.stored() == 6, "the 6 readings stored", worker)
        world.assert_same_wallets_as_reference()
        assert worker.stop() == 0
    finally:
        worker.close()
    world.assert_every_reading_stored_once(6)
