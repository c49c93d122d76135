"""Charging capability (OCPP): charger passwords, vehicles' id tokens, charging sessions.

The OCPP door (`cityshare.charging.ocpp`) authenticates chargers and asks here whether a token
may charge, records each transaction's start and stop, and hands the meter values it turns
into readings to the energy capability as the same `IngestReadings` every door uses; the
energy capability credits the vehicle's owner. What a charging-station operator sees of a
vehicle is a pseudonym keyed to that operator (`identity.devices.counterparty_pseudonym`).

Every fact written here is a leaf of the audit log in the same transaction (`records.py`: its
codecs re-encode the stored rows for `cityshare audit verify`); a charger's password hash is
stored but never logged (the log records only that a password was set): its row is sealed
with the platform's seal key instead (kernel/seals.py), and a row whose seal fails admits no
charger (`authenticate_charger`, `charger_admitted`). Nor are the readings planned for a
session's chain logged (`plan_readings`: bookkeeping of the sequence numbers given out; the
readings they become are logged by the energy capability).

A charger is let in for the password it presented (`Charger.secret_id`): once it is revoked,
leaves its operator or its operator sets another password, `charger_admitted` says so and
`plan_readings` refuses its meter values (`charger_revoked`), so nothing it sends afterwards
is credited, whichever connection or process it arrives on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.charging import commands, records
from cityshare.charging.model import (
    ChainTotals,
    ChargerSecretRow,
    ChargingError,
    IdTokenRow,
    OcppVersion,
    Planned,
    Progress,
    SessionRow,
    SessionStatus,
    StopRow,
    chain_id,
    check_password,
    hash_password,
    id_token_digest,
    normalise_id_token,
    plan,
    verify_password,
)
from cityshare.charging.uow import ChargingUnitOfWork
from cityshare.identity.devices import DeviceKind, counterparty_pseudonym
from cityshare.identity.model import DeviceRow
from cityshare.identity.organisations import OrgKind, is_organisation
from cityshare.ledger.model import MAX_INT

MAX_TOKENS_PER_VEHICLE = 16

# -- command handlers ------------------------------------------------------------------------


def set_charger_password(
    cmd: commands.SetChargerPassword, uow: ChargingUnitOfWork
) -> ChargerSecretRow:
    """Record a new password for the operator's charger (the previous one stops working).
    The returned row's hash is not for display."""
    check_password(cmd.password)
    secret_hash = hash_password(cmd.password)  # ~50 ms of scrypt: before taking the lock
    with uow:
        uow.ledger.lock_ledger()
        device = _device(uow, cmd.org_id, cmd.device_id)
        _check_charger(uow, device)
        row = ChargerSecretRow(
            uow.charging.next_secret_id(), device.id, secret_hash, uow.clock.now_ns()
        )
        uow.charging.insert_secret(row)
        uow.log.append([records.CHARGER_SECRET.of(row)])
        uow.commit()
    return row


def register_id_token(
    cmd: commands.RegisterIdToken, uow: ChargingUnitOfWork, *, secret: bytes
) -> IdTokenRow:
    """Register a token for the owner's vehicle; registering it again changes nothing, and a
    token another vehicle holds is refused (a token names one vehicle)."""
    digest = id_token_digest(secret, normalise_id_token(cmd.id_token))
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.charging
        device = _device(uow, cmd.owner_id, cmd.device_id)
        if device.kind != DeviceKind.VEHICLE:
            raise ChargingError("not_a_vehicle", "id tokens are registered for vehicles")
        if not any(k.live for k in uow.identity.keys_of([device.id])):
            raise ChargingError("device_revoked", "the vehicle is revoked")
        held = repo.live_token(digest)
        if held is not None:
            if held.device_id == device.id:
                return held
            raise ChargingError("token_in_use", "this id token is registered for another vehicle")
        if sum(t.live for t in repo.tokens_of(device.id)) >= MAX_TOKENS_PER_VEHICLE:
            raise ChargingError(
                "too_many_tokens", f"a vehicle has at most {MAX_TOKENS_PER_VEHICLE} id tokens"
            )
        row = IdTokenRow(repo.next_token_id(), device.id, digest, uow.clock.now_ns())
        repo.insert_token(row)
        uow.log.append([records.ID_TOKEN.of(row)])
        uow.commit()
    return row


def remove_id_token(cmd: commands.RemoveIdToken, uow: ChargingUnitOfWork) -> IdTokenRow:
    """Remove a registration (removing it again changes nothing)."""
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.charging
        _device(uow, cmd.owner_id, cmd.device_id)
        token = repo.token(cmd.token_id)
        if token is None or token.device_id != cmd.device_id:
            raise ChargingError("not_found", "no such id token")
        if not token.live:
            return token
        now = uow.clock.now_ns()
        repo.remove_token(token.id, now)
        uow.log.append([records.ID_TOKEN_REMOVED.of_mapping({"id": token.id, "removed_at": now})])
        uow.commit()
    return IdTokenRow(token.id, token.device_id, token.token_hash, token.added_at, now)


def start_charging_session(
    cmd: commands.StartChargingSession, uow: ChargingUnitOfWork, *, secret: bytes
) -> SessionRow:
    """Record a transaction's start and whom it credits: the owner of the live vehicle the
    token is registered for, or nobody (status unknown or blocked). Once per (charger,
    tx_key): a resent start returns the session recorded the first time."""
    version = OcppVersion(cmd.ocpp_version)
    if not 0 < len(cmd.tx_key) <= 100:
        raise ChargingError("invalid_transaction", "a transaction key is 1-100 characters")
    if not _storable(cmd.started_ts, cmd.meter_start_wh):
        raise ChargingError("invalid_transaction", "times and registers are 0 … 2^63-1")
    if not 0 <= cmd.connector_id <= MAX_CONNECTOR:
        raise ChargingError("invalid_transaction", "a connector (EVSE) id is 0 … 2^31-1")
    digest = id_token_digest(secret, cmd.id_token.upper())
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.charging
        existing = repo.session_by_tx(cmd.charger_id, cmd.tx_key)
        if existing is not None:
            return existing
        charger = uow.identity.device(cmd.charger_id)
        if charger is None or not _is_operator_charger(uow, charger):
            raise ChargingError("unknown_charger", "no such charger")
        status, vehicle = _token_status(uow, digest)
        row = SessionRow(
            repo.next_session_id(), charger.id, charger.owner_id, version.value, cmd.tx_key,
            cmd.connector_id, digest, status.value, vehicle.id if vehicle else None,
            vehicle.owner_id if vehicle else None, chain_id(charger.id, cmd.tx_key),
            cmd.started_ts, cmd.meter_start_wh, uow.clock.now_ns(),
        )
        repo.insert_session(row)
        uow.log.append([records.SESSION.of(row)])
        uow.commit()
    return row


#: The largest connector (EVSE) id stored (a 32-bit column).
MAX_CONNECTOR = (1 << 31) - 1


def _storable(*values: int | None) -> bool:
    """Times and registers the database can hold: 0 … 2^63-1 (None: not given)."""
    return all(v is None or 0 <= v <= MAX_INT for v in values)


def stop_charging_session(cmd: commands.StopChargingSession, uow: ChargingUnitOfWork) -> StopRow:
    """Record a transaction's end (once: a resent stop returns the first one)."""
    if not _storable(cmd.stopped_ts, cmd.meter_stop_wh):
        raise ChargingError("invalid_transaction", "times and registers are 0 … 2^63-1")
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.charging
        session = repo.session(cmd.session_id)
        if session is None or session.charger_id != cmd.charger_id:
            raise ChargingError("not_found", "no such transaction at this charger")
        existing = repo.stop(session.id)
        if existing is not None:
            return existing
        reason = cmd.reason[:32] if cmd.reason else None
        row = StopRow(session.id, cmd.stopped_ts, cmd.meter_stop_wh, reason, uow.clock.now_ns())
        repo.insert_stop(row)
        uow.log.append([records.STOP.of(row)])
        uow.commit()
    return row


def plan_readings(cmd: commands.PlanChargingReadings, uow: ChargingUnitOfWork) -> list[Planned]:
    """The readings of the session's chain that `cmd.samples` (one message's) stand for and
    that are not stored yet. A sample time planned before keeps the seq and registers it was
    given (whichever process planned it: a resend, or one message seen on two connections, maps
    to the same reading); newer ones are planned after the chain's newest
    (`charging.model.plan`) and recorded. All of it under the ledger's write lock, so two
    processes never give one seq to two samples. The caller hands them to the energy
    capability, which drops any stored meanwhile as duplicates. Refused (`charger_revoked`)
    once the charger is no longer admitted (see the module docstring)."""
    charger = Charger(cmd.charger_id, cmd.operator_id, cmd.secret_id)
    samples = cmd.samples
    with uow:
        uow.ledger.lock_ledger()
        if not _admitted(uow, charger):
            raise ChargingError("charger_revoked", "the charger is no longer admitted")
        repo = uow.charging
        session = repo.session(cmd.session_id)
        if session is None or session.charger_id != charger.device_id:
            raise ChargingError("not_found", "no such transaction at this charger")
        chain = session.chain_id
        newest = repo.newest_planned(chain)
        top = (newest.seq, newest.ts, newest.import_wh, newest.export_wh) if newest else None
        # A chain with readings from before planned readings were recorded (revision 0012)
        # carries on from its newest stored reading.
        stored = uow.energy.latest_readings([chain]).get(chain)
        if stored is not None and (top is None or stored[0] > top[0]):
            top = stored
        known = repo.planned_at(chain, {s.ts for s in samples})
        new = plan(Progress.after(top, session.meter_start_wh), samples)
        wanted = [*known, *new]
        have = uow.energy.existing_readings({(chain, p.seq) for p in wanted})
        if new:
            repo.insert_planned(chain, new)
            uow.commit()
    return [p for p in wanted if (chain, p.seq) not in have]


def _device(uow: ChargingUnitOfWork, owner_id: int, device_id: str) -> DeviceRow:
    device = uow.identity.device(device_id)
    if device is None or device.owner_id != owner_id:  # someone else's device is not found
        raise ChargingError("not_found", "no such device")
    return device


def _check_charger(uow: ChargingUnitOfWork, device: DeviceRow) -> None:
    if device.kind != DeviceKind.CHARGER:
        raise ChargingError("not_a_charger", "OCPP passwords are set for chargers")
    org = uow.identity.organisation(device.owner_id) if is_organisation(device.owner_id) else None
    if org is None or org.kind != OrgKind.OPERATOR:
        raise ChargingError("not_an_operator", "chargers of the OCPP door belong to an operator")
    if not any(k.live for k in uow.identity.keys_of([device.id])):
        raise ChargingError("device_revoked", "the charger is revoked")


def _is_operator_charger(uow: ChargingUnitOfWork, device: DeviceRow) -> bool:
    try:
        _check_charger(uow, device)
    except ChargingError:
        return False
    return True


def _token_status(uow: ChargingUnitOfWork, digest: str) -> tuple[SessionStatus, DeviceRow | None]:
    token = uow.charging.live_token(digest)
    vehicle = uow.identity.device(token.device_id) if token is not None else None
    if vehicle is None:
        return SessionStatus.UNKNOWN, None
    if not any(k.live for k in uow.identity.keys_of([vehicle.id])):
        return SessionStatus.BLOCKED, None
    return SessionStatus.ACCEPTED, vehicle


# -- queries (read side) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charger:
    """A charger the OCPP door let in, and the password (`charger_secrets` row) it presented."""

    device_id: str
    operator_id: int
    secret_id: int


def authenticate_charger(uow: ChargingUnitOfWork, charger_id: str, password: str) -> Charger:
    """The charger, if it is a live charger of an operator and `password` is its current
    one; else ChargingError `unknown_charger` (no such live charger) or `bad_password`."""
    with uow:
        device = uow.identity.device(charger_id)
        if device is None or not _is_operator_charger(uow, device):
            raise ChargingError("unknown_charger", "no such charger")
        secret = uow.charging.current_secret(charger_id)
    if secret is None or not verify_password(password, secret.secret_hash):
        raise ChargingError("bad_password", "wrong or unset charger password")
    return Charger(device.id, device.owner_id, secret.id)


def charger_admitted(uow: ChargingUnitOfWork, charger: Charger) -> bool:
    """Whether a charger let in earlier would still be: a live charger of the same operator,
    whose current password is the one it presented."""
    with uow:
        return _admitted(uow, charger)


def chargers_no_longer_admitted(uow: ChargingUnitOfWork, chargers: list[Charger]) -> list[str]:
    """The ids of those of `chargers` (connected earlier) that would not be let in now, in one
    read transaction."""
    with uow:
        return [c.device_id for c in chargers if not _admitted(uow, c)]


def _admitted(uow: ChargingUnitOfWork, charger: Charger) -> bool:
    device = uow.identity.device(charger.device_id)
    if device is None or device.owner_id != charger.operator_id:
        return False
    if not _is_operator_charger(uow, device):
        return False
    secret = uow.charging.current_secret(charger.device_id)
    return secret is not None and secret.id == charger.secret_id


def token_status(uow: ChargingUnitOfWork, secret: bytes, token: str) -> SessionStatus:
    """What an Authorize with this token is answered (nothing is recorded)."""
    with uow:
        return _token_status(uow, id_token_digest(secret, token.upper()))[0]


def session_by_tx(uow: ChargingUnitOfWork, charger_id: str, tx_key: str) -> SessionRow | None:
    with uow:
        return uow.charging.session_by_tx(charger_id, tx_key)


def session_at(uow: ChargingUnitOfWork, charger_id: str, session_id: int) -> SessionRow | None:
    if not 0 < session_id <= MAX_INT:
        return None  # no session has such an id (and the database could not even look)
    with uow:
        found = uow.charging.session(session_id)
    return found if found is not None and found.charger_id == charger_id else None


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as one reader may see it: `vehicle` is whatever names the vehicle for them
    (a pseudonym for the operator, the device id for its owner)."""

    session: SessionRow
    stop: StopRow | None
    totals: ChainTotals
    vehicle: str | None


def operator_sessions(
    uow: ChargingUnitOfWork, org_id: int, secret: bytes, *, after: int = 0, limit: int = 100
) -> list[SessionView]:
    """An operator's sessions; the vehicle only as the operator's own pseudonym of it."""
    with uow:
        rows = uow.charging.sessions(operator_id=org_id, after=after, limit=limit)
    counterparty = f"org:{org_id}"
    return [
        SessionView(
            s,
            stop,
            totals,
            counterparty_pseudonym(secret, s.vehicle_id, counterparty) if s.vehicle_id else None,
        )
        for s, stop, totals in rows
    ]


def owner_sessions(
    uow: ChargingUnitOfWork, owner_id: int, *, after: int = 0, limit: int = 100
) -> list[SessionView]:
    """The sessions that credited a vehicle owner, with what each credited."""
    with uow:
        rows = uow.charging.sessions(owner_id=owner_id, after=after, limit=limit)
    return [SessionView(s, stop, totals, s.vehicle_id) for s, stop, totals in rows]


def vehicle_tokens(uow: ChargingUnitOfWork, owner_id: int, device_id: str) -> list[IdTokenRow]:
    with uow:
        device = _device(uow, owner_id, device_id)
        if device.kind != DeviceKind.VEHICLE:
            raise ChargingError("not_a_vehicle", "id tokens are registered for vehicles")
        return uow.charging.tokens_of(device_id)
