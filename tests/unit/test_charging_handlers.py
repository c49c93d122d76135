"""The rules for chargers' passwords and vehicles' id tokens on an in-memory unit of work (no
database): whose devices they may be set for, what registering or removing twice does, and
that every refusal writes nothing. The real-database tests
(tests/integration/test_charging_service.py) stay the proof that the store does the same."""

from __future__ import annotations

from typing import Any

import pytest

from cityshare.charging import handlers, records
from cityshare.charging.commands import RegisterIdToken, RemoveIdToken, SetChargerPassword
from cityshare.charging.fake import FakeChargingRepository
from cityshare.charging.handlers import MAX_TOKENS_PER_VEHICLE
from cityshare.charging.model import (
    ChargingError,
    IdTokenRow,
    id_token_digest,
    verify_password,
)
from cityshare.identity.fake import FakeIdentityRepository
from cityshare.identity.model import DeviceKeyRow, DeviceRow, OrganisationRow, ResidentRow
from cityshare.identity.organisations import OrgKind
from cityshare.identity.residents import ORG_ID_BASE
from fakes import FakeUnitOfWork

OPERATOR = ORG_ID_BASE + 1
PROVIDER = ORG_ID_BASE + 2
ASHA, BALA = 1, 2
SECRET = b"k" * 32
PASSWORD = "correct-horse-battery"


def device(ids: FakeIdentityRepository, device_id: str, owner: int, kind: str) -> None:
    ids.insert_device(DeviceRow(device_id, owner, kind, None, 0))
    ids.insert_key(DeviceKeyRow(ids.next_device_key_id(), device_id, device_id.encode() * 4, 0))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    ids = FakeIdentityRepository()
    ids.insert_organisation(OrganisationRow(OPERATOR, OrgKind.OPERATOR.value, "Op", "energy", 0))
    ids.insert_organisation(OrganisationRow(PROVIDER, OrgKind.PROVIDER.value, "Pr", "energy", 0))
    for resident in (ASHA, BALA):
        ids.insert_resident(ResidentRow(resident, f"p{resident}", "issuer", 0))
    device(ids, "charger1", OPERATOR, "charger")
    device(ids, "charger2", PROVIDER, "charger")
    device(ids, "meter001", OPERATOR, "meter")
    device(ids, "vehicle1", ASHA, "vehicle")
    device(ids, "vehicle2", BALA, "vehicle")
    device(ids, "phone001", ASHA, "phone")
    return FakeUnitOfWork(identity=ids, charging=FakeChargingRepository())


def written(uow: FakeUnitOfWork) -> tuple[Any, ...]:
    c = uow.charging
    return (dict(c.secrets), dict(c.tokens), dict(c.removals), list(uow.log.leaves))


def refused(uow: FakeUnitOfWork, code: str, call: Any) -> None:
    """`call` is refused with `code`, and writes nothing (nor commits)."""
    before, commits = written(uow), uow.commits
    with pytest.raises(ChargingError) as caught:
        call()
    assert caught.value.code == code
    assert written(uow) == before
    assert uow.commits == commits


def revoke(uow: FakeUnitOfWork, device_id: str) -> None:
    for key in uow.identity.keys_of([device_id]):
        uow.identity.revoke_key(key.id, "device_revoked", 1)


# -- charger passwords -------------------------------------------------------------------------


def set_password(uow: Any, org: int, device_id: str, password: str = PASSWORD) -> Any:
    return handlers.set_charger_password(SetChargerPassword(org, device_id, password), uow)


def test_a_new_password_replaces_the_old_one_and_is_logged_without_its_hash(
    uow: FakeUnitOfWork,
) -> None:
    first = set_password(uow, OPERATOR, "charger1")
    uow.clock.advance(1)
    second = set_password(uow, OPERATOR, "charger1", "another-long-password")

    assert uow.charging.current_secret("charger1") == second
    assert second.id == first.id + 1
    assert verify_password("another-long-password", second.secret_hash)
    assert not verify_password(PASSWORD, second.secret_hash)
    assert uow.log.leaves == [records.CHARGER_SECRET.of(first), records.CHARGER_SECRET.of(second)]
    assert (uow.commits, uow.ledger.locks) == (2, 2)


@pytest.mark.parametrize(
    ("org", "device_id", "code"),
    [
        (OPERATOR, "nothing1", "not_found"),
        (PROVIDER, "charger1", "not_found"),  # another organisation's charger
        (OPERATOR, "meter001", "not_a_charger"),
        (PROVIDER, "charger2", "not_an_operator"),
    ],
)
def test_a_password_is_refused(uow: FakeUnitOfWork, org: int, device_id: str, code: str) -> None:
    refused(uow, code, lambda: set_password(uow, org, device_id))


def test_a_revoked_charger_gets_no_password(uow: FakeUnitOfWork) -> None:
    revoke(uow, "charger1")
    refused(uow, "device_revoked", lambda: set_password(uow, OPERATOR, "charger1"))


def test_a_weak_password_is_refused_before_anything(uow: FakeUnitOfWork) -> None:
    before = written(uow)
    with pytest.raises(ChargingError):
        set_password(uow, OPERATOR, "charger1", "short")
    assert written(uow) == before
    assert uow.ledger.locks == 0


# -- id tokens ---------------------------------------------------------------------------------


def register(uow: Any, owner: int, device_id: str, token: str = "04A1B2C3") -> IdTokenRow:
    cmd = RegisterIdToken(owner, device_id, token)
    return handlers.register_id_token(cmd, uow, secret=SECRET)


def test_a_token_is_registered_once_and_stored_as_a_digest(uow: FakeUnitOfWork) -> None:
    row = register(uow, ASHA, "vehicle1", "04a1b2c3")

    assert row.token_hash == id_token_digest(SECRET, "04A1B2C3")
    assert uow.charging.tokens_of("vehicle1") == [row]
    assert uow.log.leaves == [records.ID_TOKEN.of(row)]
    assert register(uow, ASHA, "vehicle1") == row  # again: nothing changes
    assert (uow.commits, len(uow.log.leaves)) == (1, 1)


@pytest.mark.parametrize(
    ("owner", "device_id", "code"),
    [
        (ASHA, "vehicle2", "not_found"),  # Bala's vehicle
        (ASHA, "nothing1", "not_found"),
        (ASHA, "phone001", "not_a_vehicle"),
    ],
)
def test_a_token_is_refused(uow: FakeUnitOfWork, owner: int, device_id: str, code: str) -> None:
    refused(uow, code, lambda: register(uow, owner, device_id))


def test_a_token_another_vehicle_holds_is_refused(uow: FakeUnitOfWork) -> None:
    register(uow, ASHA, "vehicle1")
    refused(uow, "token_in_use", lambda: register(uow, BALA, "vehicle2"))


def test_a_revoked_vehicle_gets_no_token(uow: FakeUnitOfWork) -> None:
    revoke(uow, "vehicle1")
    refused(uow, "device_revoked", lambda: register(uow, ASHA, "vehicle1"))


def test_a_vehicle_has_at_most_so_many_tokens(uow: FakeUnitOfWork) -> None:
    for n in range(MAX_TOKENS_PER_VEHICLE):
        register(uow, ASHA, "vehicle1", f"TOKEN{n}")
    refused(uow, "too_many_tokens", lambda: register(uow, ASHA, "vehicle1", "ONEMORE"))


def test_a_removed_token_is_free_for_another_vehicle(uow: FakeUnitOfWork) -> None:
    row = register(uow, ASHA, "vehicle1")
    uow.clock.advance(1)
    now = uow.clock.now_ns()

    removed = handlers.remove_id_token(RemoveIdToken(ASHA, "vehicle1", row.id), uow)

    assert removed == IdTokenRow(row.id, "vehicle1", row.token_hash, row.added_at, now)
    assert uow.charging.token(row.id) == removed
    assert uow.log.leaves[-1] == records.ID_TOKEN_REMOVED.of_mapping(
        {"id": row.id, "removed_at": now}
    )
    commits = uow.commits
    # Removing it again changes nothing.
    assert handlers.remove_id_token(RemoveIdToken(ASHA, "vehicle1", row.id), uow) == removed
    assert uow.commits == commits
    assert register(uow, BALA, "vehicle2").device_id == "vehicle2"


def test_a_token_of_another_vehicle_is_not_found(uow: FakeUnitOfWork) -> None:
    row = register(uow, ASHA, "vehicle1")
    refused(
        uow,
        "not_found",
        lambda: handlers.remove_id_token(RemoveIdToken(BALA, "vehicle2", row.id), uow),
    )
    refused(
        uow,
        "not_found",
        lambda: handlers.remove_id_token(RemoveIdToken(ASHA, "vehicle1", row.id + 1), uow),
    )
