"""The OCPP door's side of the platform: blocking calls the WebSocket handlers run in threads.

Chargers are authenticated here (security profile 1), tokens answered, sessions recorded
through the charging capability's commands, and meter values planned into readings of the
session's chain and handed to the energy capability as `AttestedReading`s in an
`IngestAttestedReadings` (stored with source "ocpp", through the same write path as the HTTP
and MQTT doors' `IngestReadings`): the door authenticated the charger itself, so there is no
device signature to check.

Planning is shared through the database, not kept in a process: each sample time's seq and
registers are recorded under the ledger's write lock (`PlanChargingReadings`) before the
readings go to the energy capability, so two central-system processes (or a charger that
reconnects to another one mid-transaction) never give one seq to two samples, and a message
resent anywhere maps to the readings it was planned as, which the energy capability drops
as duplicates once stored. A crash between the two steps leaves the readings planned: the
charger resends the message it got no answer to, and they are stored then (should it never,
the readings after them wait beside the chain until the energy capability bridges the gap).

A charger stays admitted only while the password it presented is its current one and it is
a live charger of its operator (`admitted`); otherwise its messages raise
`ChargerRevokedError`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from cityshare.bootstrap import Platform
from cityshare.charging import commands as charging_commands
from cityshare.charging import handlers as charging
from cityshare.charging.handlers import Charger
from cityshare.charging.model import (
    CHAIN_KIND,
    ChargingError,
    OcppVersion,
    Planned,
    Sample,
    SessionRow,
    SessionStatus,
    chain_registered_at,
    id_token_digest,
)
from cityshare.energy import commands as energy_commands
from cityshare.energy.handlers import IngestOutcome
from cityshare.energy.model import Verdict
from cityshare.identity.devices import DEVICE_ID_RE

log = logging.getLogger("cityshare.charging.ocpp")

#: Readings not worth a line in the log.
_UNREMARKABLE = frozenset({Verdict.ACCEPTED, Verdict.DUPLICATE})


#: What a reading planned from a message keeps as its evidence: the message (a string), or
#: per sample time the message with that time's meter values only (every planned reading's
#: time is one of its samples' times).
Evidence: TypeAlias = str | Mapping[int, str]


class ChargerRevokedError(Exception):
    """The charger is no longer admitted (revoked, no longer its operator's, or its password
    changed since it connected): it is to be told so and disconnected."""


class HandshakeError(Exception):
    """A WebSocket handshake the door refuses: the HTTP status and why (for the log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EventResult:
    """What a transaction message is answered: the token's status (None: no token sent)."""

    status: SessionStatus | None
    session: SessionRow | None


class ChargingDoor:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    # -- the handshake ------------------------------------------------------------------------

    def authenticate(self, charger_id: str, authorization: str | None) -> Charger:
        """The charger named in the URL, if HTTP Basic auth carries its id and password."""
        if not DEVICE_ID_RE.match(charger_id):
            raise HandshakeError(404, "not a charge point id of this platform")
        if authorization is None:
            raise HandshakeError(401, "no credentials (OCPP security profile 1: HTTP Basic auth)")
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, sep, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise HandshakeError(401, "malformed Basic credentials") from None
        if scheme.lower() != "basic" or not sep:
            raise HandshakeError(401, "malformed Basic credentials")
        if user != charger_id:
            raise HandshakeError(401, "the user name is not the charge point id")
        try:
            return charging.authenticate_charger(self.platform.uow(), charger_id, password)
        except ChargingError as exc:
            # Both are 401, so a stranger cannot tell which charger ids exist; the log (which
            # only the operator reads) keeps the real reason.
            if exc.code == "unknown_charger":
                raise HandshakeError(401, "no such live charger of an operator") from exc
            raise HandshakeError(401, "wrong password") from exc

    def admitted(self, charger: Charger) -> bool:
        """Whether a connected charger still is what the handshake let in."""
        return charging.charger_admitted(self.platform.uow(), charger)

    def no_longer_admitted(self, chargers: list[Charger]) -> list[str]:
        """Which of these connected chargers the handshake would not let in now."""
        return charging.chargers_no_longer_admitted(self.platform.uow(), chargers)

    # -- tokens and transactions --------------------------------------------------------------

    def authorize(self, token: str) -> SessionStatus:
        return charging.token_status(self.platform.uow(), self.platform.pseudonym_secret, token)

    def start(
        self,
        charger: Charger,
        version: OcppVersion,
        tx_key: str,
        connector_id: int,
        token: str,
        started_ts: int,
        meter_start_wh: int | None,
    ) -> SessionRow:
        try:
            session: SessionRow = self.platform.bus.handle(
                charging_commands.StartChargingSession(
                    charger.device_id,
                    version.value,
                    tx_key,
                    connector_id,
                    token,
                    started_ts,
                    meter_start_wh,
                )
            )
        except ChargingError as exc:
            if exc.code == "unknown_charger":  # revoked, or no longer its operator's
                raise ChargerRevokedError(str(exc)) from exc
            raise
        if session.status != SessionStatus.ACCEPTED:
            log.info(
                "charger %s: transaction %s started with a token that is %s: nothing is "
                "credited for it", charger.device_id, session.id, session.status,
            )
        return session

    def session_v16(self, charger: Charger, transaction_id: int) -> SessionRow | None:
        return charging.session_at(self.platform.uow(), charger.device_id, transaction_id)

    def meter_values(
        self, charger: Charger, session: SessionRow, samples: Sequence[Sample], evidence: Evidence
    ) -> IngestOutcome | None:
        """Credit the vehicle's owner for what the samples add to the session's chain."""
        return self.ingest(session, self.plan(charger, session, samples, evidence))

    def plan(
        self, charger: Charger, session: SessionRow, samples: Sequence[Sample], evidence: Evidence
    ) -> list[energy_commands.AttestedReading]:
        """The first half of `meter_values`: the readings the samples stand for, planned and
        recorded (see the module docstring); none for a session that credits nobody."""
        if session.status != SessionStatus.ACCEPTED or session.owner_id is None or not samples:
            return []
        planned = self._plan(charger, session, samples)
        registered_at = chain_registered_at(session.started_ts)
        return [
            energy_commands.AttestedReading(
                session.chain_id,
                CHAIN_KIND,
                session.owner_id,
                registered_at,
                p.seq,
                p.ts,
                p.import_wh,
                p.export_wh,
                evidence if isinstance(evidence, str) else evidence[p.ts],
            )
            for p in planned
        ]

    def ingest(
        self, session: SessionRow, readings: Sequence[energy_commands.AttestedReading]
    ) -> IngestOutcome | None:
        """The second half of `meter_values`: hand the planned readings to the energy
        capability (one already stored is a duplicate and changes nothing)."""
        if not readings:
            return None
        outcome: IngestOutcome = self.platform.bus.handle(
            energy_commands.IngestAttestedReadings(list(readings))
        )
        odd = [r.result for r in outcome.results if r.verdict not in _UNREMARKABLE]
        if odd:
            log.info("session %d: readings %s", session.id, ", ".join(odd))
        return outcome

    def _plan(
        self, charger: Charger, session: SessionRow, samples: Sequence[Sample]
    ) -> list[Planned]:
        try:
            planned: list[Planned] = self.platform.bus.handle(
                charging_commands.PlanChargingReadings(
                    charger.device_id, charger.operator_id, charger.secret_id, session.id,
                    list(samples),
                )
            )  # fmt: skip
        except ChargingError as exc:
            if exc.code == "charger_revoked":
                raise ChargerRevokedError(str(exc)) from exc
            raise
        return planned

    def stop(
        self, charger: Charger, session: SessionRow, stopped_ts: int,
        meter_stop_wh: int | None, reason: str | None,
    ) -> None:
        self.platform.bus.handle(
            charging_commands.StopChargingSession(
                charger.device_id, session.id, stopped_ts, meter_stop_wh, reason
            )
        )

    def transaction_event(
        self,
        charger: Charger,
        tx_id: str,
        event_type: str,
        ts: int,
        token: str | None,
        connector_id: int,
        samples: Sequence[Sample],
        evidence: Evidence,
        stopped_reason: str | None,
    ) -> EventResult:
        """An OCPP 2.0.1 TransactionEvent: the first event of a transaction that names a token
        starts the session (normally `Started`); its samples feed the chain; `Ended` stops it."""
        uow = self.platform.uow
        session = charging.session_by_tx(uow(), charger.device_id, tx_id)
        if session is None:
            if token is None:
                log.info(
                    "charger %s: transaction %r has no session and names no token: nothing is "
                    "credited for it", charger.device_id, tx_id,
                )
                return EventResult(None, None)
            first = min(samples, key=lambda s: s.ts, default=None)
            meter_start = first.import_wh if first is not None else None
            started = min(ts, first.ts) if first is not None else ts
            session = self.start(
                charger, OcppVersion.V201, tx_id, connector_id, token, started, meter_start
            )
            status: SessionStatus | None = SessionStatus(session.status)
        elif token is None:
            status = None
        elif id_token_digest(self.platform.pseudonym_secret, token.upper()) == session.token_hash:
            status = SessionStatus(session.status)
        else:
            status = self.authorize(token)
        self.meter_values(charger, session, samples, evidence)
        if event_type == "Ended":
            meter_stop = next(
                (
                    s.import_wh
                    for s in sorted(samples, key=lambda s: -s.ts)
                    if s.import_wh is not None
                ),
                None,
            )
            self.stop(charger, session, ts, meter_stop, stopped_reason)
        return EventResult(status, session)
