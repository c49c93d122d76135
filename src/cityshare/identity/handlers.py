"""Identity capability: enrolment, devices and their keys, the access log (handlers and queries).

Every fact written here is also a leaf of the audit log in the same transaction, encoded by the
codecs of `identity/records.py`; `cityshare audit verify` re-encodes the stored rows with the
same codecs (see `records.RECORDS`), so a changed row cannot hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.identity import commands, records
from cityshare.identity.assertion import AssertionInvalid, verify_assertion
from cityshare.identity.devices import LABEL_RE as DEVICE_LABEL_RE
from cityshare.identity.devices import DeviceKind, new_device_id
from cityshare.identity.model import (
    AccessRow,
    DeviceKeyRow,
    DeviceRow,
    EnrolmentRow,
    OrganisationRow,
    ResidentRow,
)
from cityshare.identity.organisations import NAME_RE as ORG_NAME_RE
from cityshare.identity.organisations import ORG_ID_BASE, OrgKind, is_organisation
from cityshare.identity.residents import WALLET_LEDGERS, wallet_account_id, wallet_accounts
from cityshare.identity.uow import IdentityUnitOfWork
from cityshare.ledger.handlers import open_accounts
from cityshare.ledger.model import AccountState, CreateAccountResult
from cityshare.tlog import note

MAX_DEVICES_PER_RESIDENT = 64


class IdentityError(ValueError):
    """A request the identity capability refuses; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- command handlers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolled:
    resident_id: int
    vid: str
    created: bool


def enrol_resident(
    cmd: commands.EnrolResident,
    uow: IdentityUnitOfWork,
    *,
    issuers: Sequence[note.Verifier],
    sector: str,
) -> Enrolled:
    now_ns = uow.clock.now_ns()
    try:
        assertion = verify_assertion(
            cmd.assertion, issuers, audience=sector, now=now_ns // 1_000_000_000
        )
    except AssertionInvalid as exc:
        raise IdentityError("assertion_invalid", str(exc)) from exc
    with uow:
        last = uow.ledger.lock_ledger()
        repo = uow.identity
        if repo.jti_used(assertion.jti):
            raise IdentityError(
                "assertion_replayed",
                "this assertion was already used; ask the issuer for a new one",
            )
        resident = repo.resident_by_pseudonym(assertion.pseudonym)
        leaves: list[bytes] = []
        created = resident is None
        if resident is None:
            resident = ResidentRow(
                repo.next_resident_id(), assertion.pseudonym, assertion.issuer, now_ns
            )
            repo.insert_resident(resident)
            leaves.append(records.RESIDENT.of(resident))
        holder = repo.resident_by_vid(assertion.vid)
        if holder is not None and holder != resident.id:
            raise IdentityError("vid_in_use", "this virtual id belongs to another resident")
        enrolment = EnrolmentRow(
            repo.next_enrolment_id(),
            resident.id,
            assertion.vid,
            dict(assertion.attrs),
            assertion.jti,
            now_ns,
        )
        repo.insert_enrolment(enrolment)
        leaves.append(records.ENROLMENT.of(enrolment))
        uow.log.append(leaves)
        if created:
            results = open_accounts(
                uow, wallet_accounts(resident.id), last_timestamp=last, atomic=True
            )
            if any(r != CreateAccountResult.CREATED for r in results):
                raise RuntimeError(f"wallets of new resident {resident.id} exist already")
        uow.commit()
    return Enrolled(resident.id, assertion.vid, created)


#: Which domain each kind of organisation belongs to (an operator names its own).
_ORG_DOMAINS = {OrgKind.PROVIDER: "energy", OrgKind.COMMUNITY: "energy"}
_OPERATOR_DOMAINS = ("energy", "transit", "parking")


def create_organisation(
    cmd: commands.CreateOrganisation, uow: IdentityUnitOfWork
) -> OrganisationRow:
    try:
        kind = OrgKind(cmd.kind)
    except ValueError as exc:
        kinds = ", ".join(k.value for k in OrgKind)
        raise IdentityError("invalid_kind", f"an organisation is one of: {kinds}") from exc
    if not ORG_NAME_RE.match(cmd.name):
        raise IdentityError("invalid_name", "a name is 1-100 letters, digits and punctuation")
    if kind == OrgKind.OPERATOR:
        if cmd.domain not in _OPERATOR_DOMAINS:
            raise IdentityError(
                "invalid_domain", f"an operator runs one of: {', '.join(_OPERATOR_DOMAINS)}"
            )
        domain = cmd.domain
    else:
        domain = _ORG_DOMAINS[kind]
        if cmd.domain not in (None, domain):
            raise IdentityError("invalid_domain", f"a {kind} belongs to the {domain} domain")
    with uow:
        last = uow.ledger.lock_ledger()
        repo = uow.identity
        if repo.organisation_named(cmd.name) is not None:
            raise IdentityError("name_taken", "an organisation of that name exists")
        row = OrganisationRow(
            repo.next_organisation_id(ORG_ID_BASE), kind.value, cmd.name, domain,
            uow.clock.now_ns(),
        )  # fmt: skip
        repo.insert_organisation(row)
        uow.log.append([records.ORGANISATION.of(row)])
        results = open_accounts(uow, wallet_accounts(row.id), last_timestamp=last, atomic=True)
        if any(r != CreateAccountResult.CREATED for r in results):
            raise RuntimeError(f"wallets of new organisation {row.id} exist already")
        uow.commit()
    return row


def register_device(cmd: commands.RegisterDevice, uow: IdentityUnitOfWork) -> DeviceRow:
    kind = _device_kind(cmd.kind)
    if cmd.label is not None and not DEVICE_LABEL_RE.match(cmd.label):
        raise IdentityError("invalid_label", "a label is 1-64 letters, digits and punctuation")
    if len(cmd.public_key) != 32:
        raise IdentityError("invalid_key", "an Ed25519 public key is 32 bytes")
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.identity
        if is_organisation(cmd.owner_id):
            if repo.organisation(cmd.owner_id) is None:
                raise IdentityError("not_found", "no such organisation")
        elif repo.resident(cmd.owner_id) is None:
            raise IdentityError("not_found", "no such resident")
        elif len(repo.devices_of(cmd.owner_id)) >= MAX_DEVICES_PER_RESIDENT:
            raise IdentityError("too_many_devices", f"at most {MAX_DEVICES_PER_RESIDENT} devices")
        if repo.key_exists(cmd.public_key):
            raise IdentityError("key_in_use", "this public key is already registered")
        now = uow.clock.now_ns()
        device = DeviceRow(new_device_id(), cmd.owner_id, kind, cmd.label, now)
        key = DeviceKeyRow(repo.next_device_key_id(), device.id, cmd.public_key, now)
        repo.insert_device(device)
        repo.insert_key(key)
        uow.log.append([records.DEVICE.of(device), records.DEVICE_KEY.of(key)])
        uow.commit()
    return device


def revoke_device(cmd: commands.RevokeDevice, uow: IdentityUnitOfWork) -> int:
    """Revoke every live key of the device; return how many were revoked (0 if none were)."""
    with uow:
        uow.ledger.lock_ledger()
        _owned_device(uow, cmd.owner_id, cmd.device_id)
        revoked = _revoke_live_keys(uow, cmd.device_id, "device_revoked")
        uow.commit()
    return revoked


def rotate_device_key(cmd: commands.RotateDeviceKey, uow: IdentityUnitOfWork) -> DeviceKeyRow:
    if len(cmd.public_key) != 32:
        raise IdentityError("invalid_key", "an Ed25519 public key is 32 bytes")
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.identity
        _owned_device(uow, cmd.owner_id, cmd.device_id)
        if not any(k.live for k in repo.keys_of([cmd.device_id])):
            raise IdentityError("device_revoked", "a revoked device cannot get a new key")
        if repo.key_exists(cmd.public_key):
            raise IdentityError("key_in_use", "this public key is already registered")
        _revoke_live_keys(uow, cmd.device_id, "rotated")
        key = DeviceKeyRow(
            repo.next_device_key_id(), cmd.device_id, cmd.public_key, uow.clock.now_ns()
        )
        repo.insert_key(key)
        uow.log.append([records.DEVICE_KEY.of(key)])
        uow.commit()
    return key


def record_access(cmd: commands.RecordAccess, uow: IdentityUnitOfWork) -> list[AccessRow]:
    if not cmd.requests:
        return []
    with uow:
        uow.ledger.lock_ledger()
        first = uow.identity.next_access_id()
        now = uow.clock.now_ns()
        rows = [
            AccessRow(first + i, r.resident_id, r.principal, r.role, r.purpose, r.what[:200], now)
            for i, r in enumerate(cmd.requests)
        ]
        uow.identity.insert_access(rows)
        uow.log.append([records.ACCESS.of(r) for r in rows])
        uow.commit()
    return rows


def _device_kind(kind: str) -> str:
    try:
        return DeviceKind(kind).value
    except ValueError as exc:
        kinds = ", ".join(k.value for k in DeviceKind)
        raise IdentityError("invalid_kind", f"a device is one of: {kinds}") from exc


def _owned_device(uow: IdentityUnitOfWork, owner_id: int, device_id: str) -> DeviceRow:
    device = uow.identity.device(device_id)
    if device is None or device.owner_id != owner_id:  # someone else's device is not found
        raise IdentityError("not_found", "no such device")
    return device


def _revoke_live_keys(uow: IdentityUnitOfWork, device_id: str, reason: str) -> int:
    now = uow.clock.now_ns()
    live = [k for k in uow.identity.keys_of([device_id]) if k.live]
    for key in live:
        uow.identity.revoke_key(key.id, reason, now)
    uow.log.append(
        [
            records.DEVICE_KEY_REVOKED.of_mapping({"id": k.id, "reason": reason, "revoked_at": now})
            for k in live
        ]
    )
    return len(live)


# -- queries (read side) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceView:
    device: DeviceRow
    keys: list[DeviceKeyRow]

    @property
    def active(self) -> bool:
        return any(k.live for k in self.keys)


@dataclass(frozen=True, slots=True)
class ResidentData:
    """Everything the platform holds about a resident; views cut it down per purpose."""

    resident: ResidentRow
    enrolment: EnrolmentRow
    wallets: list[AccountState]
    devices: list[DeviceView]


def resident_data(uow: IdentityUnitOfWork, resident_id: int) -> ResidentData | None:
    with uow:
        repo = uow.identity
        resident = repo.resident(resident_id)
        enrolment = repo.latest_enrolment(resident_id)
        if resident is None or enrolment is None:
            return None
        ids = [wallet_account_id(resident_id, ledger) for ledger in WALLET_LEDGERS]
        accounts = uow.ledger.load_accounts(ids)
        owned = repo.devices_of(resident_id)
        keys = repo.keys_of([d.id for d in owned])
    return ResidentData(
        resident,
        enrolment,
        [accounts[i] for i in ids if i in accounts],
        [DeviceView(d, [k for k in keys if k.device_id == d.id]) for d in owned],
    )


def resident_by_vid(uow: IdentityUnitOfWork, vid: str) -> int | None:
    with uow:
        return uow.identity.resident_by_vid(vid)


def device(uow: IdentityUnitOfWork, device_id: str) -> DeviceView | None:
    with uow:
        found = uow.identity.device(device_id)
        if found is None:
            return None
        return DeviceView(found, uow.identity.keys_of([device_id]))


def access_log(
    uow: IdentityUnitOfWork, resident_id: int, *, after: int = 0, limit: int = 100
) -> list[AccessRow]:
    with uow:
        return uow.identity.access_of(resident_id, after=after, limit=limit)


@dataclass(frozen=True, slots=True)
class OrganisationData:
    organisation: OrganisationRow
    wallets: list[AccountState]
    devices: list[DeviceView]


def organisations(uow: IdentityUnitOfWork, kind: str | None = None) -> list[OrganisationRow]:
    with uow:
        return uow.identity.organisations(kind)


def organisation_data(uow: IdentityUnitOfWork, org_id: int) -> OrganisationData | None:
    """An organisation with its wallets and devices (None if there is no such one)."""
    if not is_organisation(org_id):
        return None
    with uow:
        repo = uow.identity
        org = repo.organisation(org_id)
        if org is None:
            return None
        ids = [wallet_account_id(org_id, ledger) for ledger in WALLET_LEDGERS]
        accounts = uow.ledger.load_accounts(ids)
        owned = repo.devices_of(org_id)
        keys = repo.keys_of([d.id for d in owned])
    return OrganisationData(
        org,
        [accounts[i] for i in ids if i in accounts],
        [DeviceView(d, [k for k in keys if k.device_id == d.id]) for d in owned],
    )


def staff_org_problem(
    uow: IdentityUnitOfWork, role: str, domain: str | None, org_id: int | None
) -> str | None:
    """Why a staff credential may not name `org_id` (None when it may, or names none)."""
    if org_id is None:
        return None
    if role != "operator":
        return "only an operator credential acts for an organisation"
    if not is_organisation(org_id):
        return "no such organisation"
    with uow:
        org = uow.identity.organisation(org_id)
    if org is None:
        return "no such organisation"
    if org.domain != domain:
        return f"the organisation is in the {org.domain} domain"
    return None
