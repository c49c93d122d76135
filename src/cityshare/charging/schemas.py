"""Bodies of the charging API: charger passwords, vehicles' id tokens, charging sessions."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from cityshare.api.responses import Strict
from cityshare.charging.handlers import SessionView
from cityshare.charging.model import (
    ID_TOKEN_RE,
    PASSWORD_RE,
    ChargerSecretRow,
    IdTokenRow,
    OcppVersion,
)
from cityshare.identity.schemas import iso


def _utc(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


class ChargerPasswordIn(Strict):
    password: str = Field(
        min_length=16,
        max_length=40,
        pattern=PASSWORD_RE.pattern,
        description="The charger's OCPP password (security profile 1: HTTP Basic auth with the "
        "charge point id as user name): 16-40 printable ASCII characters. Only a salted hash "
        "is kept; setting a new one replaces the old.",
    )


class ChargerPasswordOut(BaseModel):
    device_id: str
    set_at: str = Field(description="When the password was set (UTC).")

    @classmethod
    def of(cls, row: ChargerSecretRow) -> ChargerPasswordOut:
        return cls(device_id=row.device_id, set_at=iso(row.set_at))


class IdTokenIn(Strict):
    id_token: str = Field(
        min_length=1,
        max_length=36,
        pattern=ID_TOKEN_RE.pattern,
        description="The token the vehicle presents at chargers (an OCPP 1.6 idTag or 2.0.1 "
        "IdToken, e.g. an RFID card's UID), case-insensitive. Only a keyed hash is kept.",
    )


class IdTokenOut(BaseModel):
    id: int
    device_id: str
    added_at: str
    removed_at: str | None = None

    @classmethod
    def of(cls, row: IdTokenRow) -> IdTokenOut:
        return cls(
            id=row.id,
            device_id=row.device_id,
            added_at=iso(row.added_at),
            removed_at=iso(row.removed_at) if row.removed_at is not None else None,
        )


class SessionOut(BaseModel):
    session_id: int
    charger_id: str
    connector_id: int
    ocpp_version: str
    started_at: str = Field(description="The charger's start time (UTC).")
    stopped_at: str | None = Field(None, description="The charger's stop time, once stopped.")
    stop_reason: str | None = None
    exported_wh: int = Field(description="Energy the vehicle gave the grid (credited intervals).")
    imported_wh: int = Field(description="Energy the vehicle took (credited intervals).")


class OperatorSessionOut(SessionOut):
    """A session at one of the operator's chargers. The vehicle is only the operator's own
    pseudonym of it: stable across the operator's sessions, unlinkable by anyone else."""

    transaction_id: str = Field(description="The OCPP transactionId.")
    status: str = Field(description="accepted, unknown or blocked (the token's answer).")
    vehicle: str | None = Field(
        None, description="The vehicle's pseudonym for this operator (accepted sessions)."
    )

    @classmethod
    def of(cls, view: SessionView) -> OperatorSessionOut:
        s, stop = view.session, view.stop
        tx = str(s.id) if s.ocpp_version == OcppVersion.V16 else s.tx_key
        return cls(
            session_id=s.id,
            charger_id=s.charger_id,
            connector_id=s.connector_id,
            ocpp_version=s.ocpp_version,
            transaction_id=tx,
            status=s.status,
            vehicle=view.vehicle,
            started_at=_utc(s.started_ts) or "",
            stopped_at=_utc(stop.stopped_ts) if stop else None,
            stop_reason=stop.reason if stop else None,
            exported_wh=view.totals.export_wh,
            imported_wh=view.totals.import_wh,
        )


class OwnerSessionOut(SessionOut):
    """A session that credited you, with what it credited."""

    vehicle_id: str
    operator_id: int
    carbon_g: int = Field(description="Grams CO2e credited to your CARBON wallet.")
    credit_milli: int = Field(description="Smart credit milli-points credited (1000 = 1 point).")

    @classmethod
    def of(cls, view: SessionView) -> OwnerSessionOut:
        s, stop = view.session, view.stop
        return cls(
            session_id=s.id,
            charger_id=s.charger_id,
            connector_id=s.connector_id,
            ocpp_version=s.ocpp_version,
            vehicle_id=s.vehicle_id or "",
            operator_id=s.operator_id,
            started_at=_utc(s.started_ts) or "",
            stopped_at=_utc(stop.stopped_ts) if stop else None,
            stop_reason=stop.reason if stop else None,
            exported_wh=view.totals.export_wh,
            imported_wh=view.totals.import_wh,
            carbon_g=view.totals.carbon_g,
            credit_milli=view.totals.credit_milli,
        )
