"""Energy: tariffs, signed meter readings, credited intervals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tariffs",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("added_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "meter_readings",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("export_wh", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.create_index(
        "ux_meter_readings_device_seq", "meter_readings", ["device_id", "seq"], unique=True
    )
    op.create_table(
        "meter_intervals",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("prev_seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("start_ts", sa.BigInteger, nullable=False),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("tod", sa.String(32), nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("export_wh", sa.BigInteger, nullable=False),
        sa.Column("carbon_g", sa.BigInteger, nullable=False),
        sa.Column("credit_milli", sa.BigInteger, nullable=False),
        sa.Column("owner_id", sa.BigInteger, nullable=False),
        sa.Column("tariff_id", sa.BigInteger, nullable=False),
        sa.Column("base_seq", sa.BigInteger, nullable=False),
        sa.Column("base_ts", sa.BigInteger, nullable=False),
        sa.Column("base_import", sa.BigInteger, nullable=False),
        sa.Column("base_export", sa.BigInteger, nullable=False),
        sa.Column("top_seq", sa.BigInteger, nullable=False),
        sa.Column("top_ts", sa.BigInteger, nullable=False),
        sa.Column("hw_ts", sa.BigInteger, nullable=False),
        sa.Column("hw_import", sa.BigInteger, nullable=False),
        sa.Column("hw_export", sa.BigInteger, nullable=False),
        sa.Column("carbon_carry", sa.BigInteger, nullable=False),
        sa.Column("credit_carry", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_meter_intervals_device_seq", "meter_intervals", ["device_id", "seq"], unique=True
    )
    op.create_index("ix_meter_intervals_device_id", "meter_intervals", ["device_id", "id"])
    op.create_index("ix_meter_intervals_owner_start", "meter_intervals", ["owner_id", "start_ts"])


def downgrade() -> None:
    for table in ("meter_intervals", "meter_readings", "tariffs"):
        op.drop_table(table)
