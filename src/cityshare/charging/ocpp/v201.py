"""OCPP 2.0.1: the central system's handlers for one charger's connection.

A TransactionEvent's `transactionId` is the charger's; the first event of a transaction that
names an IdToken (normally `Started`) opens the session, every event's `meterValue` feeds its
chain, and `Ended` stops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import (
    Action,
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    RegistrationStatusEnumType,
)

from cityshare.charging.handlers import Charger
from cityshare.charging.model import OcppVersion, SessionStatus
from cityshare.charging.ocpp.door import ChargingDoor
from cityshare.charging.ocpp.frames import OcppFrames, package_log
from cityshare.charging.ocpp.sessions import parse_timestamp, samples_v201
from cityshare.charging.ocpp.v16 import HEARTBEAT_S, now_text, parsed

STATUS = {
    SessionStatus.ACCEPTED: AuthorizationStatusEnumType.accepted,
    SessionStatus.UNKNOWN: AuthorizationStatusEnumType.unknown,
    SessionStatus.BLOCKED: AuthorizationStatusEnumType.blocked,
}


class CentralSystem201(OcppFrames, ChargePoint):
    version = OcppVersion.V201

    def __init__(self, charger: Charger, connection: Any, door: ChargingDoor) -> None:
        super().__init__(charger.device_id, connection, logger=package_log)
        self.charger = charger
        self.door = door

    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=now_text(),
            interval=HEARTBEAT_S,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=now_text())

    @on(Action.status_notification)
    async def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)

    @on(Action.meter_values)
    async def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        # Meter values outside a transaction name no vehicle: nothing to credit.
        return call_result.MeterValues()

    @on(Action.authorize)
    async def on_authorize(self, id_token: Mapping[str, Any], **_: Any) -> call_result.Authorize:
        status = await self.run(self.door.authorize, id_token["id_token"])
        return call_result.Authorize(id_token_info={"status": STATUS[status]})

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        transaction_info: Mapping[str, Any],
        meter_value: Sequence[Mapping[str, Any]] | None = None,
        id_token: Mapping[str, Any] | None = None,
        evse: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> call_result.TransactionEvent:
        ts = parsed(parse_timestamp, timestamp)
        samples = parsed(samples_v201, meter_value)
        evse = evse or {}
        result = await self.run(
            self.door.transaction_event,
            self.charger,
            transaction_info["transaction_id"],
            event_type,
            ts,
            id_token["id_token"] if id_token is not None else None,
            int(evse.get("connector_id", evse.get("id", 0))),
            samples,
            self.evidence(samples),
            transaction_info.get("stopped_reason"),
        )
        if result.status is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info={"status": STATUS[result.status]})
