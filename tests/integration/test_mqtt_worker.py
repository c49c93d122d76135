"""The MQTT worker in-process against a real Mosquitto, on SQLite and PostgreSQL: what happens
between a batch's commit and its acknowledgement, made to happen on purpose."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import func, select

from cityshare.bootstrap import Platform
from cityshare.energy import commands, mqtt, mqtt_batching, tables
from cityshare.energy.handlers import IngestOutcome
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.errors import StoreUnavailable
from energy_helpers import Meter, resident_with_meter, wallets
from services import MosquittoServer

START = 1_700_000_000  # the ManualClock's start


def stored(platform: Platform) -> int:
    with platform.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(tables.meter_readings)).scalar_one()
        )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Running:
    """An MqttWorker on a thread of this process."""

    def __init__(self, worker: mqtt.MqttWorker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert worker.ready.wait(30), "the worker did not subscribe"

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> mqtt_batching.Counts:
        self.worker.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.worker.counts


@pytest.fixture
def start_worker(
    mqtt_broker: MosquittoServer, platform: Platform
) -> Iterator[Callable[..., Running]]:
    group = f"g{uuid.uuid4().hex[:10]}"
    running: list[Running] = []

    def start(handle: mqtt_batching.Handle | None = None, **overrides: object) -> Running:
        config = mqtt.WorkerConfig(
            broker=mqtt.parse_broker(mqtt_broker.url),
            client_id=f"{group}-worker",
            group=group,
            batch=10,
            linger_ms=10,
        )
        worker = mqtt.MqttWorker(handle or platform.bus.handle, config, stats_every_s=0.05)
        for name, value in overrides.items():
            setattr(worker, name, value)
        run = Running(worker)
        running.append(run)
        return run

    yield start
    for run in running:
        run.worker.stop.set()
        run.thread.join(30)


def day(meter: Meter, n: int) -> list[str]:
    return [meter.reading(s, START + 900 * s, 3 * s, 250 * s) for s in range(n)]


def publish(broker: MosquittoServer, tokens: Sequence[str]) -> None:
    messages = [mqtt_batching.reading_message(t) for t in tokens]
    mqtt.publish_messages(mqtt.parse_broker(broker.url), messages)


def test_a_batch_committed_but_never_acknowledged_comes_back_as_duplicates_and_changes_nothing(
    platform: Platform,
    clock: ManualClock,
    mqtt_broker: MosquittoServer,
    start_worker: Callable[..., Running],
) -> None:
    meter = resident_with_meter(platform)
    clock.advance(900 * 40)
    readings = day(meter, 30)
    # The first worker commits every batch and then "crashes" before each acknowledgement:
    # it never sends one, and leaves with its session (and the broker's copies) in place.
    forgetful = start_worker(ack=lambda deliveries: None)
    publish(mqtt_broker, readings)
    wait_until(lambda: forgetful.worker.counts.accepted == 30, "30 readings committed")
    assert forgetful.stop().duplicate == 0
    credited = wallets(platform, meter.resident_id)
    assert credited["ENERGY"] == 29 * 250 - 29 * 3

    again = start_worker()  # the same client id: the broker hands every message back
    wait_until(lambda: again.worker.counts.duplicate == 30, "30 messages delivered again")
    counts = again.stop()
    assert (counts.accepted, counts.duplicate, counts.rejected) == (0, 30, 0)
    assert wallets(platform, meter.resident_id) == credited
    assert stored(platform) == 30


def test_a_store_that_is_busy_is_waited_for_and_nothing_is_lost_or_doubled(
    platform: Platform,
    clock: ManualClock,
    mqtt_broker: MosquittoServer,
    start_worker: Callable[..., Running],
) -> None:
    meter = resident_with_meter(platform)
    clock.advance(900 * 40)
    busy = 3

    def sometimes_busy(cmd: commands.IngestReadings) -> IngestOutcome:
        nonlocal busy
        if busy:
            busy -= 1
            raise StoreUnavailable("database is locked")
        outcome: IngestOutcome = platform.bus.handle(cmd)
        return outcome

    running = start_worker(sometimes_busy)
    running.worker.processor.first_delay_s = 0.01
    publish(mqtt_broker, day(meter, 20))
    wait_until(lambda: stored(platform) == 20, "20 readings stored")
    wait_until(lambda: running.worker.counts.accepted == 20, "20 readings counted")
    counts = running.stop()
    assert (counts.accepted, counts.duplicate, counts.retries) == (20, 0, 3)
    assert wallets(platform, meter.resident_id)["ENERGY"] == 19 * 250 - 19 * 3
