"""Pay-as-you-go billing: price lists, provider choices, bills, arrears and billing runs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "price_lists",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("provider_id", sa.BigInteger, nullable=False),
        sa.Column("effective_from", sa.BigInteger, nullable=False),
        sa.Column("prices", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_price_lists_provider", "price_lists", ["provider_id", "effective_from"])
    op.create_table(
        "provider_choices",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
        sa.Column("provider_id", sa.BigInteger, nullable=False),
        sa.Column("effective_from", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_provider_choices_resident", "provider_choices", ["resident_id", "id"])
    op.create_table(
        "energy_bills",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
        sa.Column("provider_id", sa.BigInteger, nullable=False),
        sa.Column("price_list_id", sa.BigInteger, nullable=False),
        sa.Column("tod", sa.String(32), nullable=False),
        sa.Column("start_ts", sa.BigInteger, nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("paise_per_kwh", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("carry", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_energy_bills_resident_provider", "energy_bills", ["resident_id", "provider_id", "id"]
    )
    op.create_index("ix_energy_bills_resident_start", "energy_bills", ["resident_id", "start_ts"])
    op.create_table(
        "energy_arrears",
        sa.Column("bill_id", Id, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_energy_arrears_resident", "energy_arrears", ["resident_id", "bill_id"])
    op.create_table(
        "billing_runs",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("through_id", sa.BigInteger, nullable=False),
        sa.Column("bills", sa.BigInteger, nullable=False),
        sa.Column("billed", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "billing_runs", "energy_arrears", "energy_bills", "provider_choices", "price_lists"
    ):
        op.drop_table(table)
