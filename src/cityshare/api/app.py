"""The FastAPI application: `create_app(platform)` wires routers, errors and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy import text

from cityshare import __version__
from cityshare.api.deps import PlatformDep
from cityshare.api.errors import ApiError, install_error_handlers
from cityshare.api.routers import ledger
from cityshare.api.schemas import Health
from cityshare.bootstrap import Platform
from cityshare.domain import commands

log = logging.getLogger(__name__)

DESCRIPTION = """
cityshare makes smart-city residents stakeholders: they earn smart credit points by sharing what
they own and spend or trade them inside the city. Every value moves through one double-entry
ledger (TigerBeetle's model): integer amounts in minor units, client-chosen transfer ids as
idempotency keys, linked chains, and two-phase (pending → post/void/expire) transfers.

Operations under `/api/v1` need `Authorization: Bearer <operator token>`. Errors are JSON
`{"error": {"code": "...", "message": "..."}}`.
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


def create_app(platform: Platform, *, sweep_expired: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweep_expired(platform)) if sweep_expired else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="cityshare",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    app.include_router(ledger.router)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness and database")
    def healthz(platform: PlatformDep) -> Health:
        try:
            with platform.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise ApiError(503, "database_unavailable", "the database does not answer") from exc
        return Health(status="ok", version=__version__, database=platform.engine.dialect.name)

    return app
