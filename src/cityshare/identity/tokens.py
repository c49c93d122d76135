"""Credentials: signed, expiring bearer tokens (JWT, EdDSA) that say who is calling and why.

The platform signs with its token key (settings or the key store), so any service holding the
verifier key can check a token without a database round trip. Tokens are short-lived; a
resident gets a fresh one by presenting a fresh issuer assertion, a device by proving its key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import jwt

from cityshare.identity.policy import Domain, Purpose, Role
from cityshare.tlog import note

AUDIENCE = "cityshare-api"
TOKEN_TYPE = "cityshare-access+jwt"
MAX_TOKEN_BYTES = 4096


class CredentialError(ValueError):
    """A bearer token that is malformed, forged, expired or not for us."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a resident, a device, or a member of staff with a role and purposes."""

    subject: str
    role: Role
    purposes: frozenset[Purpose] = field(default_factory=frozenset)
    domain: Domain | None = None
    resident_id: int | None = None
    device_id: str | None = None
    #: The organisation a member of staff acts for (an operator's chargers, a provider's
    #: tariffs, a community asset's shares); None for platform staff and residents.
    org_id: int | None = None

    @property
    def name(self) -> str:
        """How access records and logs name this principal."""
        return f"{self.role}:{self.subject}"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: int  # unix seconds


class TokenService:
    def __init__(self, signer: note.Signer) -> None:
        self._signer = signer
        self._kid = signer.verifier.key_id.hex()
        self._public = signer.private_key.public_key()

    @property
    def issuer(self) -> str:
        return self._signer.name

    def issue(self, principal: Principal, *, now: int, ttl: int) -> IssuedToken:
        claims: dict[str, object] = {
            "iss": self._signer.name,
            "aud": AUDIENCE,
            "sub": principal.subject,
            "role": principal.role.value,
            "purposes": sorted(p.value for p in principal.purposes),
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(12),
        }
        if principal.domain is not None:
            claims["domain"] = principal.domain.value
        if principal.resident_id is not None:
            claims["resident"] = principal.resident_id
        if principal.device_id is not None:
            claims["device"] = principal.device_id
        if principal.org_id is not None:
            claims["org"] = principal.org_id
        token = jwt.encode(
            claims,
            self._signer.private_key,
            algorithm="EdDSA",
            headers={"kid": self._kid, "typ": TOKEN_TYPE},
        )
        return IssuedToken(token, now + ttl)

    def verify(self, token: str, *, now: int) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise CredentialError("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self._kid or header.get("typ") != TOKEN_TYPE:
                raise CredentialError("the token was not issued by this platform")
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=self._signer.name,
                # Our clock, not the wall clock, decides expiry (so tests can move time).
                options={
                    "require": ["exp", "iat", "sub", "role"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise CredentialError(f"the token is not valid: {exc}") from exc
        if not isinstance(claims["exp"], int) or claims["exp"] <= now:
            raise CredentialError("the token has expired")
        try:
            return Principal(
                subject=str(claims["sub"]),
                role=Role(claims["role"]),
                purposes=frozenset(Purpose(p) for p in claims.get("purposes", [])),
                domain=Domain(claims["domain"]) if "domain" in claims else None,
                resident_id=int(claims["resident"]) if "resident" in claims else None,
                device_id=str(claims["device"]) if "device" in claims else None,
                org_id=int(claims["org"]) if "org" in claims else None,
            )
        except (ValueError, TypeError) as exc:
            raise CredentialError("the token's claims are malformed") from exc
