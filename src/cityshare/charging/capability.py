"""Charging (OCPP): charger passwords, vehicles' id tokens, sessions, and the OCPP door."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.charging import checks, commands, handlers, records
from cityshare.charging.model import ChargingStore
from cityshare.charging.repo import ChargingRepository
from cityshare.kernel.capability import Capability, CommandHandler

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_charging(conn: Connection, sealer: Sealer | None) -> ChargingStore:
    """Charging's store on a transaction; typed as the protocol its handlers see, so mypy
    checks here that `ChargingRepository` satisfies `ChargingStore`."""
    return ChargingRepository(conn, sealer)


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    secret = platform.pseudonym_secret
    return {
        commands.SetChargerPassword: handlers.set_charger_password,
        commands.RegisterIdToken: functools.partial(handlers.register_id_token, secret=secret),
        commands.RemoveIdToken: handlers.remove_id_token,
        commands.StartChargingSession: functools.partial(
            handlers.start_charging_session, secret=secret
        ),
        commands.StopChargingSession: handlers.stop_charging_session,
        commands.PlanChargingReadings: handlers.plan_readings,
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.charging.api import router

    return [router]


def _cli() -> Sequence[tuple[str, typer.Typer]]:
    from cityshare.charging.cli import app

    return [("ocpp", app)]


CAPABILITY = Capability(
    "charging",
    repositories={"charging": _open_charging},
    handlers=_handlers,
    records=records.RECORDS,
    # The samples it planned, checked against the readings stored for them and the plan's
    # own shape.
    checks=[checks.planned_reading_problems, checks.planned_chain_problems],
    routers=_routers,
    cli=_cli,
)
