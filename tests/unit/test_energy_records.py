"""Energy's log records (energy/records.py): the hand-written %-templates that ingestion encodes
readings and intervals with write, byte for byte, what their RecordCodec (the reference `audit
verify` re-encodes stored rows with) writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityshare.energy.model import TariffRow
from cityshare.energy.records import INTERVALS, METER_INTERVAL, METER_READING, READINGS, TARIFF
from cityshare.tlog.entries import encode_record

MAX = (1 << 63) - 1
ints = st.integers(-MAX - 1, MAX)
texts = st.text(max_size=40)  # any code point: quotes, backslashes, %, non-ASCII, surrogates


def reading_row(**kw: Any) -> tuple[Any, ...]:
    row = dict(
        id=1, device_id="dev-1", seq=2, ts=1_760_000_000, import_wh=10, export_wh=20,
        received_at=1_760_000_000_000_000_000, source="http", jws="a.b.c",
    )  # fmt: skip
    row.update(kw)
    return tuple(row[f] for f in METER_READING.fields)


def test_the_templates_log_the_codecs_fields() -> None:
    assert READINGS.codec is METER_READING
    assert INTERVALS.codec is METER_INTERVAL
    assert METER_READING.type == "meter_reading"
    assert METER_INTERVAL.type == "meter_interval"
    row = reading_row()
    assert READINGS.encode_all([row]) == [READINGS.reference(row)]
    assert READINGS.reference(row) == encode_record(
        "meter_reading", dict(zip(METER_READING.fields, row, strict=True))
    )


@given(device=texts, source=texts, jws=texts, seq=ints, ts=ints, imported=ints, exported=ints)
def test_reading_template_matches_its_codec(
    device: str, source: str, jws: str, seq: int, ts: int, imported: int, exported: int
) -> None:
    row = reading_row(
        device_id=device, source=source, jws=jws, seq=seq, ts=ts, import_wh=imported,
        export_wh=exported,
    )  # fmt: skip
    assert READINGS.encode_all([row]) == [READINGS.reference(row)]


@given(
    texts=st.tuples(texts, texts, texts),
    numbers=st.lists(
        ints, min_size=len(METER_INTERVAL.fields), max_size=len(METER_INTERVAL.fields)
    ),
)
def test_interval_template_matches_its_codec(
    texts: tuple[str, str, str], numbers: list[int]
) -> None:
    values = dict(zip(METER_INTERVAL.fields, numbers, strict=True))
    values.update(zip(("device_id", "status", "tod"), texts, strict=True))
    row = tuple(values[f] for f in METER_INTERVAL.fields)
    assert INTERVALS.encode_all([row, row]) == [INTERVALS.reference(row)] * 2


@pytest.mark.parametrize("bad", [None, "7"])
def test_a_template_refuses_what_json_would_write_otherwise(bad: object) -> None:
    with pytest.raises(TypeError):
        READINGS.encode_all([reading_row(seq=bad)])


def test_the_tariff_codec_logs_a_row_and_a_stored_row_alike() -> None:
    row = TariffRow(3, "ab" * 32, "city", '{"name":"city"}', 1_760_000_000_000_000_000)
    stored = {"id": 3, "digest": "ab" * 32, "name": "city", "body": '{"name":"city"}',
              "added_at": 1_760_000_000_000_000_000}  # fmt: skip
    assert (
        TARIFF.of(row)
        == TARIFF.of_mapping(stored)
        == encode_record("tariff", {k: v for k, v in stored.items()})
    )
