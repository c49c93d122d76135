"""Billing's tables: price lists, provider choices, pay-as-you-go bills, billing runs, top-ups.

Price lists, choices, bills and runs are immutable facts, each a leaf of the audit log.
`energy_arrears` is the live work queue of bills not yet paid (like `pending_transfers`):
derived, a bill is in it exactly while its payment transfer does not exist.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    String,
    Table,
    Text,
)

from cityshare.kernel.tables import Id, metadata

price_lists = Table(
    "price_lists",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("provider_id", BigInteger, nullable=False),
    #: Unix seconds from which this version is in force (never in the past when it was set).
    Column("effective_from", BigInteger, nullable=False),
    #: Canonical JSON {window: paise per kWh}; per-kWh prices are all a price list can hold.
    Column("prices", Text, nullable=False),
    #: Who set it (a principal's name).
    Column("set_by", String(200), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_price_lists_provider", "provider_id", "effective_from"),
)


provider_choices = Table(
    "provider_choices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, nullable=False),
    Column("provider_id", BigInteger, nullable=False),
    Column("effective_from", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_provider_choices_resident", "resident_id", "id"),
)


#: One bill per billed interval (the id is the interval's): what it cost and the carry after.
energy_bills = Table(
    "energy_bills",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, nullable=False),
    #: 0 when no price list was in force (the energy is recorded, not charged).
    Column("provider_id", BigInteger, nullable=False),
    Column("price_list_id", BigInteger, nullable=False),
    Column("tod", String(32), nullable=False),
    Column("start_ts", BigInteger, nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("paise_per_kwh", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    #: Thousandths of a paisa carried to the resident's next bill from this provider.
    Column("carry", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_energy_bills_resident_provider", "resident_id", "provider_id", "id"),
    Index("ix_energy_bills_resident_start", "resident_id", "start_ts"),
)


energy_arrears = Table(
    "energy_arrears",
    metadata,
    Column("bill_id", Id, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, nullable=False),
    Index("ix_energy_arrears_resident", "resident_id", "bill_id"),
)


#: One row per billing batch: it examined every interval with id <= through_id.
billing_runs = Table(
    "billing_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("through_id", BigInteger, nullable=False),
    Column("bills", BigInteger, nullable=False),
    Column("billed", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
)


#: Top-ups of residents' INR wallets: fiat that reached the platform's bank, credited by an
#: operator from the INR settlement account (billing/top_ups.py). The external reference (a
#: bank or UPI transaction reference) is unique: it is the top-up's idempotency key. Each row
#: is a leaf of the audit log, as is its transfer (id `top_up_transfer_id(id)`).
top_ups = Table(
    "top_ups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("reference", String(64), nullable=False),
    Column("resident_id", BigInteger, nullable=False),
    #: Paise credited to the resident's INR wallet.
    Column("amount", BigInteger, nullable=False),
    Column("transfer_id", BigInteger, nullable=False),
    #: Who asked for it (a principal's name).
    Column("actor", String(200), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ux_top_ups_reference", "reference", unique=True),
)
