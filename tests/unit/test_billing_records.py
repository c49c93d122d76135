"""Billing's leaves are a contract: the codecs write exactly the bytes the hand-written
encoders they replaced wrote (the expected bytes below were produced by those encoders)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cityshare.billing import records
from cityshare.billing.model import ChoiceRow, PriceListRow, RunRow, TopUpRow
from cityshare.tlog.entries import RecordCodec

PROVIDER = 2**60 + 3

CASES: list[tuple[RecordCodec, Any, bytes]] = [
    (
        records.PRICE_LIST,
        PriceListRow(7, PROVIDER, 1790000000, '{"normal":650,"peak":900}', "operator:alice",
                     1790000000123456789),
        b'{"at":1790000000123456789,"effective_from":1790000000,"id":7,'
        b'"prices":"{\\"normal\\":650,\\"peak\\":900}","provider_id":1152921504606846979,'
        b'"set_by":"operator:alice","type":"price_list"}',
    ),
    (
        records.PROVIDER_CHOICE,
        ChoiceRow(11, 42, PROVIDER, 1790000100, 1790000100000000001),
        b'{"at":1790000100000000001,"effective_from":1790000100,"id":11,'
        b'"provider_id":1152921504606846979,"resident_id":42,"type":"provider_choice"}',
    ),
    (
        records.BILLING_RUN,
        RunRow(5, 1234, 17, 98765, 1790000200000000002),
        b'{"at":1790000200000000002,"billed":98765,"bills":17,"id":5,"through_id":1234,'
        b'"type":"billing_run"}',
    ),
    (
        records.TOP_UP,
        TopUpRow(9, "UTR-ABC/123", 42, 50000, 2**62 + 2**60 + 9, 'operator:\u00e9"x',
                 1790000300000000003),
        b'{"actor":"operator:\\u00e9\\"x","amount":50000,"at":1790000300000000003,"id":9,'
        b'"reference":"UTR-ABC/123","resident_id":42,"transfer_id":5764607523034234889,'
        b'"type":"top_up"}',
    ),
]  # fmt: skip


@pytest.mark.parametrize(("codec", "row", "expected"), CASES, ids=lambda c: getattr(c, "type", ""))
def test_a_record_is_logged_as_the_old_encoder_logged_it(
    codec: RecordCodec, row: Any, expected: bytes
) -> None:
    assert codec.of(row) == expected
    # `audit verify` re-encodes the stored row (column -> value) to the same bytes.
    assert codec.of_mapping(dataclasses.asdict(row)) == expected


BILLS = [
    (
        (13, 42, PROVIDER, 7, "peak", 1790000000, 1500, 900, 1350, 0, 5, 1790000200000000002),
        b'{"amount":1350,"at":1790000200000000002,"carry":0,"id":13,"import_wh":1500,'
        b'"paise_per_kwh":900,"price_list_id":7,"provider_id":1152921504606846979,'
        b'"resident_id":42,"run_id":5,"start_ts":1790000000,"tod":"peak","type":"energy_bill"}',
    ),
    (
        (14, 42, 0, 0, "", 1790000900, 20, 0, 0, 0, 5, 1790000200000000002),
        b'{"amount":0,"at":1790000200000000002,"carry":0,"id":14,"import_wh":20,'
        b'"paise_per_kwh":0,"price_list_id":0,"provider_id":0,"resident_id":42,"run_id":5,'
        b'"start_ts":1790000900,"tod":"","type":"energy_bill"}',
    ),
]


@pytest.mark.parametrize(("row", "expected"), BILLS)
def test_a_bill_is_logged_as_the_old_encoder_logged_it(
    row: tuple[Any, ...], expected: bytes
) -> None:
    assert records.bill_entry(row) == expected  # type: ignore[arg-type]
    stored = dict(zip(records.ENERGY_BILL.fields, row, strict=True))
    assert records.ENERGY_BILL.of_mapping(stored) == expected


def test_every_table_is_logged_by_one_codec() -> None:
    assert [(r.type, r.table) for r in records.RECORDS] == [
        ("price_list", "price_lists"),
        ("provider_choice", "provider_choices"),
        ("energy_bill", "energy_bills"),
        ("billing_run", "billing_runs"),
        ("top_up", "top_ups"),
    ]
    assert records.BILL_FIELDS == (
        "id", "resident_id", "provider_id", "price_list_id", "tod", "start_ts", "import_wh",
        "paise_per_kwh", "amount", "carry", "run_id", "at",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("codec", "row_type"),
    [
        (records.PRICE_LIST, PriceListRow),
        (records.PROVIDER_CHOICE, ChoiceRow),
        (records.BILLING_RUN, RunRow),
        (records.TOP_UP, TopUpRow),
    ],
)
def test_a_row_type_has_its_tables_columns_in_order(codec: RecordCodec, row_type: type) -> None:
    assert tuple(f.name for f in dataclasses.fields(row_type)) == codec.fields
