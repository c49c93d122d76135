"""OCPP central system: charger passwords, vehicles' id tokens, charging sessions and stops.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "charger_secrets",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        sa.Column("set_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_charger_secrets_device", "charger_secrets", ["device_id", "id"])
    op.create_table(
        "vehicle_id_tokens",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("added_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_vehicle_id_tokens_hash", "vehicle_id_tokens", ["token_hash"])
    op.create_index("ix_vehicle_id_tokens_device", "vehicle_id_tokens", ["device_id"])
    op.create_table(
        "vehicle_id_token_removals",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("removed_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "charging_sessions",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("charger_id", sa.String(40), nullable=False),
        sa.Column("operator_id", sa.BigInteger, nullable=False),
        sa.Column("ocpp_version", sa.String(8), nullable=False),
        sa.Column("tx_key", sa.String(100), nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vehicle_id", sa.String(40), nullable=True),
        sa.Column("owner_id", sa.BigInteger, nullable=True),
        sa.Column("chain_id", sa.String(40), nullable=False),
        sa.Column("started_ts", sa.BigInteger, nullable=False),
        sa.Column("meter_start_wh", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_charging_sessions_charger_tx",
        "charging_sessions",
        ["charger_id", "tx_key"],
        unique=True,
    )
    op.create_index("ix_charging_sessions_operator", "charging_sessions", ["operator_id", "id"])
    op.create_index("ix_charging_sessions_owner", "charging_sessions", ["owner_id", "id"])
    op.create_table(
        "charging_session_stops",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("stopped_ts", sa.BigInteger, nullable=False),
        sa.Column("meter_stop_wh", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("charging_session_stops")
    op.drop_table("charging_sessions")
    op.drop_table("vehicle_id_token_removals")
    op.drop_table("vehicle_id_tokens")
    op.drop_table("charger_secrets")
