"""Community assets: share events, derived holdings, distributions and their payouts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "share_events",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("from_id", sa.BigInteger, nullable=False),
        sa.Column("to_id", sa.BigInteger, nullable=False),
        sa.Column("shares", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_share_events_asset", "share_events", ["asset_id", "at"])
    op.create_table(
        "share_holdings",
        sa.Column("asset_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("resident_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("shares", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_share_holdings_resident", "share_holdings", ["resident_id"])
    op.create_table(
        "community_distributions",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("credit_milli", sa.BigInteger, nullable=False),
        sa.Column("carbon_g", sa.BigInteger, nullable=False),
        sa.Column("holders", sa.BigInteger, nullable=False),
        sa.Column("total_shares", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ux_community_distributions_period",
        "community_distributions",
        ["asset_id", "period_end"],
        unique=True,
    )
    op.create_table(
        "community_payouts",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("distribution_id", sa.BigInteger, nullable=False),
        sa.Column("asset_id", sa.BigInteger, nullable=False),
        sa.Column("resident_id", sa.BigInteger, nullable=False),
        sa.Column("shares", sa.BigInteger, nullable=False),
        sa.Column("credit_milli", sa.BigInteger, nullable=False),
        sa.Column("carbon_g", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_community_payouts_distribution", "community_payouts", ["distribution_id", "id"]
    )
    op.create_index("ix_community_payouts_resident", "community_payouts", ["resident_id", "id"])


def downgrade() -> None:
    op.drop_table("community_payouts")
    op.drop_table("community_distributions")
    op.drop_table("share_holdings")
    op.drop_table("share_events")
