"""`cityshare bench ingest`: the command (wired into `cityshare bench` in bench/cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cityshare.cli.common import JSON_OPTION, console, err_console, print_json
from cityshare.energy.mqtt_cli import broker_address


def ingest_bench(
    devices: int = typer.Option(1_000, min=1, help="Meters, each of its own resident."),
    intervals: int = typer.Option(96, min=1, help="15-minute readings per meter (96 = a day)."),
    batch: int = typer.Option(
        4_096, min=1, max=100_000, help="Readings per IngestReadings command (one commit)."
    ),
    workers: int = typer.Option(
        0, min=0, max=64, help="Processes checking signatures (0: in this process)."
    ),
    pipeline: bool = typer.Option(
        False, "--pipeline", help="Check the next batch's signatures while one is written."
    ),
    database_url: str | None = typer.Option(
        None, "--db", help="Database URL (default: a fresh SQLite file in a temporary folder)."
    ),
    keep: Path | None = typer.Option(
        None,
        "--keep",
        help="Keep the SQLite database (DIR/bench.db) and the log's key (DIR/log.vkey) for "
        '`cityshare audit verify --db sqlite:///DIR/bench.db --log-key "$(cat DIR/log.vkey)"`.',
    ),
    audit: bool = typer.Option(
        False, "--audit", help="Then run `cityshare audit verify` on the result (untimed)."
    ),
    replay: bool = typer.Option(
        False,
        "--replay",
        help="Then send every reading again, shuffled (a replay storm), timed on its own: "
        "each must be answered `duplicate` and change nothing.",
    ),
    via: str = typer.Option(
        "direct",
        "--via",
        help="direct: IngestReadings on the bus in this process; mqtt: published to a broker "
        "and ingested by `cityshare ingest mqtt` workers (first publish to last commit).",
    ),
    broker: str | None = typer.Option(
        None, "--broker", help="With --via mqtt: mqtt://host:port (default: a local mosquitto)."
    ),
    mqtt_workers: int = typer.Option(
        1, "--mqtt-workers", min=1, max=64, help="With --via mqtt: worker processes."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Signed meter readings end to end (verify, deduplicate, credit, log, durable commit):
    readings per second, and how much of the time is signature checking."""
    from cityshare.bench import ingest as scenario

    if via != "direct":
        direct_only = {
            "--pipeline": pipeline, "--keep": keep is not None, "--audit": audit,
            "--replay": replay,
        }  # fmt: skip
        bench_via_mqtt(
            via, devices, intervals, batch, workers, [k for k, v in direct_only.items() if v],
            database_url, broker, mqtt_workers, as_json,
        )  # fmt: skip
        return

    if keep is not None and database_url is None and (keep / "bench.db").exists():
        raise typer.BadParameter(f"{keep / 'bench.db'} exists: keep a run in a new folder")

    def measure(progress: scenario.Progress | None = None) -> dict[str, Any]:
        return scenario.run(
            devices=devices,
            intervals=intervals,
            batch=batch,
            database_url=database_url,
            workers=workers,
            pipeline=pipeline,
            progress=progress,
            keep=keep,
            audit=audit,
            replay=replay,
        )

    if as_json:
        print_json(measure())
        return
    with Progress(
        TextColumn("readings"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("readings", total=devices * intervals)
        result = measure(lambda n: bar.advance(task, n))
    t = result["time"]
    console.print(
        f"[bold]{result['readings_per_s']:,.0f} readings/s[/] ({result['n']:,} readings from "
        f"{result['devices']:,} meters in {result['seconds']} s, batches of {result['batch']}, "
        f"{result['database']}, workers {result['workers']}"
        f"{', pipelined' if result['pipeline'] else ''})"
    )
    console.print(
        f"signature checking {t['verify_s']} s ({t['verify_us_per_reading']} µs/reading), "
        f"the rest {t['write_s']} s ({t['write_us_per_reading']} µs/reading); one core "
        f"verifies {result['single_core_verify_per_s']:,.0f} readings/s"
    )
    console.print(
        f"{result['intervals_credited']:,} intervals credited, {result['log_leaves']:,} log "
        f"leaves, invariants {'ok' if result['invariants_ok'] else 'BROKEN'}"
    )
    cpu = result["cpu"]
    console.print(
        f"CPU per reading: {cpu['this_process_us_per_reading']} µs in this process, "
        f"{cpu['pool_us_per_reading']} µs in the verifier pool; all {cpu['cores']} cores doing "
        f"only this would ingest {cpu['all_cores_per_s']:,.0f} readings/s"
    )
    if "replay" in result:
        storm = result["replay"]
        console.print(
            f"replayed {storm['n']:,} readings, shuffled: [bold]{storm['per_s']:,.0f}/s[/], "
            + ("every one a duplicate, nothing changed" if storm["changed_nothing"]
               else f"[red]NOT all duplicates[/]: {storm['results']}")
        )  # fmt: skip
    if "audit" in result:
        found = result["audit"]
        console.print(
            f"audit verify: {'ok' if found['ok'] else 'FAILED'} ({found['seconds']} s)"
            + "".join(f"\n  {p}" for p in found["problems"])
        )
    if "kept" in result:
        kept = result["kept"]
        console.print(f"kept {kept['database_url']} (log key in {kept['log_key']})")


def bench_via_mqtt(
    via: str,
    devices: int,
    intervals: int,
    batch: int,
    workers: int,
    direct_only: list[str],
    database_url: str | None,
    broker: str | None,
    mqtt_workers: int,
    as_json: bool,
) -> None:
    """`cityshare bench ingest --via mqtt` (the options are `bench ingest`'s)."""
    from cityshare.bench import ingest_mqtt as scenario

    if via != "mqtt":
        err_console.print(f"[red]error:[/] --via is direct or mqtt, not {via!r}")
        raise typer.Exit(2)
    if direct_only:
        err_console.print(f"[red]error:[/] {', '.join(direct_only)}: for --via direct only")
        raise typer.Exit(2)
    if broker is not None:
        broker_address(broker)

    def measure(progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        try:
            return scenario.run(
                devices=devices,
                intervals=intervals,
                batch=batch,
                database_url=database_url,
                broker_url=broker,
                mqtt_workers=mqtt_workers,
                workers=workers,
                progress=progress,
            )
        except scenario.BenchError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from exc

    if as_json:
        print_json(measure())
        return
    with Progress(
        TextColumn("readings"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("readings", total=devices * intervals)
        result = measure(lambda n: bar.advance(task, n))
    console.print(
        f"[bold]{result['readings_per_s']:,.0f} readings/s[/] over MQTT, first publish to last "
        f"commit ({result['n']:,} readings from {result['devices']:,} meters in "
        f"{result['seconds']} s; {result['mqtt_workers']} worker(s), batches of up to "
        f"{result['batch']}, {result['database']}, {result['broker']})"
    )
    console.print(
        f"publishing alone took {result['publish_seconds']} s; "
        f"{result['intervals_credited']:,} intervals credited, {result['log_leaves']:,} log "
        f"leaves, {result['duplicates']} duplicates, invariants "
        f"{'ok' if result['invariants_ok'] else 'BROKEN'}"
    )
