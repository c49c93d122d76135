"""The FastAPI application: `create_app(platform)` wires routers, errors and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy import text

from cityshare import __version__
from cityshare.api import openapi
from cityshare.api.body_limit import BodyLimit
from cityshare.api.deps import PlatformDep
from cityshare.api.errors import ApiError, install_error_handlers
from cityshare.billing import api as billing
from cityshare.billing.handlers import tariff_windows
from cityshare.bootstrap import Platform
from cityshare.charging import api as charging_router
from cityshare.community import api as community_router
from cityshare.energy import api as energy
from cityshare.identity import api as identity
from cityshare.identity import organisations_api as organisations
from cityshare.kernel import commands
from cityshare.ledger import api as ledger
from cityshare.ledger.schemas import Health, error_responses
from cityshare.tlog import api as log_router

log = logging.getLogger(__name__)

#: How often `serve` forgets the answers to keyed writes older than their retention.
IDEMPOTENCY_PURGE_SECONDS = 3600.0

DESCRIPTION = """
cityshare makes smart-city residents stakeholders: they earn smart credit points by sharing what
they own and spend or trade them inside the city. Every value moves through one double-entry
ledger (TigerBeetle's model): integer amounts in minor units, client-chosen transfer ids as
idempotency keys, linked chains, and two-phase (pending → post/void/expire) transfers.

Every committed record is also a leaf of an append-only Merkle log (RFC 6962/9162) published
as signed checkpoints (C2SP tlog-checkpoint) under `/api/v1/log`, so an auditor's replica can
prove the history was never rewritten.

Operations under `/api/v1` need `Authorization: Bearer <operator token>`; checkpoints, the log
key and proofs are public. Errors are JSON `{"error": {"code": "...", "message": "..."}}`.

Integers are JSON integers: a number written with a fraction or an exponent (even `1.0`) is
refused with 422, as JSON Schema cannot say. So are refusals that depend on what is stored,
on the clock, on a signature or on several fields together: each operation's description and
the error's `code` say which.
"""


async def _sweep_expired(platform: Platform) -> None:
    interval = platform.settings.expiry_sweep_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await asyncio.to_thread(
                platform.bus.handle, commands.ExpirePendingTransfers()
            )
            if expired:
                log.info("released %d expired pending transfers", expired)
        except Exception:
            log.exception("expiry sweep failed; will try again")


async def _bill_energy(platform: Platform) -> None:
    interval = platform.settings.billing_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(platform.bus.handle, commands.BillEnergy())
        except Exception:
            log.exception("billing failed; will try again")


async def _sweep_waiting_readings(platform: Platform) -> None:
    interval = platform.settings.reading_sweep_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(platform.bus.handle, commands.SweepWaitingReadings())
        except Exception:
            log.exception("sweeping waiting readings failed; will try again")


async def _purge_idempotency_keys(platform: Platform) -> None:
    # Each keyed write purges a few expired answers; this bounds how long any outlives the
    # retention when no keyed writes come.
    while True:
        await asyncio.sleep(IDEMPOTENCY_PURGE_SECONDS)
        try:
            await asyncio.to_thread(platform.bus.handle, commands.PurgeIdempotencyKeys())
        except Exception:
            log.exception("purging idempotency keys failed; will try again")


async def _settle_community(platform: Platform) -> None:
    interval = platform.settings.community_settle_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(platform.bus.handle, commands.SettleCommunityAssets())
        except Exception:
            log.exception("settling community assets failed; will try again")


def create_app(
    platform: Platform,
    *,
    sweep_expired: bool = True,
    bill_energy: bool | None = None,
    settle_community: bool | None = None,
) -> FastAPI:
    """`bill_energy` (default: as `sweep_expired`, so tests that turn background work off get
    none) bills meter intervals every `billing_seconds` (0: never)."""
    billing_on = sweep_expired if bill_energy is None else bill_energy
    billing_on = billing_on and platform.settings.billing_seconds > 0
    # Community settlement follows the same default (`community_settle_seconds`, 0: never).
    settling_on = sweep_expired if settle_community is None else settle_community
    settling_on = settling_on and platform.settings.community_settle_seconds > 0
    # And so does the sweep of meters gone silent (`reading_sweep_seconds`, 0: never).
    sweeping_on = sweep_expired and platform.settings.reading_sweep_seconds > 0

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweep_expired(platform)) if sweep_expired else None
        biller = asyncio.create_task(_bill_energy(platform)) if billing_on else None
        settler = asyncio.create_task(_settle_community(platform)) if settling_on else None
        sweeper = (
            asyncio.create_task(_sweep_waiting_readings(platform)) if sweeping_on else None
        )
        purger = asyncio.create_task(_purge_idempotency_keys(platform)) if sweep_expired else None
        try:
            yield
        finally:
            for running in (task, biller, settler, sweeper, purger):
                if running is not None:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running

    app = FastAPI(
        title="cityshare",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    # Bodies are counted as they arrive, chunked or not: a full batch of the largest transfers is
    # well under 1 KiB per item.
    app.add_middleware(BodyLimit, limit=platform.settings.max_batch * 1024 + 4096)

    app.include_router(ledger.router)
    app.include_router(log_router.router)
    app.include_router(identity.router)
    app.include_router(energy.router)
    app.include_router(organisations.router)
    app.include_router(community_router.router)
    app.include_router(billing.router)
    app.include_router(charging_router.router)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        summary="Liveness and database",
        responses=error_responses(503),
    )
    def healthz(platform: PlatformDep) -> Health:
        try:
            with platform.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise ApiError(503, "database_unavailable", "the database does not answer") from exc
        return Health(status="ok", version=__version__, database=platform.engine.dialect.name)

    openapi.install(app, price_windows=tariff_windows(platform.tariff))
    return app
