"""Energy's shared values (pure, no I/O): the metered device kinds, the outcomes of judging an
interval, and the platform's named accounts and transfer ids of the credits ingestion posts.

The rules themselves are `energy.chain` (how readings become credited intervals) and
`energy.tariff` (what an interval earns).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cityshare.ledger.ids import (
    CARBON_ISSUANCE,
    CREDIT_ISSUANCE,
    ENERGY_TRANSFERS,
    GRID_ENERGY,
    PLATFORM_ACCOUNT_CODE,
)
from cityshare.ledger.model import Ledger, NewAccount

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
