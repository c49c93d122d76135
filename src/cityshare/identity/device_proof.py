"""Short-lived statements a device signs with its own key (JWT, EdDSA, `kid` = device id).

A device proves possession of its key to get a bearer token (audience: the platform), and a
vehicle presents one to a counterparty (audience: that counterparty), who asks the platform to
check it and learns only the vehicle's pseudonym for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_LIFETIME = 300  # seconds
MAX_BYTES = 2048


class ProofError(ValueError):
    """A device statement that is malformed, forged, expired or for someone else."""


def device_of(token: str) -> str:
    """The device a statement claims to come from (unverified: only to find its keys)."""
    if len(token) > MAX_BYTES:
        raise ProofError("the statement is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise ProofError(f"not a signed statement: {exc}") from exc
    kid = header.get("kid")
    if header.get("alg") != "EdDSA" or not isinstance(kid, str) or not kid:
        raise ProofError("a device statement is EdDSA-signed with `kid` = the device id")
    return kid


def verify(token: str, public_keys: Sequence[bytes], *, audience: str, now: int) -> None:
    """Check the statement against the device's live keys; raise ProofError if it fails."""
    device_of(token)
    if not public_keys:
        raise ProofError("the device has no live key")
    for raw in public_keys:
        try:
            claims = jwt.decode(
                token,
                Ed25519PublicKey.from_public_bytes(raw),
                algorithms=["EdDSA"],
                audience=audience,
                options={
                    "require": ["iat", "exp", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise ProofError(f"the statement is not valid: {exc}") from exc
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise ProofError("iat and exp are integers")
        if exp <= now or iat > now + 30:
            raise ProofError("the statement has expired or is from the future")
        if exp - iat > MAX_LIFETIME:
            raise ProofError(f"a device statement lives at most {MAX_LIFETIME} seconds")
        return
    raise ProofError("the signature does not match any live key of the device")
