"""Apply the Alembic migrations shipped inside the package (`cityshare db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from cityshare.kernel.seal import Sealer

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head", *, sealer: Sealer | None = None) -> None:
    """Migrate to `revision`. `sealer` seals rows a migration must seal (revision 0015 seals
    the rows that exist when it runs); one that has rows to seal and no sealer stops."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        config.attributes["sealer"] = sealer
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def head_revision() -> str | None:
    head: str | None = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head
