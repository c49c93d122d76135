"""The database schema, as SQLAlchemy Core tables (migrations in `kernel/migrations` create it).

Ids are client-chosen signed 64-bit integers. On SQLite the primary keys are declared `INTEGER`
so that they become the table's rowid (the clustered key), which is what makes batch inserts fast.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

#: A 64-bit primary key that is the rowid on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("ledger", SmallInteger, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("owner", String(64), nullable=True),
    Column("user_data", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_accounts_owner", "owner"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("ledger", SmallInteger, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("pending_id", BigInteger, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("user_data", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("debit_account_balance", BigInteger, nullable=False),
    Column("credit_account_balance", BigInteger, nullable=False),
    Index("ix_transfers_debit_account", "debit_account_id", "timestamp"),
    Index("ix_transfers_credit_account", "credit_account_id", "timestamp"),
)

#: The live state of each pending transfer (the transfer row itself never changes).
pending_transfers = Table(
    "pending_transfers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("state", SmallInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("resolved_by", BigInteger, nullable=False),
    Index(
        "ix_pending_transfers_expiry",
        "expires_at",
        sqlite_where=text("state = 1 AND expires_at > 0"),
        postgresql_where=text("state = 1 AND expires_at > 0"),
    ),
)

#: One row: the last timestamp the ledger handed out, so timestamps stay strictly increasing.
ledger_clock = Table(
    "ledger_clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_timestamp", BigInteger, nullable=False),
)

log_leaves = Table(
    "log_leaves",
    metadata,
    Column("idx", Id, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

#: Perfect Merkle subtrees of level >= 1, keyed by (level << 48) | index.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

#: One row: how many leaves the log has.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

#: The log's signed checkpoint after each commit (the note signs origin, size and root).
log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", Id, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
)

#: Witness cosignatures (C2SP tlog-cosignature) of a checkpoint, one line per witness key
#: (the line carries its time, under the witness's signature).
log_cosignatures = Table(
    "log_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),
    Column("line", Text, nullable=False),
)

# -- identity: residents, enrolments, devices, access records ----------------------------------
# Rows here are immutable facts (each one a leaf of the audit log); current state is derived:
# a resident's VID and attributes are those of their latest enrolment, a key is live until a
# revocation row names it.

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

#: Parties besides residents (domain.organisations): operators, providers, community assets.
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

# -- energy: tariffs, signed meter readings, and the intervals credited from them ---------------
# Append-only like identity: every row is a leaf of the audit log. A device's chain state (see
# energy/model.py) is not a table of its own but the state recorded with its latest interval.

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    #: SHA-256 (hex) of `body`: a tariff is stored once however often it is loaded.
    Column("digest", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    #: The tariff as canonical JSON (domain.energy.Tariff.canonical_json).
    Column("body", Text, nullable=False),
    Column("added_at", BigInteger, nullable=False),
)

#: Every authentic reading received (anomalous ones too), as the device signed it.
meter_readings = Table(
    "meter_readings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("device_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    #: The door it came through: http, mqtt or ocpp.
    Column("source", String(8), nullable=False),
    #: The JWS itself: anyone holding the device's public key can check it again.
    Column("jws", Text, nullable=False),
    Index("ux_meter_readings_device_seq", "device_id", "seq", unique=True),
)

#: One row per reading that joined its device's chain: the interval judged (from `prev_seq`
#: to `seq`), what it credited, and the chain's state after it.
meter_intervals = Table(
    "meter_intervals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("device_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("prev_seq", BigInteger, nullable=False),
    #: baseline, ok, or the anomaly (future_timestamp, register_backwards, …).
    Column("status", String(24), nullable=False),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("tod", String(32), nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("carbon_g", BigInteger, nullable=False),
    Column("credit_milli", BigInteger, nullable=False),
    Column("owner_id", BigInteger, nullable=False),
    Column("tariff_id", BigInteger, nullable=False),
    Column("base_seq", BigInteger, nullable=False),
    Column("base_ts", BigInteger, nullable=False),
    Column("base_import", BigInteger, nullable=False),
    Column("base_export", BigInteger, nullable=False),
    Column("top_seq", BigInteger, nullable=False),
    Column("top_ts", BigInteger, nullable=False),
    Column("hw_ts", BigInteger, nullable=False),
    Column("hw_import", BigInteger, nullable=False),
    Column("hw_export", BigInteger, nullable=False),
    Column("carbon_carry", BigInteger, nullable=False),
    Column("credit_carry", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ux_meter_intervals_device_seq", "device_id", "seq", unique=True),
    Index("ix_meter_intervals_device_id", "device_id", "id"),
    Index("ix_meter_intervals_owner_start", "owner_id", "start_ts"),
)

#: Reading chains (a device's, or an OCPP transaction's `ocpp-…`, which is no device) with
#: readings stored beside the chain (above a gap or below the base), waiting for the readings
#: between; `since` is when the oldest of them was received; owner, kind and registration
#: time are what the chain's readings are credited by (a transaction's come from its session,
#: not from `devices`). Derived (from the readings, each chain's latest interval and its device
#: or session; `audit verify` re-derives it), kept so the sweep that bridges the gaps of silent
#: meters (`SweepWaitingReadings`) never scans the readings; not logged.
meter_waiting = Table(
    "meter_waiting",
    metadata,
    Column("device_id", String(40), primary_key=True),
    Column("since", BigInteger, nullable=False),
    Column("owner_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Index("ix_meter_waiting_since", "since"),
)

# -- community assets: shares of a shared solar array or battery, and what they were paid ------
# Share events and distributions (with one payout row per holder) are immutable facts, each a
# leaf of the audit log. `share_holdings` is derived (the events summed per holder), kept for
# fast reads in the same transaction as each event; `audit verify` sums the events again.

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

# -- billing: price lists, provider choices, pay-as-you-go bills (billing/handlers.py) ---------
# Price lists, choices, bills and runs are immutable facts, each a leaf of the audit log.
# `energy_arrears` is the live work queue of bills not yet paid (like `pending_transfers`):
# derived, a bill is in it exactly while its payment transfer does not exist.

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
#: operator from the INR settlement account (billing/handlers.py). The external reference (a
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

# -- charging (OCPP): charger passwords, vehicles' id tokens, charging sessions ------------------
# Append-only like the rest: a new password or token registration is a new row, a removal or a
# session's stop is a row of its own; all but the password hashes are leaves of the audit log.

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

#: A vehicle's id token (OCPP idTag / IdToken) by its keyed hash (domain.charging).
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
    #: accepted, unknown or blocked (domain.charging.SessionStatus).
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

#: The readings the central system planned for each session's chain (domain.charging.plan):
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

# -- idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header) -------------------------
#: The first answer (status and JSON body) to each write a principal sent with an
#: `Idempotency-Key`, stored in the transaction of the write itself; a retry with the same key
#: gets it again. Derived from requests, not facts of the platform: not logged, purged after
#: `idempotency_retention_seconds` (kernel/idempotency.py).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    #: Hex SHA-256 of the method, path and canonical body: the same key for another request
    #: is refused.
    Column("fingerprint", String(64), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    #: The row's seal (kernel/seals.py): a reply changed in the database is never replayed.
    Column("seal", String(64), nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),
)
