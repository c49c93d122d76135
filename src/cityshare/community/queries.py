"""Community's read side: a resident's holdings and payouts, an asset's shares, where its
settlement stands; and how period ends are written and read."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from cityshare.community.model import (
    NANOSECONDS,
    CommunityError,
    DistributionRow,
    SettlementPeriod,
    next_boundary,
)
from cityshare.community.uow import CommunityUnitOfWork
from cityshare.identity.model import OrganisationRow
from cityshare.identity.organisations import OrgKind, is_organisation


def community_asset(uow: CommunityUnitOfWork, asset_id: int) -> OrganisationRow:
    org = uow.identity.organisation(asset_id) if is_organisation(asset_id) else None
    if org is None:
        raise CommunityError("not_found", "no such organisation")
    if org.kind != OrgKind.COMMUNITY:
        raise CommunityError("not_community", "only a community asset has shares")
    return org


@dataclass(frozen=True, slots=True)
class SettlementWindow:
    """Where an asset's settlement stands: a run settles every period boundary after
    `checked_after` (the latest period end settled, or the asset's creation) up to `now`;
    the open period ends at `current_period_end`, when the next settlement is due."""

    asset_id: int
    period: SettlementPeriod
    checked_after: int
    now: int
    current_period_end: int
    settled_before: bool


def settlement_window(
    uow: CommunityUnitOfWork,
    asset_id: int,
    *,
    zone: zoneinfo.ZoneInfo,
    period: SettlementPeriod,
) -> SettlementWindow:
    """Which period boundaries a settlement run of this asset checks now, and when the open
    period ends (so an answer with nothing due can say why, and until when)."""
    with uow:
        asset = community_asset(uow, asset_id)
        now = uow.clock.now_ns()
        last = uow.community.last_period_end(asset_id)
    return SettlementWindow(
        asset_id,
        period,
        last if last is not None else asset.created_at,
        now,
        next_boundary(now, zone, period),
        last is not None,
    )


@dataclass(frozen=True, slots=True)
class Holding:
    asset_id: int
    asset_name: str
    shares: int
    total_shares: int


@dataclass(frozen=True, slots=True)
class Payout:
    asset_id: int
    period_end: int
    shares: int
    credit_milli: int
    carbon_g: int


@dataclass(frozen=True, slots=True)
class ResidentShares:
    holdings: list[Holding]
    payouts: list[Payout]


def resident_shares(
    uow: CommunityUnitOfWork, resident_id: int, *, limit: int = 100
) -> ResidentShares:
    """A resident's holdings and their latest payouts (newest first)."""
    with uow:
        repo = uow.community
        held = repo.holdings_of(resident_id)
        holdings = []
        for asset_id, shares in held.items():
            org = uow.identity.organisation(asset_id)
            name = org.name if org is not None else str(asset_id)
            holdings.append(Holding(asset_id, name, shares, repo.total_shares(asset_id)))
        payouts = [
            Payout(p.asset_id, end, p.shares, p.credit_milli, p.carbon_g)
            for p, end in repo.payouts_to(resident_id, limit=limit)
        ]
    return ResidentShares(holdings, payouts)


@dataclass(frozen=True, slots=True)
class AssetShares:
    asset: OrganisationRow
    total_shares: int
    holders: int
    #: (resident id, VID, shares), by resident id; only when asked for.
    holdings: list[tuple[int, str, int]]
    distributions: list[DistributionRow]


def asset_shares(
    uow: CommunityUnitOfWork,
    asset_id: int,
    *,
    with_holders: bool,
    offset: int = 0,
    limit: int = 100,
) -> AssetShares:
    """An asset's shares: totals and latest distributions, and, `with_holders`, up to `limit`
    holders from position `offset` (in resident order) with their current VIDs."""
    with uow:
        asset = community_asset(uow, asset_id)
        repo = uow.community
        current = repo.holdings(asset_id)
        holdings: list[tuple[int, str, int]] = []
        if with_holders:
            page = list(current.items())[offset : offset + limit]
            for resident, shares in page:
                enrolment = uow.identity.latest_enrolment(resident)
                holdings.append((resident, enrolment.vid if enrolment else "", shares))
        distributions = repo.distributions(asset_id, limit=limit)
    return AssetShares(asset, sum(current.values()), len(current), holdings, distributions)


def period_end_from(text: str, zone: zoneinfo.ZoneInfo) -> int:
    """A period end as people write it: a date (local midnight starting that day in `zone`)
    or an ISO 8601 date and time (without an offset: local time in `zone`); unix ns."""
    try:
        moment = dt.datetime.fromisoformat(text)  # a date alone is its midnight
    except ValueError as exc:
        raise CommunityError(
            "invalid_period_end", "a period end is an ISO 8601 date (2026-12-01) or date and time"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    seconds = moment.timestamp()
    if not 0 <= seconds < 2**62 / NANOSECONDS or seconds != int(seconds):
        raise CommunityError("invalid_period_end", "a period end is a whole second after 1970")
    return int(seconds) * NANOSECONDS


def local_iso(ns: int, zone: zoneinfo.ZoneInfo) -> str:
    """An instant as local time in `zone` (how settlement periods are named)."""
    return dt.datetime.fromtimestamp(ns // NANOSECONDS, zone).isoformat(timespec="seconds")
