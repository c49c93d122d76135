"""The access policy's decisions on whose data a credential reaches (pure: no database)."""

from __future__ import annotations

import pytest

from cityshare.identity.policy import (
    Domain,
    Purpose,
    Read,
    Relationship,
    Role,
    refuse_account_search,
    refuse_ledger_read,
    refuse_read,
)
from cityshare.identity.residents import ORG_ID_BASE, owner_of
from cityshare.identity.tokens import Principal

ORG = ORG_ID_BASE + 7
OTHER_ORG = ORG_ID_BASE + 8
RELATED, STRANGER = 11, 12
BILLING, GRID = Purpose.BILLING, Purpose.GRID_OPERATIONS
desk = Principal("desk", Role.OPERATOR, frozenset({BILLING, GRID}), Domain.ENERGY, org_id=ORG)
city = Principal("city", Role.OPERATOR, frozenset({BILLING, GRID}), Domain.ENERGY)


def code(refusal: object) -> str | None:
    return getattr(refusal, "code", None)


@pytest.mark.parametrize(
    ("purpose", "related", "allowed"),
    [
        (BILLING, {Relationship.CUSTOMER}, True),
        (BILLING, {Relationship.SHAREHOLDER}, True),
        (GRID, {Relationship.CUSTOMER}, True),
        (GRID, {Relationship.SHAREHOLDER}, False),
        (BILLING, set(), False),
    ],
)
def test_an_organisations_staff_reach_a_resident_through_the_purposes_relationships(
    purpose: Purpose, related: set[Relationship], allowed: bool
) -> None:
    refusal = refuse_read(desk, Read.PROFILE, purpose, [related])
    assert code(refusal) == (None if allowed else "not_related")
    assert refuse_read(city, Read.PROFILE, purpose, [related]) is None  # platform-wide


def test_the_credential_is_judged_before_the_resident_with_403s() -> None:
    assert code(refuse_read(desk, Read.PROFILE, Purpose.RESEARCH, [set()])) == (
        "purpose_not_granted"
    )
    assert code(refuse_read(desk, Read.STATEMENT, GRID, [set()])) == "wrong_purpose"
    refusal = refuse_read(desk, Read.PROFILE, BILLING, [set()])
    assert refusal is not None
    assert refusal.status == 404


def test_wallets_are_read_only_for_purposes_that_see_them() -> None:
    owners = [owner_of(RELATED)]
    assert code(refuse_ledger_read(city, GRID, owners, {}, what="account 1")) == "wrong_purpose"
    assert refuse_ledger_read(city, BILLING, owners, {}, what="account 1") is None


@pytest.mark.parametrize(
    ("owners", "allowed"),
    [
        ([owner_of(ORG)], True),  # its own account
        ([owner_of(RELATED)], True),  # a customer's
        ([None, owner_of(RELATED)], True),  # a top-up of a customer's wallet
        ([owner_of(RELATED), owner_of(ORG)], True),  # a customer paying it
        ([owner_of(STRANGER)], False),
        ([owner_of(RELATED), owner_of(STRANGER)], False),  # names someone unrelated
        ([owner_of(ORG), owner_of(STRANGER)], False),
        ([None], False),  # the platform's own account
        ([owner_of(OTHER_ORG)], False),
        ([], False),  # no such account: the same answer
    ],
)
def test_an_organisations_staff_read_ledger_data_of_their_own_or_related_residents_only(
    owners: list[str | None], allowed: bool
) -> None:
    related = {RELATED: frozenset({Relationship.CUSTOMER}), STRANGER: frozenset()}
    refusal = refuse_ledger_read(desk, BILLING, owners, related, what="transfer 5")
    assert code(refusal) == (None if allowed else "not_related")
    if owners:
        assert refuse_ledger_read(city, BILLING, owners, {}, what="transfer 5") is None


def test_an_organisations_staff_search_one_owner_at_a_time() -> None:
    assert code(refuse_account_search(desk, None)) == "owner_required"
    assert refuse_account_search(desk, owner_of(ORG)) is None
    assert refuse_account_search(city, None) is None


def test_a_desk_cannot_tell_a_residents_account_from_a_missing_one_by_the_purpose_it_asks() -> None:
    """The reach is judged before the purpose: the same 404 for a stranger's account and for
    none, whatever purpose is asked; a 403 only about a resident it is related to."""
    grid_desk = Principal("g", Role.OPERATOR, frozenset({GRID}), Domain.ENERGY, org_id=ORG)
    related = {RELATED: frozenset({Relationship.CUSTOMER}), STRANGER: frozenset()}
    for purpose in (BILLING, GRID, Purpose.RESEARCH):
        stranger = refuse_ledger_read(grid_desk, purpose, [owner_of(STRANGER)], related, what="x")
        missing = refuse_ledger_read(grid_desk, purpose, [], related, what="x")
        assert stranger == missing
        assert code(missing) == "not_related"
    assert code(refuse_ledger_read(grid_desk, BILLING, [owner_of(RELATED)], related, what="x")) == (
        "purpose_not_granted"
    )
    assert code(refuse_ledger_read(grid_desk, GRID, [owner_of(RELATED)], related, what="x")) == (
        "wrong_purpose"
    )
