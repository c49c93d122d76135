"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import getpass
import json
from typing import Any

import typer
from rich.console import Console

from cityshare.bootstrap import Platform, bootstrap
from cityshare.identity.access import ReadRefused, shell_principal
from cityshare.identity.policy import Purpose
from cityshare.identity.tokens import Principal
from cityshare.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)

DB_OPTION = typer.Option(
    None,
    "--db",
    "--database-url",
    help="SQLAlchemy database URL (default: $CITYSHARE_DATABASE_URL or sqlite:///./cityshare.db).",
    show_default=False,
)
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")

#: Commands that show a resident's data read it as the operator at the shell, for a purpose.
READ_AS = (
    "The read is recorded in the resident's access log (/api/v1/me/access-log) as "
    "admin:cli:USER (USER: your login name), with the purpose given."
)


def purpose_option(default: Purpose | None, *, serves: str) -> Any:
    return typer.Option(
        default,
        "--purpose",
        help=f"Why you read a resident's data ({serves}); recorded in their access log.",
    )


def shell_reader(purpose: Purpose) -> Principal:
    """Who reads at the shell: the login name (whoever can open the database and the
    platform's keys is platform-wide already; the access log names them)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return shell_principal(user, purpose)


def refused_read(exc: ReadRefused) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc} ({exc.code})")
    return typer.Exit(1)


def settings_with(database_url: str | None) -> Settings:
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def open_platform(database_url: str | None) -> Platform:
    return bootstrap(settings_with(database_url))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
