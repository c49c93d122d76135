"""The reference identity issuer: it stands in for the national identity authority (UIDAI for
Aadhaar) so demos and tests have someone to vouch for residents.

It is the only component that ever handles a national id. A resident asks it for an enrolment
assertion for one sector (the platform's is "cityshare"); the assertion carries the sector
pseudonym, the resident's current virtual id (VID) and at most the allowed attributes, and
lives a few minutes (`identity.assertion`). Every valid national id counts as a resident, as every
Aadhaar number does; the issuer remembers a person only by a keyed hash of the id.

VIDs, as with Aadhaar: a person has at most one active VID. The first enrolment creates it and
later ones reuse it. `regenerate_vid` retires it and issues a new one at once; `revoke_vid`
only retires it, and the *next enrolment issues a fresh VID automatically* — revoking is how a
resident stops an old VID from being used, never how they lose access. A VID is never reused.
The pseudonym depends only on the person and the sector, so it survives every VID change:
that is what lets the platform keep a resident's wallet across VIDs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cityshare.identity.assertion import DEFAULT_TTL, MAX_LIFETIME, issue_assertion
from cityshare.identity.model import (
    NATIONAL_ID_RULE,
    VID_RULE,
    IdentityError,
    check_sector,
    derive_pseudonym,
    is_valid_national_id,
    is_valid_vid,
    new_vid,
    normalise_national_id,
    validate_attributes,
)
from cityshare.issuer.store import IssuerError, IssuerStore, VidRecord, resolve_directory
from cityshare.kernel.clock import Clock, SystemClock
from cityshare.tlog import note

DEFAULT_NAME = "issuer.cityshare.example"

__all__ = ["DEFAULT_NAME", "Enrolment", "Issuer", "IssuerError", "VidRecord"]


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What a resident takes to the platform (`assertion`), and what it says, for display."""

    assertion: str
    vid: str
    pseudonym: str
    expires_at: int  # unix seconds


class Issuer:
    """The issuer in one directory. Use `Issuer.init` once, then `Issuer.open`; close it after."""

    def __init__(self, store: IssuerStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._rng = secrets.SystemRandom()

    @classmethod
    def init(
        cls, directory: Path | None = None, name: str = DEFAULT_NAME, *, clock: Clock | None = None
    ) -> Issuer:
        """Create a new issuer (key, secret, database); refuse if `directory` already has one."""
        return cls(IssuerStore.create(resolve_directory(directory), name), clock)

    @classmethod
    def open(cls, directory: Path | None = None, *, clock: Clock | None = None) -> Issuer:
        return cls(IssuerStore.open(resolve_directory(directory)), clock)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Issuer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def directory(self) -> Path:
        return self._store.directory

    @property
    def name(self) -> str:
        return self._store.signer.name

    @property
    def verifier(self) -> note.Verifier:
        """The public key the platform trusts (its `vkey` goes in CITYSHARE_ISSUER_KEYS)."""
        return self._store.signer.verifier

    def enroll(
        self,
        national_id: str,
        sector: str,
        attrs: Mapping[str, str] | None = None,
        ttl: int = DEFAULT_TTL,
    ) -> Enrolment:
        """A signed assertion for `sector` about the holder of `national_id`.

        Creates the person and an active VID on first use; reuses the active VID after.
        """
        number = self._national_id(national_id)
        try:
            check_sector(sector)
            shared = validate_attributes(attrs or {})
        except IdentityError as exc:
            raise IssuerError(str(exc)) from exc
        if not 1 <= ttl <= MAX_LIFETIME:
            raise IssuerError(f"an assertion lives 1 to {MAX_LIFETIME} seconds")
        now = self._now()
        key = self._store.person_key(number)
        with self._store.write():
            person = self._store.find_person(key)
            if person is None:
                person = self._store.add_person(key, now)
            vid = self._store.active_vid(person) or self._issue_vid(person, now)
        pseudonym = derive_pseudonym(self._store.secret, sector, number)
        token = issue_assertion(
            self._store.signer,
            sector=sector,
            pseudonym=pseudonym,
            vid=vid,
            attrs=shared,
            now=now,
            ttl=ttl,
        )
        return Enrolment(token, vid, pseudonym, now + ttl)

    def revoke_vid(self, national_id: str) -> str:
        """Retire the person's active VID (returned); the next enrolment gets a new one."""
        key = self._store.person_key(self._national_id(national_id))
        with self._store.write():
            revoked = self._store.revoke_active_vid(self._known_person(key), self._now())
        if revoked is None:
            raise IssuerError("there is no active VID to revoke (it is already revoked)")
        return revoked

    def regenerate_vid(self, national_id: str) -> str:
        """Retire the person's active VID, if any, and issue a new one (returned)."""
        key = self._store.person_key(self._national_id(national_id))
        now = self._now()
        with self._store.write():
            person = self._known_person(key)
            self._store.revoke_active_vid(person, now)
            return self._issue_vid(person, now)

    def vid_status(self, vid: str) -> VidRecord | None:
        """The VID's state (active or revoked, and since when); None if never issued here."""
        if not is_valid_vid(vid):
            raise IssuerError(VID_RULE)
        return self._store.vid_record(vid)

    def _now(self) -> int:
        return self._clock.now_ns() // 1_000_000_000

    @staticmethod
    def _national_id(national_id: str) -> str:
        number = normalise_national_id(national_id)
        if not is_valid_national_id(number):
            # Never echo the number: this message reaches terminals and logs.
            raise IssuerError(f"the national id is not valid: {NATIONAL_ID_RULE}")
        return number

    def _known_person(self, key: bytes) -> int:
        person = self._store.find_person(key)
        if person is None:
            raise IssuerError("this national id has never been enrolled with this issuer")
        return person

    def _issue_vid(self, person: int, now: int) -> str:
        while True:  # 9 x 10^14 VIDs: a collision is vanishingly rare, but a VID is never reused
            vid = new_vid(self._rng)
            if not self._store.vid_taken(vid):
                self._store.add_vid(person, vid, now)
                return vid
