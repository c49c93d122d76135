"""Organisations under /api/v1: operators, providers and community assets, their wallets and
devices (an operator's chargers, a community asset's meter).

Anyone signed in may list organisations (a resident chooses a provider or a community asset
among them); an organisation's wallets and devices are for administrators and for staff whose
credential names that organisation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cityshare.access.policy import Role
from cityshare.access.tokens import Principal
from cityshare.api.deps import AdminDep, PlatformDep, PrincipalDep
from cityshare.api.errors import ApiError
from cityshare.api.identity_schemas import DeviceIn, DeviceOut, KeyIn
from cityshare.api.organisation_schemas import (
    OrganisationAccountOut,
    OrganisationIn,
    OrganisationOut,
)
from cityshare.api.routers.identity import DeviceId, refused
from cityshare.api.schemas import error_responses
from cityshare.domain import commands
from cityshare.domain.devices import DeviceError, parse_public_key
from cityshare.domain.organisations import MAX_PARTY_ID, ORG_ID_BASE, OrgKind
from cityshare.services import identity
from cityshare.services.identity import IdentityError

router = APIRouter(prefix="/api/v1", tags=["organisations"])

OrgId = Annotated[int, Path(ge=ORG_ID_BASE, le=MAX_PARTY_ID, description="An organisation id.")]


def _for_its_staff(principal: Principal, org_id: int) -> None:
    """Administrators, and staff whose credential names this organisation."""
    if principal.role == Role.ADMIN:
        return
    if principal.role == Role.OPERATOR and principal.org_id == org_id:
        return
    raise ApiError(403, "forbidden", "this is for administrators and the organisation's staff")


def _found(platform: PlatformDep, org_id: int) -> identity.OrganisationData:
    data = identity.organisation_data(platform.uow(), org_id)
    if data is None:
        raise ApiError(404, "not_found", "no such organisation")
    return data


@router.post(
    "/organisations",
    response_model=OrganisationOut,
    status_code=201,
    summary="Register an operator, provider or community asset (admins only); opens its wallets",
    responses=error_responses(401, 403, 409, 422),
)
def create_organisation(
    platform: PlatformDep, body: OrganisationIn, _: AdminDep
) -> OrganisationOut:
    try:
        row = platform.bus.handle(commands.CreateOrganisation(body.kind, body.name, body.domain))
    except IdentityError as exc:
        raise refused(exc) from exc
    return OrganisationOut.of(row)


@router.get(
    "/organisations",
    response_model=list[OrganisationOut],
    summary="Organisations on the platform (anyone signed in: residents choose among them)",
    responses=error_responses(401, 422),
)
def list_organisations(
    platform: PlatformDep,
    _: PrincipalDep,
    kind: Annotated[OrgKind | None, Query(description="Only this kind.")] = None,
) -> list[OrganisationOut]:
    return [
        OrganisationOut.of(row)
        for row in identity.organisations(platform.uow(), kind.value if kind else None)
    ]


@router.get(
    "/organisations/{org_id}",
    response_model=OrganisationAccountOut,
    summary="An organisation with its wallets and devices (admins and its own staff)",
    responses=error_responses(401, 403, 404, 422),
)
def organisation(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId
) -> OrganisationAccountOut:
    _for_its_staff(principal, org_id)
    return OrganisationAccountOut.of(_found(platform, org_id))


@router.post(
    "/organisations/{org_id}/devices",
    response_model=DeviceOut,
    status_code=201,
    summary="Register a device of the organisation (a charger, a community asset's meter)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def register_device(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, body: DeviceIn
) -> DeviceOut:
    _for_its_staff(principal, org_id)
    try:
        key = parse_public_key(body.public_key)
        row = platform.bus.handle(commands.RegisterDevice(org_id, body.kind, key, body.label))
    except DeviceError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from exc
    except IdentityError as exc:
        raise refused(exc) from exc
    view = identity.device(platform.uow(), row.id)
    assert view is not None
    return DeviceOut.of(view)


@router.post(
    "/organisations/{org_id}/devices/{device_id}/keys",
    response_model=DeviceOut,
    summary="Rotate a key of the organisation's device",
    responses=error_responses(401, 403, 404, 409, 422),
)
def rotate_key(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, device_id: DeviceId, body: KeyIn
) -> DeviceOut:
    _for_its_staff(principal, org_id)
    try:
        key = parse_public_key(body.public_key)
        platform.bus.handle(commands.RotateDeviceKey(org_id, device_id, key))
    except DeviceError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from exc
    except IdentityError as exc:
        raise refused(exc) from exc
    view = identity.device(platform.uow(), device_id)
    assert view is not None
    return DeviceOut.of(view)


@router.delete(
    "/organisations/{org_id}/devices/{device_id}",
    response_model=DeviceOut,
    summary="Revoke the organisation's device: its keys stop being accepted",
    responses=error_responses(401, 403, 404, 422),
)
def revoke_device(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, device_id: DeviceId
) -> DeviceOut:
    _for_its_staff(principal, org_id)
    try:
        platform.bus.handle(commands.RevokeDevice(org_id, device_id))
    except IdentityError as exc:
        raise refused(exc) from exc
    view = identity.device(platform.uow(), device_id)
    assert view is not None
    return DeviceOut.of(view)
