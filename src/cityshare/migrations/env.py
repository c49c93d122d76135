"""Alembic environment: runs on the connection handed over by `cityshare.migrate`."""

from __future__ import annotations

from alembic import context

import cityshare.capabilities  # noqa: F401  (every capability declares its tables on `metadata`)
from cityshare.kernel import scheduler_tables  # noqa: F401  (the kernel's own: the lease)
from cityshare.kernel.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `cityshare db upgrade`, which supplies a connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
