"""The signed-reading contract (energy/readings.py): what is accepted and why the rest is not."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.energy.readings import MAX_BYTES, ReadingError, parse, signature_valid, which_key

DEVICE = "dev-abcdefghijklmnop"
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes_raw()
CLAIMS = {"seq": 7, "ts": 1_732_406_400, "import_wh": 5120, "export_wh": 20480}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made(header: object, payload: bytes | object, key: Ed25519PrivateKey = KEY) -> str:
    """A JWS assembled by hand, for shapes a JOSE library would not produce."""
    head = b64(json.dumps(header).encode())
    body = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    signature = key.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64(signature)}"


def test_a_reading_signed_with_a_jose_library_parses_and_verifies() -> None:
    token = jwt.encode(CLAIMS, KEY, algorithm="EdDSA", headers={"kid": DEVICE})
    reading = parse(token)
    assert (reading.device_id, reading.seq, reading.ts) == (DEVICE, 7, 1_732_406_400)
    assert (reading.import_wh, reading.export_wh) == (5120, 20480)
    assert signature_valid(PUBLIC, reading.signing_input, reading.signature)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not signature_valid(other, reading.signing_input, reading.signature)
    assert which_key([([other, PUBLIC], reading.signing_input, reading.signature)]) == [1]
    assert which_key([([other], reading.signing_input, reading.signature)]) == [-1]


def test_a_repeated_header_parameter_is_refused() -> None:
    head = b64(b'{"alg":"EdDSA","kid":"dev-zzzzzzzzzzzzzzzz","kid":"' + DEVICE.encode() + b'"}')
    body = b64(json.dumps(CLAIMS).encode())
    token = f"{head}.{body}.{b64(KEY.sign(f'{head}.{body}'.encode()))}"
    with pytest.raises(ReadingError, match="twice"):
        parse(token)


def test_typ_is_optional() -> None:
    assert parse(hand_made({"alg": "EdDSA", "kid": DEVICE}, CLAIMS)).seq == 7
    assert parse(hand_made({"alg": "EdDSA", "kid": DEVICE, "typ": "JWT"}, CLAIMS)).seq == 7


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (42, "malformed"),
        ("a.b", "malformed"),
        ("x" * (MAX_BYTES + 1), "too_large"),
        ("!!!.e30.AAAA", "malformed"),
        (hand_made({"alg": "none", "kid": DEVICE}, CLAIMS), "unsupported_alg"),
        (hand_made({"alg": "HS256", "kid": DEVICE}, CLAIMS), "unsupported_alg"),
        (hand_made({"kid": DEVICE}, CLAIMS), "unsupported_alg"),
        (hand_made({"alg": "EdDSA"}, CLAIMS), "malformed"),
        (hand_made({"alg": "EdDSA", "kid": "meter-1"}, CLAIMS), "malformed"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE, "typ": "other"}, CLAIMS), "malformed"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE, "jwk": {}}, CLAIMS), "malformed"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, [1, 2]), "invalid_claims"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, b"not json"), "malformed"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "extra": 1}), "invalid_claims"),
        (
            hand_made({"alg": "EdDSA", "kid": DEVICE}, {k: CLAIMS[k] for k in ("seq", "ts")}),
            "invalid_claims",
        ),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "seq": -1}), "invalid_claims"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "seq": "7"}), "invalid_claims"),
        (hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "seq": True}), "invalid_claims"),
        (
            hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "export_wh": 2**63}),
            "invalid_claims",
        ),
        (
            hand_made({"alg": "EdDSA", "kid": DEVICE}, {**CLAIMS, "ts": 1_732_406_400_000_000}),
            "invalid_claims",
        ),
        (
            hand_made(
                {"alg": "EdDSA", "kid": DEVICE},
                b'{"seq": 7, "ts": 1, "import_wh": 1.5, "export_wh": 0}',
            ),
            "invalid_claims",
        ),
        (
            hand_made(
                {"alg": "EdDSA", "kid": DEVICE},
                b'{"seq": 7, "seq": 8, "ts": 1, "import_wh": 0, "export_wh": 0}',
            ),
            "invalid_claims",
        ),
    ],
)
def test_refused_with_a_reason(token: object, reason: str) -> None:
    with pytest.raises(ReadingError) as refused:
        parse(token)
    assert refused.value.reason == reason


def test_the_signature_must_be_64_bytes_of_unpadded_base64url() -> None:
    token = hand_made({"alg": "EdDSA", "kid": DEVICE}, CLAIMS)
    head, body, signature = token.split(".")
    for bad in (signature[:-4], signature + "==", signature.replace("-", "+").replace("_", "/")):
        if bad == signature:
            continue
        with pytest.raises(ReadingError):
            parse(f"{head}.{body}.{bad}")


def test_a_forged_or_altered_reading_does_not_verify() -> None:
    token = jwt.encode(CLAIMS, KEY, algorithm="EdDSA", headers={"kid": DEVICE})
    head, _, signature = token.split(".")
    more = b64(json.dumps({**CLAIMS, "export_wh": 99_999}).encode())
    altered = parse(f"{head}.{more}.{signature}")
    assert not signature_valid(PUBLIC, altered.signing_input, altered.signature)
