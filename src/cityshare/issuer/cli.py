"""`cityshare issuer`: the reference identity issuer, the stand-in for the national id authority."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape

from cityshare.cli.common import JSON_OPTION, console, err_console, print_json
from cityshare.identity.assertion import DEFAULT_TTL, MAX_LIFETIME
from cityshare.issuer import DEFAULT_NAME, Issuer, IssuerError
from cityshare.issuer.store import DIR_ENV

app = typer.Typer(
    help="The reference identity issuer. It stands in for the national identity authority "
    "(like UIDAI for Aadhaar): it alone holds national ids, and hands a resident a short-lived "
    "signed enrolment assertion carrying only a sector pseudonym, a revocable 16-digit virtual "
    "id (VID) and minimal attributes. The platform trusts the issuer's public key and never "
    "sees a national id.",
    no_args_is_help=True,
)
vid_app = typer.Typer(
    help="Manage a resident's virtual id (VID): revoke it, replace it, look one up.",
    no_args_is_help=True,
)
app.add_typer(vid_app, name="vid")

DIR_OPTION = typer.Option(
    None,
    "--dir",
    help=f"The issuer's own directory (default: ${DIR_ENV}, else ./issuer). The platform "
    "never reads it.",
    show_default=False,
)
NATIONAL_ID_OPTION = typer.Option(
    ...,
    "--national-id",
    help="The resident's 12-digit national id (spaces allowed). Give '-' to read it from "
    "stdin, which keeps it out of shell history and the process list.",
    show_default=False,
)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: bad input is the caller's to fix, not a crash."""
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _open(directory: Path | None) -> Issuer:
    try:
        return Issuer.open(directory)
    except IssuerError as exc:
        _fail(str(exc))


def _national_id(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def _attributes(pairs: list[str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            _fail("an attribute is NAME=VALUE, for example --attr ward=12")
        if name in attrs:
            _fail(f"the attribute {name!r} is given twice")
        attrs[name] = value
    return attrs


def _when(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


@app.command()
def init(
    directory: Path | None = DIR_OPTION,
    name: str = typer.Option(
        DEFAULT_NAME, "--name", help="The issuer's key name: the `iss` of its assertions."
    ),
) -> None:
    """Create an issuer: a signing key, a pseudonym secret and a database, in its directory.

    Refuses to overwrite an existing issuer. Prints the verifier key the platform must trust.
    """
    try:
        issuer = Issuer.init(directory, name)
    except IssuerError as exc:
        _fail(str(exc))
    with issuer:
        console.print(f"[green]✓[/] issuer {escape(issuer.name)} created in {issuer.directory}")
        console.print("Its verifier key (public; `cityshare issuer key` prints it again):")
        typer.echo(issuer.verifier.vkey)
        console.print("Trust it on the platform with:")
        typer.echo(f"CITYSHARE_ISSUER_KEYS={issuer.verifier.vkey}")


@app.command()
def key(directory: Path | None = DIR_OPTION) -> None:
    """Print the issuer's verifier key (vkey) and nothing else, for scripts and configuration."""
    with _open(directory) as issuer:
        typer.echo(issuer.verifier.vkey)


@app.command()
def enroll(
    national_id: str = NATIONAL_ID_OPTION,
    sector: str = typer.Option(
        ...,
        "--sector",
        help="Who the assertion is for (its audience); the platform's is "
        "'cityshare'. Each sector sees a different, unlinkable pseudonym.",
    ),
    attr: list[str] = typer.Option(
        [],
        "--attr",
        help="An attribute to share, NAME=VALUE; repeatable. Only ward (e.g. 12) and age_band "
        "(18-29, 30-39, ..., 80+) are allowed.",
    ),
    ttl: int = typer.Option(
        DEFAULT_TTL, "--ttl", min=1, max=MAX_LIFETIME, help="Seconds the assertion stays valid."
    ),
    directory: Path | None = DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign an enrolment assertion for a resident, to present to the platform.

    Prints the assertion alone, so `$(cityshare issuer enroll ...)` captures it; --json adds the
    VID, the pseudonym and the expiry. The first enrolment gives the resident a VID; later ones
    reuse it until it is revoked or regenerated.
    """
    attrs = _attributes(attr)
    with _open(directory) as issuer:
        try:
            enrolment = issuer.enroll(_national_id(national_id), sector, attrs, ttl)
        except IssuerError as exc:
            _fail(str(exc))
    if as_json:
        print_json(
            {
                "assertion": enrolment.assertion,
                "vid": enrolment.vid,
                "pseudonym": enrolment.pseudonym,
                "expires_at": enrolment.expires_at,
            }
        )
    else:
        typer.echo(enrolment.assertion)


@vid_app.command()
def revoke(national_id: str = NATIONAL_ID_OPTION, directory: Path | None = DIR_OPTION) -> None:
    """Revoke the resident's active VID, so it can no longer be used.

    The resident keeps their pseudonym; their next enrolment gets a fresh VID automatically.
    """
    with _open(directory) as issuer:
        try:
            revoked = issuer.revoke_vid(_national_id(national_id))
        except IssuerError as exc:
            _fail(str(exc))
    console.print(f"[green]✓[/] VID {revoked} revoked")


@vid_app.command()
def regenerate(national_id: str = NATIONAL_ID_OPTION, directory: Path | None = DIR_OPTION) -> None:
    """Replace the resident's VID: revoke the active one and print the new one (alone)."""
    with _open(directory) as issuer:
        try:
            vid = issuer.regenerate_vid(_national_id(national_id))
        except IssuerError as exc:
            _fail(str(exc))
    typer.echo(vid)


@vid_app.command()
def status(
    vid: str = typer.Argument(..., help="The 16-digit VID to look up."),
    directory: Path | None = DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Whether a VID is active or revoked, and since when. Exit 1 if this issuer never issued it."""
    with _open(directory) as issuer:
        try:
            record = issuer.vid_status(vid)
        except IssuerError as exc:
            _fail(str(exc))
    if record is None:
        err_console.print(f"[red]unknown VID[/] {escape(vid)}: this issuer never issued it")
        raise typer.Exit(1)
    if as_json:
        print_json(
            {
                "vid": record.vid,
                "state": record.state,
                "created_at": record.created_at,
                "revoked_at": record.revoked_at,
            }
        )
    elif record.revoked_at is None:
        console.print(f"{record.vid} [green]active[/] since {_when(record.created_at)}")
    else:
        console.print(
            f"{record.vid} [red]revoked[/] at {_when(record.revoked_at)} "
            f"(issued {_when(record.created_at)})"
        )
