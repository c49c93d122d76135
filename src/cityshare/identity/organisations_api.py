"""Organisations under /api/v1: operators, providers and community assets, their wallets and
devices (an operator's chargers, a community asset's meter).

Anyone signed in may list organisations (a resident chooses a provider or a community asset
among them); an organisation's wallets and devices are for administrators and for staff whose
credential names that organisation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from cityshare.api.deps import AdminDep, PlatformDep, PrincipalDep, require_org_staff
from cityshare.api.errors import ApiError, refused
from cityshare.api.idempotency import IdempotencyDep, idempotent_responses
from cityshare.api.responses import error_responses
from cityshare.identity import commands
from cityshare.identity import handlers as identity
from cityshare.identity.api import IDENTITY_STATUSES, DeviceId, changed_device, registered_device
from cityshare.identity.devices import parse_public_key
from cityshare.identity.handlers import IdentityError
from cityshare.identity.organisations import MAX_PARTY_ID, ORG_ID_BASE, OrgKind
from cityshare.identity.organisations_schemas import (
    OrganisationAccountOut,
    OrganisationIn,
    OrganisationOut,
)
from cityshare.identity.schemas import DeviceIn, DeviceOut, KeyIn

router = APIRouter(prefix="/api/v1", tags=["organisations"])

OrgId = Annotated[int, Path(ge=ORG_ID_BASE, le=MAX_PARTY_ID, description="An organisation id.")]


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
        raise refused(exc, IDENTITY_STATUSES) from exc
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
    require_org_staff(principal, org_id)
    return OrganisationAccountOut.of(_found(platform, org_id))


@router.post(
    "/organisations/{org_id}/devices",
    response_model=DeviceOut,
    status_code=201,
    summary="Register a device of the organisation (a charger, a community asset's meter)",
    responses=idempotent_responses(201, 401, 403, 404, 409),
)
def register_device(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    body: DeviceIn,
    idempotency: IdempotencyDep,
) -> DeviceOut | Response:
    require_org_staff(principal, org_id)
    return registered_device(
        platform,
        lambda: commands.RegisterDevice(
            org_id, body.kind, parse_public_key(body.public_key), body.label
        ),
        idempotency,
        body,
    )


@router.post(
    "/organisations/{org_id}/devices/{device_id}/keys",
    response_model=DeviceOut,
    summary="Rotate a key of the organisation's device",
    responses=error_responses(401, 403, 404, 409, 422),
)
def rotate_key(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, device_id: DeviceId, body: KeyIn
) -> DeviceOut:
    require_org_staff(principal, org_id)
    return changed_device(
        platform,
        lambda: commands.RotateDeviceKey(org_id, device_id, parse_public_key(body.public_key)),
        device_id,
    )


@router.delete(
    "/organisations/{org_id}/devices/{device_id}",
    response_model=DeviceOut,
    summary="Revoke the organisation's device: its keys stop being accepted",
    responses=error_responses(401, 403, 404, 422),
)
def revoke_device(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, device_id: DeviceId
) -> DeviceOut:
    require_org_staff(principal, org_id)
    return changed_device(platform, lambda: commands.RevokeDevice(org_id, device_id), device_id)
