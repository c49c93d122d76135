"""`cityshare org`: register and list organisations (operators, providers, community assets).

Over HTTP the same is `POST /api/v1/organisations` with an admin credential; this runs where
the platform runs, for a fresh deployment's first organisations.
"""

from __future__ import annotations

from typing import Any

import typer

from cityshare.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    console,
    err_console,
    open_platform,
    print_json,
)
from cityshare.domain import commands
from cityshare.domain.organisations import OrgKind
from cityshare.services import identity
from cityshare.services.identity import IdentityError
from cityshare.store.identity_repo import OrganisationRow

app = typer.Typer(
    help="Organisations: operators (chargers, car parks, fleets), energy providers and "
    "community assets. Each owns devices and holds wallets like a resident.",
    no_args_is_help=True,
)


def _as_json(row: OrganisationRow) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "name": row.name, "domain": row.domain}


@app.command()
def create(
    kind: OrgKind = typer.Option(..., help="operator, provider or community."),
    name: str = typer.Option(..., help="A unique name shown to residents."),
    domain: str | None = typer.Option(
        None, help="An operator's domain: energy, transit or parking."
    ),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Register an organisation and open its wallets; prints its id."""
    platform = open_platform(database_url)
    try:
        row = platform.bus.handle(commands.CreateOrganisation(kind.value, name, domain))
    except IdentityError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        platform.close()
    if as_json:
        print_json(_as_json(row))
    else:
        typer.echo(row.id)


@app.command("list")
def list_(
    kind: OrgKind | None = typer.Option(None, help="Only this kind."),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List organisations."""
    platform = open_platform(database_url)
    try:
        rows = identity.organisations(platform.uow(), kind.value if kind else None)
    finally:
        platform.close()
    if as_json:
        print_json([_as_json(r) for r in rows])
        return
    for r in rows:
        console.print(f"{r.id}  {r.kind:<9}  {r.domain or '-':<8}  {r.name}")
