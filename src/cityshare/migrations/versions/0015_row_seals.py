"""Row seals (kernel/seal.py) on the stored rows the public audit log does not cover: charger
password hashes and the stored replies to keyed writes (idempotency keys).

The rows that exist when this runs are sealed as they stand, with the platform's seal key,
which `cityshare.migrate.upgrade` hands over (`cityshare db upgrade` and `serve` do);
a change made to one before the upgrade cannot be told afterwards. Without the key a database
with rows to seal is not upgraded (an empty one needs none). No row is ever left unsealed, so
`audit verify` and every use of a row treat a missing or wrong seal alike: the row is refused.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from cityshare.kernel.seal import Sealer

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Each sealed table, its primary key and the columns its seal covers (all but the seal), as
#: they stand at this revision.
TABLES = {
    "charger_secrets": (("id",), ("id", "device_id", "secret_hash", "set_at")),
    "idempotency_keys": (
        ("principal", "key"),
        ("principal", "key", "fingerprint", "status", "body", "created_at"),
    ),
}


def upgrade() -> None:
    conn = op.get_bind()
    sealer: Sealer | None = context.config.attributes.get("sealer")
    for name, (key, columns) in TABLES.items():
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("seal", sa.String(64), nullable=True))
        table = sa.table(name, *(sa.column(c) for c in (*columns, "seal")))
        rows = conn.execute(sa.select(*(table.c[c] for c in columns))).mappings().all()
        if rows and sealer is None:
            raise RuntimeError(
                f"revision 0015 seals the {len(rows)} existing rows of {name} with the "
                "platform's seal key: run `cityshare db upgrade` (or `serve`) with the "
                "platform's settings, which supply it"
            )
        for row in rows:
            assert sealer is not None
            where = sa.and_(*(table.c[k] == row[k] for k in key))
            conn.execute(
                sa.update(table).where(where).values(seal=sealer.seal(name, dict(row)))
            )
        with op.batch_alter_table(name) as batch:
            batch.alter_column("seal", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("seal")
