"""Charging's audit-log records: how each fact it writes becomes a leaf, and is checked again.

Every fact the charging handlers write is a leaf of the audit log in the same transaction;
`cityshare audit verify` re-encodes the stored rows with the same codecs (`RECORDS`). A
charger's password hash is stored but never logged (the log records only that a password was
set; its row is sealed instead, kernel/seals.py), so `CHARGER_SECRET` leaves it out. The leaf
bytes are a contract (auditors and the twin read them): the logged keys must not change.
"""

from __future__ import annotations

from dataclasses import fields

from cityshare.charging.model import SessionRow, StopRow
from cityshare.kernel.capability import LoggedRecord
from cityshare.tlog.entries import RecordCodec

CHARGER_SECRET = RecordCodec("charger_secret", ("id", "device_id", "at"), columns={"at": "set_at"})
ID_TOKEN = RecordCodec(
    "vehicle_id_token", ("id", "device_id", "token_hash", "at"), columns={"at": "added_at"}
)
#: A removal has no row type: `of_mapping({"id", "removed_at"})`.
ID_TOKEN_REMOVED = RecordCodec(
    "vehicle_id_token_removed", ("id", "at"), columns={"at": "removed_at"}
)
#: A session and its stop log every column of their row, under its own name.
SESSION = RecordCodec("charging_session", tuple(f.name for f in fields(SessionRow)))
STOP = RecordCodec("charging_session_stop", tuple(f.name for f in fields(StopRow)))

#: The record types `audit verify` checks both ways: each codec and the table it logs.
RECORDS = [
    LoggedRecord(codec.type, table, codec.of_mapping)
    for codec, table in (
        (CHARGER_SECRET, "charger_secrets"),
        (ID_TOKEN, "vehicle_id_tokens"),
        (ID_TOKEN_REMOVED, "vehicle_id_token_removals"),
        (SESSION, "charging_sessions"),
        (STOP, "charging_session_stops"),
    )
]
