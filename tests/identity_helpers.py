"""Builders for identity tests: issuer assertions, device keys and signed device statements."""

from __future__ import annotations

import base64
import hashlib
import random
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.bootstrap import Platform
from cityshare.identity.assertion import issue_assertion
from cityshare.identity.model import new_vid
from cityshare.tlog import note

#: The identity issuer the test platforms trust (conftest puts its vkey in the settings).
ISSUER_KEY = note.Signer.generate("issuer.test.example")

_rng = random.Random(20261124)


def pseudonym_of(person: str) -> str:
    """A stand-in for the issuer's sector pseudonym of `person` (43 base64url characters)."""
    digest = hashlib.sha256(person.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def a_vid() -> str:
    return new_vid(_rng)


def assertion(
    platform: Platform,
    person: str = "asha",
    *,
    vid: str | None = None,
    ward: str = "12",
    age_band: str = "30-39",
    ttl: int = 600,
    sector: str = "cityshare",
) -> str:
    now = platform.clock.now_ns() // 1_000_000_000
    return issue_assertion(
        ISSUER_KEY,
        sector=sector,
        pseudonym=pseudonym_of(person),
        vid=vid or a_vid(),
        attrs={"ward": ward, "age_band": age_band},
        now=now,
        ttl=ttl,
    )


def new_key() -> tuple[Ed25519PrivateKey, str]:
    """A device key pair: the private key and the public key as the API takes it (base64url)."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes_raw()
    return private, base64.urlsafe_b64encode(raw).decode().rstrip("=")


def device_statement(
    private: Ed25519PrivateKey,
    device_id: str,
    audience: str,
    *,
    now: int | None = None,
    lifetime: int = 120,
) -> str:
    now = int(time.time()) if now is None else now
    return jwt.encode(
        {"aud": audience, "iat": now, "exp": now + lifetime},
        private,
        algorithm="EdDSA",
        headers={"kid": device_id},
    )
