"""Reading chains whose stored readings wait beside the chain (for the sweep of silent meters).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_waiting",
        sa.Column("device_id", sa.String(40), primary_key=True),
        sa.Column("since", sa.BigInteger, nullable=False),
        sa.Column("owner_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_meter_waiting_since", "meter_waiting", ["since"])
    # Readings stored before this revision that still wait: those above or below their
    # chain (by the state recorded with its latest interval), with the party they credit: the
    # device's, or for an OCPP transaction's chain its session's (a charger's rules, from the
    # session's start, as the OCPP door attests them).
    op.execute(
        "INSERT INTO meter_waiting (device_id, since, owner_id, kind, registered_at) "
        "SELECT r.device_id, MIN(r.received_at), MIN(i.owner_id), "
        "COALESCE(MIN(d.kind), 'charger'), "
        "COALESCE(MIN(d.registered_at), MIN(s.started_ts) * 1000000000) "
        "FROM meter_readings r "
        "JOIN meter_intervals i ON i.id = "
        "(SELECT MAX(l.id) FROM meter_intervals l WHERE l.device_id = r.device_id) "
        "LEFT JOIN devices d ON d.id = r.device_id "
        "LEFT JOIN charging_sessions s ON s.chain_id = r.device_id "
        "WHERE r.seq > i.top_seq OR r.seq < i.base_seq "
        "GROUP BY r.device_id "
        "HAVING COALESCE(MIN(d.registered_at), MIN(s.started_ts)) IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("meter_waiting")
