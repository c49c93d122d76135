"""Enrolment's and devices' rules on an in-memory unit of work (no database): who is enrolled
from what assertion, what a re-enrolment changes, a device's keys through registration,
revocation and rotation, and that every refusal writes nothing. The real-database tests
(tests/integration/test_identity_service.py) stay the proof that the store does the same."""

from __future__ import annotations

from typing import Any

import pytest

from cityshare.identity import handlers, records
from cityshare.identity.commands import (
    EnrolResident,
    RegisterDevice,
    RevokeDevice,
    RotateDeviceKey,
)
from cityshare.identity.fake import FakeIdentityRepository
from cityshare.identity.handlers import MAX_DEVICES_PER_RESIDENT, IdentityError
from cityshare.identity.model import DeviceRow
from cityshare.identity.residents import ORG_ID_BASE, wallet_accounts
from cityshare.tlog.entries import encode_account
from fakes import FakeUnitOfWork
from identity_helpers import ISSUER_KEY, a_vid, assertion, pseudonym_of

SECTOR = "cityshare"


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(identity=FakeIdentityRepository())


def enrol(uow: Any, person: str = "asha", **claims: Any) -> handlers.Enrolled:
    cmd = EnrolResident(assertion(uow, person, **claims))
    return handlers.enrol_resident(cmd, uow, issuers=[ISSUER_KEY.verifier], sector=SECTOR)


def written(uow: FakeUnitOfWork) -> tuple[Any, ...]:
    """Everything a handler could have written: identity's facts, accounts and log leaves."""
    ids = uow.identity
    return (
        dict(ids.residents),
        dict(ids.enrolments),
        dict(ids.devices),
        dict(ids.keys),
        dict(ids.revocations),
        dict(uow.ledger.accounts),
        uow.ledger.last_timestamp,
        list(uow.log.leaves),
    )


def refused(uow: FakeUnitOfWork, code: str, call: Any) -> None:
    """`call` is refused with `code`, and writes nothing (nor commits)."""
    before, commits = written(uow), uow.commits
    with pytest.raises(IdentityError) as caught:
        call()
    assert caught.value.code == code
    assert written(uow) == before
    assert uow.commits == commits


def key(n: int) -> bytes:
    return bytes([n]) * 32


# -- enrolment ---------------------------------------------------------------------------------


def test_a_valid_assertion_enrols_a_resident_with_wallets_in_one_commit(
    uow: FakeUnitOfWork,
) -> None:
    vid = a_vid()
    enrolled = enrol(uow, vid=vid, ward="7", age_band="18-29")

    assert enrolled == handlers.Enrolled(1, vid, created=True)
    resident = uow.identity.resident(1)
    assert resident is not None
    assert resident.pseudonym == pseudonym_of("asha")
    assert resident.issuer == ISSUER_KEY.name
    enrolment = uow.identity.latest_enrolment(1)
    assert enrolment is not None
    assert (enrolment.vid, enrolment.attrs) == (vid, {"ward": "7", "age_band": "18-29"})
    assert uow.identity.resident_by_vid(vid) == 1
    wallets = wallet_accounts(1)
    assert set(uow.ledger.accounts) == {w.id for w in wallets}
    now = uow.clock.now_ns()
    assert uow.log.leaves == [
        records.RESIDENT.of(resident),
        records.ENROLMENT.of(enrolment),
        *(encode_account(w, now + i) for i, w in enumerate(wallets)),
    ]
    assert (uow.commits, uow.ledger.locks) == (1, 1)


def test_re_enrolment_updates_the_vid_and_opens_nothing(uow: FakeUnitOfWork) -> None:
    old, new = a_vid(), a_vid()
    enrol(uow, vid=old)
    accounts, leaves = dict(uow.ledger.accounts), len(uow.log.leaves)
    uow.clock.advance(60)

    enrolled = enrol(uow, vid=new, ward="9")

    assert enrolled == handlers.Enrolled(1, new, created=False)
    assert len(uow.identity.residents) == 1
    latest = uow.identity.latest_enrolment(1)
    assert latest is not None
    assert (latest.vid, latest.attrs["ward"]) == (new, "9")
    assert uow.identity.resident_by_vid(new) == 1
    assert uow.identity.resident_by_vid(old) is None  # a replaced VID resolves to no one
    assert uow.ledger.accounts == accounts
    assert uow.log.leaves[leaves:] == [records.ENROLMENT.of(latest)]


def test_a_second_resident_gets_the_next_id(uow: FakeUnitOfWork) -> None:
    enrol(uow, "asha")
    assert enrol(uow, "bala").resident_id == 2


def test_an_assertion_for_another_sector_is_refused(uow: FakeUnitOfWork) -> None:
    refused(uow, "assertion_invalid", lambda: enrol(uow, sector="elsewhere"))


def test_an_expired_assertion_is_refused(uow: FakeUnitOfWork) -> None:
    token = assertion(uow, ttl=60)
    uow.clock.advance(3600)
    cmd = EnrolResident(token)
    refused(
        uow,
        "assertion_invalid",
        lambda: handlers.enrol_resident(cmd, uow, issuers=[ISSUER_KEY.verifier], sector=SECTOR),
    )


def test_an_assertion_used_twice_is_refused(uow: FakeUnitOfWork) -> None:
    cmd = EnrolResident(assertion(uow))

    def use() -> handlers.Enrolled:
        return handlers.enrol_resident(cmd, uow, issuers=[ISSUER_KEY.verifier], sector=SECTOR)

    use()
    refused(uow, "assertion_replayed", use)


def test_a_vid_of_another_resident_is_refused_and_no_resident_is_created(
    uow: FakeUnitOfWork,
) -> None:
    vid = a_vid()
    enrol(uow, "asha", vid=vid)
    refused(uow, "vid_in_use", lambda: enrol(uow, "bala", vid=vid))
    assert uow.identity.resident_by_pseudonym(pseudonym_of("bala")) is None


# -- devices -----------------------------------------------------------------------------------


@pytest.fixture
def asha(uow: FakeUnitOfWork) -> int:
    return enrol(uow, "asha").resident_id


def register(uow: Any, owner: int, public_key: bytes, kind: str = "meter") -> DeviceRow:
    return handlers.register_device(RegisterDevice(owner, kind, public_key, "roof"), uow)


def test_a_device_is_registered_with_its_key(uow: FakeUnitOfWork, asha: int) -> None:
    leaves = len(uow.log.leaves)
    device = register(uow, asha, key(1))

    assert (device.owner_id, device.kind, device.label) == (asha, "meter", "roof")
    assert uow.identity.devices_of(asha) == [device]
    [stored] = uow.identity.keys_of([device.id])
    assert (stored.public_key, stored.live) == (key(1), True)
    assert uow.log.leaves[leaves:] == [records.DEVICE.of(device), records.DEVICE_KEY.of(stored)]


@pytest.mark.parametrize(
    ("owner", "kind", "public_key", "code"),
    [
        (99, "meter", key(1), "not_found"),  # no such resident
        (ORG_ID_BASE + 5, "meter", key(1), "not_found"),  # no such organisation
        (None, "toaster", key(1), "invalid_kind"),
        (None, "meter", b"short", "invalid_key"),
    ],
)
def test_a_device_is_refused(
    uow: FakeUnitOfWork, asha: int, owner: int | None, kind: str, public_key: bytes, code: str
) -> None:
    refused(uow, code, lambda: register(uow, owner or asha, public_key, kind))


def test_a_key_registered_once_is_refused_again(uow: FakeUnitOfWork, asha: int) -> None:
    register(uow, asha, key(1))
    refused(uow, "key_in_use", lambda: register(uow, asha, key(1)))


def test_a_resident_has_at_most_so_many_devices(uow: FakeUnitOfWork, asha: int) -> None:
    for n in range(MAX_DEVICES_PER_RESIDENT):
        register(uow, asha, n.to_bytes(32, "big"))
    refused(uow, "too_many_devices", lambda: register(uow, asha, key(0xFF)))


def test_revoking_a_device_revokes_its_live_keys_once(uow: FakeUnitOfWork, asha: int) -> None:
    device = register(uow, asha, key(1))
    leaves = len(uow.log.leaves)
    uow.clock.advance(5)

    assert handlers.revoke_device(RevokeDevice(asha, device.id), uow) == 1

    [revoked] = uow.identity.keys_of([device.id])
    assert (revoked.live, revoked.reason, revoked.revoked_at) == (
        False,
        "device_revoked",
        uow.clock.now_ns(),
    )
    assert uow.log.leaves[leaves:] == [
        records.DEVICE_KEY_REVOKED.of_mapping(
            {"id": revoked.id, "reason": "device_revoked", "revoked_at": uow.clock.now_ns()}
        )
    ]
    assert handlers.revoke_device(RevokeDevice(asha, device.id), uow) == 0
    assert len(uow.log.leaves) == leaves + 1


def test_someone_elses_device_is_not_found(uow: FakeUnitOfWork, asha: int) -> None:
    bala = enrol(uow, "bala").resident_id
    device = register(uow, asha, key(1))
    refused(uow, "not_found", lambda: handlers.revoke_device(RevokeDevice(bala, device.id), uow))
    refused(
        uow,
        "not_found",
        lambda: handlers.rotate_device_key(RotateDeviceKey(bala, device.id, key(2)), uow),
    )


def test_rotating_a_key_revokes_the_old_one(uow: FakeUnitOfWork, asha: int) -> None:
    device = register(uow, asha, key(1))
    leaves = len(uow.log.leaves)
    uow.clock.advance(5)

    new = handlers.rotate_device_key(RotateDeviceKey(asha, device.id, key(2)), uow)

    old, stored = uow.identity.keys_of([device.id])
    assert (old.public_key, old.live, old.reason) == (key(1), False, "rotated")
    assert stored == new
    assert (new.public_key, new.live, new.added_at) == (key(2), True, uow.clock.now_ns())
    assert uow.log.leaves[leaves:] == [
        records.DEVICE_KEY_REVOKED.of_mapping(
            {"id": old.id, "reason": "rotated", "revoked_at": uow.clock.now_ns()}
        ),
        records.DEVICE_KEY.of(new),
    ]


def test_a_rotation_is_refused(uow: FakeUnitOfWork, asha: int) -> None:
    device = register(uow, asha, key(1))
    other = register(uow, asha, key(2))

    def rotate(device_id: str, public_key: bytes) -> Any:
        return lambda: handlers.rotate_device_key(RotateDeviceKey(asha, device_id, public_key), uow)

    refused(uow, "invalid_key", rotate(device.id, b"short"))
    refused(uow, "key_in_use", rotate(device.id, key(2)))
    handlers.revoke_device(RevokeDevice(asha, other.id), uow)
    refused(uow, "device_revoked", rotate(other.id, key(3)))
