"""Community's leaves are a contract: the codecs write exactly the bytes the hand-written
encoders they replaced wrote (the expected bytes below were produced by those encoders)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cityshare.community import records
from cityshare.community.model import DistributionRow, PayoutRow, ShareEventRow
from cityshare.tlog.entries import RecordCodec

ASSET = 2**60 + 5

CASES: list[tuple[RecordCodec, Any, bytes]] = [
    (
        records.SHARE_EVENT,
        ShareEventRow(3, ASSET, "transfer", 42, 43, 250, "resident:42", 1790000400000000004),
        b'{"actor":"resident:42","asset_id":1152921504606846981,"at":1790000400000000004,'
        b'"from_id":42,"id":3,"kind":"transfer","shares":250,"to_id":43,"type":"share_event"}',
    ),
    (
        records.SHARE_EVENT,
        ShareEventRow(1, ASSET, "issue", 0, 42, 1000, 'admin:\u00e9"x', 1790000000000000000),
        b'{"actor":"admin:\\u00e9\\"x","asset_id":1152921504606846981,'
        b'"at":1790000000000000000,"from_id":0,"id":1,"kind":"issue","shares":1000,"to_id":42,'
        b'"type":"share_event"}',
    ),
    (
        records.DISTRIBUTION,
        DistributionRow(4, ASSET, 1790000000000000000, 12345, 678, 2, 1000, 1790000500000000005),
        b'{"asset_id":1152921504606846981,"at":1790000500000000005,"carbon_g":678,'
        b'"credit_milli":12345,"holders":2,"id":4,"period_end":1790000000000000000,'
        b'"total_shares":1000,"type":"community_distribution"}',
    ),
    (
        records.PAYOUT,
        PayoutRow(8, 4, ASSET, 43, 250, 3086, 169),
        b'{"asset_id":1152921504606846981,"carbon_g":169,"credit_milli":3086,'
        b'"distribution_id":4,"id":8,"resident_id":43,"shares":250,"type":"community_payout"}',
    ),
]


@pytest.mark.parametrize(("codec", "row", "expected"), CASES)
def test_a_record_is_logged_as_the_old_encoder_logged_it(
    codec: RecordCodec, row: Any, expected: bytes
) -> None:
    assert codec.of(row) == expected
    # `audit verify` re-encodes the stored row (column -> value) to the same bytes.
    assert codec.of_mapping(dataclasses.asdict(row)) == expected


def test_every_table_is_logged_by_one_codec() -> None:
    assert [(r.type, r.table) for r in records.RECORDS] == [
        ("share_event", "share_events"),
        ("community_distribution", "community_distributions"),
        ("community_payout", "community_payouts"),
    ]


@pytest.mark.parametrize(
    ("codec", "row_type"),
    [
        (records.SHARE_EVENT, ShareEventRow),
        (records.DISTRIBUTION, DistributionRow),
        (records.PAYOUT, PayoutRow),
    ],
)
def test_a_row_type_has_its_tables_columns_in_order(codec: RecordCodec, row_type: type) -> None:
    assert tuple(f.name for f in dataclasses.fields(row_type)) == codec.fields
