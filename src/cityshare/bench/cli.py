"""`cityshare bench`: measured scenarios, one per capability (figures go in BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from cityshare.bench.billing_cli import billing_bench
from cityshare.bench.ingest_cli import ingest_bench
from cityshare.cli.common import JSON_OPTION, console, err_console, print_json

app = typer.Typer(help="Run a benchmark scenario and print its figures.", no_args_is_help=True)


@app.command("ledger")
def ledger_bench(
    transfers: int = typer.Option(200_000, min=1, help="Transfers to post."),
    accounts: int = typer.Option(10_000, min=2, help="Funded wallets to move them among."),
    batch: int = typer.Option(8_190, min=1, max=100_000, help="Transfers per batch (one commit)."),
    naive: int = typer.Option(2_000, min=1, help="Transfers for the one-per-transaction run."),
    database_url: str | None = typer.Option(
        None, "--db", help="Database URL (default: a fresh SQLite file in a temporary folder)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Post random transfers among funded wallets, every rule checked, each batch committed
    durably; compare with a raw bulk insert of the same rows and with one transfer per
    transaction."""
    from cityshare.bench import ledger as scenario

    if as_json:
        print_json(
            scenario.run(
                transfers=transfers,
                accounts=accounts,
                batch=batch,
                database_url=database_url,
                naive=naive,
            )
        )
        return
    with Progress(
        TextColumn("transfers"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("transfers", total=transfers)
        result = scenario.run(
            transfers=transfers,
            accounts=accounts,
            batch=batch,
            database_url=database_url,
            naive=naive,
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"[bold]{result['transfers_per_second']:,} transfers/s[/] on {result['backend']} "
        f"({result['created']:,} in {result['seconds']} s, batch {batch}, {accounts:,} accounts)\n"
        f"raw {result['raw_insert']}: {result['raw_rows_per_second']:,} rows/s → "
        f"ratio {result['ratio_to_raw']}\n"
        f"one per transaction: {result['naive_transfers_per_second']:,} transfers/s → "
        f"batching is {result['speedup_over_naive']}x faster\n"
        f"invariants {'ok' if result['invariants_ok'] else 'BROKEN'} · {result['machine']}"
    )


@app.command("log")
def log_bench(
    leaves: int = typer.Option(1_000_000, min=1, help="Leaves to append."),
    batch: int = typer.Option(10_000, min=1, max=1_000_000, help="Leaves per commit."),
    proofs: int = typer.Option(2_000, min=1, help="Inclusion and consistency proofs to time."),
    database_url: str | None = typer.Option(
        None,
        "--db",
        help="Database URL with an empty audit log (default: a fresh SQLite file in a "
        "temporary folder).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Append leaves to the audit log in durable batches, each commit signing a checkpoint;
    time inclusion and consistency proofs at the final size as the API serves them; compare
    with a raw bulk insert of the same leaf rows without the tree."""
    from cityshare.bench import log as scenario

    def run(progress: scenario.Progress | None) -> dict[str, Any]:
        try:
            return scenario.run(
                leaves=leaves,
                batch=batch,
                proofs=proofs,
                database_url=database_url,
                progress=progress,
            )
        except ValueError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc

    if as_json:
        print_json(run(None))
        return
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.advance(tasks[phase], done)

        result = run(advance)
    inclusion, consistency = result["inclusion_proof"], result["consistency_proof"]
    console.print(
        f"[bold]{result['leaves_per_second']:,} leaves/s[/] appended durably on "
        f"{result['backend']} ({result['n']:,} in {result['seconds']} s, batch {batch}, "
        f"{result['checkpoints_signed']:,} checkpoints signed)\n"
        f"raw leaf rows, no tree: {result['raw_rows_per_second']:,} rows/s → "
        f"ratio {result['ratio_to_raw']}"
        + (
            f" · one bulk statement per batch: {result['raw_bulk_rows_per_second']:,} rows/s → "
            f"ratio {result['ratio_to_raw_bulk']}"
            if result["raw_bulk_rows_per_second"]
            else ""
        )
        + "\n"
        f"inclusion proof: median {inclusion['median_ms']} ms, p99 {inclusion['p99_ms']} ms · "
        f"consistency proof: median {consistency['median_ms']} ms, "
        f"p99 {consistency['p99_ms']} ms ({inclusion['n']:,} each, "
        f"{'all verified' if result['proofs_verified'] else 'NOT VERIFIED'})\n"
        f"{result['machine']}"
    )


app.command("ingest")(ingest_bench)
app.command("billing")(billing_bench)


@app.command("community")
def community_bench(
    holders: int = typer.Option(10_000, min=1, help="Shareholders of the asset."),
    database_url: str | None = typer.Option(
        None, "--db", help="Database URL (default: a fresh SQLite file in a temporary folder)."
    ),
    audit: bool = typer.Option(False, "--audit", help="Run `audit verify` on the result."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Pay one settlement period of a community asset out to N holders (pro rata, one linked
    chain of transfers, every record logged, one durable commit); then rerun it (a no-op)."""
    from cityshare.bench import community as scenario

    with console.status("setting up holders, then distributing…"):
        result = scenario.run(holders=holders, database_url=database_url, audit=audit)
    if as_json:
        print_json(result)
        return
    console.print(
        f"[bold]{result['transfers_per_s']:,} transfers/s[/]: {result['transfers']:,} payouts "
        f"to {holders:,} holders in {result['seconds']} s on {result['database']} "
        f"({result['log_leaves']:,} log leaves, one commit)\n"
        f"paid exactly: {result['exact']} · rerun {result['rerun_seconds']} s, paid nothing: "
        f"{result['rerun_paid_nothing']} · invariants "
        f"{'ok' if result['invariants_ok'] else 'BROKEN'}\n{result['machine']}"
    )
