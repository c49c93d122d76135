"""`cityshare db`: database migrations."""

from __future__ import annotations

import typer

from cityshare import migrate
from cityshare.bootstrap import seal_key
from cityshare.cli.common import DB_OPTION, console, settings_with
from cityshare.kernel.db import make_engine

app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade(database_url: str | None = DB_OPTION) -> None:
    """Apply every pending migration (creates the database on first use). Rows a migration
    seals are sealed with the platform's seal key (CITYSHARE_SEAL_SECRET or the key folder's,
    made on first use, as `serve` does)."""
    settings = settings_with(database_url)
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine, sealer=seal_key(settings, settings.database_url))
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
