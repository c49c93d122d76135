"""Commands of charging (OCPP): charger passwords, vehicles' id tokens, sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.charging.model import Sample
from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class SetChargerPassword(Command):
    """Set the password a charger of `org_id` logs in to the OCPP central system with."""

    org_id: int
    device_id: str
    password: str


@dataclass(frozen=True, slots=True)
class RegisterIdToken(Command):
    """A vehicle's owner registers the id token (OCPP idTag / IdToken) it presents."""

    owner_id: int
    device_id: str
    id_token: str


@dataclass(frozen=True, slots=True)
class RemoveIdToken(Command):
    owner_id: int
    device_id: str
    token_id: int


@dataclass(frozen=True, slots=True)
class StartChargingSession(Command):
    """A charger started a transaction: record who it credits (once per `tx_key`; a resent
    start returns the session already recorded)."""

    charger_id: str
    ocpp_version: str
    tx_key: str
    connector_id: int
    id_token: str
    started_ts: int
    meter_start_wh: int | None = None


@dataclass(frozen=True, slots=True)
class StopChargingSession(Command):
    """A charger ended a transaction (recorded once; a resent stop changes nothing)."""

    charger_id: str
    session_id: int
    stopped_ts: int
    meter_stop_wh: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlanChargingReadings(Command):
    """Give the samples of one OCPP message of a session their readings (sequence numbers in
    the session's chain, recorded so that every process maps a sample to the same reading);
    refused while the charger, as it was admitted (its operator and the password it
    presented, `charger_secrets` row `secret_id`), is admitted no longer."""

    charger_id: str
    operator_id: int
    secret_id: int
    session_id: int
    samples: Sequence[Sample]
