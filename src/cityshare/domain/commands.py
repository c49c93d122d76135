"""Commands: what someone asks the platform to do, named in the imperative."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.domain.ledger import NewAccount, Transfer


class Command:
    """Base class of every command."""


@dataclass(frozen=True, slots=True)
class CreateAccounts(Command):
    accounts: Sequence[NewAccount]
    #: All or nothing: if any account fails, none is created.
    atomic: bool = True


@dataclass(frozen=True, slots=True)
class CreateTransfers(Command):
    transfers: Sequence[Transfer]
    #: All or nothing: if any transfer fails, none is written (HTTP's default). When False each
    #: transfer (or linked chain) stands alone, as in TigerBeetle.
    atomic: bool = False


@dataclass(frozen=True, slots=True)
class ExpirePendingTransfers(Command):
    """Release the holds whose timeout has passed (at most `limit` in one transaction)."""

    limit: int = 10_000


@dataclass(frozen=True, slots=True)
class EnrolResident(Command):
    """Accept an issuer's signed enrolment assertion: create the resident (and wallets) on first
    sight, record the enrolment (current VID and attributes) every time."""

    assertion: str


@dataclass(frozen=True, slots=True)
class CreateOrganisation(Command):
    """Register an operator, provider or community asset and open its wallets."""

    kind: str
    name: str
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class RegisterDevice(Command):
    """Register a device of a party (a resident or an organisation) with its public key."""

    owner_id: int
    kind: str
    public_key: bytes
    label: str | None = None


@dataclass(frozen=True, slots=True)
class RevokeDevice(Command):
    owner_id: int
    device_id: str


@dataclass(frozen=True, slots=True)
class RotateDeviceKey(Command):
    """Add a new key to a device and revoke the keys it had."""

    owner_id: int
    device_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One read of one resident's personal data, as it is recorded."""

    resident_id: int
    principal: str
    role: str
    purpose: str
    what: str


@dataclass(frozen=True, slots=True)
class RecordAccess(Command):
    requests: Sequence[AccessRequest]


@dataclass(frozen=True, slots=True)
class AddCosignatures(Command):
    """Keep the witness cosignatures carried by `note`, a checkpoint the log itself signed."""

    note: str


@dataclass(frozen=True, slots=True)
class IngestReadings(Command):
    """Verify, deduplicate, store and credit signed meter readings (JWS strings, see
    `cityshare.trust.readings`). Every door hands over the same command: `source` names it
    (http, mqtt or ocpp). Each item gets its own result; bad items never stop good ones."""

    readings: Sequence[str]
    source: str = "http"
