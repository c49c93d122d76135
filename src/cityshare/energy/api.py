"""Energy under /api/v1: devices post signed readings; residents see what they earned."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Query

from cityshare.api.deps import PlatformDep, ResidentDep, StaffDep
from cityshare.api.errors import ApiError
from cityshare.api.responses import error_responses
from cityshare.energy import commands, queries
from cityshare.energy.handlers import EnergyError
from cityshare.energy.model import MAX_INTERVAL_ID
from cityshare.energy.schemas import EnergyOut, ReadingsOut, ReviewOut
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.identity.policy import Purpose

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["energy"])


@router.post(
    "/readings",
    response_model=ReadingsOut,
    summary="Post signed meter readings (a JSON list of JWS strings); results per item",
    description="Each item is a reading signed by a registered meter or charger (JWS compact, "
    "`alg` EdDSA, `kid` = device id; payload `seq`, `ts`, `import_wh`, `export_wh`; see "
    "`cityshare.energy.readings`). The signatures are the credential: no bearer token is "
    "needed (a device's is accepted and ignored). The answer is 200 with one result per item "
    "even when some are rejected; a replayed or duplicated reading changes nothing.",
    responses=error_responses(400, 413, 422, 503),
)
def post_readings(
    platform: PlatformDep,
    readings: Annotated[
        list[str],
        Body(
            description="JWS compact strings, at most 1 KiB each.",
            json_schema_extra={"minItems": 1},
        ),
    ],
) -> ReadingsOut:
    limit = platform.settings.max_batch
    if not readings:
        raise ApiError(422, "empty_batch", "send at least one reading")
    if len(readings) > limit:
        raise ApiError(413, "batch_too_large", f"{len(readings)} readings; at most {limit}")
    try:
        outcome = platform.bus.handle(commands.IngestReadings(readings, "http"))
    except EnergyError as exc:
        # The platform, not the reading, is wrong (its energy accounts or tariffs): nothing
        # was written, so the meter's retry is safe once an operator has mended it.
        log.error("ALARM: ingestion cannot run: %s", exc)
        raise ApiError(503, "ingestion_unavailable", str(exc)) from exc
    return ReadingsOut.of(outcome)


@router.get(
    "/me/energy",
    response_model=EnergyOut,
    summary="Your meters' latest registers, and the energy, carbon and points credited to you",
    responses=error_responses(401, 403, 422),
)
def my_energy(
    platform: PlatformDep,
    principal: ResidentDep,
    days: Annotated[int, Query(ge=1, le=366, description="How many local days to list.")] = 7,
) -> EnergyOut:
    assert principal.resident_id is not None
    summary = queries.energy_summary(
        platform.uow(), principal.resident_id, days=days, tariff=platform.tariff
    )
    return EnergyOut.of(summary)


@router.get(
    "/energy/review",
    response_model=list[ReviewOut],
    summary="Intervals awaiting review (grid_operations staff; an organisation: related meters)",
    description="Anomalous intervals whose energy no later reading has covered (resets, jumps "
    "that persisted, registers below their high-water mark), oldest first; page with `after`.",
    responses=error_responses(401, 403, 422),
)
def review(
    platform: PlatformDep,
    principal: StaffDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_INTERVAL_ID, description="Last interval seen.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReviewOut]:
    try:
        items = platform.personal_data.awaiting_review(
            principal, Purpose.GRID_OPERATIONS, after=after, limit=limit
        )
    except ReadRefused as refused:
        raise read_refused(refused) from refused
    return [ReviewOut.of(i) for i in items]
