"""`cityshare bench ingest`: the command (wired into `cityshare bench` in cli/bench.py)."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cityshare.cli.common import JSON_OPTION, console, print_json


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
    as_json: bool = JSON_OPTION,
) -> None:
    """Signed meter readings end to end (verify, deduplicate, credit, log, durable commit):
    readings per second, and how much of the time is signature checking."""
    from cityshare.bench import ingest as scenario

    def measure(progress: scenario.Progress | None = None) -> dict[str, Any]:
        return scenario.run(
            devices=devices,
            intervals=intervals,
            batch=batch,
            database_url=database_url,
            workers=workers,
            pipeline=pipeline,
            progress=progress,
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
