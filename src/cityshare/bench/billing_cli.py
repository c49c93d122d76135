"""`cityshare bench billing`: the command (wired into `cityshare bench` in bench/cli.py)."""

from __future__ import annotations

import typer

from cityshare.cli.common import JSON_OPTION, console, print_json


def billing_bench(
    residents: int = typer.Option(1_000, min=1, help="Residents, each with one meter."),
    intervals: int = typer.Option(96, min=1, help="15-minute intervals per meter (96 = a day)."),
    batch: int = typer.Option(4_096, min=1, max=100_000, help="Intervals per transaction."),
    database_url: str | None = typer.Option(
        None, "--db", help="Database URL (default: a fresh SQLite file in a temporary folder)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Bill N * K metered intervals pay-as-you-go (price per window and provider, carried
    remainders, payments from INR wallets, arrears, every record logged, durable commits):
    intervals billed per second; then a rerun that must bill nothing."""
    from cityshare.bench import billing as scenario

    with console.status("ingesting readings, then billing…"):
        result = scenario.run(
            residents=residents, intervals=intervals, batch=batch, database_url=database_url
        )
    if as_json:
        print_json(result)
        return
    console.print(
        f"[bold]{result['intervals_billed_per_s']:,.0f} intervals billed/s[/] "
        f"({result['bills']:,} bills from {result['examined']:,} intervals of "
        f"{result['residents']:,} meters in {result['seconds']} s, {result['batches']} batches "
        f"of {result['batch']}, {result['database']}; {result['us_per_interval']} µs/interval)\n"
        f"paid {result['paid_bills']:,} bills ({result['paid_paise']:,} paise); "
        f"{result['unpaid_bills']:,} left in arrears by {result['residents_short']:,} residents "
        f"with empty wallets\n"
        f"rerun {result['rerun_seconds']} s, billed nothing: {result['rerun_billed_nothing']} · "
        f"invariants {'ok' if result['invariants_ok'] else 'BROKEN'} · {result['machine']}"
    )
