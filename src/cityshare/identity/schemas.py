"""Bodies of the identity API: enrolment, credentials, resident views, devices, access log.

A resident view carries only the fields of the purpose it was read for; the others are left
out of the JSON (never sent as null), so what a purpose sees is exactly what arrives.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from cityshare.api.responses import Strict
from cityshare.identity.devices import LABEL_RE, DeviceKind, encode_public_key
from cityshare.identity.handlers import DeviceView, ResidentData
from cityshare.identity.model import AccessRow
from cityshare.identity.policy import (
    PURPOSE_DEVICE_KINDS,
    PURPOSE_FIELDS,
    Domain,
    Purpose,
    ResidentField,
    Role,
)
from cityshare.ledger.model import AccountState, Ledger


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")


class EnrolIn(Strict):
    assertion: str = Field(
        min_length=5,
        max_length=4096,
        pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        description="The issuer's signed enrolment assertion (`cityshare issuer enroll`).",
    )


class CredentialOut(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: int = Field(description="Unix seconds.")
    role: Role


class EnrolledOut(CredentialOut):
    resident_id: int
    vid: str
    created: bool = Field(
        description="True on first enrolment; false when an enrolled resident "
        "signs in again (possibly with a new VID)."
    )


class StaffCredentialIn(Strict):
    subject: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$")
    role: Role
    domain: Domain | None = None
    purposes: list[Purpose] = Field(min_length=1, max_length=len(Purpose))
    ttl_seconds: int = Field(3600, ge=60, le=30 * 86400)
    org_id: int | None = Field(
        None,
        ge=1,
        le=(1 << 58) - 1,
        description="The organisation an operator acts for (its domain must match).",
    )


class WalletOut(BaseModel):
    ledger: str
    account_id: int
    balance: int = Field(description="Posted credits minus debits, in the ledger's minor units.")
    pending_in: int
    pending_out: int

    @classmethod
    def of(cls, a: AccountState) -> WalletOut:
        return cls(
            ledger=Ledger(a.ledger).name,
            account_id=a.id,
            balance=a.credits_posted - a.debits_posted,
            pending_in=a.credits_pending,
            pending_out=a.debits_pending,
        )


class DeviceKeyOut(BaseModel):
    id: int
    public_key: str = Field(description="Ed25519 public key, base64url.")
    added_at: str
    revoked_at: str | None = None
    reason: str | None = None


class DeviceOut(BaseModel):
    id: str
    kind: str
    label: str | None = None
    registered_at: str
    active: bool
    keys: list[DeviceKeyOut] | None = None

    @classmethod
    def of(cls, view: DeviceView, *, with_keys: bool = True) -> DeviceOut:
        d = view.device
        keys = [
            DeviceKeyOut(
                id=k.id,
                public_key=encode_public_key(k.public_key),
                added_at=iso(k.added_at),
                revoked_at=iso(k.revoked_at) if k.revoked_at is not None else None,
                reason=k.reason,
            )
            for k in view.keys
        ]
        return cls(
            id=d.id,
            kind=d.kind,
            label=d.label,
            registered_at=iso(d.registered_at),
            active=view.active,
            keys=keys if with_keys else None,
        )


#: An Ed25519 public key: base64url (or base64) of its 32 bytes, 43 characters, padding optional.
PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9_+/-]{43}=?$"


class DeviceIn(Strict):
    # `\w` in the label as Python's `re` reads it, as the service does (Rust's regex differs).
    model_config = ConfigDict(regex_engine="python-re")

    kind: str = Field(
        description="meter, charger, vehicle, parking_meter, validator or phone",
        json_schema_extra={"enum": [k.value for k in DeviceKind]},
    )
    public_key: str = Field(
        pattern=PUBLIC_KEY_PATTERN, description="Ed25519 public key, base64url of 32 bytes."
    )
    label: str | None = Field(None, max_length=64, pattern=LABEL_RE.pattern)


class KeyIn(Strict):
    public_key: str = Field(
        pattern=PUBLIC_KEY_PATTERN, description="Ed25519 public key, base64url of 32 bytes."
    )


class ResidentOut(BaseModel):
    """A resident as one purpose may see them: absent fields are not for that purpose."""

    purpose: Purpose | None = None
    vid: str | None = None
    ward: str | None = None
    age_band: str | None = None
    enrolled_at: str | None = None
    wallets: list[WalletOut] | None = None
    devices: list[DeviceOut] | None = None

    @classmethod
    def of(cls, data: ResidentData, purpose: Purpose | None) -> ResidentOut:
        """`purpose` None is the resident themself: everything."""
        fields = frozenset(ResidentField) if purpose is None else PURPOSE_FIELDS[purpose]
        kinds = PURPOSE_DEVICE_KINDS.get(purpose) if purpose is not None else None
        attrs = data.enrolment.attrs
        out = cls(purpose=purpose)
        if ResidentField.VID in fields:
            out.vid = data.enrolment.vid
        if ResidentField.WARD in fields:
            out.ward = attrs.get("ward")
        if ResidentField.AGE_BAND in fields:
            out.age_band = attrs.get("age_band")
        if ResidentField.ENROLLED_AT in fields:
            out.enrolled_at = iso(data.resident.enrolled_at)
        if ResidentField.WALLETS in fields:
            out.wallets = [WalletOut.of(a) for a in data.wallets]
        if ResidentField.DEVICES in fields:
            out.devices = [
                DeviceOut.of(d, with_keys=purpose is None)
                for d in data.devices
                if kinds is None or d.device.kind in kinds
            ]
        return out


class AccessOut(BaseModel):
    id: int
    at: str
    who: str = Field(description="The principal: role and subject.")
    role: str
    purpose: str
    what: str

    @classmethod
    def of(cls, row: AccessRow) -> AccessOut:
        return cls(
            id=row.id,
            at=iso(row.at),
            who=row.principal,
            role=row.role,
            purpose=row.purpose,
            what=row.what,
        )


class AccessLogOut(BaseModel):
    records: list[AccessOut]
    next_after: int | None = Field(None, description="Pass as `after` for the next page.")


class DeviceProofIn(Strict):
    proof: str = Field(
        min_length=1,
        max_length=2048,
        description="A JWT the device signed with its key: alg EdDSA, kid = device id, "
        "aud = cityshare-api, iat and exp at most 5 minutes apart.",
    )


class VehiclePresentationIn(Strict):
    presentation: str = Field(
        min_length=1,
        max_length=2048,
        description="A JWT the vehicle signed for you: kid = its device id, aud = your subject.",
    )


class VehicleOut(BaseModel):
    vehicle: str = Field(
        description="This vehicle's pseudonym for you (other counterparties see a different one)."
    )
