"""`cityshare energy`: bill imported energy (pay-as-you-go), print a resident's statement, and
credit the readings of meters gone silent.

`serve` bills every `CITYSHARE_BILLING_SECONDS` and sweeps every
`CITYSHARE_READING_SWEEP_SECONDS`; `cityshare energy bill` and `cityshare energy sweep` do the
same by hand (from cron, or after a batch of top-ups) against the same database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from cityshare.billing import commands as billing_commands
from cityshare.billing.model import BillingError
from cityshare.billing.schemas import statement_json
from cityshare.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    READ_AS,
    console,
    err_console,
    open_platform,
    print_json,
    purpose_option,
    refused_read,
    shell_reader,
)
from cityshare.energy import commands as energy_commands
from cityshare.identity.access import ReadRefused
from cityshare.identity.policy import Purpose

app = typer.Typer(
    help="Energy: bill imported energy from residents' INR wallets, print statements, and "
    "credit the readings of meters gone silent (sweep).",
    no_args_is_help=True,
)


@app.command()
def bill(
    up_to: int | None = typer.Option(
        None,
        "--up-to",
        min=0,
        help="Bill intervals recorded up to this instant (unix seconds; default: now).",
    ),
    batch: int = typer.Option(4096, min=1, max=100_000, help="Intervals per transaction."),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Bill every meter interval not billed yet and pay what residents' wallets can; bills
    left unpaid (arrears) are paid by a later run once the wallet is topped up."""
    platform = open_platform(database_url)
    try:
        outcome = platform.bus.handle(
            billing_commands.BillEnergy(None if up_to is None else up_to * 1_000_000_000, batch)
        )
    except BillingError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        platform.close()
    data: dict[str, Any] = {
        "examined": outcome.examined,
        "bills": outcome.bills,
        "billed_paise": outcome.billed,
        "unpriced": outcome.unpriced,
        "paid_bills": outcome.paid_bills,
        "paid_paise": outcome.paid,
        "unpaid_bills": outcome.unpaid_bills,
        "residents_short": len(outcome.short),
        "batches": outcome.batches,
    }
    if as_json:
        print_json(data)
        return
    console.print(
        f"{outcome.bills:,} intervals billed ({_rupees(outcome.billed)}) of "
        f"{outcome.examined:,} examined; {outcome.paid_bills:,} bills paid "
        f"({_rupees(outcome.paid)}); {outcome.unpaid_bills:,} new bills unpaid, "
        f"{len(outcome.short):,} residents short of funds"
        + (f"; {outcome.unpriced:,} with no price in force" if outcome.unpriced else "")
    )


@app.command()
def sweep(
    limit: int = typer.Option(1000, min=1, max=100_000, help="Devices per transaction."),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Credit the readings of meters gone silent: a reading that has waited the tariff's gap
    horizon (rules.gap_horizon_s) for a lost one joins its chain over the gap, as the meter's
    next reading would have made it. `serve` does this every CITYSHARE_READING_SWEEP_SECONDS."""
    platform = open_platform(database_url)
    try:
        outcome = platform.bus.handle(energy_commands.SweepWaitingReadings(limit))
    finally:
        platform.close()
    credited = outcome.credited
    data = {
        "devices": outcome.devices,
        "intervals": outcome.intervals,
        "import_wh": credited.import_wh,
        "export_wh": credited.export_wh,
        "carbon_g": credited.carbon_g,
        "credit_milli": credited.credit_milli,
    }
    if as_json:
        print_json(data)
        return
    console.print(
        f"{outcome.devices:,} silent devices swept: {outcome.intervals:,} intervals joined, "
        f"{_kwh(credited.export_wh)} kWh exported and {_kwh(credited.import_wh)} kWh imported "
        f"credited ({credited.carbon_g:,} g CO2e, {_kwh(credited.credit_milli)} points)"
    )


def _rupees(paise: int) -> str:
    sign = "-" if paise < 0 else ""
    whole, part = divmod(abs(paise), 100)
    return f"{sign}₹{whole:,}.{part:02d}"


def _kwh(wh: int) -> str:
    whole, part = divmod(wh, 1000)
    return f"{whole:,}.{part:03d}"


@app.command(help=f"""A resident's monthly statement: energy imported and billed per provider
and window, exports and credits per window, payments, arrears and the INR wallet. {READ_AS}""")
def statement(
    vid: str = typer.Option(..., help="The resident's virtual id (16 digits)."),
    month: str = typer.Option(
        None, help="YYYY-MM in the tariff's timezone (default: the current month)."
    ),
    purpose: Purpose = purpose_option(Purpose.BILLING, serves="a statement serves billing"),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    platform = open_platform(database_url)
    try:
        zone = platform.tariff.zone
        if month is None:
            now = dt.datetime.fromtimestamp(platform.clock.now_ns() // 1_000_000_000, zone)
            month = f"{now.year:04d}-{now.month:02d}"
        try:
            s = platform.personal_data.energy_statement(
                shell_reader(purpose), vid, month, purpose
            )
        except BillingError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
        except ReadRefused as exc:
            raise refused_read(exc) from exc
    finally:
        platform.close()
    if as_json:
        print_json(statement_json(s))
        return
    console.print(f"[bold]Statement {s.month}[/] ({s.timezone}) for VID {vid}")
    imports = Table("provider", "window", "kWh", "billed", title="Energy imported")
    for line in s.imports:
        name = line.provider or ("no price in force" if line.provider_id == 0 else "?")
        imports.add_row(name, line.window, _kwh(line.import_wh), _rupees(line.amount))
    imports.add_row("[bold]total[/]", "", _kwh(sum(i.import_wh for i in s.imports)),
                    _rupees(s.billed))  # fmt: skip
    console.print(imports)
    if s.unbilled_import_wh:
        console.print(f"not billed yet: {_kwh(s.unbilled_import_wh)} kWh")
    exports = Table("window", "kWh", "carbon g", "points", title="Energy exported")
    for e in s.exports:
        exports.add_row(e.window, _kwh(e.export_wh), f"{e.carbon_g:,}", _kwh(e.credit_milli))
    exports.add_row("[bold]total[/]", _kwh(s.export_wh), f"{s.carbon_g:,}", _kwh(s.credit_milli))
    console.print(exports)
    wallet = Table("INR wallet", "amount", title="Wallet")
    for label, amount in (
        ("opening balance", s.opening),
        ("received (top-ups)", s.received),
        ("energy bills paid", -s.paid),
        ("other payments", -s.other_debits),
        ("closing balance", s.closing),
    ):
        wallet.add_row(label, _rupees(amount))
    console.print(wallet)
    for p in s.payments:
        console.print(f"paid {p.provider or p.provider_id}: {_rupees(p.amount)} ({p.count} bills)")
    console.print(
        f"arrears at the month's end: {_rupees(s.arrears_at_close)} "
        f"({s.arrears_bills_at_close} bills); now: {_rupees(s.arrears_now)} "
        f"({s.arrears_bills_now} bills)"
    )
