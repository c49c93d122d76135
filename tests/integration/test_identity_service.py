"""Enrolment, devices and the access log through the message bus (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from cityshare.bootstrap import Platform
from cityshare.identity import commands
from cityshare.identity import handlers as identity
from cityshare.identity.devices import parse_public_key
from cityshare.identity.handlers import IdentityError
from cityshare.identity.residents import wallet_account_id
from cityshare.kernel.clock import ManualClock
from cityshare.ledger.model import Ledger
from cityshare.tlog import entries
from identity_helpers import a_vid, assertion, new_key


def enrol(platform: Platform, token: str) -> identity.Enrolled:
    result: identity.Enrolled = platform.bus.handle(commands.EnrolResident(token))
    return result


def logged_types(platform: Platform) -> list[str]:
    with platform.uow() as uow:
        rows = uow.log.entries(0, uow.log.size())
    kinds = []
    for _, data in rows:
        entry = entries.decode(data)
        kinds.append(entry.type if isinstance(entry, entries.RecordEntry) else type(entry).__name__)
    return kinds


def test_first_enrolment_creates_the_resident_and_four_wallets(platform: Platform) -> None:
    vid = a_vid()
    enrolled = enrol(platform, assertion(platform, "asha", vid=vid, ward="7"))
    assert enrolled.created
    assert enrolled.vid == vid

    data = identity.resident_data(platform.uow(), enrolled.resident_id)
    assert data is not None
    assert data.enrolment.attrs == {"ward": "7", "age_band": "30-39"}
    assert sorted(Ledger(a.ledger).name for a in data.wallets) == [
        "CARBON",
        "CREDIT",
        "ENERGY",
        "INR",
    ]
    assert {a.owner for a in data.wallets} == {f"resident:{enrolled.resident_id}"}
    # The resident, the enrolment and the four wallets are leaves of the same commit.
    assert logged_types(platform) == ["resident", "enrolment"] + ["AccountEntry"] * 4


def test_signing_in_again_keeps_the_resident_and_follows_a_new_vid(platform: Platform) -> None:
    first = enrol(platform, assertion(platform, "asha"))
    new_vid = a_vid()
    again = enrol(platform, assertion(platform, "asha", vid=new_vid, ward="9"))
    assert (again.resident_id, again.created, again.vid) == (first.resident_id, False, new_vid)
    # The replaced VID no longer finds anyone; the new one does.
    assert identity.resident_by_vid(platform.uow(), first.vid) is None
    assert identity.resident_by_vid(platform.uow(), new_vid) == first.resident_id
    other = enrol(platform, assertion(platform, "bala"))
    assert other.resident_id != first.resident_id


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: assertion(p, sector="othersector"), "assertion_invalid"),
        (lambda p: assertion(p)[:-4] + "AAAA", "assertion_invalid"),
        (lambda p: "not a token", "assertion_invalid"),
    ],
)
def test_bad_assertions_are_refused_and_write_nothing(
    platform: Platform, make: object, code: str
) -> None:
    with pytest.raises(IdentityError) as refused:
        enrol(platform, make(platform))  # type: ignore[operator]
    assert refused.value.code == code
    assert logged_types(platform) == []


def test_an_assertion_is_accepted_once_and_not_after_it_expires(
    platform: Platform, clock: ManualClock
) -> None:
    token = assertion(platform, ttl=60)
    enrol(platform, token)
    with pytest.raises(IdentityError) as replay:
        enrol(platform, token)
    assert replay.value.code == "assertion_replayed"
    late = assertion(platform, "bala", ttl=60)
    clock.advance(120)
    with pytest.raises(IdentityError) as expired:
        enrol(platform, late)
    assert expired.value.code == "assertion_invalid"


def test_a_vid_cannot_be_claimed_by_a_second_person(platform: Platform) -> None:
    vid = a_vid()
    enrol(platform, assertion(platform, "asha", vid=vid))
    with pytest.raises(IdentityError) as taken:
        enrol(platform, assertion(platform, "bala", vid=vid))
    assert taken.value.code == "vid_in_use"


def test_devices_register_rotate_and_revoke_with_every_step_logged(platform: Platform) -> None:
    owner = enrol(platform, assertion(platform)).resident_id
    _, key1 = new_key()

    device = platform.bus.handle(
        commands.RegisterDevice(owner, "meter", parse_public_key(key1), "roof")
    )
    _, key2 = new_key()
    platform.bus.handle(commands.RotateDeviceKey(owner, device.id, parse_public_key(key2)))
    view = identity.device(platform.uow(), device.id)
    assert view is not None
    assert [(k.public_key == parse_public_key(key2), k.live) for k in view.keys] == [
        (False, False),
        (True, True),
    ]
    assert view.keys[0].reason == "rotated"

    assert platform.bus.handle(commands.RevokeDevice(owner, device.id)) == 1
    view = identity.device(platform.uow(), device.id)
    assert view is not None
    assert not view.active
    with pytest.raises(IdentityError) as revoked:
        platform.bus.handle(
            commands.RotateDeviceKey(owner, device.id, parse_public_key(new_key()[1]))
        )
    assert revoked.value.code == "device_revoked"
    assert logged_types(platform)[-5:] == [
        "device",
        "device_key",
        "device_key_revoked",
        "device_key",
        "device_key_revoked",
    ]


def test_device_rules(platform: Platform) -> None:
    owner = enrol(platform, assertion(platform, "asha")).resident_id
    stranger = enrol(platform, assertion(platform, "bala")).resident_id

    key = parse_public_key(new_key()[1])
    device = platform.bus.handle(commands.RegisterDevice(owner, "vehicle", key))
    cases = [
        (commands.RegisterDevice(owner, "toaster", parse_public_key(new_key()[1])), "invalid_kind"),
        (commands.RegisterDevice(owner, "meter", key), "key_in_use"),
        (commands.RegisterDevice(owner, "meter", b"short"), "invalid_key"),
        (
            commands.RegisterDevice(owner, "meter", parse_public_key(new_key()[1]), "x" * 65),
            "invalid_label",
        ),
        (commands.RegisterDevice(999, "meter", parse_public_key(new_key()[1])), "not_found"),
        # Someone else's device is "not found", never "forbidden": its existence does not leak.
        (commands.RevokeDevice(stranger, device.id), "not_found"),
        (
            commands.RotateDeviceKey(stranger, device.id, parse_public_key(new_key()[1])),
            "not_found",
        ),
    ]
    for command, code in cases:
        with pytest.raises(IdentityError) as refused:
            platform.bus.handle(command)
        assert refused.value.code == code, command


def test_access_records_are_kept_per_resident_and_logged(platform: Platform) -> None:
    asha = enrol(platform, assertion(platform, "asha")).resident_id
    bala = enrol(platform, assertion(platform, "bala")).resident_id
    platform.bus.handle(
        commands.RecordAccess(
            [
                commands.AccessRequest(
                    asha, "operator:energy-co", "operator", "billing", "wallets"
                ),
                commands.AccessRequest(bala, "analyst:uni", "analyst", "research", "ward"),
            ]
        )
    )
    rows = identity.access_log(platform.uow(), asha)
    assert [(r.principal, r.purpose, r.what) for r in rows] == [
        ("operator:energy-co", "billing", "wallets")
    ]
    assert logged_types(platform)[-2:] == ["access", "access"]
    assert wallet_account_id(asha, Ledger.CREDIT) != wallet_account_id(bala, Ledger.CREDIT)
