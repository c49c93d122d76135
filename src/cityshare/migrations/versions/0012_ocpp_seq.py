"""The readings the OCPP central system planned for each charging session's chain.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Chains with readings from before this revision carry on from their newest stored
    # reading (charging.handlers.plan_readings), so nothing needs to be copied here.
    op.create_table(
        "charging_chain_seqs",
        sa.Column("chain_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("export_wh", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_charging_chain_seqs_ts", "charging_chain_seqs", ["chain_id", "ts"], unique=True
    )


def downgrade() -> None:
    op.drop_table("charging_chain_seqs")
