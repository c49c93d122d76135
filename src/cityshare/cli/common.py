"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from cityshare.bootstrap import Platform, bootstrap
from cityshare.config import Settings, get_settings

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


def settings_with(database_url: str | None) -> Settings:
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def open_platform(database_url: str | None) -> Platform:
    return bootstrap(settings_with(database_url))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
