"""`cityshare ledger`: look at accounts and statements, release expired holds, check invariants."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from cityshare.billing import commands as billing_commands
from cityshare.billing import top_ups as billing
from cityshare.billing.model import BillingError
from cityshare.billing.schemas import TopUpOut
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
from cityshare.energy import model as energy
from cityshare.identity import handlers as identity
from cityshare.identity.access import ReadRefused
from cityshare.identity.policy import Purpose
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import MAX_INT, Ledger
from cityshare.ledger.schemas import AccountOut, StatementOut

app = typer.Typer(
    help="Inspect and check the double-entry ledger; top up a resident's INR wallet.",
    no_args_is_help=True,
)

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
    help="Show one account and its balances in the API's terms (the ledger and flags by name, "
    f"as GET /api/v1/accounts/{{id}} answers). A resident's account is their data. {READ_AS}"
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
    out = AccountOut.of(found)
    if as_json:
        print_json(out.model_dump(mode="json"))
        return
    console.print(
        f"account {out.id} · {out.ledger} ({out.unit}) · code {out.code} · "
        f"flags {', '.join(out.flags) or '-'} · owner {out.owner or '-'}\n"
        f"balance {out.balance}  available {out.available}  "
        f"(debits posted {out.debits_posted}, pending {out.debits_pending}; "
        f"credits posted {out.credits_posted}, pending {out.credits_pending})",
        markup=False,
        highlight=False,
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
    out = StatementOut.of(result)
    if as_json:
        print_json(out.model_dump(mode="json"))
        return
    account = out.account
    console.print(
        f"account {account.id} · {account.ledger} ({account.unit}) · "
        f"flags {', '.join(account.flags) or '-'} · owner {account.owner or '-'}",
        markup=False,
        highlight=False,
    )
    table = Table("transfer", "kind", "counterparty", "change", "balance", "timestamp")
    for line in result.lines:
        table.add_row(
            str(line.transfer_id),
            line.kind,
            "-" if line.counterparty is None else str(line.counterparty),
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


#: The platform's named accounts (901-904, `ledger.ids`: no client may open or move them;
#: clients may open any other id below 2^61), each opened by the capability that posts to it,
#: on first use.
SYSTEM_ACCOUNTS = (*energy.PLATFORM_ACCOUNTS, billing.SETTLEMENT_ACCOUNT)


@app.command("system-accounts")
def system_accounts(database_url: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The platform's own accounts (901 credit issuance, 902 the grid, 903 carbon issuance,
    904 INR settlement), and each one's balances once it is opened (on first use)."""
    platform = open_platform(database_url)
    try:
        found = {a.id: ledger_service.get_account(platform.uow(), a.id) for a in SYSTEM_ACCOUNTS}
    finally:
        platform.close()
    outs = {i: AccountOut.of(a) for i, a in found.items() if a is not None}
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "owner": a.owner,
                    "opened": a.id in outs,
                    "account": outs[a.id].model_dump(mode="json") if a.id in outs else None,
                }
                for a in SYSTEM_ACCOUNTS
            ]
        )
        return
    table = Table("id", "owner", "ledger", "flags", "balance")
    for a in SYSTEM_ACCOUNTS:
        out = outs.get(a.id)
        table.add_row(
            str(a.id),
            str(a.owner),
            Ledger(a.ledger).name,
            ", ".join(out.flags) if out else "-",
            str(out.balance) if out else "not opened yet",
        )
    console.print(table)


@app.command("top-up")
def top_up(
    vid: str = typer.Option(..., help="The resident's virtual id (16 digits)."),
    amount_paise: int = typer.Option(..., min=1, max=MAX_INT, help="Paise to credit."),
    reference: str = typer.Option(
        ...,
        help="The bank's or UPI's transaction reference of the payment received (1-64 "
        "letters, digits and . _ : / -; case-insensitive, stored in upper case): a second "
        "top-up with it posts nothing.",
    ),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Credit fiat received at the platform's bank to a resident's INR wallet, from the INR
    settlement account (904), once per reference; as POST /api/v1/residents/{vid}/top-ups.
    Prints the top-up (`--json`: the API's answer). Exit 1: no such resident; 2: refused."""
    platform = open_platform(database_url)
    try:
        resident_id = identity.resident_by_vid(platform.uow(), vid)
        if resident_id is None:
            err_console.print("[red]error:[/] no resident has this virtual id")
            raise typer.Exit(1)
        try:
            outcome = platform.bus.handle(
                billing_commands.TopUpWallet(resident_id, amount_paise, reference, "cli")
            )
        except BillingError as exc:
            err_console.print(f"[red]error:[/] {exc} ({exc.code})")
            raise typer.Exit(2) from exc
    finally:
        platform.close()
    out = TopUpOut.of(outcome)
    if as_json:
        print_json(out.model_dump(mode="json"))
        return
    what = "topped up" if out.created else "already topped up (nothing posted)"
    console.print(
        f"top-up {out.id} {what}: {out.amount} paise from account {out.debit_account_id} to "
        f"{out.credit_account_id}, transfer {out.transfer_id}, reference {out.reference}",
        markup=False,
        highlight=False,
    )


@app.command()
def expire(database_url: str | None = DB_OPTION) -> None:
    """Release every pending transfer whose timeout has passed."""
    platform = open_platform(database_url)
    try:
        total = 0
        while n := platform.bus.handle(ledger_commands.ExpirePendingTransfers()):
            total += n
    finally:
        platform.close()
    console.print(f"released {total} expired pending transfers")
