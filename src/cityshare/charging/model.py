"""EV charging (OCPP): the rules for vehicle tokens, charger passwords and session ids (pure).

- A vehicle's owner registers the **id token** the vehicle presents at a charger (an OCPP 1.6
  `idTag` or a 2.0.1 `IdToken`, e.g. an RFID card's UID or an ISO 15118 contract id). OCPP
  compares tokens case-insensitively (`CiString`), so a token is normalised to upper case and
  the platform keeps only a keyed hash of it (HMAC-SHA256 with the platform's pseudonym
  secret): a copied database does not reveal the tokens, nor lets one link them to a card.
- A charger authenticates with **OCPP security profile 1**: HTTP Basic auth on the WebSocket
  handshake, user name = the charge point id, password = a secret its operator sets. Only a
  salted scrypt hash of the password is stored.
- Each accepted transaction is its own reading **chain** (`chain_id`) of the energy
  capability: a short, stable id of (charger, transaction) that fits a device id column.
  Its readings carry the charger's cumulative registers at the charger's sample times:
  `export_wh` from `Energy.Active.Export.Register` (the vehicle discharging: V2G), and
  `import_wh` from `Energy.Active.Import.Register` (the measurand OCPP assumes when none is
  named), tracked only when the transaction's start told it (1.6 `meterStart`, or a 2.0.1
  start event's sample); otherwise it stays 0, so a register first seen mid-session is never
  taken for energy drawn in one interval.
- **Planning** (`plan`): seq 0 is the first moment the export register is known (a 2.0.1
  start event's sample, else the first sample that has it); each later sample time is the
  next seq. A register a sample leaves out keeps its last value. A sample not newer than the
  newest one planned (a message resent after a reconnect, or one that arrived late) is
  dropped here, before it is a reading: the registers are cumulative, so the interval that
  covers it credits its energy all the same. The central system records each planned reading
  (`charging_chain_seqs`, under the ledger's write lock) before it hands it to the energy
  capability, so a sample time keeps its seq and registers whichever process sees it, and
  again when its message is resent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cityshare.identity.devices import DeviceKind

#: The characters OCPP 2.0.1 allows in an identifierString (1.6 idTags are a subset in use).
ID_TOKEN_RE = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,36}$")
#: OCPP security profile 1 (BasicAuthPassword / AuthorizationKey): 16 to 40 printable ASCII.
PASSWORD_RE = re.compile(r"^[\x21-\x7e]{16,40}$")

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


class ChargingError(ValueError):
    """A charging request that cannot be accepted; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SessionStatus(StrEnum):
    """What the central system answered when the transaction started."""

    ACCEPTED = "accepted"  # a registered token of a live vehicle: its owner is credited
    UNKNOWN = "unknown"  # no such token registered: nothing is credited
    BLOCKED = "blocked"  # the token's vehicle was revoked: nothing is credited


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"


def normalise_id_token(token: str) -> str:
    if not ID_TOKEN_RE.match(token):
        raise ChargingError(
            "invalid_id_token", "an id token is 1-36 letters, digits and * - _ = : + | @ ."
        )
    return token.upper()


def id_token_digest(secret: bytes, token: str) -> str:
    """The keyed hash the platform stores and looks a token up by (hex, 64 characters).

    `token` must already be normalised; a token OCPP could not carry has no digest."""
    return hmac.new(secret, b"ocpp-id-token/v1\x00" + token.encode(), hashlib.sha256).hexdigest()


def check_password(password: str) -> None:
    if not PASSWORD_RE.match(password):
        raise ChargingError(
            "invalid_password", "a charger password is 16 to 40 printable ASCII characters"
        )


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64), for `verify_password`."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got, want)


def chain_id(charger_id: str, transaction_key: str) -> str:
    """The reading chain of one transaction: `ocpp-` and 24 base32 characters (29 in all)."""
    digest = hashlib.sha256(f"ocpp-chain/v1\x00{charger_id}\x00{transaction_key}".encode())
    return "ocpp-" + base64.b32encode(digest.digest()[:15]).decode().lower()


#: The device kind whose rules (most power, carbon factor) apply to a transaction's chain.
CHAIN_KIND = DeviceKind.CHARGER.value


def chain_registered_at(started_ts: int) -> int:
    """When a transaction's chain counts as registered (ns since the epoch): the session's
    start (seconds), so a reading stamped before it is an anomaly."""
    return started_ts * 1_000_000_000


# -- how a session's meter values become readings of its chain --------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The registers a charger reported at one instant (None: not in this sample)."""

    ts: int
    import_wh: int | None = None
    export_wh: int | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    """A reading of a session's chain: its seq, the charger's sample time and registers."""

    seq: int
    ts: int
    import_wh: int
    export_wh: int


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a session's chain stands: its next seq, its newest reading's timestamp and
    registers (None before its first reading), and whether it tracks the import register."""

    next_seq: int
    last_ts: int | None
    import_wh: int | None
    export_wh: int | None
    tracks_import: bool

    @classmethod
    def start(cls, meter_start_wh: int | None) -> Progress:
        return cls(0, None, meter_start_wh, None, meter_start_wh is not None)

    @classmethod
    def after(
        cls, latest: tuple[int, int, int, int] | None, meter_start_wh: int | None
    ) -> Progress:
        """From the chain's newest reading (seq, ts, import_wh, export_wh), if any."""
        if latest is None:
            return cls.start(meter_start_wh)
        seq, ts, imported, exported = latest
        tracks = meter_start_wh is not None
        return cls(seq + 1, ts, imported if tracks else None, exported, tracks)


def plan(progress: Progress, samples: Iterable[Sample]) -> list[Planned]:
    """The readings `samples` add to a chain at `progress` (see the module docstring)."""
    merged: dict[int, list[int | None]] = {}
    for s in samples:
        slot = merged.setdefault(s.ts, [None, None])
        if s.import_wh is not None:
            slot[0] = s.import_wh
        if s.export_wh is not None:
            slot[1] = s.export_wh
    out: list[Planned] = []
    seq, last = progress.next_seq, progress.last_ts
    imported, exported = progress.import_wh, progress.export_wh
    for ts in sorted(merged):
        if last is not None and ts <= last:
            continue  # already planned (a resend) or older than what the chain holds
        sample_import, sample_export = merged[ts]
        if sample_import is not None and progress.tracks_import:
            imported = sample_import
        if sample_export is not None:
            exported = sample_export
        if exported is None:
            continue  # no export register yet: nothing to measure discharge against
        out.append(Planned(seq, ts, imported or 0, exported))
        seq += 1
        last = ts
    return out


@dataclass(frozen=True, slots=True)
class ChargerSecretRow:
    id: int
    device_id: str
    secret_hash: str
    set_at: int


@dataclass(frozen=True, slots=True)
class IdTokenRow:
    id: int
    device_id: str
    token_hash: str
    added_at: int
    removed_at: int | None = None

    @property
    def live(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    charger_id: str
    operator_id: int
    ocpp_version: str
    tx_key: str
    connector_id: int
    token_hash: str
    status: str
    vehicle_id: str | None
    owner_id: int | None
    chain_id: str
    started_ts: int
    meter_start_wh: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class StopRow:
    id: int  # the session's
    stopped_ts: int
    meter_stop_wh: int | None
    reason: str | None
    recorded_at: int


@dataclass(frozen=True, slots=True)
class ChainTotals:
    """What a session's chain credited: its `ok` intervals summed."""

    import_wh: int = 0
    export_wh: int = 0
    carbon_g: int = 0
    credit_milli: int = 0


# -- the repository protocol -----------------------------------------------------------------


class ChargingStore(Protocol):
    """What handlers, queries and the OCPP door may ask of charging's store, in the rows above:
    `charging/uow.py` types `uow.charging` with it, so a handler can be tested on an in-memory
    fake (`charging/fake.py`); `charging.repo.ChargingRepository` is the store that satisfies it
    (mypy checks that where `charging/capability.py` registers it).

    Rows are immutable facts; the live state (a charger's password, a vehicle's tokens) is the
    latest fact. The `next_*_id` methods assume the caller holds the ledger's write lock."""

    # -- charger passwords -----------------------------------------------------------------

    def next_secret_id(self) -> int: ...

    def insert_secret(self, row: ChargerSecretRow) -> None: ...

    def current_secret(self, device_id: str) -> ChargerSecretRow | None:
        """The charger's newest password row; None if it has none, or if that row's seal
        fails: the charger is then locked out until a new password is set."""
        ...

    # -- id tokens -------------------------------------------------------------------------

    def next_token_id(self) -> int: ...

    def live_token(self, token_hash: str) -> IdTokenRow | None:
        """The live registration of a token (at most one: registration refuses a second)."""
        ...

    def tokens_of(self, device_id: str) -> list[IdTokenRow]: ...

    def token(self, token_id: int) -> IdTokenRow | None: ...

    def insert_token(self, row: IdTokenRow) -> None: ...

    def remove_token(self, token_id: int, at: int) -> None: ...

    # -- sessions --------------------------------------------------------------------------

    def next_session_id(self) -> int: ...

    def insert_session(self, row: SessionRow) -> None: ...

    def session(self, session_id: int) -> SessionRow | None: ...

    def session_by_tx(self, charger_id: str, tx_key: str) -> SessionRow | None: ...

    def insert_stop(self, row: StopRow) -> None: ...

    def stop(self, session_id: int) -> StopRow | None: ...

    def sessions(
        self, *, operator_id: int | None = None, owner_id: int | None = None, after: int = 0,
        limit: int = 100,
    ) -> list[tuple[SessionRow, StopRow | None, ChainTotals]]:
        """Sessions of an operator or of a vehicle owner after id `after`, by id, each with its
        stop and what its chain credited."""
        ...

    # -- the readings planned for each session's chain -------------------------------------

    def newest_planned(self, chain_id: str) -> Planned | None:
        """The chain's planned reading with the highest seq."""
        ...

    def planned_at(self, chain_id: str, timestamps: Collection[int]) -> list[Planned]:
        """The chain's planned readings of these sample times, by seq."""
        ...

    def insert_planned(self, chain_id: str, rows: Sequence[Planned]) -> None:
        """Record planned readings (a seq or sample time planned twice is refused)."""
        ...
