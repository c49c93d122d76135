"""The MQTT worker's batching, acknowledgement and dead-letter rules, without a broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.energy import commands
from cityshare.energy.handlers import EnergyError, IngestOutcome, ItemResult
from cityshare.energy.model import Verdict
from cityshare.energy.mqtt import (
    Broker,
    MqttError,
    MqttWorker,
    WorkerConfig,
    parse_broker,
    shared_subscription,
)
from cityshare.energy.mqtt_batching import (
    BatchProcessor,
    Delivery,
    Rejection,
    _logfmt,
    reading_message,
    reading_topic,
    screen,
)
from cityshare.kernel.errors import StoreUnavailable
from energy_helpers import sign

DEVICE = "dev-aaaaaaaaaaaaaaaa"
OTHER = "dev-bbbbbbbbbbbbbbbb"
KEY = Ed25519PrivateKey.generate()


def answer(index: int, wire: str) -> ItemResult:
    """An item's result from its answer on the wire ("rejected:malformed")."""
    verdict, _, detail = wire.partition(":")
    return ItemResult(index, Verdict(verdict), detail or None)


def reading(seq: int, device: str = DEVICE) -> str:
    return sign(KEY, device, seq=seq, ts=1_780_000_000 + 900 * seq, import_wh=0, export_wh=seq)


def delivery(payload: str | bytes, device: str = DEVICE, mid: int = 1) -> Delivery:
    data = payload.encode() if isinstance(payload, str) else payload
    return Delivery(reading_topic(device), data, 1_780_000_000.25, mid)


class Recorder:
    """A transport and a handler that write down what happens, in order."""

    def __init__(self, results: dict[str, str] | None = None, fail: int = 0) -> None:
        self.events: list[tuple[str, object]] = []
        self.results = results or {}
        self.fail = fail  # how many handler calls raise "database is locked" first
        self.take_dead_letters = True

    def handle(self, cmd: commands.IngestReadings) -> IngestOutcome:
        assert cmd.source == "mqtt"
        if self.fail:
            self.fail -= 1
            self.events.append(("failed", len(cmd.readings)))
            raise StoreUnavailable("database is locked")
        self.events.append(("committed", list(cmd.readings)))
        return IngestOutcome(
            [answer(i, self.results.get(t, "accepted")) for i, t in enumerate(cmd.readings)]
        )

    def dead_letter(self, rejections: Sequence[Rejection]) -> bool:
        self.events.append(("dead_letter", [(r.reason, r.topic) for r in rejections]))
        return self.take_dead_letters

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.events.append(("ack", [d.mid for d in deliveries]))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def processor(rec: Recorder, stop: threading.Event | None = None) -> BatchProcessor:
    return BatchProcessor(rec.handle, rec, stop=stop, first_delay_s=0.001, max_delay_s=0.002)


def test_a_batch_is_one_command_acknowledged_only_after_it_committed() -> None:
    rec = Recorder()
    batch = [delivery(reading(seq), mid=seq + 1) for seq in range(3)]
    assert processor(rec).process(batch)
    assert rec.events == [
        ("committed", [reading(0), reading(1), reading(2)]),
        ("ack", [1, 2, 3]),
    ]


def test_a_failing_store_is_retried_and_nothing_is_acknowledged_before_it_commits() -> None:
    rec = Recorder(fail=3)
    p = processor(rec)
    assert p.process([delivery(reading(0), mid=7)])
    assert rec.kinds() == ["failed", "failed", "failed", "committed", "ack"]
    assert p.counts.retries == 3
    assert p.counts.accepted == 1


def test_a_worker_stopping_while_the_store_fails_leaves_the_batch_unacknowledged() -> None:
    rec = Recorder(fail=1)
    stop = threading.Event()
    stop.set()
    assert not processor(rec, stop).process([delivery(reading(0))])
    assert rec.kinds() == ["failed"]


def test_transport_rejections_never_stop_the_rest_of_their_batch() -> None:
    rec = Recorder()
    good = reading(1)
    batch = [
        delivery("x" * 1025, mid=1),
        delivery(b"\xff\xfe not utf-8", mid=2),
        delivery(reading(0), device=OTHER, mid=3),  # signed as DEVICE, sent on OTHER's topic
        delivery(good, mid=4),
        delivery("not a reading", mid=5),  # text: the handler says what is wrong with it
    ]
    rec.results = {"not a reading": "rejected:malformed"}
    p = processor(rec)
    assert p.process(batch)
    assert rec.events == [
        ("committed", [good, "not a reading"]),
        (
            "dead_letter",
            [
                ("too_large", f"cityshare/rejected/{DEVICE}"),
                ("malformed", f"cityshare/rejected/{DEVICE}"),
                ("topic_mismatch", f"cityshare/rejected/{OTHER}"),
                ("malformed", f"cityshare/rejected/{DEVICE}"),
            ],
        ),
        ("ack", [1, 2, 3, 4, 5]),
    ]
    assert (p.counts.accepted, p.counts.rejected) == (1, 4)


def test_results_are_counted_and_rejected_ones_dead_lettered() -> None:
    tokens = [reading(seq) for seq in range(4)]
    rec = Recorder(
        {tokens[1]: "duplicate", tokens[2]: "anomaly:impossible_power", tokens[3]: "rejected:x"}
    )
    p = processor(rec)
    assert p.process([delivery(t, mid=i) for i, t in enumerate(tokens)])
    counts = p.counts
    assert (counts.accepted, counts.duplicate, counts.anomaly, counts.rejected) == (1, 1, 1, 1)
    assert ("dead_letter", [("x", f"cityshare/rejected/{DEVICE}")]) in rec.events


def test_a_batch_whose_dead_letters_the_broker_did_not_take_is_not_acknowledged() -> None:
    rec = Recorder()
    rec.take_dead_letters = False
    assert not processor(rec).process([delivery(b"\xff", mid=1), delivery(reading(0), mid=2)])
    assert "ack" not in rec.kinds()


def test_a_reading_that_keeps_breaking_the_handler_is_isolated_and_dead_lettered() -> None:
    poison = reading(2)
    seen: list[list[str]] = []

    def handle(cmd: commands.IngestReadings) -> IngestOutcome:
        seen.append(list(cmd.readings))
        if poison in cmd.readings:
            raise ZeroDivisionError("a bug")
        return IngestOutcome([answer(i, "accepted") for i in range(len(cmd.readings))])

    rec = Recorder()
    p = BatchProcessor(handle, rec, first_delay_s=0.001, attempts=2)
    tokens = [reading(seq) for seq in range(4)]
    assert p.process([delivery(t, mid=i) for i, t in enumerate(tokens)])
    assert (p.counts.accepted, p.counts.rejected) == (3, 1)
    assert ("dead_letter", [("internal_error", f"cityshare/rejected/{DEVICE}")]) in rec.events
    assert rec.events[-1] == ("ack", [0, 1, 2, 3])
    assert [tokens[0], tokens[1]] in seen  # the halves without it went through
    assert [tokens[3]] in seen


def test_a_dead_letter_carries_a_hash_and_the_payload_only_when_it_is_short_text() -> None:
    short = json.loads(Rejection(delivery("abc"), "malformed").dead_letter())
    assert short == {
        "reason": "malformed",
        "topic": f"cityshare/readings/{DEVICE}",
        "device": DEVICE,
        "received_at": "2026-05-28T20:26:40.250Z",
        "bytes": 3,
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "payload": "abc",
    }
    for payload in (b"\xff" * 10, b"a" * 5000):
        letter = json.loads(Rejection(delivery(payload), "too_large").dead_letter())
        assert "payload" not in letter
        assert letter["bytes"] == len(payload)


def test_screen_passes_text_on_and_refuses_what_the_handler_cannot_judge() -> None:
    assert screen(delivery(reading(0))) == reading(0)
    assert screen(delivery("junk")) == "junk"
    refused = screen(delivery(reading(0), device="dev-cccccccccccccccc"))
    assert isinstance(refused, Rejection)
    assert refused.reason == "topic_mismatch"


def test_log_values_cannot_forge_a_line() -> None:
    assert _logfmt(reason="bad", topic="a b\nreason=ok") == 'reason=bad topic="a b\\nreason=ok"'


@pytest.mark.parametrize(
    ("url", "broker"),
    [
        ("mqtt://127.0.0.1:1884", Broker("127.0.0.1", 1884)),
        ("mqtt://broker.example", Broker("broker.example", 1883)),
        ("mqtts://broker.example", Broker("broker.example", 8883, tls=True)),
        ("mqtt://[::1]:1883", Broker("::1", 1883)),
    ],
)
def test_broker_urls(url: str, broker: Broker) -> None:
    assert parse_broker(url) == broker
    assert parse_broker(broker.url) == broker


@pytest.mark.parametrize(
    "url",
    ["http://host:1883", "mqtt://", "mqtt://host:99999", "mqtt://u:secret@host", "mqtt://h/x"],
)
def test_bad_broker_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(MqttError) as refused:
        parse_broker(url)
    assert "secret" not in str(refused.value)


def test_topics() -> None:
    assert shared_subscription("g1") == "$share/g1/cityshare/readings/+"
    assert reading_message(f" {reading(3)}\n") == (reading_topic(DEVICE), reading(3).encode())


def test_acknowledgements_go_back_only_on_the_connection_the_messages_came_on() -> None:
    config = WorkerConfig(Broker("127.0.0.1", 1), client_id="unit", batch=10)
    worker = MqttWorker(lambda cmd: IngestOutcome([]), config)
    sent: list[int] = []
    worker._client.ack = lambda mid, qos: sent.append(mid)
    worker._session, worker._connected = 2, True
    worker.ack(
        [
            Delivery("t", b"", 0.0, mid=1, session=1),  # before a reconnect: the broker resends it
            Delivery("t", b"", 0.0, mid=2, session=2),
            Delivery("t", b"", 0.0, mid=3, qos=0, session=2),  # QoS 0 has nothing to ack
        ]
    )
    assert sent == [2]
    worker._connected = False
    worker.ack([Delivery("t", b"", 0.0, mid=4, session=2)])
    assert sent == [2]
    assert config.in_flight == 100  # four batches, at least 100


def test_a_platform_fault_is_retried_and_its_readings_are_never_dead_lettered() -> None:
    """The platform's energy accounts being wrong is no fault of the readings: the worker waits
    (unacknowledged, at the broker) instead of halving the batch into dead letters."""
    rec = Recorder()
    failures = [EnergyError("account 901 is not the platform's CREDIT account")] * 4

    def handle(cmd: commands.IngestReadings) -> IngestOutcome:
        if failures:
            rec.events.append(("failed", len(cmd.readings)))
            raise failures.pop()
        return rec.handle(cmd)

    p = BatchProcessor(handle, rec, first_delay_s=0.001, max_delay_s=0.002)
    assert p.process([delivery(reading(0), mid=1), delivery(reading(1), mid=2)])
    assert rec.kinds() == ["failed"] * 4 + ["committed", "ack"]
