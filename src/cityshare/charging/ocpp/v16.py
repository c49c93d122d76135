"""OCPP 1.6-J: the central system's handlers for one charger's connection.

StartTransaction opens a session (the transactionId answered is the session's id, and a
resent start gets the same one); MeterValues and StopTransaction's transactionData and
meterStop feed its chain. `meterStart`/`meterStop` are the import register (OCPP 1.6 has no
export one); the export register comes from `Energy.Active.Export.Register` samples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, RegistrationStatus

from cityshare.charging.handlers import Charger
from cityshare.charging.model import OcppVersion, Sample, SessionStatus
from cityshare.charging.ocpp.door import ChargingDoor
from cityshare.charging.ocpp.frames import OcppFrames, log, package_log
from cityshare.charging.ocpp.sessions import SampleError, parse_timestamp, samples_v16
from cityshare.ledger.model import MAX_INT

HEARTBEAT_S = 300

STATUS = {
    SessionStatus.ACCEPTED: AuthorizationStatus.accepted,
    SessionStatus.UNKNOWN: AuthorizationStatus.invalid,
    SessionStatus.BLOCKED: AuthorizationStatus.blocked,
}


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parsed(fn: Callable[[Any], Any], value: Any) -> Any:
    """`fn(value)`, a value the charger sent that cannot be read answered as a CALLERROR."""
    try:
        return fn(value)
    except SampleError as exc:
        raise PropertyConstraintViolationError(str(exc)) from exc


class CentralSystem16(OcppFrames, ChargePoint):
    version = OcppVersion.V16

    def __init__(self, charger: Charger, connection: Any, door: ChargingDoor) -> None:
        super().__init__(charger.device_id, connection, logger=package_log)
        self.charger = charger
        self.door = door

    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now_text(), interval=HEARTBEAT_S, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_text())

    @on(Action.status_notification)
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        status = await self.run(self.door.authorize, id_tag)
        return call_result.Authorize(id_tag_info={"status": STATUS[status]})

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> call_result.StartTransaction:
        ts = parsed(parse_timestamp, timestamp)
        session = await self.run(
            self.door.start, self.charger, self.version, f"{connector_id}@{ts}", connector_id,
            id_tag, ts, meter_start,
        )
        return call_result.StartTransaction(
            transaction_id=session.id, id_tag_info={"status": STATUS[SessionStatus(session.status)]}
        )

    @on(Action.meter_values)
    async def on_meter_values(
        self,
        connector_id: int,
        meter_value: Sequence[Mapping[str, Any]],
        transaction_id: int | None = None,
        **_: Any,
    ) -> call_result.MeterValues:
        samples = parsed(samples_v16, meter_value)
        if transaction_id is not None:
            await self._feed(transaction_id, samples)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        id_tag: str | None = None,
        reason: str | None = None,
        transaction_data: Sequence[Mapping[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.StopTransaction:
        ts = parsed(parse_timestamp, timestamp)
        if not 0 <= meter_stop <= MAX_INT:
            raise PropertyConstraintViolationError("meterStop is a register: 0 … 2^63-1 Wh")
        samples = [*parsed(samples_v16, transaction_data), Sample(ts, meter_stop, None)]
        session = await self._feed(transaction_id, samples)
        if session is not None:
            await self.run(self.door.stop, self.charger, session, ts, meter_stop, reason)
        if id_tag is None:
            return call_result.StopTransaction()
        status = await self.run(self.door.authorize, id_tag)
        return call_result.StopTransaction(id_tag_info={"status": STATUS[status]})

    async def _feed(self, transaction_id: int, samples: list[Sample]) -> Any:
        session = await self.run(self.door.session_v16, self.charger, transaction_id)
        if session is None:
            log.info(
                "charger %s: transaction %s is not one it started here: nothing is credited",
                self.id, transaction_id,
            )
            return None
        evidence = self.evidence(samples)
        await self.run(self.door.meter_values, self.charger, session, samples, evidence)
        return session
