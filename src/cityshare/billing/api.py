"""Billing under /api/v1: providers' price lists, a resident's choice of provider, and the
monthly statement (a resident's own, or read by staff for billing, which is recorded).

Imported energy is billed per interval by `cityshare energy bill` (and by `serve`
periodically) and paid from the resident's INR wallet; a platform operator tops that wallet
up from the INR settlement account (POST /api/v1/residents/{vid}/top-ups).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from cityshare.api.deps import (
    PlatformDep,
    PrincipalDep,
    ResidentDep,
    StaffDep,
    require_org_staff,
    require_platform_operator,
)
from cityshare.api.errors import ApiError, refused
from cityshare.api.responses import error_responses
from cityshare.billing import commands
from cityshare.billing import queries as billing
from cityshare.billing.model import BillingError, month_of
from cityshare.billing.schemas import (
    ChooseProviderIn,
    MonthlyStatementOut,
    PriceListIn,
    PriceListOut,
    ProviderChoiceOut,
    ProviderPricesOut,
    TopUpIn,
    TopUpOut,
)
from cityshare.identity import handlers as identity
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.identity.api import VID
from cityshare.identity.organisations_api import OrgId
from cityshare.identity.policy import Purpose

router = APIRouter(prefix="/api/v1", tags=["billing"])

MonthPath = Annotated[
    str,
    Path(
        pattern=r"^(19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])$",
        description="A month, YYYY-MM (local time), from 1970-01 to 2261-12 (64-bit ledger "
        "time).",
    ),
]


@router.put(
    "/organisations/{org_id}/price-list",
    response_model=PriceListOut,
    status_code=201,
    summary="Set a new version of a provider's price list (its staff or an admin)",
    description="Paise per kWh for each time-of-day window, effective now or from a later "
    "`effective_from`; earlier versions are kept. Only per-kWh prices exist: a fixed, "
    "standing or subscription charge, a fraction, a negative price or an unknown window is "
    "refused with the reason and nothing is written.",
    responses=error_responses(401, 403, 404, 422),
)
def set_price_list(
    platform: PlatformDep, principal: PrincipalDep, org_id: OrgId, body: PriceListIn
) -> PriceListOut:
    require_org_staff(principal, org_id)
    try:
        row = platform.bus.handle(
            commands.SetPriceList(org_id, body.model_dump(exclude_unset=True), principal.name)
        )
    except BillingError as exc:
        raise refused(exc) from exc
    return PriceListOut.of(billing.price_list_view(row))


@router.get(
    "/organisations/{org_id}/price-list",
    response_model=ProviderPricesOut,
    summary="A provider's price list in force and those to come (anyone signed in)",
    responses=error_responses(401, 404, 422),
)
def price_list(platform: PlatformDep, _: PrincipalDep, org_id: OrgId) -> ProviderPricesOut:
    try:
        return ProviderPricesOut.of(billing.provider_prices(platform.uow(), org_id))
    except BillingError as exc:
        raise refused(exc) from exc


def _choice(platform: PlatformDep, resident_id: int) -> ProviderChoiceOut:
    try:
        choice = billing.current_provider(
            platform.uow(), resident_id, default_setting=platform.settings.default_provider
        )
    except BillingError as exc:
        raise refused(exc) from exc
    return ProviderChoiceOut.of(choice)


@router.get(
    "/me/energy/provider",
    response_model=ProviderChoiceOut,
    summary="Who sells you the energy you import, and at what prices",
    responses=error_responses(401, 403, 422),
)
def my_provider(platform: PlatformDep, principal: ResidentDep) -> ProviderChoiceOut:
    assert principal.resident_id is not None
    return _choice(platform, principal.resident_id)


@router.put(
    "/me/energy/provider",
    response_model=ProviderChoiceOut,
    summary="Buy your imported energy from this provider from now on (no fees, no contract)",
    responses=error_responses(401, 403, 404, 422),
)
def choose_provider(
    platform: PlatformDep, principal: ResidentDep, body: ChooseProviderIn
) -> ProviderChoiceOut:
    assert principal.resident_id is not None
    try:
        platform.bus.handle(commands.ChooseProvider(principal.resident_id, body.provider_id))
    except BillingError as exc:
        raise refused(exc) from exc
    return _choice(platform, principal.resident_id)


@router.post(
    "/residents/{vid}/top-ups",
    response_model=TopUpOut,
    status_code=201,
    summary="Top a resident's INR wallet up from the settlement account (platform operators)",
    description="Fiat reached the platform's bank under `reference`: credit `amount` paise to "
    "the resident's INR wallet from the platform's INR settlement account (904, opened by the "
    "first top-up). The reference is the idempotency key, case-insensitive as bank references "
    "(UTRs) are (stored in upper case: `utr-x` is `UTR-X`): sent again with the same amount for "
    "the same resident, the first top-up is answered (200, `created` false) and nothing is "
    "posted; with another amount or resident it is refused (409 `reference_reused`). If "
    "account 904 exists but is not the settlement account (opened by a client before it was "
    "reserved), nothing is posted: 503 `settlement_account_unusable` until an operator repairs "
    "it.",
    responses={
        200: {"model": TopUpOut, "description": "This reference had topped up already"},
        **error_responses(401, 403, 404, 409, 422),
        503: {
            **error_responses(503)[503],
            "description": "`settlement_account_unusable`: account 904 is not the platform's "
            "INR settlement account (nothing was posted), or the database is unavailable",
        },
    },
)
def top_up(
    platform: PlatformDep,
    principal: PrincipalDep,
    vid: VID,
    body: TopUpIn,
    response: Response,
) -> TopUpOut:
    require_platform_operator(principal)
    resident_id = identity.resident_by_vid(platform.uow(), vid)
    if resident_id is None:
        raise ApiError(404, "not_found", "no resident has this virtual id")
    try:
        outcome = platform.bus.handle(
            commands.TopUpWallet(resident_id, body.amount, body.reference, principal.name)
        )
    except BillingError as exc:
        raise refused(
            exc, {"reference_reused": 409, "settlement_account_unusable": 503}
        ) from exc
    if not outcome.created:
        response.status_code = 200
    return TopUpOut.of(outcome)


def _statement(platform: PlatformDep, resident_id: int, month: str) -> MonthlyStatementOut:
    try:
        period = month_of(month, platform.tariff.zone)
    except BillingError as exc:
        raise refused(exc) from exc
    return MonthlyStatementOut.of(
        billing.monthly_statement(platform.uow(), resident_id, period, tariff=platform.tariff)
    )


@router.get(
    "/me/statements/{month}",
    response_model=MonthlyStatementOut,
    summary="Your monthly statement: energy in and out, bills, payments, arrears, wallet",
    responses=error_responses(401, 403, 422),
)
def my_statement(
    platform: PlatformDep, principal: ResidentDep, month: MonthPath
) -> MonthlyStatementOut:
    assert principal.resident_id is not None
    return _statement(platform, principal.resident_id, month)


@router.get(
    "/residents/{vid}/statements/{month}",
    response_model=MonthlyStatementOut,
    summary="A resident's monthly statement, for billing (staff; the read is recorded)",
    responses=error_responses(401, 403, 404, 422),
)
def resident_statement(
    platform: PlatformDep,
    principal: StaffDep,
    vid: VID,
    month: MonthPath,
    purpose: Annotated[Purpose, Query(description="Must be `billing`, granted to you.")],
) -> MonthlyStatementOut:
    try:
        found = platform.personal_data.energy_statement(principal, vid, month, purpose)
    except ReadRefused as exc:
        raise read_refused(exc) from exc
    except BillingError as exc:
        raise refused(exc) from exc
    return MonthlyStatementOut.of(found)
