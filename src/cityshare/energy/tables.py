"""Energy's tables: tariffs, signed meter readings, and the intervals credited from them.

Append-only like identity: every row is a leaf of the audit log. A device's chain state (see
energy/model.py) is not a table of its own but the state recorded with its latest interval.
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

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    #: SHA-256 (hex) of `body`: a tariff is stored once however often it is loaded.
    Column("digest", String(64), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    #: The tariff as canonical JSON (energy.tariff.Tariff.canonical_json).
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
