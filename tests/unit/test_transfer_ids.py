"""The platform's own postings (billing, top-ups, energy credits, community payouts) take
transfer ids from disjoint ranges above 2^61, so no capability's retry-safe id can ever meet
another's, nor an id a client chose (clients stay below 2^61)."""

from __future__ import annotations

import itertools

import pytest

from cityshare.domain.ledger import MAX_INT, Ledger
from cityshare.services.billing import MAX_TOP_UP_ID, payment_transfer_id, top_up_transfer_id
from cityshare.services.community import payout_transfer_id
from cityshare.services.energy import MAX_INTERVAL_ID, EnergyCode, transfer_id


def test_each_capability_has_a_range_of_its_own() -> None:
    billing = (payment_transfer_id(1), payment_transfer_id((1 << 61) - 1))
    energy = (
        transfer_id(1, EnergyCode.EXPORT_CREDIT),
        transfer_id(MAX_INTERVAL_ID, EnergyCode.ENERGY_IMPORT),
    )
    community = (
        payout_transfer_id(1, Ledger.CREDIT),
        payout_transfer_id((1 << 59) - 1, Ledger.CARBON),
    )
    top_ups = (top_up_transfer_id(1), top_up_transfer_id(MAX_TOP_UP_ID))
    ranges = sorted([billing, energy, community, top_ups])
    assert ranges[0][0] >= 1 << 61
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high < low
    assert ranges[-1][1] <= MAX_INT


def test_ids_outside_a_range_are_refused() -> None:
    with pytest.raises(ValueError, match="interval ids"):
        transfer_id(MAX_INTERVAL_ID + 1, EnergyCode.EXPORT_CREDIT)
    with pytest.raises(ValueError, match="payout ids"):
        payout_transfer_id(1 << 59, Ledger.CREDIT)
    with pytest.raises(ValueError, match="bill ids"):
        payment_transfer_id(1 << 61)
    with pytest.raises(ValueError, match="top-up ids"):
        top_up_transfer_id(MAX_TOP_UP_ID + 1)


def test_kinds_of_one_interval_or_payout_get_distinct_ids() -> None:
    assert len({transfer_id(7, code) for code in EnergyCode}) == len(EnergyCode)
    assert payout_transfer_id(7, Ledger.CREDIT) != payout_transfer_id(7, Ledger.CARBON)
