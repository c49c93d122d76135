"""Energy's shared values (pure, no I/O): the metered device kinds, the outcomes of judging an
interval, and the platform's named accounts and transfer ids of the credits ingestion posts.

The rules themselves are `energy.chain` (how readings become credited intervals) and
`energy.tariff` (what an interval earns). `EnergyStore` is the repository energy's handlers,
queries and checks (and charging's) reach through a unit of work: `energy.repo.EnergyRepository`
on a database, any object with the same methods in a test.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cityshare.ledger.ids import (
    CARBON_ISSUANCE,
    CREDIT_ISSUANCE,
    ENERGY_TRANSFERS,
    GRID_ENERGY,
    PLATFORM_ACCOUNT_CODE,
)
from cityshare.ledger.model import Ledger, NewAccount

if TYPE_CHECKING:  # `energy.chain` imports this module
    from cityshare.energy.chain import ChainState, Reading

#: Device kinds whose readings carry energy registers.
METERED_KINDS = frozenset({"meter", "charger"})


class Anomaly(enum.StrEnum):
    FUTURE_TIMESTAMP = "future_timestamp"
    BEFORE_REGISTRATION = "before_registration"
    SEQ_TS_ORDER = "seq_ts_order"
    REGISTER_BACKWARDS = "register_backwards"
    METER_RESET = "meter_reset"
    IMPOSSIBLE_POWER = "impossible_power"


BASELINE = "baseline"
OK = "ok"


#: The energy capability's named accounts (their ids and code are `ledger.ids`').
PLATFORM_ACCOUNTS = (
    NewAccount(
        CREDIT_ISSUANCE, Ledger.CREDIT, PLATFORM_ACCOUNT_CODE, 0, "platform:credit-issuance"
    ),
    NewAccount(GRID_ENERGY, Ledger.ENERGY, PLATFORM_ACCOUNT_CODE, 0, "platform:grid"),
    NewAccount(
        CARBON_ISSUANCE, Ledger.CARBON, PLATFORM_ACCOUNT_CODE, 0, "platform:carbon-issuance"
    ),
)
ENERGY_TRANSFER_BASE = ENERGY_TRANSFERS.first


class EnergyCode(enum.IntEnum):
    """Transfer codes of the postings ingestion makes (kind = code - 4001 in the id)."""

    EXPORT_CREDIT = 4001  # smart credit points for exported energy
    CARBON_CREDIT = 4002  # grams CO2e avoided by exported energy
    ENERGY_EXPORT = 4003  # Wh the resident gave the grid
    ENERGY_IMPORT = 4004  # Wh the resident took from it


#: Platform postings own the ids from 2^61 up, in disjoint ranges (ledger/ids.py): energy's
#: are [2^62, 2^62 + 2^60), two bits of kind below the interval id; clients choose ids below
#: 2^61 and are refused any other (`reserved_id`). See `energy.handlers` (*Accounts and
#: transfers*).
MAX_INTERVAL_ID = (ENERGY_TRANSFERS.last - ENERGY_TRANSFER_BASE) >> 2


def transfer_id(interval_id: int, code: EnergyCode) -> int:
    if not 0 < interval_id <= MAX_INTERVAL_ID:
        raise ValueError("interval ids are 1 … 2^58-1")
    return ENERGY_TRANSFER_BASE | (interval_id << 2) | (code - EnergyCode.EXPORT_CREDIT)


@dataclass(frozen=True, slots=True)
class DeviceKey:
    id: int
    public_key: bytes
    live: bool


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device as ingestion needs it: owner, kind, registration time and every key."""

    device_id: str
    owner_id: int
    kind: str
    registered_at: int
    keys: tuple[DeviceKey, ...]


@dataclass(frozen=True, slots=True)
class TariffRow:
    id: int
    digest: str
    name: str
    body: str
    added_at: int


@dataclass(frozen=True, slots=True)
class IntervalSums:
    import_wh: int = 0
    export_wh: int = 0
    carbon_g: int = 0
    credit_milli: int = 0


class Verdict(enum.StrEnum):
    """What became of one item of a batch of readings."""

    #: Stored, and credited once its chain reaches it.
    ACCEPTED = "accepted"
    #: Already stored (a replay or a retried batch): nothing changed.
    DUPLICATE = "duplicate"
    #: Stored, but no credit: the reading breaks a rule (its kind says which).
    ANOMALY = "anomaly"
    #: Not stored (its reason says why).
    REJECTED = "rejected"


#: A `meter_readings` row as ingestion writes it: (id, device_id, seq, ts, import_wh,
#: export_wh, received_at, source, jws).
ReadingRow = tuple[int, str, int, int, int, int, int, str, str]
#: A `meter_intervals` row as ingestion writes it, in `repo.INTERVAL_COLUMNS`' order.
IntervalRow = tuple[
    int, str, int, int, str, int, int, str, int, int, int, int, int, int,
    int, int, int, int, int, int, int, int, int, int, int, int,
]  # fmt: skip


class EnergyStore(Protocol):
    """Energy's repository as its users call it (`energy.repo.EnergyRepository` implements it
    on one open connection inside one transaction; the method docstrings are there)."""

    # -- ingestion: devices, readings, chains -----------------------------------------------
    def device_keys(self, device_ids: Collection[str]) -> dict[str, DeviceKeys]: ...
    def revoked_among(self, key_ids: Collection[int]) -> set[int]: ...
    def existing_readings(
        self, keys: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], Reading]: ...
    def stored_tokens(self, keys: Collection[tuple[str, int]]) -> dict[tuple[str, int], str]: ...
    def chain_states(self, device_ids: Collection[str]) -> dict[str, ChainState]: ...
    def waiting_readings(
        self, bounds: Sequence[tuple[str, int, int]]
    ) -> dict[str, list[Reading]]: ...
    def next_ids(self) -> tuple[int, int]: ...
    def insert_readings(self, rows: Sequence[ReadingRow]) -> None: ...
    def insert_intervals(self, rows: Sequence[IntervalRow]) -> None: ...
    def overdue_waiting(self, received_before: int, limit: int) -> list[DeviceKeys]: ...
    def set_waiting(
        self, since: Mapping[str, tuple[int, DeviceKeys]], cleared: Collection[str]
    ) -> None: ...

    # -- tariffs ----------------------------------------------------------------------------
    def tariff_by_digest(self, digest: str) -> TariffRow | None: ...
    def tariff(self, tariff_id: int) -> TariffRow | None: ...
    def insert_tariff(self, row: TariffRow) -> None: ...
    def next_tariff_id(self) -> int: ...

    # -- checks of derived state ------------------------------------------------------------
    def waiting_mismatches(self, limit: int) -> list[tuple[str, int | None, int | None]]: ...
    def uncredited_intervals(self, base: int, limit: int) -> list[tuple[int, str]]: ...
    def waiting_parties(self) -> list[tuple[DeviceKeys, tuple[Any, ...]]]: ...

    # -- reads: charging, statements, review ------------------------------------------------
    def latest_readings(
        self, device_ids: Iterable[str]
    ) -> dict[str, tuple[int, int, int, int]]: ...
    def owner_totals(self, owner_id: int) -> IntervalSums: ...
    def owner_intervals(
        self, owner_id: int, since_ts: int
    ) -> list[tuple[int, int, int, int, int]]: ...
    def awaiting_review(
        self, owner_id: int | None, after_id: int, limit: int
    ) -> list[tuple[int, str, int, int, int, str, int, int]]: ...
