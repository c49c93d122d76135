"""Community assets: residents holding shares of a shared solar array or battery, and how the
asset's earnings are split among them each settlement period.

Pure functions, no I/O. Amounts and share counts are integers; a split always adds up to the
amount exactly (the largest-remainder method: everyone gets the floor of their exact share,
then the units left over go one each to the largest fractional remainders, ties to the lower
resident id), so not one milli-point or gram is ever lost or created.

`CommunityStore` is the repository community's handlers, queries and checks (and identity's
reads) reach through a unit of work: `community.repo.CommunityRepository` on a database; its
share side, `ShareStore`, is also `community.fake`'s in-memory one in the handler tests.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

#: Shares of one asset, all holders together. Keeps `amount * shares` and every stored count
#: far inside 64 bits (amounts are at most 2^63 - 1; Python's ints do the products exactly).
MAX_TOTAL_SHARES = 10**12

NANOSECONDS = 1_000_000_000

#: The kinds of share event (`ShareEventRow.kind`).
ISSUE = "issue"
TRANSFER = "transfer"


class SettlementPeriod(enum.StrEnum):
    """How often an asset's earnings are distributed (periods end at local midnight)."""

    DAILY = "daily"
    MONTHLY = "monthly"


def split_pro_rata(amount: int, holdings: Mapping[int, int]) -> dict[int, int]:
    """Split `amount` among holders in proportion to their shares.

    `holdings`: resident id -> shares (holders with no shares are left out). Each holder gets
    floor(amount * shares / total); the units that leaves over (fewer than the number of
    holders) go one each to the holders with the largest remainders, ties broken by the lower
    resident id. The result names every holder with shares (some may get 0) and its values add
    up to `amount` exactly. An empty holding or a zero amount gives nothing to anyone.
    """
    if amount < 0:
        raise ValueError("the amount to split must not be negative")
    if any(s < 0 for s in holdings.values()):
        raise ValueError("share counts must not be negative")
    holders = {r: s for r, s in holdings.items() if s > 0}
    total = sum(holders.values())
    if total == 0:
        return {}
    out: dict[int, int] = {}
    remainders: list[tuple[int, int]] = []
    given = 0
    for resident, shares in holders.items():
        whole, rest = divmod(amount * shares, total)
        out[resident] = whole
        given += whole
        remainders.append((-rest, resident))
    left = amount - given
    # left < number of holders: each remainder is below `total`, and they add to left * total.
    for _, resident in sorted(remainders)[:left]:
        out[resident] += 1
    return out


# -- settlement periods ----------------------------------------------------------------------


def _local_start(ts_ns: int, zone: zoneinfo.ZoneInfo, period: SettlementPeriod) -> dt.datetime:
    local = dt.datetime.fromtimestamp(ts_ns // NANOSECONDS, zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == SettlementPeriod.MONTHLY:
        start = start.replace(day=1)
    return start


def _ns(local: dt.datetime) -> int:
    return int(local.timestamp()) * NANOSECONDS


def period_start(ts_ns: int, zone: zoneinfo.ZoneInfo, period: SettlementPeriod) -> int:
    """The start (unix ns) of the period holding the instant `ts_ns`."""
    return _ns(_local_start(ts_ns, zone, period))


def next_boundary(ts_ns: int, zone: zoneinfo.ZoneInfo, period: SettlementPeriod) -> int:
    """The first period boundary strictly after `ts_ns`."""
    start = _local_start(ts_ns, zone, period)
    if period == SettlementPeriod.MONTHLY:
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        following = start.replace(year=year, month=month)
    else:
        following = (start.replace(tzinfo=None) + dt.timedelta(days=1)).replace(tzinfo=zone)
    return _ns(following)


def is_boundary(ts_ns: int, zone: zoneinfo.ZoneInfo, period: SettlementPeriod) -> bool:
    return ts_ns % NANOSECONDS == 0 and period_start(ts_ns, zone, period) == ts_ns


def boundaries(
    after_ns: int, upto_ns: int, zone: zoneinfo.ZoneInfo, period: SettlementPeriod, *, limit: int
) -> list[int]:
    """Period boundaries b with after_ns < b <= upto_ns, oldest first; at most the newest
    `limit` of them."""
    out: list[int] = []
    b = next_boundary(after_ns, zone, period)
    while b <= upto_ns:
        out.append(b)
        b = next_boundary(b, zone, period)
    return out[-limit:] if limit > 0 else []


class CommunityError(ValueError):
    """A request the community capability refuses; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ShareEventRow:
    id: int
    asset_id: int
    kind: str  # issue or transfer
    from_id: int  # 0 for an issue
    to_id: int
    shares: int
    actor: str
    at: int


@dataclass(frozen=True, slots=True)
class DistributionRow:
    id: int
    asset_id: int
    period_end: int
    credit_milli: int
    carbon_g: int
    holders: int
    total_shares: int
    at: int


@dataclass(frozen=True, slots=True)
class PayoutRow:
    id: int
    distribution_id: int
    asset_id: int
    resident_id: int
    shares: int
    credit_milli: int
    carbon_g: int


class ShareStore(Protocol):
    """The share side of community's repository: share events and the holdings derived from
    them (`community.repo.CommunityRepository` on a database, `community.fake` in memory)."""

    def next_event_id(self) -> int: ...
    def insert_events(self, rows: Sequence[ShareEventRow]) -> None: ...
    def holding(self, asset_id: int, resident_id: int) -> int: ...
    def add_to_holding(self, asset_id: int, resident_id: int, delta: int) -> None: ...
    def total_shares(self, asset_id: int) -> int: ...
    def holdings(self, asset_id: int) -> dict[int, int]: ...
    def holdings_of(self, resident_id: int) -> dict[int, int]: ...
    def holders_among(self, asset_id: int, resident_ids: Collection[int]) -> set[int]: ...
    def replayed_holdings(self) -> dict[tuple[int, int], int]: ...
    def stored_holdings(self) -> dict[tuple[int, int], int]: ...


class CommunityStore(ShareStore, Protocol):
    """Community's repository as its users call it: the share side and the distributions."""

    def holdings_at(self, asset_id: int, at_ns: int) -> dict[int, int]: ...
    def next_distribution_ids(self) -> tuple[int, int]: ...
    def distribution(self, asset_id: int, period_end: int) -> DistributionRow | None: ...
    def last_period_end(self, asset_id: int) -> int | None: ...
    def distributions(self, asset_id: int, *, limit: int) -> list[DistributionRow]: ...
    def insert_distribution(self, row: DistributionRow) -> None: ...
    def insert_payouts(self, rows: Sequence[PayoutRow]) -> None: ...
    def payouts(self, distribution_id: int) -> list[PayoutRow]: ...
    def payouts_to(self, resident_id: int, *, limit: int) -> list[tuple[PayoutRow, int]]: ...
    def distribution_sums(self) -> list[tuple[int, int, int, int, int, int, int]]: ...
