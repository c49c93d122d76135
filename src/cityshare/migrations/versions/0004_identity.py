"""Identity: residents, enrolments, devices and their keys, access records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "residents",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("pseudonym", sa.String(64), nullable=False, unique=True),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("enrolled_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
        sa.Column("vid", sa.String(16), nullable=False),
        sa.Column("attrs", sa.Text, nullable=False),
        sa.Column("jti", sa.String(64), nullable=False, unique=True),
        sa.Column("accepted_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_enrolments_resident", "enrolments", ["resident_id", "id"])
    op.create_index("ix_enrolments_vid", "enrolments", ["vid"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_devices_owner", "devices", ["owner_id"])
    op.create_table(
        "device_keys",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("added_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_device_keys_device", "device_keys", ["device_id"])
    op.create_table(
        "device_key_revocations",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "access_records",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("what", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_access_records_resident", "access_records", ["resident_id", "id"])


def downgrade() -> None:
    for table in (
        "access_records",
        "device_key_revocations",
        "device_keys",
        "devices",
        "enrolments",
        "residents",
    ):
        op.drop_table(table)
