"""Identity rules shared by the issuer and the platform: check digits, ids, pseudonyms, attributes.

The platform never sees a national id (DESIGN.md §3). The issuer turns one into a
*sector pseudonym* (a keyed one-way derivation per sector, like Austria's bPK: two sectors
cannot link the same person) and a revocable 16-digit *virtual id* (VID, like Aadhaar's), and
passes on only the few attributes named in `ALLOWED_ATTRIBUTES`. Everything here is pure, so
both sides apply exactly the same rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# Verhoeff's scheme over the dihedral group D5: it catches every single-digit error and every
# swap of two adjacent digits, the two mistakes people make most when copying a number.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)

_DIGITS_RE = re.compile(r"\A[0-9]+\Z")  # ASCII only: str.isdigit() also accepts "²" and "٣"
_VID_RE = re.compile(r"\A[1-9][0-9]{15}\Z")
_NATIONAL_ID_RE = re.compile(r"\A[2-9][0-9]{11}\Z")  # Aadhaar-shaped: never starts with 0 or 1
#: The rules in words, for error messages (which must never quote the value itself).
VID_RULE = "a VID is 16 digits, the first not 0, the last a Verhoeff check digit"
NATIONAL_ID_RULE = "12 digits, the first 2-9, the last a Verhoeff check digit"
PSEUDONYM_RULE = "a pseudonym is 43 base64url characters (32 bytes)"

#: A sector (the audience of an assertion): lowercase letters, digits, '-' and '.', 1-64 chars.
SECTOR_RE = re.compile(r"\A[a-z0-9.-]{1,64}\Z")

_PSEUDONYM_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")  # base64url of HMAC-SHA256, unpadded
_PSEUDONYM_LABEL = b"cityshare-sector-pseudonym/v1\x00"
MIN_SECRET_BYTES = 16

#: The only attributes an enrolment carries: data minimisation is enforced, not hoped for.
ALLOWED_ATTRIBUTES = frozenset({"ward", "age_band"})
AGE_BANDS = ("0-17", "18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+")
#: A ward: 1-32 ASCII letters, digits, '-' or inner spaces ("12", "Ward 12", "K-East").
WARD_RE = re.compile(r"\A[A-Za-z0-9-](?:[A-Za-z0-9 -]{0,30}[A-Za-z0-9-])?\Z")


class IdentityError(ValueError):
    """An identity value (sector, attribute, id) that breaks the rules; says which rule.

    Messages never repeat a national id: they end up in logs and on terminals.
    """


def _require_digits(digits: str) -> None:
    if not _DIGITS_RE.match(digits):
        raise IdentityError("a Verhoeff number is one or more ASCII digits")


def verhoeff_check_digit(digits: str) -> str:
    """The Verhoeff check digit to append to `digits` (e.g. "236" -> "3")."""
    _require_digits(digits)
    c = 0
    for i, digit in enumerate(reversed(digits)):
        c = _D[c][_P[(i + 1) % 8][ord(digit) - 48]]
    return str(_INV[c])


def verhoeff_valid(number: str) -> bool:
    """Whether `number` (digits followed by their check digit) passes the Verhoeff check."""
    if not _DIGITS_RE.match(number) or len(number) < 2:
        return False
    c = 0
    for i, digit in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][ord(digit) - 48]]
    return c == 0


def is_valid_vid(s: object) -> bool:
    """A VID: exactly 16 ASCII digits, the first not 0, the last the Verhoeff check digit."""
    return isinstance(s, str) and bool(_VID_RE.match(s)) and verhoeff_valid(s)


def new_vid(rng: random.Random) -> str:
    """A fresh random VID. Pass `secrets.SystemRandom()` (a `random.Random`) outside tests:
    a VID must not be guessable from the ones issued before it."""
    body = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(14))
    return body + verhoeff_check_digit(body)


def normalise_national_id(s: str) -> str:
    """The national id as typed ("NNNN NNNN NNNN") without its spaces, for `is_valid_national_id`.

    Only surrounding whitespace and inner spaces go: any other separator stays and makes the id
    invalid, so a typo is not silently "repaired" into someone else's number.
    """
    return s.strip().replace(" ", "")


def is_valid_national_id(s: object) -> bool:
    """Aadhaar-shaped: exactly 12 ASCII digits, the first 2-9, the last the Verhoeff digit."""
    return isinstance(s, str) and bool(_NATIONAL_ID_RE.match(s)) and verhoeff_valid(s)


def check_sector(sector: object) -> str:
    """The sector itself if well formed (it becomes an assertion's audience and an HMAC input)."""
    if not isinstance(sector, str) or not SECTOR_RE.match(sector):
        raise IdentityError("a sector is 1-64 characters of lowercase letters, digits, '-' and '.'")
    return sector


def derive_pseudonym(secret: bytes, sector: str, national_id: str) -> str:
    """The person's pseudonym in `sector`: HMAC-SHA256 under the issuer's secret, base64url.

    Deterministic, so a person keeps one pseudonym per sector across enrolments and VID
    changes; keyed and one-way, so without the secret nobody can go back to the national id
    or link one sector's pseudonym to another's.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise IdentityError(f"the pseudonym secret must be at least {MIN_SECRET_BYTES} bytes")
    check_sector(sector)
    if not is_valid_national_id(national_id):
        raise IdentityError(f"the national id is not valid: {NATIONAL_ID_RULE}")
    message = _PSEUDONYM_LABEL + sector.encode() + b"\x00" + national_id.encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def is_valid_pseudonym(s: object) -> bool:
    """43 base64url characters that are the canonical encoding of 32 bytes."""
    if not isinstance(s, str) or not _PSEUDONYM_RE.match(s):
        return False
    try:
        raw = base64.urlsafe_b64decode(s + "=")
    except (binascii.Error, ValueError):
        return False
    # The last character carries 2 unused bits; only one spelling of each value is accepted.
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") == s


def validate_attributes(attrs: Mapping[str, object]) -> dict[str, str]:
    """The attributes as a plain dict if every name is allowed and every value well formed."""
    if not isinstance(attrs, Mapping):
        raise IdentityError("attributes are a mapping of name to text")
    allowed = ", ".join(sorted(ALLOWED_ATTRIBUTES))
    result: dict[str, str] = {}
    for name, value in attrs.items():
        if name not in ALLOWED_ATTRIBUTES:
            shown = repr(name)[:40] if isinstance(name, str) else "a non-text name"
            raise IdentityError(f"attribute {shown} is not allowed: only {allowed} may be shared")
        if not isinstance(value, str):
            raise IdentityError(f"attribute {name!r} must be text")
        if name == "ward" and not WARD_RE.match(value):
            raise IdentityError(
                "a ward is 1-32 letters, digits, '-' or inner spaces (for example 12 or K-East)"
            )
        if name == "age_band" and value not in AGE_BANDS:
            raise IdentityError(f"an age band is one of {', '.join(AGE_BANDS)}")
        result[name] = value
    return result


@dataclass(frozen=True, slots=True)
class OrganisationRow:
    id: int
    kind: str
    name: str
    domain: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class ResidentRow:
    id: int
    pseudonym: str
    issuer: str
    enrolled_at: int


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    id: int
    resident_id: int
    vid: str
    attrs: dict[str, str]
    jti: str
    accepted_at: int


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    owner_id: int
    kind: str
    label: str | None
    registered_at: int


@dataclass(frozen=True, slots=True)
class DeviceKeyRow:
    id: int
    device_id: str
    public_key: bytes
    added_at: int
    revoked_at: int | None = None
    reason: str | None = None

    @property
    def live(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AccessRow:
    id: int
    resident_id: int
    principal: str
    role: str
    purpose: str
    what: str
    at: int


# -- the repository protocol -----------------------------------------------------------------


class IdentityStore(Protocol):
    """What handlers, queries and other capabilities may ask of identity's store, in the rows
    above: each `<cap>/uow.py` types `uow.identity` with it, so a handler can be tested on an
    in-memory fake (`identity/fake.py`); `identity.repo.IdentityRepository` is the store that
    satisfies it (mypy checks that where `identity/capability.py` registers it).

    Every row is an immutable fact; "current" state (a resident's VID, a device's live keys)
    is a query over the facts. The `next_*_id` methods assume the caller holds the ledger's
    write lock."""

    # -- residents and enrolments ----------------------------------------------------------

    def next_resident_id(self) -> int: ...

    def resident_by_pseudonym(self, pseudonym: str) -> ResidentRow | None: ...

    def resident(self, resident_id: int) -> ResidentRow | None: ...

    def insert_resident(self, row: ResidentRow) -> None: ...

    def jti_used(self, jti: str) -> bool: ...

    def next_enrolment_id(self) -> int: ...

    def insert_enrolment(self, row: EnrolmentRow) -> None: ...

    def latest_enrolment(self, resident_id: int) -> EnrolmentRow | None: ...

    def resident_by_vid(self, vid: str) -> int | None:
        """The resident whose *current* VID this is (a replaced VID resolves to no one)."""
        ...

    # -- organisations ---------------------------------------------------------------------

    def next_organisation_id(self, base: int) -> int: ...

    def insert_organisation(self, row: OrganisationRow) -> None: ...

    def organisation(self, org_id: int) -> OrganisationRow | None: ...

    def organisation_named(self, name: str) -> OrganisationRow | None: ...

    def organisations(self, kind: str | None = None) -> list[OrganisationRow]: ...

    # -- devices ---------------------------------------------------------------------------

    def insert_device(self, row: DeviceRow) -> None: ...

    def device(self, device_id: str) -> DeviceRow | None: ...

    def devices_of(self, owner_id: int) -> list[DeviceRow]: ...

    def next_device_key_id(self) -> int: ...

    def insert_key(self, row: DeviceKeyRow) -> None: ...

    def key_exists(self, public_key: bytes) -> bool: ...

    def keys_of(self, device_ids: Sequence[str]) -> list[DeviceKeyRow]:
        """The devices' keys, by id, each with its revocation if it has one."""
        ...

    def revoke_key(self, key_id: int, reason: str, at: int) -> None: ...

    # -- access records --------------------------------------------------------------------

    def next_access_id(self) -> int: ...

    def insert_access(self, rows: Sequence[AccessRow]) -> None: ...

    def access_of(self, resident_id: int, *, after: int, limit: int) -> list[AccessRow]: ...
