"""Identity under /api/v1: enrolment and credentials, resident self-service, devices, and
purpose-limited reads of a resident by staff (every such read is recorded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from cityshare.api.deps import AdminDep, CounterpartyDep, PlatformDep, ResidentDep, StaffDep
from cityshare.api.errors import ApiError, refused
from cityshare.api.idempotency import Idempotency, IdempotencyDep, idempotent_responses
from cityshare.api.responses import error_responses
from cityshare.identity import commands as identity_commands
from cityshare.identity import device_proof
from cityshare.identity import handlers as identity
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.identity.devices import (
    DEVICE_ID_RE,
    DeviceError,
    DeviceKind,
    counterparty_pseudonym,
    parse_public_key,
)
from cityshare.identity.handlers import IdentityError
from cityshare.identity.policy import Purpose, Role, check_grant
from cityshare.identity.schemas import (
    AccessLogOut,
    AccessOut,
    CredentialOut,
    DeviceIn,
    DeviceOut,
    DeviceProofIn,
    EnrolIn,
    EnrolledOut,
    KeyIn,
    ResidentOut,
    StaffCredentialIn,
    VehicleOut,
    VehiclePresentationIn,
)
from cityshare.identity.tokens import Principal
from cityshare.identity.uow import IdentityUnitOfWork
from cityshare.kernel import messages as kernel_messages

router = APIRouter(prefix="/api/v1", tags=["identity"])

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_RE.pattern)]
VID = Annotated[str, Path(pattern=r"^[1-9][0-9]{15}$", description="A 16-digit virtual id.")]


def _now(platform: PlatformDep) -> int:
    return platform.clock.now_ns() // 1_000_000_000


#: Refusals of the identity capability that are conflicts with what is stored.
IDENTITY_STATUSES = dict.fromkeys(
    ("assertion_replayed", "vid_in_use", "key_in_use", "device_revoked", "name_taken"), 409
)


def changed_device(
    platform: PlatformDep,
    command: Callable[[], kernel_messages.Command],
    device_id: str | None = None,
) -> DeviceOut:
    """Run a device command (register, rotate, revoke: built by `command`, which may refuse
    a malformed key) and answer with the device as it now is."""
    try:
        result = platform.bus.handle(command())
    except (DeviceError, IdentityError) as exc:
        raise _device_refusal(exc) from exc
    return _device_answer(device_id)(result, platform.uow())


def registered_device(
    platform: PlatformDep,
    command: Callable[[], identity_commands.RegisterDevice],
    idempotency: Idempotency,
    body: DeviceIn,
) -> DeviceOut | Response:
    """Register a device (as `changed_device`), at most once per `Idempotency-Key`."""
    try:
        return idempotency.run(platform, command(), body, _device_answer(None))
    except (DeviceError, IdentityError) as exc:
        raise _device_refusal(exc) from exc


def _device_answer(device_id: str | None) -> Callable[[Any, IdentityUnitOfWork], DeviceOut]:
    """The device a command changed (`device_id`, or the one it returned), as it now is."""

    def answer(result: Any, uow: IdentityUnitOfWork) -> DeviceOut:
        view = identity.device(uow, device_id or result.id)
        assert view is not None
        return DeviceOut.of(view)

    return answer


def _device_refusal(exc: DeviceError | IdentityError) -> ApiError:
    if isinstance(exc, DeviceError):
        return ApiError(422, "invalid_key", str(exc))
    return refused(exc, IDENTITY_STATUSES)


# -- enrolment and credentials ---------------------------------------------------------------


@router.post(
    "/residents",
    response_model=EnrolledOut,
    summary="Enrol (or sign in) with an issuer's assertion; returns a resident credential",
    responses=error_responses(400, 409, 422),
)
def enrol(platform: PlatformDep, body: EnrolIn, response: Response) -> EnrolledOut:
    try:
        enrolled = platform.bus.handle(identity_commands.EnrolResident(body.assertion))
    except IdentityError as exc:
        raise refused(exc, IDENTITY_STATUSES) from exc
    principal = Principal(
        f"resident-{enrolled.resident_id}", Role.RESIDENT, resident_id=enrolled.resident_id
    )
    issued = platform.tokens.issue(
        principal, now=_now(platform), ttl=platform.settings.token_ttl_seconds
    )
    response.status_code = 201 if enrolled.created else 200
    return EnrolledOut(
        token=issued.token,
        expires_at=issued.expires_at,
        role=Role.RESIDENT,
        resident_id=enrolled.resident_id,
        vid=enrolled.vid,
        created=enrolled.created,
    )


@router.post(
    "/credentials",
    response_model=CredentialOut,
    summary="Issue a staff credential (admins only): a role, a domain, purposes",
    responses=error_responses(401, 403, 422),
)
def issue_credential(
    platform: PlatformDep,
    body: StaffCredentialIn,
    _: AdminDep,
) -> CredentialOut:
    purposes = frozenset(body.purposes)
    problem = check_grant(body.role, body.domain, purposes) or identity.staff_org_problem(
        platform.uow(), body.role, body.domain, body.org_id
    )
    if problem is not None:
        raise ApiError(422, "invalid_grant", problem)
    issued = platform.tokens.issue(
        Principal(body.subject, body.role, purposes, body.domain, org_id=body.org_id),
        now=_now(platform),
        ttl=body.ttl_seconds,
    )
    return CredentialOut(token=issued.token, expires_at=issued.expires_at, role=body.role)


@router.post(
    "/devices/token",
    response_model=CredentialOut,
    summary="A device proves it holds its key and gets a device credential",
    responses=error_responses(401, 422),
)
def device_token(platform: PlatformDep, body: DeviceProofIn) -> CredentialOut:
    view = _verified_device(platform, body.proof, audience="cityshare-api")
    issued = platform.tokens.issue(
        Principal(view.device.id, Role.DEVICE, device_id=view.device.id),
        now=_now(platform),
        ttl=platform.settings.token_ttl_seconds,
    )
    return CredentialOut(token=issued.token, expires_at=issued.expires_at, role=Role.DEVICE)


def _verified_device(platform: PlatformDep, proof: str, *, audience: str) -> identity.DeviceView:
    try:
        device_id = device_proof.device_of(proof)
        view = identity.device(platform.uow(), device_id) if DEVICE_ID_RE.match(device_id) else None
        if view is None:
            raise device_proof.ProofError("unknown device")
        live = [k.public_key for k in view.keys if k.live]
        device_proof.verify(proof, live, audience=audience, now=_now(platform))
    except device_proof.ProofError as exc:
        raise ApiError(401, "invalid_proof", str(exc)) from exc
    return view


# -- a resident's own data -------------------------------------------------------------------


@router.get(
    "/me",
    response_model=ResidentOut,
    response_model_exclude_none=True,
    summary="Everything the platform holds about you",
    responses=error_responses(401, 403),
)
def me(platform: PlatformDep, principal: ResidentDep) -> ResidentOut:
    return ResidentOut.of(_own_data(platform, principal), None)


@router.get(
    "/me/devices",
    response_model=list[DeviceOut],
    response_model_exclude_none=True,
    summary="Your devices and their keys",
    responses=error_responses(401, 403),
)
def my_devices(platform: PlatformDep, principal: ResidentDep) -> list[DeviceOut]:
    return [DeviceOut.of(d) for d in _own_data(platform, principal).devices]


@router.post(
    "/me/devices",
    response_model=DeviceOut,
    status_code=201,
    summary="Register a device with its Ed25519 public key",
    responses=idempotent_responses(201, 401, 403, 409),
)
def register_device(
    platform: PlatformDep, principal: ResidentDep, body: DeviceIn, idempotency: IdempotencyDep
) -> DeviceOut | Response:
    owner = principal.resident_id
    assert owner is not None
    return registered_device(
        platform,
        lambda: identity_commands.RegisterDevice(
            owner, body.kind, parse_public_key(body.public_key), body.label
        ),
        idempotency,
        body,
    )


@router.post(
    "/me/devices/{device_id}/keys",
    response_model=DeviceOut,
    summary="Rotate a device's key: the new key replaces every key it had",
    responses=error_responses(401, 403, 404, 409, 422),
)
def rotate_key(
    platform: PlatformDep, principal: ResidentDep, device_id: DeviceId, body: KeyIn
) -> DeviceOut:
    owner = principal.resident_id
    assert owner is not None
    return changed_device(
        platform,
        lambda: identity_commands.RotateDeviceKey(
            owner, device_id, parse_public_key(body.public_key)
        ),
        device_id,
    )


@router.delete(
    "/me/devices/{device_id}",
    response_model=DeviceOut,
    summary="Revoke a device: its keys stop being accepted",
    responses=error_responses(401, 403, 404, 422),
)
def revoke_device(platform: PlatformDep, principal: ResidentDep, device_id: DeviceId) -> DeviceOut:
    owner = principal.resident_id
    assert owner is not None
    return changed_device(
        platform, lambda: identity_commands.RevokeDevice(owner, device_id), device_id
    )


@router.get(
    "/me/access-log",
    response_model=AccessLogOut,
    summary="Who read your data, when, in what role and for what purpose",
    responses=error_responses(401, 403, 422),
)
def my_access_log(
    platform: PlatformDep,
    principal: ResidentDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AccessLogOut:
    assert principal.resident_id is not None
    rows = identity.access_log(platform.uow(), principal.resident_id, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AccessLogOut(
        records=[AccessOut.of(r) for r in rows], next_after=rows[-1].id if more else None
    )


def _own_data(platform: PlatformDep, principal: Principal) -> identity.ResidentData:
    assert principal.resident_id is not None
    data = identity.resident_data(platform.uow(), principal.resident_id)
    if data is None:
        raise ApiError(404, "not_found", "your enrolment is not on this platform")
    return data


# -- staff -----------------------------------------------------------------------------------


@router.get(
    "/residents/{vid}",
    response_model=ResidentOut,
    response_model_exclude_none=True,
    summary="A resident by virtual id, showing only what the purpose allows (recorded)",
    responses=error_responses(401, 403, 404, 422),
)
def resident_by_vid(
    platform: PlatformDep,
    principal: StaffDep,
    vid: VID,
    purpose: Annotated[Purpose, Query(description="Why you read; must be granted to you.")],
) -> ResidentOut:
    try:
        data = platform.personal_data.profile(principal, vid, purpose)
    except ReadRefused as exc:
        raise read_refused(exc) from exc
    return ResidentOut.of(data, purpose)


@router.post(
    "/vehicles/identify",
    response_model=VehicleOut,
    summary="A counterparty checks a vehicle's signed presentation and learns its pseudonym",
    responses=error_responses(401, 403, 422),
)
def identify_vehicle(
    platform: PlatformDep,
    principal: CounterpartyDep,
    body: VehiclePresentationIn,
) -> VehicleOut:
    view = _verified_device(platform, body.presentation, audience=principal.subject)
    if view.device.kind != DeviceKind.VEHICLE:
        raise ApiError(401, "invalid_proof", "the presentation is not from a vehicle")
    return VehicleOut(
        vehicle=counterparty_pseudonym(platform.pseudonym_secret, view.device.id, principal.subject)
    )
