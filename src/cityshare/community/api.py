"""Community assets under /api/v1: shares (issued by the asset's staff, transferred by their
holders) and the settlement of earnings to holders.

The asset's staff (and administrators) see how many shares and holders there are and what
each distribution paid in total; holders by VID only with the billing purpose, and every
such read is recorded in each holder's access log. A resident sees their own holdings and
payouts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from cityshare.api.deps import PlatformDep, PrincipalDep, ResidentDep, require_org_staff
from cityshare.api.errors import refused
from cityshare.api.idempotency import IdempotencyDep, idempotent_responses
from cityshare.api.responses import error_responses
from cityshare.community import commands
from cityshare.community import queries as community
from cityshare.community.model import CommunityError, ShareEventRow
from cityshare.community.schemas import (
    AssetSharesOut,
    DistributeIn,
    MySharesOut,
    SettlementRunOut,
    ShareEventOut,
    ShareIssueIn,
    ShareTransferIn,
)
from cityshare.community.uow import CommunityUnitOfWork
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.identity.organisations_api import OrgId
from cityshare.identity.policy import Purpose

router = APIRouter(prefix="/api/v1", tags=["community"])

_STATUSES = {
    "unknown_vid": 404,
    "insufficient_shares": 409,
    "too_many_shares": 409,
}


@router.post(
    "/organisations/{org_id}/shares",
    response_model=ShareEventOut,
    status_code=201,
    summary="Issue new shares of a community asset to a resident (admins and its staff)",
    responses=idempotent_responses(201, 401, 403, 404, 409),
)
def issue_shares(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    body: ShareIssueIn,
    idempotency: IdempotencyDep,
) -> ShareEventOut | Response:
    require_org_staff(principal, org_id)
    command = commands.IssueShares(
        org_id, [commands.ShareGrant(body.vid, body.shares)], principal.name
    )

    def answer(rows: list[ShareEventRow], uow: CommunityUnitOfWork) -> ShareEventOut:
        [row] = rows
        with uow:
            holding = uow.community.holding(org_id, row.to_id)
        return ShareEventOut(
            id=row.id, asset_id=org_id, kind=row.kind, vid=body.vid, shares=row.shares,
            holding=holding,
        )  # fmt: skip

    try:
        return idempotency.run(platform, command, body, answer)
    except CommunityError as exc:
        raise refused(exc, _STATUSES) from exc


@router.get(
    "/organisations/{org_id}/shares",
    response_model=AssetSharesOut,
    response_model_exclude_none=True,
    summary="A community asset's shares and distributions; holders by VID for billing (recorded)",
    responses=error_responses(401, 403, 404, 422),
)
def asset_shares(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    purpose: Annotated[
        Purpose | None,
        Query(description="`billing` lists the holders by VID (each read is recorded)."),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AssetSharesOut:
    require_org_staff(principal, org_id)
    listed = purpose == Purpose.BILLING
    try:
        if listed:
            data = platform.personal_data.asset_holders(
                principal, org_id, Purpose.BILLING, offset=offset, limit=limit
            )
        else:
            data = community.asset_shares(
                platform.uow(), org_id, with_holders=False, offset=offset, limit=limit
            )
    except ReadRefused as exc:
        raise read_refused(exc) from exc
    except CommunityError as exc:
        raise refused(exc, _STATUSES) from exc
    more = listed and offset + len(data.holdings) < data.holders
    return AssetSharesOut.of(
        data,
        platform.tariff.zone,
        listed=listed,
        next_offset=offset + len(data.holdings) if more else None,
    )


@router.post(
    "/organisations/{org_id}/distributions",
    response_model=SettlementRunOut,
    summary="Settle a community asset now: pay every ended period's earnings to its holders",
    description="Settles each period end not settled yet (or only `period_end`). The answer "
    "lists what each settled period end paid, and says which period ends were checked and "
    "when the open period ends: while it is open nothing is due, and `settlements` is empty.",
    responses=error_responses(401, 403, 404, 422),
)
def distribute(
    platform: PlatformDep,
    principal: PrincipalDep,
    org_id: OrgId,
    body: DistributeIn | None = None,
) -> SettlementRunOut:
    require_org_staff(principal, org_id)
    zone = platform.tariff.zone
    period = platform.settings.community_period
    try:
        text = body.period_end if body is not None else None
        end = None if text is None else community.period_end_from(text, zone)
        window = community.settlement_window(platform.uow(), org_id, zone=zone, period=period)
        outcomes = platform.bus.handle(commands.SettleCommunityAssets(org_id, end))
    except CommunityError as exc:
        raise refused(exc, _STATUSES) from exc
    return SettlementRunOut.of(outcomes, window, zone)


@router.get(
    "/me/shares",
    response_model=MySharesOut,
    summary="Your shares of community assets and what each distribution paid you",
    responses=error_responses(401, 403, 422),
)
def my_shares(
    platform: PlatformDep,
    principal: ResidentDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Most payouts listed.")] = 100,
) -> MySharesOut:
    assert principal.resident_id is not None
    data = community.resident_shares(platform.uow(), principal.resident_id, limit=limit)
    return MySharesOut.of(data, platform.tariff.zone)


@router.post(
    "/me/shares/transfers",
    response_model=ShareEventOut,
    status_code=201,
    summary="Give some of your shares of a community asset to another resident (by VID)",
    responses=idempotent_responses(201, 401, 403, 404, 409),
)
def transfer_shares(
    platform: PlatformDep,
    principal: ResidentDep,
    body: ShareTransferIn,
    idempotency: IdempotencyDep,
) -> ShareEventOut | Response:
    resident = principal.resident_id
    assert resident is not None
    command = commands.TransferShares(
        body.asset_id, resident, body.to_vid, body.shares, principal.name
    )

    def answer(row: ShareEventRow, uow: CommunityUnitOfWork) -> ShareEventOut:
        with uow:
            holding = uow.community.holding(body.asset_id, resident)
        return ShareEventOut(
            id=row.id,
            asset_id=body.asset_id,
            kind=row.kind,
            vid=body.to_vid,
            shares=row.shares,
            holding=holding,
        )

    try:
        return idempotency.run(platform, command, body, answer)
    except CommunityError as exc:
        raise refused(exc, _STATUSES) from exc
