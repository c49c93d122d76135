"""Energy: signed meter readings from every door, credited to residents' wallets."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.energy import checks, commands, handlers, records
from cityshare.energy.model import EnergyStore
from cityshare.energy.repo import EnergyRepository
from cityshare.kernel.capability import Capability, CommandHandler, Job, LoggedRecord

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_energy(conn: Connection, sealer: Sealer | None) -> EnergyStore:
    """Energy's store on a transaction; typed as the protocol its handlers see, so mypy checks
    here that `EnergyRepository` satisfies `EnergyStore`."""
    return EnergyRepository(conn)


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    return {
        commands.IngestReadings: functools.partial(
            handlers.ingest_readings, verifier=platform.reading_verifier, tariff=platform.tariff
        ),
        commands.IngestAttestedReadings: functools.partial(
            handlers.ingest_attested_readings, tariff=platform.tariff
        ),
        commands.SweepWaitingReadings: functools.partial(
            handlers.sweep_waiting_readings, tariff=platform.tariff
        ),
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.energy.api import router

    return [router]


def _cli() -> Sequence[tuple[str, typer.Typer]]:
    from cityshare.energy.cli import app as energy
    from cityshare.energy.device_cli import app as device
    from cityshare.energy.mqtt_cli import app as ingest

    return [("device", device), ("ingest", ingest), ("energy", energy)]


CAPABILITY = Capability(
    "energy",
    repositories={"energy": _open_energy},
    handlers=_handlers,
    records=[
        LoggedRecord(records.TARIFF.type, "tariffs", records.TARIFF.of_mapping),
        LoggedRecord(
            records.METER_READING.type, "meter_readings", records.METER_READING.of_mapping
        ),
        LoggedRecord(
            records.METER_INTERVAL.type, "meter_intervals", records.METER_INTERVAL.of_mapping
        ),
    ],
    # The credits of ok intervals, and the devices marked for the sweep, derived from the
    # readings and chains.
    checks=[checks.derived_problems],
    routers=_routers,
    cli=_cli,
    jobs=[
        # Meters gone silent after a lost reading send nothing that would bridge the gap.
        Job(
            "sweep-waiting-readings",
            lambda s: s.reading_sweep_seconds,
            commands.SweepWaitingReadings,
        )
    ],
)
