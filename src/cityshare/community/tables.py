"""Community assets' tables: shares of a shared solar array or battery, and what they paid out.

Share events and distributions (with one payout row per holder) are immutable facts, each a
leaf of the audit log. `share_holdings` is derived (the events summed per holder), kept for
fast reads in the same transaction as each event; `audit verify` sums the events again.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    String,
    Table,
)

from cityshare.kernel.tables import Id, metadata

share_events = Table(
    "share_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("asset_id", BigInteger, nullable=False),
    #: issue (new shares to `to_id`) or transfer (from `from_id` to `to_id`).
    Column("kind", String(8), nullable=False),
    #: The resident giving the shares; 0 for an issue.
    Column("from_id", BigInteger, nullable=False),
    Column("to_id", BigInteger, nullable=False),
    Column("shares", BigInteger, nullable=False),
    #: Who asked for it (a principal's name).
    Column("actor", String(200), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_share_events_asset", "asset_id", "at"),
)


share_holdings = Table(
    "share_holdings",
    metadata,
    Column("asset_id", BigInteger, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, primary_key=True, autoincrement=False),
    Column("shares", BigInteger, nullable=False),
    Index("ix_share_holdings_resident", "resident_id"),
)


community_distributions = Table(
    "community_distributions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("asset_id", BigInteger, nullable=False),
    #: The settlement period's end (unix ns): earnings and holdings are taken as of then.
    Column("period_end", BigInteger, nullable=False),
    Column("credit_milli", BigInteger, nullable=False),
    Column("carbon_g", BigInteger, nullable=False),
    Column("holders", BigInteger, nullable=False),
    Column("total_shares", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ux_community_distributions_period", "asset_id", "period_end", unique=True),
)


community_payouts = Table(
    "community_payouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("distribution_id", BigInteger, nullable=False),
    Column("asset_id", BigInteger, nullable=False),
    Column("resident_id", BigInteger, nullable=False),
    Column("shares", BigInteger, nullable=False),
    Column("credit_milli", BigInteger, nullable=False),
    Column("carbon_g", BigInteger, nullable=False),
    Index("ix_community_payouts_distribution", "distribution_id", "id"),
    Index("ix_community_payouts_resident", "resident_id", "id"),
)
