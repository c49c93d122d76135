"""EV charging (OCPP): the rules for vehicle tokens, charger passwords and session ids (pure).

- A vehicle's owner registers the **id token** the vehicle presents at a charger (an OCPP 1.6
  `idTag` or a 2.0.1 `IdToken`, e.g. an RFID card's UID or an ISO 15118 contract id). OCPP
  compares tokens case-insensitively (`CiString`), so a token is normalised to upper case and
  the platform keeps only a keyed hash of it (HMAC-SHA256 with the platform's pseudonym
  secret): a copied database does not reveal the tokens, nor lets one link them to a card.
- A charger authenticates with **OCPP security profile 1**: HTTP Basic auth on the WebSocket
  handshake, user name = the charge point id, password = a secret its operator sets. Only a
  salted scrypt hash of the password is stored.
- Each accepted transaction is its own reading **chain** (`chain_id`) of the energy
  capability: a short, stable id of (charger, transaction) that fits a device id column.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from enum import StrEnum

#: The characters OCPP 2.0.1 allows in an identifierString (1.6 idTags are a subset in use).
ID_TOKEN_RE = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,36}$")
#: OCPP security profile 1 (BasicAuthPassword / AuthorizationKey): 16 to 40 printable ASCII.
PASSWORD_RE = re.compile(r"^[\x21-\x7e]{16,40}$")

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


class ChargingError(ValueError):
    """A charging request that cannot be accepted; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SessionStatus(StrEnum):
    """What the central system answered when the transaction started."""

    ACCEPTED = "accepted"  # a registered token of a live vehicle: its owner is credited
    UNKNOWN = "unknown"  # no such token registered: nothing is credited
    BLOCKED = "blocked"  # the token's vehicle was revoked: nothing is credited


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"


def normalise_id_token(token: str) -> str:
    if not ID_TOKEN_RE.match(token):
        raise ChargingError(
            "invalid_id_token", "an id token is 1-36 letters, digits and * - _ = : + | @ ."
        )
    return token.upper()


def id_token_digest(secret: bytes, token: str) -> str:
    """The keyed hash the platform stores and looks a token up by (hex, 64 characters).

    `token` must already be normalised; a token OCPP could not carry has no digest."""
    return hmac.new(secret, b"ocpp-id-token/v1\x00" + token.encode(), hashlib.sha256).hexdigest()


def check_password(password: str) -> None:
    if not PASSWORD_RE.match(password):
        raise ChargingError(
            "invalid_password", "a charger password is 16 to 40 printable ASCII characters"
        )


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64), for `verify_password`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got, want)


def chain_id(charger_id: str, transaction_key: str) -> str:
    """The reading chain of one transaction: `ocpp-` and 24 base32 characters (29 in all)."""
    digest = hashlib.sha256(f"ocpp-chain/v1\x00{charger_id}\x00{transaction_key}".encode())
    return "ocpp-" + base64.b32encode(digest.digest()[:15]).decode().lower()
