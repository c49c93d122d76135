"""`cityshare bench`: measured scenarios, one per capability (figures go in BENCHMARKS.md)."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cityshare.cli.common import JSON_OPTION, console, print_json

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
