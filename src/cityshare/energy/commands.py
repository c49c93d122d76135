"""Commands of energy: signed (or door-attested) meter readings, and the sweep of waiting ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class AttestedReading:
    """A reading a door measured itself, from a device it authenticated (the OCPP central
    system, from a charger's meter values): no signature to check; `evidence` (the message
    it came from, with only this reading's meter values) is stored and logged in the place of
    a JWS. Only the in-process OCPP door
    builds these; no HTTP or MQTT input can become one."""

    device_id: str  # the reading chain (an OCPP transaction's, `ocpp-...`)
    kind: str  # the device kind whose rules apply ("charger")
    owner_id: int  # the party credited (the vehicle's owner)
    registered_at: int  # ns since the epoch: readings stamped before it are anomalies
    seq: int
    ts: int
    import_wh: int
    export_wh: int
    evidence: str


@dataclass(frozen=True, slots=True)
class IngestReadings(Command):
    """Verify, deduplicate, store and credit signed meter readings (JWS strings, see
    `cityshare.energy.readings`). The HTTP and MQTT doors hand over this command: `source`
    names the door (http or mqtt). Each item gets its own result; bad items never stop good
    ones (an item that is not a JWS string is refused as malformed)."""

    readings: Sequence[str]
    source: str = "http"


@dataclass(frozen=True, slots=True)
class IngestAttestedReadings(Command):
    """Deduplicate, store and credit the readings the OCPP door attests (stored with source
    "ocpp"): the same write path and results as `IngestReadings`, with no signature to check.
    Only the in-process OCPP door sends this command; no HTTP or MQTT input can become one."""

    readings: Sequence[AttestedReading]


@dataclass(frozen=True, slots=True)
class SweepWaitingReadings(Command):
    """Join the readings that have waited out the gap horizon beside their device's chain (a
    meter that went silent after a reading was lost sends nothing that would bridge the gap),
    for at most `limit` devices per transaction, until none is overdue."""

    limit: int = 1000
