"""Organisations through the message bus: operators, providers and community assets are parties
that hold wallets and own devices like residents (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from cityshare.bootstrap import Platform
from cityshare.identity import commands
from cityshare.identity import handlers as identity
from cityshare.identity.devices import parse_public_key
from cityshare.identity.handlers import IdentityError
from cityshare.identity.model import OrganisationRow
from cityshare.identity.organisations import ORG_ID_BASE
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger
from identity_helpers import assertion, new_key


def create(platform: Platform, kind: str, name: str, domain: str | None = None) -> OrganisationRow:
    row: OrganisationRow = platform.bus.handle(commands.CreateOrganisation(kind, name, domain))
    return row


def test_an_organisation_gets_an_id_of_its_own_range_and_four_wallets(platform: Platform) -> None:
    resident = platform.bus.handle(commands.EnrolResident(assertion(platform, "asha")))
    org = create(platform, "community", "Ward 9 Rooftop Array")
    assert org.id == ORG_ID_BASE
    assert org.domain == "energy"  # community assets are energy organisations
    assert resident.resident_id < ORG_ID_BASE
    data = identity.organisation_data(platform.uow(), org.id)
    assert data is not None
    assert {Ledger(w.ledger).name for w in data.wallets} == {"CREDIT", "ENERGY", "CARBON", "INR"}
    credit = ledger_service.get_account(platform.uow(), wallet_account_id(org.id, Ledger.CREDIT))
    assert credit is not None
    assert credit.owner == f"org:{org.id}"
    assert create(platform, "provider", "City Power").id == ORG_ID_BASE + 1


def test_an_operator_names_its_domain_and_the_others_belong_to_energy(platform: Platform) -> None:
    assert create(platform, "operator", "Ward Parking", "parking").domain == "parking"
    with pytest.raises(IdentityError) as no_domain:
        create(platform, "operator", "Chargers Inc")
    assert no_domain.value.code == "invalid_domain"
    with pytest.raises(IdentityError) as wrong_domain:
        create(platform, "provider", "Transit Power", "transit")
    assert wrong_domain.value.code == "invalid_domain"


@pytest.mark.parametrize(
    ("kind", "name", "code"),
    [
        ("bank", "A Bank", "invalid_kind"),
        ("provider", "", "invalid_name"),
        ("provider", "x" * 101, "invalid_name"),
        ("provider", "<script>", "invalid_name"),
    ],
    ids=["unknown-kind", "empty-name", "long-name", "markup-name"],
)
def test_bad_organisations_are_refused_and_nothing_is_written(
    platform: Platform, kind: str, name: str, code: str
) -> None:
    with platform.uow() as uow:
        before = uow.log.size()
    with pytest.raises(IdentityError) as refused:
        create(platform, kind, name)
    assert refused.value.code == code
    with platform.uow() as uow:
        assert uow.log.size() == before
    assert identity.organisations(platform.uow()) == []


def test_names_are_unique(platform: Platform) -> None:
    create(platform, "provider", "City Power")
    with pytest.raises(IdentityError) as taken:
        create(platform, "community", "City Power")
    assert taken.value.code == "name_taken"
    assert [o.name for o in identity.organisations(platform.uow())] == ["City Power"]


def test_an_organisation_owns_devices_without_the_residents_limit(platform: Platform) -> None:
    operator = create(platform, "operator", "Highway Chargers", "energy")
    ids = [
        platform.bus.handle(
            commands.RegisterDevice(operator.id, "charger", parse_public_key(new_key()[1]))
        ).id
        for _ in range(identity.MAX_DEVICES_PER_RESIDENT + 1)
    ]
    data = identity.organisation_data(platform.uow(), operator.id)
    assert data is not None
    assert sorted(d.device.id for d in data.devices) == sorted(ids)
    # The organisation revokes its own device; nobody else can.
    resident = platform.bus.handle(commands.EnrolResident(assertion(platform, "asha")))
    with pytest.raises(IdentityError):
        platform.bus.handle(commands.RevokeDevice(resident.resident_id, ids[0]))
    assert platform.bus.handle(commands.RevokeDevice(operator.id, ids[0])) == 1


def test_devices_of_an_unknown_organisation_are_refused(platform: Platform) -> None:
    with pytest.raises(IdentityError) as refused:
        platform.bus.handle(
            commands.RegisterDevice(ORG_ID_BASE + 5, "meter", parse_public_key(new_key()[1]))
        )
    assert refused.value.code == "not_found"


def test_a_staff_credential_may_name_an_organisation_of_its_own_domain(
    platform: Platform,
) -> None:
    org = create(platform, "operator", "Highway Chargers", "energy")
    uow = platform.uow
    assert identity.staff_org_problem(uow(), "operator", "energy", org.id) is None
    assert identity.staff_org_problem(uow(), "operator", "energy", None) is None
    assert identity.staff_org_problem(uow(), "operator", "parking", org.id) == (
        "the organisation is in the energy domain"
    )
    assert identity.staff_org_problem(uow(), "analyst", None, org.id) == (
        "only an operator credential acts for an organisation"
    )
    assert identity.staff_org_problem(uow(), "operator", "energy", 7) == "no such organisation"
    assert identity.staff_org_problem(uow(), "operator", "energy", org.id + 1) == (
        "no such organisation"
    )
