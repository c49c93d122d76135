"""Identity's tables: residents, enrolments, organisations, devices and keys, access records.

Rows here are immutable facts (each one a leaf of the audit log); current state is derived:
a resident's VID and attributes are those of their latest enrolment, a key is live until a
revocation row names it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
)

from cityshare.kernel.tables import Id, metadata

residents = Table(
    "residents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    #: The issuer's sector-specific pseudonym: stable for one person, unlinkable across sectors.
    Column("pseudonym", String(64), nullable=False, unique=True),
    Column("issuer", String(200), nullable=False),
    Column("enrolled_at", BigInteger, nullable=False),
)


enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, nullable=False),
    Column("vid", String(16), nullable=False),
    #: Canonical JSON of the minimal attributes the assertion carried (ward, age band).
    Column("attrs", Text, nullable=False),
    #: The assertion's id: an assertion is accepted once.
    Column("jti", String(64), nullable=False, unique=True),
    Column("accepted_at", BigInteger, nullable=False),
    Index("ix_enrolments_resident", "resident_id", "id"),
    Index("ix_enrolments_vid", "vid"),
)


#: Parties besides residents (identity.organisations): operators, providers, community assets.
#: Their ids start at ORG_ID_BASE; they own devices and wallets as residents do.
organisations = Table(
    "organisations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(100), nullable=False, unique=True),
    #: An operator's domain (energy, transit, parking); none for other kinds.
    Column("domain", String(16), nullable=True),
    Column("created_at", BigInteger, nullable=False),
)


devices = Table(
    "devices",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner_id", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("label", String(64), nullable=True),
    Column("registered_at", BigInteger, nullable=False),
    Index("ix_devices_owner", "owner_id"),
)


device_keys = Table(
    "device_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("device_id", String(40), nullable=False),
    Column("public_key", LargeBinary(32), nullable=False, unique=True),
    Column("added_at", BigInteger, nullable=False),
    Index("ix_device_keys_device", "device_id"),
)


device_key_revocations = Table(
    "device_key_revocations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),  # the revoked key's id
    Column("reason", String(32), nullable=False),
    Column("revoked_at", BigInteger, nullable=False),
)


access_records = Table(
    "access_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("resident_id", BigInteger, nullable=False),
    Column("principal", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("what", String(200), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_access_records_resident", "resident_id", "id"),
)
