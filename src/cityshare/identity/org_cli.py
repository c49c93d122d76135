"""`cityshare org`: register and list organisations (operators, providers, community assets)
and register their devices.

Over HTTP the same is `POST /api/v1/organisations` (an admin) and
`POST /api/v1/organisations/{id}/devices` (its staff); this runs where the platform runs, for a
fresh deployment's first organisations and devices. Each prints just the new id, so a script
can write `ORG=$(cityshare org create ...)`; `--json` prints what the API answers.
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
from cityshare.identity import commands
from cityshare.identity import handlers as identity
from cityshare.identity.devices import DeviceError, DeviceKind, parse_public_key
from cityshare.identity.handlers import IdentityError
from cityshare.identity.model import OrganisationRow
from cityshare.identity.organisations import MAX_PARTY_ID, ORG_ID_BASE, OrgKind
from cityshare.identity.schemas import DeviceOut

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


@app.command("add-device")
def add_device(
    org: int = typer.Option(
        ..., min=ORG_ID_BASE, max=MAX_PARTY_ID, help="The organisation (`cityshare org list`)."
    ),
    kind: DeviceKind = typer.Option(..., help="charger, meter, parking_meter, validator, ..."),
    public_key: str = typer.Option(
        ..., help="Its Ed25519 public key, base64url (`cityshare device keygen` prints one)."
    ),
    label: str | None = typer.Option(None, help="A name for people to read (64 characters)."),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a device of an organisation (a charger, a community asset's meter); prints its
    id (a charger's id is its OCPP charge point id), or with --json the API's answer."""
    platform = open_platform(database_url)
    try:
        try:
            raw = parse_public_key(public_key)
            row = platform.bus.handle(commands.RegisterDevice(org, kind.value, raw, label))
        except (DeviceError, IdentityError) as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from exc
        view = identity.device(platform.uow(), row.id)
    finally:
        platform.close()
    if as_json:
        assert view is not None
        print_json(DeviceOut.of(view).model_dump(mode="json"))
    else:
        typer.echo(row.id)
