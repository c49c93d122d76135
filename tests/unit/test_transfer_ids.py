"""The platform's own postings (billing, top-ups, energy credits, community payouts) take
transfer ids from disjoint ranges above 2^61, so no capability's retry-safe id can ever meet
another's, nor an id a client chose: clients are held to 1 … 2^61-1 (`domain.ids`), and every
range the platform mints from (transfers and wallet accounts) lies in the reserved rest."""

from __future__ import annotations

import itertools

import pytest

from cityshare.billing.model import MAX_BILL_ID, payment_transfer_id
from cityshare.billing.top_ups import MAX_TOP_UP_ID, SETTLEMENT_ACCOUNT, top_up_transfer_id
from cityshare.community.handlers import MAX_PAYOUT_ID, payout_transfer_id
from cityshare.energy.model import MAX_INTERVAL_ID, PLATFORM_ACCOUNTS, EnergyCode, transfer_id
from cityshare.identity.residents import MAX_PARTY_ID, wallet_account_id
from cityshare.ledger import ids
from cityshare.ledger.model import MAX_INT, Ledger


def test_clients_choose_below_2_61_and_the_platform_keeps_the_rest() -> None:
    assert ids.CLIENT_IDS == (1, 2**61 - 1)
    assert ids.RESERVED_IDS == (2**61, MAX_INT)
    assert ids.CLIENT_IDS.last + 1 == ids.RESERVED_IDS.first
    assert not ids.reserved_transfer_id(2**61 - 1)
    assert ids.reserved_transfer_id(2**61)
    assert ids.reserved_transfer_id(2**62 + 44)
    assert not ids.reserved_account_id(500)
    assert ids.reserved_account_id(2**61)


def test_every_platform_range_is_reserved_and_no_two_meet() -> None:
    ranges = sorted(ids.PLATFORM_TRANSFER_RANGES.values())
    for first, last in ranges:
        assert first in ids.RESERVED_IDS
        assert last in ids.RESERVED_IDS
        assert first <= last
    for (_, high), (low, _) in itertools.pairwise(ranges):
        assert high < low
    assert ids.WALLET_ACCOUNTS.first in ids.RESERVED_IDS


def test_every_id_the_platform_mints_lies_in_its_declared_range() -> None:
    minted = {
        "billing": [payment_transfer_id(1), payment_transfer_id(MAX_BILL_ID)],
        "energy": [
            transfer_id(1, EnergyCode.EXPORT_CREDIT),
            transfer_id(MAX_INTERVAL_ID, EnergyCode.ENERGY_IMPORT),
        ],
        "top-ups": [top_up_transfer_id(1), top_up_transfer_id(MAX_TOP_UP_ID)],
        "community": [
            payout_transfer_id(1, Ledger.CREDIT),
            payout_transfer_id(MAX_PAYOUT_ID, Ledger.CARBON),
        ],
    }
    for name, extremes in minted.items():
        assert all(i in ids.PLATFORM_TRANSFER_RANGES[name] for i in extremes), name
    wallets = [wallet_account_id(1, Ledger.CREDIT), wallet_account_id(MAX_PARTY_ID, Ledger.INR)]
    assert all(w in ids.WALLET_ACCOUNTS and ids.reserved_account_id(w) for w in wallets)


def test_the_platforms_own_accounts_are_reserved_by_name() -> None:
    named = [*PLATFORM_ACCOUNTS, SETTLEMENT_ACCOUNT]
    assert {a.id for a in named} == ids.NAMED_PLATFORM_ACCOUNTS
    assert all(ids.reserved_account_id(a.id) for a in named)


def test_the_named_accounts_are_defined_once_in_domain_ids() -> None:
    """Each capability opens its named accounts by the ids and code `domain.ids` defines, so
    the reserved set and the accounts the platform opens cannot drift apart."""
    by_ledger = {Ledger(a.ledger): a for a in [*PLATFORM_ACCOUNTS, SETTLEMENT_ACCOUNT]}
    assert by_ledger[Ledger.CREDIT].id == ids.CREDIT_ISSUANCE == 901
    assert by_ledger[Ledger.ENERGY].id == ids.GRID_ENERGY == 902
    assert by_ledger[Ledger.CARBON].id == ids.CARBON_ISSUANCE == 903
    assert by_ledger[Ledger.INR].id == ids.INR_SETTLEMENT == 904
    assert {a.code for a in by_ledger.values()} == {ids.PLATFORM_ACCOUNT_CODE}


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
