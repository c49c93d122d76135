"""Every stored field is covered, re-derived or gone: the ledger clock is set to the newest
record's timestamp (which `audit verify` now requires), and the signing times of checkpoints and
cosignatures, which nothing covered or read, are dropped.

A cosignature line carries its own time inside the witness's signature; a checkpoint's signing
time was covered by no signature and served by no read, so any value was as good as another.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Until now a batch that only released lapsed holds moved the clock ahead of every record.
    # Setting it back to the newest record is safe: the next timestamp must only exceed those.
    op.execute(
        "UPDATE ledger_clock SET last_timestamp = (SELECT max(m) FROM ("
        "SELECT coalesce(max(timestamp), 0) AS m FROM accounts "
        "UNION ALL SELECT coalesce(max(timestamp), 0) AS m FROM transfers) AS newest) "
        "WHERE id = 1"
    )
    with op.batch_alter_table("log_checkpoints") as batch:
        batch.drop_column("timestamp")
    with op.batch_alter_table("log_cosignatures") as batch:
        batch.drop_column("timestamp")


def downgrade() -> None:
    # The times are gone: older code gets 0 for them (it only ever wrote them).
    with op.batch_alter_table("log_cosignatures") as batch:
        batch.add_column(sa.Column("timestamp", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("log_checkpoints") as batch:
        batch.add_column(sa.Column("timestamp", sa.BigInteger, nullable=False, server_default="0"))
