"""`cityshare token`: issue staff credentials (a role, a domain, purposes) on the server.

Whoever can read the platform's token key can sign credentials, so this runs where the
platform runs; over HTTP the same is `POST /api/v1/credentials` with an admin credential.
"""

from __future__ import annotations

import typer

from cityshare.cli.common import DB_OPTION, JSON_OPTION, err_console, open_platform, print_json
from cityshare.identity import handlers as identity
from cityshare.identity.policy import Domain, Purpose, Role, check_grant
from cityshare.identity.tokens import Principal

app = typer.Typer(
    help="Issue credentials for staff: operators of a domain, analysts, auditors, regulators, "
    "admins. Residents and devices get theirs by enrolling and by proving their key.",
    no_args_is_help=True,
)


@app.command()
def issue(
    role: Role = typer.Option(..., help="The staff role."),
    purpose: list[Purpose] = typer.Option(
        ..., "--purpose", help="A purpose the credential grants (repeat for several)."
    ),
    subject: str = typer.Option(
        ..., help="Who holds it (a person or organisation id); access logs name it."
    ),
    domain: Domain | None = typer.Option(None, help="An operator's domain."),
    org: int | None = typer.Option(
        None, help="The organisation an operator acts for (`cityshare org list` shows ids)."
    ),
    ttl: int = typer.Option(8 * 3600, min=60, max=30 * 86400, help="Lifetime in seconds."),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print a signed bearer token (alone, so `$(cityshare token issue ...)` works)."""
    purposes = frozenset(purpose)
    problem = check_grant(role, domain, purposes)
    if problem is None and not subject.replace("-", "").replace("_", "").replace(".", "").isalnum():
        problem = "a subject is letters, digits, '-', '_' and '.'"
    if problem is not None:
        err_console.print(f"[red]error:[/] {problem}")
        raise typer.Exit(2)
    platform = open_platform(database_url)
    try:
        problem = identity.staff_org_problem(platform.uow(), role, domain, org)
        if problem is not None:
            err_console.print(f"[red]error:[/] {problem}")
            raise typer.Exit(2)
        issued = platform.tokens.issue(
            Principal(subject, role, purposes, domain, org_id=org),
            now=platform.clock.now_ns() // 1_000_000_000,
            ttl=ttl,
        )
    finally:
        platform.close()
    if as_json:
        print_json({"token": issued.token, "expires_at": issued.expires_at, "role": role})
    else:
        typer.echo(issued.token)
