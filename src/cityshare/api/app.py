"""The FastAPI application: `create_app(platform)` wires routers, errors and background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from cityshare import __version__
from cityshare.api import openapi
from cityshare.api.body_limit import BodyLimit
from cityshare.api.deps import PlatformDep
from cityshare.api.errors import ApiError, install_error_handlers
from cityshare.api.responses import Health, error_responses
from cityshare.bootstrap import Platform
from cityshare.capabilities import CAPABILITIES
from cityshare.kernel.db import ping
from cityshare.kernel.errors import StoreUnavailable

log = logging.getLogger(__name__)

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


def create_app(platform: Platform, *, run_jobs: bool = True) -> FastAPI:
    """The API of every capability. `run_jobs` (tests turn it off) runs the capabilities'
    periodic jobs while the app serves: the platform's scheduler (`kernel/scheduler.py`) in a
    thread of its own, which acts only while it holds the database lease, so `serve` and
    `cityshare worker` processes on one database never both run them."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        worker: threading.Thread | None = None
        if run_jobs:
            worker = threading.Thread(
                target=platform.scheduler().run, args=(stop,), name="scheduler", daemon=True
            )
            worker.start()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:  # it finishes the job under way and gives the lease up
                await asyncio.to_thread(worker.join)

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

    for capability in CAPABILITIES:
        for router in capability.routers():
            app.include_router(router)

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["health"],
        summary="Liveness and database",
        responses=error_responses(503),
    )
    def healthz(platform: PlatformDep) -> Health:
        try:
            ping(platform.engine)
        except StoreUnavailable as exc:
            raise ApiError(503, "database_unavailable", "the database does not answer") from exc
        return Health(status="ok", version=__version__, database=platform.engine.dialect.name)

    def amend(spec: dict[str, Any]) -> None:
        for capability in CAPABILITIES:
            capability.openapi(platform, spec)

    openapi.install(app, amend=amend)
    return app
