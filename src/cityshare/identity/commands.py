"""Commands of identity: enrolment, organisations, devices and the access log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.kernel.messages import Command


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
