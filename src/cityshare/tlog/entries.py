"""What one audit-log leaf holds: the canonical bytes of one committed business record.

Ledger records (the hot path: thousands per commit) are fixed-width binary, a kind byte then
big-endian signed 64-bit fields, so encoding costs one `struct.pack`. Every other record
(enrolments, devices, access records, …) is canonical JSON, an object with a `"type"` key,
sorted keys and no spaces; JSON starts with `{`, which no binary kind uses, so one look at the
first byte tells the two apart. The encoding is a contract: auditors and the digital twin
decode entries with this module, and `audit verify` re-encodes every stored record and
compares it with its leaf, so the functions here must stay deterministic and backwards
compatible (a new layout gets a new kind byte).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cityshare.ledger.model import NewAccount, TransferRecord

ACCOUNT = 0x01
TRANSFER = 0x02
HOLD_EXPIRED = 0x03
JSON = ord("{")

_ACCOUNT = struct.Struct(">B6q")  # kind, id, ledger, code, flags, user_data, timestamp; owner
_TRANSFER = struct.Struct(">B13q")  # kind and the 13 columns of a TransferRecord, in order
_HOLD_EXPIRED = struct.Struct(">B2q")  # kind, pending transfer id, when its hold lapsed (ns)

MAX_OWNER_BYTES = 255


class EntryError(ValueError):
    """Bytes that are not a log entry this version understands."""


@dataclass(frozen=True, slots=True)
class AccountEntry:
    account: NewAccount
    timestamp: int


@dataclass(frozen=True, slots=True)
class HoldExpiredEntry:
    pending_id: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class RecordEntry:
    """A non-ledger record: its `type` (e.g. `resident.enrolled`) and its fields."""

    type: str
    fields: dict[str, Any]


Entry = AccountEntry | TransferRecord | HoldExpiredEntry | RecordEntry


def encode_account(account: NewAccount, timestamp: int) -> bytes:
    owner = (account.owner or "").encode()
    if len(owner) > MAX_OWNER_BYTES:
        raise EntryError("an account owner is at most 255 bytes")
    head = _ACCOUNT.pack(
        ACCOUNT,
        account.id,
        account.ledger,
        account.code,
        account.flags,
        account.user_data,
        timestamp,
    )
    return head + bytes([len(owner)]) + owner


def encode_transfer(record: TransferRecord) -> bytes:
    return _TRANSFER.pack(TRANSFER, *record)


def encode_transfers(records: list[TransferRecord]) -> list[bytes]:
    pack = _TRANSFER.pack
    return [pack(TRANSFER, *r) for r in records]


def encode_hold_expired(pending_id: int, expires_at: int) -> bytes:
    return _HOLD_EXPIRED.pack(HOLD_EXPIRED, pending_id, expires_at)


def encode_record(record_type: str, fields: dict[str, Any]) -> bytes:
    if "type" in fields:
        raise EntryError("a record's fields may not use the key 'type'")
    body = {"type": record_type, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class RecordCodec:
    """How the rows of one table become JSON leaves: the record `type` and the `fields` logged
    (column names), so that a capability writes a leaf from a row object (`of`) and `audit
    verify` re-encodes a stored row (`of_mapping`) by one definition.

    Some records log a field under another key than its column, or in another form; the leaf
    bytes are a contract, so the codec states it instead of the record changing. Each is keyed
    by the logged key: `columns`, the column (and row attribute) it is read from (`"at"` ->
    `"enrolled_at"`); `logged`, how its value becomes the logged form (raw key bytes ->
    base64url), for a row object's and a stored row's value alike; `stored`, how a stored
    column is first read back into the row object's form (JSON text -> dict, a driver's
    memoryview -> bytes)."""

    type: str
    fields: tuple[str, ...]
    columns: Mapping[str, str] = field(default_factory=dict)
    logged: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    stored: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def of(self, row: Any) -> bytes:
        """The leaf of a row object with these fields as attributes (a row dataclass)."""
        columns, logged = self.columns, self.logged
        values = {f: getattr(row, columns.get(f, f)) for f in self.fields}
        for key, form in logged.items():
            values[key] = form(values[key])
        return encode_record(self.type, values)

    def of_mapping(self, row: Mapping[str, Any]) -> bytes:
        """The leaf of a stored row (column name -> value)."""
        columns, logged, stored = self.columns, self.logged, self.stored
        values = {f: row[columns.get(f, f)] for f in self.fields}
        for key, read in stored.items():
            values[key] = read(values[key])
        for key, form in logged.items():
            values[key] = form(values[key])
        return encode_record(self.type, values)


def decode(data: bytes) -> Entry:
    """Parse one entry; raise EntryError for anything malformed."""
    if not data:
        raise EntryError("an empty entry")
    kind = data[0]
    try:
        if kind == TRANSFER and len(data) == _TRANSFER.size:
            return TransferRecord(*_TRANSFER.unpack(data)[1:])
        if kind == ACCOUNT and len(data) > _ACCOUNT.size:
            _, id_, ledger, code, flags, user_data, timestamp = _ACCOUNT.unpack_from(data)
            length = data[_ACCOUNT.size]
            owner_bytes = data[_ACCOUNT.size + 1 :]
            if len(owner_bytes) != length:
                raise EntryError("an account entry's owner has the wrong length")
            owner = owner_bytes.decode() or None
            return AccountEntry(NewAccount(id_, ledger, code, flags, owner, user_data), timestamp)
        if kind == HOLD_EXPIRED and len(data) == _HOLD_EXPIRED.size:
            _, pending_id, expires_at = _HOLD_EXPIRED.unpack(data)
            return HoldExpiredEntry(pending_id, expires_at)
        if kind == JSON:
            body = json.loads(data)
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                raise EntryError("a record entry is a JSON object with a string 'type'")
            record_type = body.pop("type")
            return RecordEntry(record_type, body)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, EntryError):
            raise
        raise EntryError(f"a malformed entry of kind {kind:#04x}: {exc}") from exc
    raise EntryError(f"unknown entry kind {kind:#04x} or wrong length {len(data)}")
