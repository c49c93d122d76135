"""Charging (OCPP) under /api/v1: an operator sets its chargers' OCPP passwords and lists the
sessions at its chargers (vehicles by pseudonym only); a resident registers the id tokens of
their vehicles and sees the sessions that credited them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from cityshare.api.deps import PlatformDep, PrincipalDep, ResidentDep, require_org_staff
from cityshare.api.errors import refused
from cityshare.api.responses import error_responses
from cityshare.charging import commands
from cityshare.charging import handlers as charging
from cityshare.charging.model import ChargingError
from cityshare.charging.schemas import (
    ChargerPasswordIn,
    ChargerPasswordOut,
    IdTokenIn,
    IdTokenOut,
    OperatorSessionOut,
    OwnerSessionOut,
)
from cityshare.identity.api import DeviceId
from cityshare.identity.organisations_api import OrgId

router = APIRouter(prefix="/api/v1", tags=["charging"])

TokenId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An id token registration.")]
After = Annotated[int, Query(ge=0, le=2**63 - 1, description="Sessions after this id.")]
Limit = Annotated[int, Query(ge=1, le=500)]

_STATUSES = dict.fromkeys(("token_in_use", "device_revoked", "too_many_tokens"), 409)


@router.put(
    "/organisations/{org_id}/devices/{device_id}/ocpp-password",
    response_model=ChargerPasswordOut,
    summary="Set the password an operator's charger logs in to the OCPP central system with",
    responses=error_responses(401, 403, 404, 409, 422),
)
def set_charger_password(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    device_id: DeviceId,
    body: ChargerPasswordIn,
) -> ChargerPasswordOut:
    require_org_staff(principal, org_id)
    try:
        row = platform.bus.handle(commands.SetChargerPassword(org_id, device_id, body.password))
    except ChargingError as exc:
        raise refused(exc, _STATUSES) from exc
    return ChargerPasswordOut.of(row)


@router.get(
    "/organisations/{org_id}/charging-sessions",
    response_model=list[OperatorSessionOut],
    summary="Sessions at the operator's chargers; each vehicle only as the operator's pseudonym",
    responses=error_responses(401, 403, 422),
)
def operator_sessions(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    after: After = 0,
    limit: Limit = 100,
) -> list[OperatorSessionOut]:
    require_org_staff(principal, org_id)
    views = charging.operator_sessions(
        platform.uow(), org_id, platform.pseudonym_secret, after=after, limit=limit
    )
    return [OperatorSessionOut.of(v) for v in views]


@router.get(
    "/me/charging-sessions",
    response_model=list[OwnerSessionOut],
    summary="Charging sessions that credited you (V2G discharge), with what each credited",
    responses=error_responses(401, 403, 422),
)
def my_sessions(
    platform: PlatformDep, principal: ResidentDep, after: After = 0, limit: Limit = 100
) -> list[OwnerSessionOut]:
    assert principal.resident_id is not None
    views = charging.owner_sessions(platform.uow(), principal.resident_id, after=after, limit=limit)
    return [OwnerSessionOut.of(v) for v in views]


@router.get(
    "/me/devices/{device_id}/id-tokens",
    response_model=list[IdTokenOut],
    summary="The id tokens registered for your vehicle (the tokens themselves are not kept)",
    responses=error_responses(401, 403, 404, 422),
)
def vehicle_tokens(
    platform: PlatformDep, principal: ResidentDep, device_id: DeviceId
) -> list[IdTokenOut]:
    assert principal.resident_id is not None
    try:
        rows = charging.vehicle_tokens(platform.uow(), principal.resident_id, device_id)
    except ChargingError as exc:
        raise refused(exc, _STATUSES) from exc
    return [IdTokenOut.of(r) for r in rows]


@router.post(
    "/me/devices/{device_id}/id-tokens",
    response_model=IdTokenOut,
    status_code=201,
    summary="Register an id token (OCPP idTag / IdToken) your vehicle presents at chargers",
    responses=error_responses(401, 403, 404, 409, 422),
)
def register_id_token(
    platform: PlatformDep, principal: ResidentDep, device_id: DeviceId, body: IdTokenIn
) -> IdTokenOut:
    assert principal.resident_id is not None
    try:
        row = platform.bus.handle(
            commands.RegisterIdToken(principal.resident_id, device_id, body.id_token)
        )
    except ChargingError as exc:
        raise refused(exc, _STATUSES) from exc
    return IdTokenOut.of(row)


@router.delete(
    "/me/devices/{device_id}/id-tokens/{token_id}",
    response_model=IdTokenOut,
    summary="Remove an id token: chargers stop accepting it for your vehicle",
    responses=error_responses(401, 403, 404, 422),
)
def remove_id_token(
    platform: PlatformDep, principal: ResidentDep, device_id: DeviceId, token_id: TokenId
) -> IdTokenOut:
    assert principal.resident_id is not None
    try:
        row = platform.bus.handle(
            commands.RemoveIdToken(principal.resident_id, device_id, token_id)
        )
    except ChargingError as exc:
        raise refused(exc, _STATUSES) from exc
    return IdTokenOut.of(row)
