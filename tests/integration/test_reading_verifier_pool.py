"""The verifier's process pool (parsing and verifying there, with only headers read in the
caller's process) gives exactly the answers of checking in the caller's process, for every
kind of bad item, the first time a device is seen and once its header is known."""

from __future__ import annotations

import base64

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.bootstrap import Platform
from cityshare.energy.verify import Checked, ReadingVerifier
from cityshare.identity import commands
from energy_helpers import add_device, resident_with_meter, sign

TS = 1_700_000_000


def answers(checked: Checked) -> tuple[list[tuple[object, ...]], dict[int, str]]:
    return (
        [(v.index, v.reading, v.device.device_id, v.key_id) for v in checked.verified],
        checked.rejected,
    )


def test_the_pool_answers_every_item_as_the_caller_would(platform: Platform) -> None:
    meter = resident_with_meter(platform, "asha")
    revoked = add_device(platform, meter.resident_id)
    vehicle = add_device(platform, meter.resident_id, kind="vehicle")
    platform.bus.handle(commands.RevokeDevice(meter.resident_id, revoked.device_id))
    stranger = Ed25519PrivateKey.generate()
    good = meter.reading(0, TS, 0, 5)
    header = good.split(".")[0]
    bad_payload = base64.urlsafe_b64encode(b'{"seq": 1.5}').decode().rstrip("=")
    items: list[object] = [
        good,
        sign(stranger, meter.device_id, seq=1, ts=TS, import_wh=0, export_wh=9),  # forged
        jwt.encode({"seq": 2, "ts": TS, "import_wh": 0, "export_wh": 9}, None,
                   algorithm="none", headers={"kid": meter.device_id}),  # unsigned
        revoked.reading(0, TS, 0, 0),  # signed by a revoked key
        vehicle.reading(0, TS, 0, 0),  # not a meter or charger
        sign(stranger, "dev-aaaaaaaaaaaaaaaa", seq=0, ts=TS, import_wh=0, export_wh=0),
        "this is not a JWS",
        good[:-10] + "A" * 1100,  # oversized, with a header already seen
        f"{header}.{bad_payload}.{good.split('.')[2]}",  # a known header, a bad payload
        f"{vehicle.reading(1, TS).split('.')[0]}.{bad_payload}.x",  # wrong kind and malformed
        f"{header}.{good.split('.')[1]}",  # two parts
        12345,  # not a string
        meter.reading(3, TS + 900, 0, 7),
    ]  # fmt: skip
    local = ReadingVerifier(platform.uow, workers=0)
    pool = ReadingVerifier(platform.uow, workers=2, pool_threshold=1)
    try:
        first = pool.check(items)  # every header new to the pool's caller
        again = pool.check(items)  # every good header known: only read, not parsed, here
        expected = answers(local.check(items))
    finally:
        pool.close()
    assert answers(first) == answers(again) == expected
    verified, rejected = expected
    # A revoked key's signature is authentic; the writer refuses it unless it is a redelivery.
    assert [v[0] for v in verified] == [0, 3, 12]
    assert rejected == {
        1: "bad_signature",
        2: "unsupported_alg",
        4: "wrong_kind",
        5: "unknown_device",
        6: "malformed",
        7: "too_large",
        8: "invalid_claims",
        9: "invalid_claims",
        10: "malformed",
        11: "malformed",
    }


def test_a_pool_batch_that_names_no_known_device_is_refused_item_by_item(
    platform: Platform,
) -> None:
    stranger = Ed25519PrivateKey.generate()
    items: list[object] = [
        sign(stranger, f"dev-{c * 16}", seq=0, ts=TS, import_wh=0, export_wh=0) for c in "ab"
    ]
    pool = ReadingVerifier(platform.uow, workers=1, pool_threshold=2)
    try:
        checked = pool.check(items)
    finally:
        pool.close()
    assert checked.verified == []
    assert checked.rejected == {0: "unknown_device", 1: "unknown_device"}
