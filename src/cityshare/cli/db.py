"""`cityshare db`: database migrations."""

from __future__ import annotations

import typer

from cityshare.cli.common import DB_OPTION, console, settings_with
from cityshare.store import migrate
from cityshare.store.db import make_engine

app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade(database_url: str | None = DB_OPTION) -> None:
    """Apply every pending migration (creates the database on first use)."""
    engine = make_engine(settings_with(database_url).database_url)
    try:
        migrate.upgrade(engine)
        console.print(f"database at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


@app.command()
def current(database_url: str | None = DB_OPTION) -> None:
    """Show the database's revision and the newest one this version knows."""
    engine = make_engine(settings_with(database_url).database_url)
    try:
        console.print(
            f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision()}"
        )
    finally:
        engine.dispose()
