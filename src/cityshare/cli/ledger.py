"""`cityshare ledger`: look at accounts and statements, release expired holds, check invariants."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from cityshare.access.policy import Purpose
from cityshare.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    READ_AS,
    console,
    open_platform,
    print_json,
    purpose_option,
    refused_read,
    shell_reader,
)
from cityshare.domain import commands
from cityshare.domain.ledger import MAX_INT, Ledger
from cityshare.services import ledger as ledger_service
from cityshare.services.access import ReadRefused

app = typer.Typer(help="Inspect and check the double-entry ledger.", no_args_is_help=True)

READ_PURPOSE = purpose_option(Purpose.BILLING, serves="billing or audit; wallets are billing's")


@app.command()
def check(database_url: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Check the invariants: per ledger debits equal credits, no flagged account below zero,
    and every account's balances equal what its transfers add up to. Exit 1 on any problem."""
    platform = open_platform(database_url)
    try:
        report = ledger_service.check_invariants(platform.uow())
    finally:
        platform.close()
    if as_json:
        print_json({"ok": report.ok, **asdict(report)})
    else:
        table = Table(
            "ledger", "debits posted", "credits posted", "debits pending", "credits pending"
        )
        for row in report.ledgers:
            table.add_row(
                *(
                    str(row[k])
                    for k in (
                        "ledger",
                        "debits_posted",
                        "credits_posted",
                        "debits_pending",
                        "credits_pending",
                    )
                )
            )
        console.print(table)
        for problem in report.problems:
            console.print(f"[red]✗[/] {problem}")
        if report.ok:
            console.print(f"[green]✓[/] {report.accounts_checked} accounts consistent")
    raise typer.Exit(0 if report.ok else 1)


@app.command(
    help=f"Show one account and its balances. A resident's account is their data. {READ_AS}"
)
def account(
    account_id: int = typer.Argument(..., min=1, max=MAX_INT, help="Account id."),
    purpose: Purpose = READ_PURPOSE,
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    platform = open_platform(database_url)
    try:
        found = platform.personal_data.account(shell_reader(purpose), account_id, purpose)
    except ReadRefused as exc:
        raise refused_read(exc) from exc
    finally:
        platform.close()
    if as_json:
        print_json({**asdict(found), "balance": found.balance, "available": found.available})
        return
    ledger = Ledger(found.ledger)
    console.print(
        f"account {found.id} · {ledger.name} ({ledger.unit}) · code {found.code} · "
        f"owner {found.owner or '-'}\n"
        f"balance {found.balance}  available {found.available}  "
        f"(debits posted {found.debits_posted}, pending {found.debits_pending}; "
        f"credits posted {found.credits_posted}, pending {found.credits_pending})"
    )


@app.command(
    help="An account's history with the running posted balance, oldest first. A resident's "
    f"account is their data. {READ_AS}"
)
def statement(
    account_id: int = typer.Argument(..., min=1, max=MAX_INT, help="Account id."),
    after: int = typer.Option(
        0, min=0, max=MAX_INT, help="Timestamp cursor (from the previous page)."
    ),
    limit: int = typer.Option(50, min=1, max=1000, help="Lines per page."),
    purpose: Purpose = READ_PURPOSE,
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    platform = open_platform(database_url)
    try:
        result = platform.personal_data.account_statement(
            shell_reader(purpose), account_id, purpose, after=after, limit=limit
        )
    except ReadRefused as exc:
        raise refused_read(exc) from exc
    finally:
        platform.close()
    if as_json:
        print_json(
            {
                "account_id": account_id,
                "lines": [asdict(x) for x in result.lines],
                "next_after": result.next_after,
            }
        )
        return
    table = Table("transfer", "kind", "counterparty", "change", "balance", "timestamp")
    for line in result.lines:
        table.add_row(
            str(line.transfer_id),
            line.kind,
            str(line.counterparty),
            f"{line.change:+d}"
            if line.change
            else f"({line.amount} held)"
            if line.kind == "pending"
            else "0",
            str(line.balance),
            str(line.timestamp),
        )
    console.print(table)
    if result.next_after is not None:
        console.print(f"more: --after {result.next_after}")


@app.command()
def expire(database_url: str | None = DB_OPTION) -> None:
    """Release every pending transfer whose timeout has passed."""
    platform = open_platform(database_url)
    try:
        total = 0
        while n := platform.bus.handle(commands.ExpirePendingTransfers()):
            total += n
    finally:
        platform.close()
    console.print(f"released {total} expired pending transfers")
