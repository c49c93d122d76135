"""How a charging session's OCPP meter values become readings of its chain (pure rules), how
frames are read, and how tokens are kept out of the log."""

from __future__ import annotations

import itertools
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import Call
from websockets.frames import Frame, Opcode

from cityshare.charging.model import (
    Planned,
    Progress,
    Sample,
    chain_id,
    hash_password,
    plan,
    verify_password,
)
from cityshare.charging.ocpp.frames import FrameError, RedactTokens, read_frame, redact_text
from cityshare.charging.ocpp.sessions import (
    EXPORT,
    IMPORT,
    SampleError,
    evidence,
    parse_timestamp,
    samples_v16,
    samples_v201,
)


def test_the_first_sample_with_an_export_register_is_seq_0_and_each_newer_one_follows() -> None:
    got = plan(
        Progress.start(meter_start_wh=10_000),
        [Sample(100, 10_000, None), Sample(160, None, 500), Sample(220, 10_100, 700)],
    )
    assert got == [Planned(0, 160, 10_000, 500), Planned(1, 220, 10_100, 700)]


def test_samples_already_seen_or_older_are_dropped_before_they_are_readings() -> None:
    progress = Progress.after((4, 1_000, 10_000, 800), meter_start_wh=9_000)
    got = plan(progress, [Sample(900, None, 700), Sample(1_000, None, 800),
                          Sample(1_060, None, 900)])  # fmt: skip
    assert got == [Planned(5, 1_060, 10_000, 900)]


def test_samples_of_one_instant_are_merged_and_sorted() -> None:
    got = plan(
        Progress.start(0),
        [Sample(200, None, 20), Sample(100, 5, None), Sample(100, None, 10)],
    )
    assert got == [Planned(0, 100, 5, 10), Planned(1, 200, 5, 20)]


def test_import_is_tracked_only_when_the_start_told_it() -> None:
    got = plan(Progress.start(None), [Sample(100, 40_000, 10), Sample(200, 41_000, 20)])
    assert [(p.import_wh, p.export_wh) for p in got] == [(0, 10), (0, 20)]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10**6)), max_size=30))
def test_planning_in_pieces_equals_planning_at_once(raw: list[tuple[int, int]]) -> None:
    samples = [Sample(ts, None, wh) for ts, wh in raw]
    whole = plan(Progress.start(0), samples)
    pieces: list[Planned] = []
    latest: tuple[int, int, int, int] | None = None
    for i in range(0, len(samples), 4):
        part = plan(Progress.after(latest, 0), samples[i : i + 4])
        pieces += part
        if part:
            latest = (part[-1].seq, part[-1].ts, part[-1].import_wh, part[-1].export_wh)
    # Seqs are contiguous and timestamps strictly increase either way (late samples in a
    # later piece are dropped, never reordered).
    for got in (whole, pieces):
        assert [p.seq for p in got] == list(range(len(got)))
        assert all(a.ts < b.ts for a, b in itertools.pairwise(got))


def test_ocpp_16_values_are_decimal_strings_in_wh_or_kwh() -> None:
    got = samples_v16(
        [
            {
                "timestamp": "2023-11-14T12:00:00Z",
                "sampled_value": [
                    {"value": "52.5", "measurand": EXPORT, "unit": "kWh"},
                    {"value": "10000.9"},  # no measurand: the import register, in Wh
                    {"value": "7", "measurand": EXPORT, "phase": "L1"},  # per phase: ignored
                    {"value": "230", "measurand": "Voltage", "unit": "V"},
                    {"value": "ab12", "measurand": EXPORT, "format": "SignedData"},
                ],
            }
        ]
    )
    assert got == [Sample(1_699_963_200, 10_000, 52_500)]


def test_ocpp_201_values_are_numbers_with_a_unit_and_a_multiplier() -> None:
    got = samples_v201(
        [
            {
                "timestamp": "2023-11-14T12:00:00.250+00:00",
                "sampled_value": [
                    {"value": 5.25, "measurand": EXPORT, "unit_of_measure": {"unit": "kWh",
                                                                            "multiplier": 1}},
                    {"value": 12, "measurand": IMPORT, "unit_of_measure": {"multiplier": 3}},
                ],
            }
        ]
    )  # fmt: skip
    assert got == [Sample(1_699_963_200, 12_000, 52_500)]


@pytest.mark.parametrize(
    "value",
    [
        {"value": "lots", "measurand": EXPORT},
        {"value": "-5", "measurand": EXPORT},
        {"value": "NaN", "measurand": EXPORT},
        {"value": "5", "measurand": EXPORT, "unit": "varh"},
        {"value": "1e30", "measurand": EXPORT},
        {"value": "1e999990", "measurand": EXPORT},  # refused by its exponent, not computed
        {"value": "1e999999999", "measurand": EXPORT},  # beyond Decimal's own range
    ],
    ids=["text", "negative", "nan", "unit", "huge", "million-digit", "decimal-overflow"],
)
def test_unreadable_values_refuse_the_message(value: dict[str, str]) -> None:
    with pytest.raises(SampleError):
        samples_v16([{"timestamp": "2023-11-14T12:00:00Z", "sampled_value": [value]}])


def test_timestamps() -> None:
    assert parse_timestamp("2023-11-14T17:30:00+05:30") == 1_699_963_200
    assert parse_timestamp("2023-11-14T12:00:00") == 1_699_963_200  # no offset: UTC
    for bad in ("yesterday", 42, None, "1969-12-31T23:59:59Z"):
        with pytest.raises(SampleError):
            parse_timestamp(bad)


def test_evidence_is_canonical_and_carries_no_token() -> None:
    payload = {
        "transactionId": 3,
        "idTag": "04A2B3",
        "idToken": {"idToken": "X1", "type": "ISO14443"},
    }
    text = evidence("m1", "StopTransaction", payload)
    assert json.loads(text) == [2, "m1", "StopTransaction", {
        "idTag": "[redacted]", "idToken": {"idToken": "[redacted]", "type": "ISO14443"},
        "transactionId": 3}]  # fmt: skip
    assert text == evidence("m1", "StopTransaction", dict(reversed(payload.items())))
    assert " " not in text


@pytest.mark.parametrize(
    ("frame", "code", "unique_id"),
    [
        ("nope", "RpcFrameworkError", "-1"),
        ("{}", "RpcFrameworkError", "-1"),
        ("[2]", "RpcFrameworkError", "-1"),
        ('[2, 17, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        ('[9, "a", "Heartbeat", {}]', "MessageTypeNotSupported", "a"),
        ('[true, "a", "Heartbeat", {}]', "MessageTypeNotSupported", "a"),
        ('[2, "a", "Heartbeat"]', "RpcFrameworkError", "a"),
        ('[2, "a", 5, {}]', "RpcFrameworkError", "a"),
        ('[2, "a", "Heartbeat", [1]]', "FormatViolation", "a"),
    ],
    ids=[
        "text",
        "object",
        "short",
        "numeric-id",
        "long-id",
        "type",
        "bool-type",
        "no-payload",
        "numeric-action",
        "list-payload",
    ],
)
def test_frames_that_are_not_calls(frame: str, code: str, unique_id: str) -> None:
    with pytest.raises(FrameError) as refused:
        read_frame(frame)
    assert (refused.value.code, refused.value.unique_id) == (code, unique_id)


def test_calls_are_read_and_answers_ignored() -> None:
    call = read_frame('[2, "a1", "Heartbeat", {}]')
    assert call is not None
    assert (call.unique_id, call.action, call.payload) == ("a1", "Heartbeat", {})
    assert read_frame('[3, "a1", {}]') is None
    assert read_frame('[4, "a1", "GenericError", "", {}]') is None


def test_passwords_and_chain_ids() -> None:
    stored = hash_password("correct-horse-battery")
    assert verify_password("correct-horse-battery", stored)
    assert not verify_password("correct-horse-batterY", stored)
    assert not verify_password("correct-horse-battery", "md5$nope")
    assert stored != hash_password("correct-horse-battery")  # salted
    ids = {chain_id("dev-a", "1@100"), chain_id("dev-a", "1@101"), chain_id("dev-b", "1@100")}
    assert len(ids) == 3
    assert all(len(i) <= 40 and i.startswith("ocpp-") for i in ids)


def test_log_records_carry_no_token() -> None:
    v16 = '[2,"m1","Authorize",{"idTag":"04A2B3C4"}]'
    v201 = (
        '[2,"m2","TransactionEvent",{"idToken": {"idToken":"EMP\\"77","type":"eMAID",'
        '"additionalInfo":[{"additionalIdToken":"X9","type":"x"}]},"seqNo":4}]'
    )
    assert redact_text(v16) == '[2,"m1","Authorize",{"idTag":"[redacted]"}]'
    redacted = redact_text(v201)
    assert json.loads(redacted)[3] == {
        "idToken": {"idToken": "[redacted]", "type": "eMAID",
                    "additionalInfo": [{"additionalIdToken": "[redacted]", "type": "x"}]},
        "seqNo": 4,
    }  # fmt: skip
    record = logging.LogRecord(
        "cityshare.charging.ocpp", logging.DEBUG, __file__, 1, "%s %s %s %s", (
            Call("m3", "StartTransaction", {"idTag": "04A2B3C4", "connectorId": 1}),
            v16.encode(),
            Frame(Opcode.TEXT, v16.encode()),
            7,
        ), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    message = record.getMessage()
    assert "04A2B3C4" not in message
    assert '"connectorId": 1' in message  # the rest is kept
    assert message.endswith(f"TEXT [{len(v16)} bytes, not logged] 7")
