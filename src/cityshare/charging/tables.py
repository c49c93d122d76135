"""Charging's tables (OCPP): charger passwords, vehicles' id tokens, charging sessions.

Append-only like the rest: a new password or token registration is a new row, a removal or a
session's stop is a row of its own; all but the password hashes are leaves of the audit log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
)

from cityshare.kernel.tables import Id, metadata

#: OCPP security profile 1: a salted scrypt hash of each password an operator set for a
#: charger (the latest one counts). The log records that a password was set, never its hash;
#: the row's seal (kernel/seal.py) covers the hash with the rest of the row.
charger_secrets = Table(
    "charger_secrets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("device_id", String(40), nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("set_at", BigInteger, nullable=False),
    Column("seal", String(64), nullable=False),
    Index("ix_charger_secrets_device", "device_id", "id"),
)


#: A vehicle's id token (OCPP idTag / IdToken) by its keyed hash (charging.model).
vehicle_id_tokens = Table(
    "vehicle_id_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("device_id", String(40), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("added_at", BigInteger, nullable=False),
    Index("ix_vehicle_id_tokens_hash", "token_hash"),
    Index("ix_vehicle_id_tokens_device", "device_id"),
)


vehicle_id_token_removals = Table(
    "vehicle_id_token_removals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),  # the registration removed
    Column("removed_at", BigInteger, nullable=False),
)


#: One row per transaction a charger started: who is credited (the vehicle's owner, when the
#: token was accepted) and the reading chain its meter values feed.
charging_sessions = Table(
    "charging_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("charger_id", String(40), nullable=False),
    Column("operator_id", BigInteger, nullable=False),
    Column("ocpp_version", String(8), nullable=False),
    #: The charger's transaction (2.0.1 transactionId; 1.6 `<connector>@<start unix time>`).
    Column("tx_key", String(100), nullable=False),
    Column("connector_id", Integer, nullable=False),
    Column("token_hash", String(64), nullable=False),
    #: accepted, unknown or blocked (charging.model.SessionStatus).
    Column("status", String(16), nullable=False),
    Column("vehicle_id", String(40), nullable=True),
    Column("owner_id", BigInteger, nullable=True),
    Column("chain_id", String(40), nullable=False),
    Column("started_ts", BigInteger, nullable=False),
    Column("meter_start_wh", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ux_charging_sessions_charger_tx", "charger_id", "tx_key", unique=True),
    Index("ix_charging_sessions_operator", "operator_id", "id"),
    Index("ix_charging_sessions_owner", "owner_id", "id"),
)


charging_session_stops = Table(
    "charging_session_stops",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),  # the session's id
    Column("stopped_ts", BigInteger, nullable=False),
    Column("meter_stop_wh", BigInteger, nullable=True),
    Column("reason", String(32), nullable=True),
    Column("recorded_at", BigInteger, nullable=False),
)


#: The readings the central system planned for each session's chain (charging.model.plan):
#: a sample time's seq and registers, recorded under the ledger's write lock before the
#: reading is handed to the energy capability, so every process (and every resend) maps the
#: same sample to the same (chain, seq) reading. Derived bookkeeping: the readings themselves
#: are the logged facts; not logged.
charging_chain_seqs = Table(
    "charging_chain_seqs",
    metadata,
    Column("chain_id", String(40), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Index("ux_charging_chain_seqs_ts", "chain_id", "ts", unique=True),
)
