"""Enrolment assertions: what the identity issuer signs and the platform accepts instead of an id.

An assertion is a compact JWS (a JWT) signed with the issuer's Ed25519 key (`alg` "EdDSA"):

    header  {"alg": "EdDSA", "typ": "cityshare-enrolment+jwt", "kid": "<8 hex key id>"}
    claims  {"iss": issuer key name, "aud": sector, "sub": sector pseudonym, "vid": 16 digits,
             "attrs": {"ward": ..., "age_band": ...}, "iat": ..., "exp": ..., "jti": ...}

The keys are signed-note keys (`tlog.note`), so the issuer is trusted on the platform by the
same one-line verifier key (`<name>+<key id>+<base64 key>`) as a log or witness key, and `kid`
is that key id. Verification is deliberately strict: it checks the header and every claim
against the rules in `identity.model` and refuses anything else (an unknown header field or
claim included), because a lax parser is how extra personal data or a confused algorithm slips
in. Every failure is an `AssertionInvalid`; garbage never raises anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from cityshare.identity.model import (
    PSEUDONYM_RULE,
    VID_RULE,
    IdentityError,
    check_sector,
    is_valid_pseudonym,
    is_valid_vid,
    validate_attributes,
)
from cityshare.tlog import note

ALGORITHM = "EdDSA"
ASSERTION_TYPE = "cityshare-enrolment+jwt"
DEFAULT_TTL = 600
#: An assertion is exchanged once, right away, for a platform session; it never lives long.
MAX_LIFETIME = 3600
MAX_ASSERTION_BYTES = 4096
MAX_LEEWAY = 300

_HEADER_FIELDS = frozenset({"alg", "typ", "kid"})
_CLAIMS = frozenset({"iss", "aud", "sub", "vid", "attrs", "iat", "exp", "jti"})
_COMPACT_RE = re.compile(r"\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
_KID_RE = re.compile(r"\A[0-9a-f]{8}\Z")
#: 16-64 base64url characters; issued ones are 22 (128 random bits).
_JTI_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")


class AssertionInvalid(ValueError):  # noqa: N818 (the name both sides of the contract use)
    """An enrolment assertion that is malformed, forged, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class EnrolmentAssertion:
    """A verified assertion: who vouched (`issuer`), for which `sector`, and about whom."""

    issuer: str
    sector: str
    pseudonym: str
    vid: str
    attrs: dict[str, str]
    issued_at: int
    expires_at: int
    jti: str


def issue_assertion(
    signer: note.Signer,
    *,
    sector: str,
    pseudonym: str,
    vid: str,
    attrs: Mapping[str, str],
    now: int,
    ttl: int = DEFAULT_TTL,
    jti: str | None = None,
) -> str:
    """Sign an assertion valid from `now` (unix seconds) for `ttl` seconds.

    Inputs are checked with the verifier's own rules, so the issuer cannot sign what the
    platform would refuse. Raises `IdentityError` (a ValueError) for a bad value.
    """
    check_sector(sector)
    if not is_valid_pseudonym(pseudonym):
        raise IdentityError(PSEUDONYM_RULE)
    if not is_valid_vid(vid):
        raise IdentityError(VID_RULE)
    if not 1 <= ttl <= MAX_LIFETIME:
        raise IdentityError(f"an assertion lives 1 to {MAX_LIFETIME} seconds")
    if now < 0:
        raise IdentityError("the issue time is unix seconds, not negative")
    if jti is None:
        jti = secrets.token_urlsafe(16)
    elif not _JTI_RE.match(jti):
        raise IdentityError("a jti is 16-64 base64url characters")
    claims: dict[str, Any] = {
        "iss": signer.name,
        "aud": sector,
        "sub": pseudonym,
        "vid": vid,
        "attrs": validate_attributes(attrs),
        "iat": now,
        "exp": now + ttl,
        "jti": jti,
    }
    return jwt.encode(
        claims,
        signer.private_key,
        algorithm=ALGORITHM,
        headers={"typ": ASSERTION_TYPE, "kid": signer.verifier.key_id.hex()},
    )


def verify_assertion(
    token: str | bytes,
    trusted: Sequence[note.Verifier],
    *,
    audience: str,
    now: int,
    leeway: int = 30,
) -> EnrolmentAssertion:
    """Check `token` against the `trusted` issuer keys for `audience` at `now` (unix seconds).

    `leeway` (seconds) absorbs clock skew between issuer and platform, on both ends.
    Raises `AssertionInvalid` saying what is wrong, and nothing else, whatever `token` holds.
    (A malformed `audience` or `leeway` is the caller's own bug: that raises ValueError.)
    """
    check_sector(audience)
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"the leeway is 0 to {MAX_LEEWAY} seconds")
    text = _compact(token)
    header = _decode_json(text.split(".", 1)[0], "header")
    verifier = _verifier_for(header, trusted)
    try:
        payload = jwt.PyJWS().decode(text, verifier.public_key, algorithms=[ALGORITHM])
    except jwt.PyJWTError as exc:
        raise AssertionInvalid("the assertion's signature does not verify") from exc
    claims = _loads(payload, "claims")
    return _check_claims(claims, verifier, audience=audience, now=now, leeway=leeway)


def _compact(token: str | bytes) -> str:
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise AssertionInvalid("an assertion is ASCII text (a compact JWS)") from exc
    if not isinstance(token, str):
        raise AssertionInvalid("an assertion is text (a compact JWS)")
    if len(token) > MAX_ASSERTION_BYTES:
        raise AssertionInvalid(f"the assertion is longer than {MAX_ASSERTION_BYTES} bytes")
    if not _COMPACT_RE.match(token):
        raise AssertionInvalid("not a compact JWS: three base64url parts joined by '.'")
    return token


def _decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AssertionInvalid(f"the assertion's {what} is not base64url") from exc
    return _loads(raw, what)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # Two parsers picking different duplicates is a classic way to smuggle a value past one.
        raise ValueError("duplicate member")
    return result


def _loads(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested arrays
        raise AssertionInvalid(f"the assertion's {what} is not a JSON object") from exc
    if not isinstance(value, dict):
        raise AssertionInvalid(f"the assertion's {what} is not a JSON object")
    return value


def _verifier_for(header: dict[str, Any], trusted: Sequence[note.Verifier]) -> note.Verifier:
    if header.get("alg") != ALGORITHM:
        raise AssertionInvalid(f"the assertion's algorithm must be {ALGORITHM}")
    if header.get("typ") != ASSERTION_TYPE:
        raise AssertionInvalid(f"the assertion's type must be {ASSERTION_TYPE}")
    if set(header) != _HEADER_FIELDS:
        raise AssertionInvalid("the assertion's header has exactly the fields alg, typ and kid")
    kid = header["kid"]
    if not isinstance(kid, str) or not _KID_RE.match(kid):
        raise AssertionInvalid("the assertion's kid is a key id of 8 lowercase hex digits")
    for verifier in trusted:
        if verifier.key_id.hex() == kid:
            return verifier
    raise AssertionInvalid(f"the assertion is signed by an unknown issuer key ({kid})")


def _check_claims(
    claims: dict[str, Any], verifier: note.Verifier, *, audience: str, now: int, leeway: int
) -> EnrolmentAssertion:
    missing = _CLAIMS - set(claims)
    if missing:
        raise AssertionInvalid(f"the assertion lacks the claim(s) {', '.join(sorted(missing))}")
    if set(claims) - _CLAIMS:
        raise AssertionInvalid(
            "the assertion carries claims beyond iss, aud, sub, vid, attrs, iat, exp and jti"
        )
    if claims["iss"] != verifier.name:
        raise AssertionInvalid("the assertion's iss does not name the key that signed it")
    if claims["aud"] != audience:
        raise AssertionInvalid(f"the assertion is not meant for {audience!r}")
    iat, exp = claims["iat"], claims["exp"]
    if type(iat) is not int or type(exp) is not int:  # bool is an int subclass: refuse it too
        raise AssertionInvalid("the assertion's iat and exp are whole unix seconds")
    if exp <= iat:
        raise AssertionInvalid("the assertion expires before it was issued")
    if exp - iat > MAX_LIFETIME:
        raise AssertionInvalid(f"the assertion lives longer than {MAX_LIFETIME} seconds")
    if iat > now + leeway:
        raise AssertionInvalid("the assertion is not yet valid: it was issued in the future")
    if exp <= now - leeway:
        raise AssertionInvalid("the assertion has expired")
    if not is_valid_pseudonym(claims["sub"]):
        raise AssertionInvalid("the assertion's sub is not a pseudonym (43 base64url characters)")
    if not is_valid_vid(claims["vid"]):
        raise AssertionInvalid("the assertion's vid is not a valid 16-digit VID")
    if not isinstance(claims["jti"], str) or not _JTI_RE.match(claims["jti"]):
        raise AssertionInvalid("the assertion's jti is not 16-64 base64url characters")
    if not isinstance(claims["attrs"], dict):
        raise AssertionInvalid("the assertion's attrs is not an object")
    try:
        attrs = validate_attributes(claims["attrs"])
    except IdentityError as exc:
        raise AssertionInvalid(f"the assertion's attributes are refused: {exc}") from exc
    return EnrolmentAssertion(
        issuer=verifier.name,
        sector=audience,
        pseudonym=claims["sub"],
        vid=claims["vid"],
        attrs=attrs,
        issued_at=iat,
        expires_at=exp,
        jti=claims["jti"],
    )
