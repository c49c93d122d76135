"""How energy's records become audit-log leaves (and are checked again by `audit verify`).

Three JSON record types, each defined once by a `tlog.entries.RecordCodec` (its type and the
columns logged): `tariff` (a tariff, logged once, the first time an interval names it),
`meter_reading` (a stored reading) and `meter_interval` (a reading joined to its chain: the
interval judged, what it credited and the chain after it). The codecs are the reference:
`audit verify` re-encodes every stored row with them (`capability.py`'s records).

Ingestion encodes two records per reading, so readings and intervals are written from a
`_RecordTemplate` each (one %-template, ≈ 1.3 µs against ≈ 6 µs for `json.dumps` with sorted
keys; see BENCHMARKS.md): byte for byte the codec's encoding, which the unit tests check and
`audit verify` would report were they to differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from cityshare.tlog.entries import RecordCodec

READING_FIELDS = (
    "id",
    "device_id",
    "seq",
    "ts",
    "import_wh",
    "export_wh",
    "received_at",
    "source",
    "jws",
)
INTERVAL_FIELDS = (
    "id", "device_id", "seq", "prev_seq", "status", "start_ts", "end_ts", "tod", "import_wh",
    "export_wh", "carbon_g", "credit_milli", "owner_id", "tariff_id", "base_seq", "base_ts",
    "base_import", "base_export", "top_seq", "top_ts", "hw_ts", "hw_import", "hw_export",
    "carbon_carry", "credit_carry", "at",
)  # fmt: skip

TARIFF = RecordCodec("tariff", ("id", "digest", "name", "body", "added_at"))
#: The reference encodings of what `READINGS` and `INTERVALS` write (rows in field order).
METER_READING = RecordCodec("meter_reading", READING_FIELDS)
METER_INTERVAL = RecordCodec("meter_interval", INTERVAL_FIELDS)


class _RecordTemplate:
    """`codec.of_mapping(dict(zip(codec.fields, row)))`, byte for byte, for rows of integers
    and strings (`text`: the fields that are strings), from one %-template (ingestion encodes
    two records per reading, and json.dumps with sort_keys costs ~6 µs each; this ~1 µs).
    `audit verify` re-encodes every stored row with the codec itself, so a difference would
    show."""

    def __init__(self, codec: RecordCodec, text: frozenset[str]) -> None:
        record_type, fields = codec.type, codec.fields
        self.codec = codec
        names = sorted((*fields, "type"))
        parts = []
        for name in names:
            if name == "type":
                value = json_string(record_type).replace("%", "%%")
            else:
                # json.dumps writes an int with int.__repr__ (as %d does) and a str with
                # encode_basestring_ascii (ensure_ascii=True); %d refuses None or a str (a float
                # it would truncate: the rows are built of ints; `audit verify` would show one).
                value = "%s" if name in text else "%d"
            parts.append(f"{json_string(name)}:{value}")
        self.template = "{" + ",".join(parts) + "}"
        order = [fields.index(n) for n in names if n != "type"]
        self.order = order
        self.text_at = [i for i, n in enumerate(n for n in names if n != "type") if n in text]

    def reference(self, row: Sequence[Any]) -> bytes:
        """The codec's encoding of `row` (what `encode_all` must write for it)."""
        return self.codec.of_mapping(dict(zip(self.codec.fields, row, strict=True)))

    def encode_all(self, rows: Iterable[Sequence[Any]]) -> list[bytes]:
        order = self.order
        text_at = self.text_at
        template = self.template
        out = []
        for row in rows:
            values = [row[i] for i in order]
            for i in text_at:
                values[i] = json_string(values[i])
            out.append((template % tuple(values)).encode("ascii"))
        return out


#: Leaves of `meter_readings` rows (`model.ReadingRow`s) and `meter_intervals` rows
#: (`model.IntervalRow`s), as ingestion writes them.
READINGS = _RecordTemplate(METER_READING, frozenset({"device_id", "source", "jws"}))
INTERVALS = _RecordTemplate(METER_INTERVAL, frozenset({"device_id", "status", "tod"}))
