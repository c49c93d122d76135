"""`cityshare ingest`: doors for signed meter readings other than HTTP (MQTT for now)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from cityshare.cli.common import DB_OPTION, console, err_console, settings_with
from cityshare.energy import mqtt
from cityshare.energy.mqtt_batching import reading_message
from cityshare.energy.readings import ReadingError

app = typer.Typer(
    help="Take signed meter readings from devices through a message broker (MQTT): run a "
    "worker, or publish readings as a device does.",
    no_args_is_help=True,
)

BROKER_OPTION = typer.Option(
    ...,
    "--broker",
    help="The broker: mqtt://host:port, or mqtts://host:port for TLS. Its user name and "
    "password come from CITYSHARE_MQTT_USERNAME and CITYSHARE_MQTT_PASSWORD.",
    show_default=False,
)
CA_OPTION = typer.Option(
    None,
    "--ca-file",
    help="PEM file of the CA that signed an mqtts:// broker's certificate (default: the "
    "system's CAs).",
    exists=True,
    dir_okay=False,
)


def broker_address(url: str) -> mqtt.Broker:
    """The broker `--broker` names; a bad URL is a usage error (exit 2)."""
    try:
        return mqtt.parse_broker(url)
    except mqtt.MqttError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("mqtt")
def mqtt_worker(
    broker: str = BROKER_OPTION,
    group: str = typer.Option(
        mqtt.DEFAULT_GROUP,
        "--group",
        help="Shared-subscription group: the workers of one group share the readings, each "
        "message going to one of them.",
    ),
    client_id: str | None = typer.Option(
        None,
        "--client-id",
        help="This worker's MQTT client id, the same at every restart (the broker keeps its "
        "session, subscription and unacknowledged messages under it); each worker of a group "
        "needs its own, used for no other group. Default: cityshare-GROUP-HOSTNAME.",
        show_default=False,
    ),
    batch: int = typer.Option(500, "--batch", min=1, max=100_000, help="Most readings per commit."),
    linger_ms: int = typer.Option(
        50,
        "--linger-ms",
        min=0,
        max=60_000,
        help="How long a batch waits for more readings after its first one.",
    ),
    session_expiry: int = typer.Option(
        7 * 86400,
        "--session-expiry",
        min=60,
        max=2**32 - 1,
        help="Seconds the broker keeps this worker's session, and the readings queued for it, "
        "while the worker is away.",
    ),
    stats_every: float = typer.Option(
        10.0,
        "--stats-every",
        min=0.05,
        help="Seconds between log lines counting what was ingested (when anything was).",
    ),
    ready_file: Path | None = typer.Option(
        None,
        "--ready-file",
        help="Write this file once the broker has confirmed the subscription: from then on "
        "every reading published is kept for this worker's session (also while it is stopped, "
        "up to --session-expiry). Left in place at exit.",
        dir_okay=False,
    ),
    create_session_only: bool = typer.Option(
        False,
        "--create-session-only",
        help="Create this worker's session and subscription at the broker (readiness as "
        "above), then disconnect without taking any reading, and exit 0. Run it, with the "
        "worker's own --client-id and --group, before devices publish: a reading published "
        "before any worker's session exists is lost.",
    ),
    ca_file: Path | None = CA_OPTION,
    database_url: str | None = DB_OPTION,
    log_level: str | None = typer.Option(None, help="debug, info, warning or error."),
) -> None:
    """Run an ingestion worker: readings from the broker, verified, stored and credited.

    It takes readings from cityshare/readings/DEVICE (one JWS per message, QoS 1), handles
    them in batches, and acknowledges each message only once its batch has committed, so a
    crash loses and doubles nothing.

    Rejected messages are logged with their reason and published as JSON to
    cityshare/rejected/DEVICE. SIGTERM or Ctrl-C: the batch in hand is finished and
    acknowledged, then the worker disconnects.

    Ready: once the broker confirms the subscription the worker logs "subscribed topic=...
    client_id=... ready=true" (and writes --ready-file). The broker keeps readings only for
    sessions that exist when they are published: start each worker once (or with
    --create-session-only) before devices publish.
    """
    from cityshare.bootstrap import bootstrap
    from cityshare.kernel.logging import configure_logging

    address = broker_address(broker)
    try:
        mqtt.check_group(group)
    except mqtt.MqttError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    settings = settings_with(database_url)
    if log_level:
        settings = settings.model_copy(update={"log_level": log_level})
    configure_logging(settings.log_level)
    password = settings.mqtt_password
    config = mqtt.WorkerConfig(
        broker=address,
        client_id=client_id or mqtt.default_client_id(group),
        group=group,
        batch=batch,
        linger_ms=linger_ms,
        session_expiry_s=session_expiry,
        username=settings.mqtt_username,
        password=password.get_secret_value() if password else None,
        ca_file=ca_file,
        ready_file=ready_file,
        setup_only=create_session_only,
    )
    if create_session_only:
        try:
            mqtt.MqttWorker(_no_ingestion, config).run()
        except mqtt.MqttError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from exc
        console.print(
            f"session {config.client_id} subscribed to {mqtt.shared_subscription(group)}: "
            f"readings published from now on are kept for it for {session_expiry} s",
            markup=False,
            highlight=False,
        )
        return
    platform = bootstrap(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            err_console.print(f"{signal.Signals(signum).name}: stopping after the current batch")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        mqtt.MqttWorker(platform.bus.handle, config, stop=stop, stats_every_s=stats_every).run()
    except mqtt.MqttError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        platform.close()


def _no_ingestion(_: Any) -> Any:
    """`--create-session-only` takes no reading (its worker never hands one over)."""
    raise AssertionError("a session-only worker ingests nothing")


@app.command("publish")
def publish(
    source: str = typer.Argument(
        ..., metavar="FILE|-", help="Signed readings (JWS), one a line; - reads standard input."
    ),
    broker: str = BROKER_OPTION,
    ca_file: Path | None = CA_OPTION,
) -> None:
    """Publish signed readings as their devices do (for tests and trials).

    Each line goes to cityshare/readings/KID (the device its header names) with QoS 1; the
    command waits until the broker has taken every one.

    Lines that are not well-formed readings are reported with their reason and not sent
    (exit status 1); the others are published all the same. Signatures are not checked here:
    the workers do that.
    """
    address = broker_address(broker)
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err_console.print(f"[red]error:[/] cannot read {source}: {exc}")
        raise typer.Exit(2) from exc
    messages: list[tuple[str, bytes]] = []
    bad = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            messages.append(reading_message(line))
        except ReadingError as exc:
            bad += 1
            err_console.print(f"line {number}: not sent ({exc.reason}: {exc})")
    settings = settings_with(None)
    password = settings.mqtt_password
    try:
        sent = mqtt.publish_messages(
            address,
            messages,
            username=settings.mqtt_username,
            password=password.get_secret_value() if password else None,
            ca_file=ca_file,
        )
    except mqtt.MqttError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"published {sent} reading{'s' if sent != 1 else ''} to {address.url}")
    if bad:
        raise typer.Exit(1)
