"""Pay-as-you-go billing of imported energy (pure, no I/O).

A resident pays for the energy their meters import, interval by interval, at the price list
of the provider they had chosen when the interval began (the utility, a community asset, or
an energy-as-a-service provider using the existing line). There are no fixed, standing or
subscription charges: a price list holds only a price per kWh for each time-of-day window of
the platform tariff (`normal` plus the tariff's own windows, e.g. `solar` and `peak`), in
integer paise, and the schema has nowhere to put anything else.

**Exact amounts.** An interval importing `wh` at `p` paise per kWh costs `wh * p / 1000`
paise. The platform charges whole paise and carries the remainder (in thousandths of a
paisa) per (resident, provider) to the next interval, as ingestion carries credit
remainders: a resident is charged exactly floor(sum of wh * p / 1000) by each provider,
however the energy is cut into intervals, and nothing is invented or lost.

`BillingStore` is the repository billing's handlers, queries and checks (and identity's reads)
reach through a unit of work: `billing.repo.BillingRepository` on a database, `billing.fake`'s
in-memory `PricingStore` in the handler tests.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import json
import re
import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cityshare.identity.residents import WALLET_BASE
from cityshare.ledger.ids import BILLING_TRANSFERS
from cityshare.ledger.model import MAX_INT

#: Wh per kWh: the carry is kept in units of 1/1000 paisa.
WH_PER_KWH = 1000
#: The most a price list may ask per kWh: ₹1,000 (a typo guard, far above any real tariff).
MAX_PAISE_PER_KWH = 100_000
#: The window every price list prices (hours outside the tariff's own windows).
NORMAL = "normal"
#: A price list may take effect at most this far ahead (seconds).
MAX_LEAD_S = 400 * 86_400
#: Names that betray a fixed, standing or subscription charge (refused with that reason).
_FIXED_CHARGE_RE = re.compile(
    r"fixed|standing|subscription|rent|monthly|minimum|demand|connection|service|flat",
    re.IGNORECASE,
)
_MONTH_RE = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


class BillingError(ValueError):
    """A request billing refuses; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- price lists -----------------------------------------------------------------------------


def price_windows(tariff_windows: Collection[str]) -> tuple[str, ...]:
    """The windows a price list must price: `normal` and each window of the tariff."""
    return (NORMAL, *sorted(w for w in tariff_windows if w != NORMAL))


def _no_fixed_charges(where: str) -> BillingError:
    return BillingError(
        "fixed_charge",
        f"{where}: pay-as-you-go has no fixed, standing or subscription charges; a price "
        "list holds only paise per kWh for each time-of-day window",
    )


def parse_price_list(
    document: object, windows: Sequence[str], *, now_s: int
) -> tuple[dict[str, int], int]:
    """Check a price list as sent, `{"prices": {window: paise per kWh}, "effective_from":
    unix seconds (optional, default now)}`: every window of `windows`, nothing else, integers
    only, taking effect now or later. Returns (prices, effective_from); BillingError if bad."""
    if not isinstance(document, Mapping):
        raise BillingError("invalid_price_list", "a price list is a JSON object")
    for key in document:
        if key in ("prices", "effective_from"):
            continue
        if isinstance(key, str) and _FIXED_CHARGE_RE.search(key):
            raise _no_fixed_charges(key)
        raise BillingError(
            "invalid_price_list", f"{key}: unknown field (a price list has prices, effective_from)"
        )
    prices = document.get("prices")
    if not isinstance(prices, Mapping):
        raise BillingError(
            "invalid_price_list",
            f"prices: an object of paise per kWh for each window ({', '.join(windows)})",
        )
    out: dict[str, int] = {}
    for window, value in prices.items():
        where = f"prices.{window}"
        if window not in windows:
            if isinstance(window, str) and _FIXED_CHARGE_RE.search(window):
                raise _no_fixed_charges(where)
            raise BillingError(
                "unknown_window",
                f"{where}: not a time-of-day window of the tariff ({', '.join(windows)})",
            )
        if type(value) is not int:
            raise BillingError(
                "invalid_price",
                f"{where}: a whole number of paise per kWh (integers only, e.g. 650 for ₹6.50), "
                f"not {json.dumps(value)}",
            )
        if not 0 <= value <= MAX_PAISE_PER_KWH:
            raise BillingError(
                "invalid_price", f"{where}: between 0 and {MAX_PAISE_PER_KWH} paise per kWh"
            )
        out[window] = value
    missing = [w for w in windows if w not in out]
    if missing:
        raise BillingError("missing_window", f"prices: no price for {', '.join(missing)}")
    effective = document.get("effective_from", now_s)
    if effective is None:
        effective = now_s
    if type(effective) is not int or not 0 <= effective <= MAX_INT:
        raise BillingError("invalid_effective_from", "effective_from: unix seconds (an integer)")
    if effective < now_s:
        raise BillingError(
            "retroactive_price",
            "effective_from: a price list takes effect now or later, never in the past "
            "(intervals already billed keep the price they were billed at)",
        )
    if effective > now_s + MAX_LEAD_S:
        raise BillingError(
            "invalid_effective_from", f"effective_from: at most {MAX_LEAD_S // 86_400} days ahead"
        )
    return {w: out[w] for w in windows}, effective


def prices_json(prices: Mapping[str, int]) -> str:
    """The canonical text a price list is stored and logged as."""
    return json.dumps(dict(prices), sort_keys=True, separators=(",", ":"))


def window_price(prices: Mapping[str, int], window: str) -> int:
    """Paise per kWh in `window`; a window the list does not know (the tariff gained one
    after the list was set) is priced as normal hours."""
    price = prices.get(window)
    return prices[NORMAL] if price is None else price


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: int
    provider_id: int
    effective_from: int  # unix seconds
    prices: Mapping[str, int]


class PriceBook:
    """Every price list of some providers: which version is in force at an instant."""

    def __init__(self, versions: Sequence[PriceVersion]) -> None:
        by_provider: dict[int, list[PriceVersion]] = {}
        for v in sorted(versions, key=lambda v: (v.provider_id, v.effective_from, v.id)):
            by_provider.setdefault(v.provider_id, []).append(v)
        self._versions = by_provider
        self._starts = {p: [v.effective_from for v in vs] for p, vs in by_provider.items()}

    def at(self, provider_id: int, ts: int) -> PriceVersion | None:
        """The version in force at `ts` (the latest to take effect at or before it; of two
        taking effect together, the one set last)."""
        starts = self._starts.get(provider_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, ts)
        return self._versions[provider_id][i - 1] if i else None

    def upcoming(self, provider_id: int, ts: int) -> list[PriceVersion]:
        starts = self._starts.get(provider_id, [])
        return self._versions.get(provider_id, [])[bisect.bisect_right(starts, ts) :]


class Choices:
    """Each resident's provider choices over time: which provider was chosen at an instant."""

    def __init__(self, choices: Sequence[tuple[int, int, int, int]]) -> None:
        """`choices`: (resident, provider, effective_from, choice id)."""
        by_resident: dict[int, list[tuple[int, int, int]]] = {}
        for resident, provider, effective, choice_id in sorted(
            choices, key=lambda c: (c[0], c[2], c[3])
        ):
            by_resident.setdefault(resident, []).append((effective, choice_id, provider))
        self._by_resident = by_resident
        self._starts = {r: [c[0] for c in cs] for r, cs in by_resident.items()}

    def at(self, resident_id: int, ts: int) -> int | None:
        starts = self._starts.get(resident_id)
        if not starts:
            return None
        i = bisect.bisect_right(starts, ts)
        return self._by_resident[resident_id][i - 1][2] if i else None


# -- the arithmetic --------------------------------------------------------------------------


def charge(import_wh: int, paise_per_kwh: int, carry: int) -> tuple[int, int]:
    """(whole paise to charge, carry after) for `import_wh` at `paise_per_kwh`, given the
    carry (thousandths of a paisa, 0 <= carry < 1000) of the previous interval."""
    if import_wh < 0 or paise_per_kwh < 0 or not 0 <= carry < WH_PER_KWH:
        raise ValueError("energy, price and carry are non-negative (carry below 1000)")
    return divmod(import_wh * paise_per_kwh + carry, WH_PER_KWH)


def plan_payments(
    available: int, due: Sequence[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split a resident's bills `due` ((bill id, amount), oldest first) into those the wallet
    pays now and those left in arrears: oldest first, and the first bill the wallet cannot pay
    in full stops the rest (no bill is paid ahead of an older one)."""
    paid: list[tuple[int, int]] = []
    for i, (bill_id, amount) in enumerate(due):
        if amount > available:
            return paid, list(due[i:])
        available -= amount
        paid.append((bill_id, amount))
    return paid, []


# -- months ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int
    start_s: int  # local midnight of the 1st, unix seconds
    end_s: int  # local midnight of the next month's 1st

    @property
    def name(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def month_of(text: str, zone: zoneinfo.ZoneInfo) -> Month:
    """A calendar month `YYYY-MM` in `zone`; BillingError if it is not one."""
    match = _MONTH_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise BillingError("invalid_month", "a month is YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    # Ledger timestamps are 64-bit nanoseconds: they end in April 2262.
    if not 1970 <= year <= 2261:
        raise BillingError("invalid_month", "a month from 1970-01 to 2261-12")
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    start = dt.datetime(year, month, 1, tzinfo=zone)
    end = dt.datetime(nxt[0], nxt[1], 1, tzinfo=zone)
    return Month(year, month, int(start.timestamp()), int(end.timestamp()))


# -- the transfers billing posts ----------------------------------------------------------

#: Payments take ids `BILL_TRANSFER_BASE + bill id`, in the platform's range (ledger/ids.py).
BILL_TRANSFER_BASE = BILLING_TRANSFERS.first
MAX_BILL_ID = BILLING_TRANSFERS.last - BILL_TRANSFER_BASE


class BillingCode(enum.IntEnum):
    ENERGY_BILL = 5001  # a resident pays a provider for energy imported in one interval
    TOP_UP = 5002  # the settlement account credits a resident's INR wallet (fiat received)


def payment_transfer_id(bill_id: int) -> int:
    if not 0 < bill_id <= MAX_BILL_ID:
        raise ValueError("bill ids are below 2^61")
    return BILL_TRANSFER_BASE + bill_id


def party_of_wallet(account_id: int) -> int:
    return (account_id - WALLET_BASE) >> 3


@dataclass(frozen=True, slots=True)
class PriceListRow:
    id: int
    provider_id: int
    effective_from: int
    prices: str
    set_by: str
    at: int


@dataclass(frozen=True, slots=True)
class ChoiceRow:
    id: int
    resident_id: int
    provider_id: int
    effective_from: int
    at: int


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    through_id: int
    bills: int
    billed: int
    at: int


@dataclass(frozen=True, slots=True)
class TopUpRow:
    id: int
    reference: str
    resident_id: int
    amount: int
    transfer_id: int
    actor: str
    at: int


@dataclass(frozen=True, slots=True)
class Due:
    """A bill waiting to be paid."""

    bill_id: int
    provider_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class WalletMoves:
    """What moved through a wallet in a time range (posted amounts only)."""

    received: int = 0
    paid_bills: int = 0
    other_debits: int = 0


#: A bill as stored and logged: the columns of `energy_bills` in order (`repo.BILL_COLUMNS`;
#: the logged fields, `records.ENERGY_BILL`, follow them too). (id, resident_id, provider_id,
#: price_list_id, tod, start_ts, import_wh, paise_per_kwh, amount, carry, run_id, at)
BillRow = tuple[int, int, int, int, str, int, int, int, int, int, int, int]
#: (id, owner_id, status, start_ts, tod, import_wh, at) of a meter interval.
IntervalHead = tuple[int, int, str, int, str, int, int]


class PricingStore(Protocol):
    """Price lists, provider choices and top-ups: the part of billing's repository that
    `set_price_list`, `choose_provider` and `top_up_wallet` use (`billing.fake` in memory)."""

    def next_price_list_id(self) -> int: ...
    def next_choice_id(self) -> int: ...
    def next_top_up_id(self) -> int: ...
    def insert_price_list(self, row: PriceListRow) -> None: ...
    def price_lists_of(self, provider_ids: Collection[int]) -> list[PriceListRow]: ...
    def insert_choice(self, row: ChoiceRow) -> None: ...
    def choices_of(self, resident_ids: Collection[int]) -> list[ChoiceRow]: ...
    def customers_among(self, provider_id: int, resident_ids: Collection[int]) -> set[int]: ...
    def top_up_by_reference(self, reference: str) -> TopUpRow | None: ...
    def insert_top_up(self, row: TopUpRow) -> None: ...


class BillingStore(PricingStore, Protocol):
    """Billing's repository as its users call it (`billing.repo.BillingRepository` implements
    it on one open connection inside one transaction)."""

    # -- billing runs and arrears -----------------------------------------------------------
    def next_run_id(self) -> int: ...
    def last_run(self) -> RunRow | None: ...
    def intervals_after(self, after_id: int, limit: int) -> list[IntervalHead]: ...
    def carries(self, pairs: Collection[tuple[int, int]]) -> dict[tuple[int, int], int]: ...
    def insert_bills(self, rows: Sequence[BillRow]) -> None: ...
    def insert_run(self, row: RunRow) -> None: ...
    def residents_in_arrears(self) -> list[int]: ...
    def arrears_of(self, resident_ids: Collection[int]) -> dict[int, list[Due]]: ...
    def oldest_arrears(self, resident_ids: Collection[int]) -> dict[int, Due]: ...
    def add_arrears(self, rows: Sequence[tuple[int, int]]) -> None: ...
    def remove_arrears(self, bill_ids: Collection[int]) -> None: ...
    def arrears_mismatches(self, base: int, limit: int) -> tuple[list[int], list[int]]: ...

    # -- statements -------------------------------------------------------------------------
    def bill_sums(
        self, resident_id: int, start_s: int, end_s: int
    ) -> list[tuple[int, str, int, int, int]]: ...
    def interval_sums(
        self, owner_id: int, start_s: int, end_s: int
    ) -> list[tuple[str, int, int, int, int]]: ...
    def wallet_moves(
        self, account_id: int, start_ns: int, end_ns: int, bill_code: int
    ) -> tuple[WalletMoves, list[tuple[int, int, int]]]: ...
    def arrears_at(
        self, resident_id: int, end_s: int, end_ns: int, base: int
    ) -> tuple[int, int]: ...
    def arrears_now(self, resident_id: int) -> tuple[int, int]: ...
