"""Bodies of the community API: shares of community assets, and what they paid out."""

from __future__ import annotations

import zoneinfo

from pydantic import BaseModel, Field

from cityshare.api.responses import Strict
from cityshare.community.handlers import DistributionOutcome
from cityshare.community.model import MAX_TOTAL_SHARES, DistributionRow
from cityshare.community.queries import AssetShares, ResidentShares, SettlementWindow, local_iso
from cityshare.identity.organisations import MAX_PARTY_ID, ORG_ID_BASE

VID_PATTERN = r"^[1-9][0-9]{15}$"


class ShareIssueIn(Strict):
    vid: str = Field(pattern=VID_PATTERN, description="The resident's current virtual id.")
    shares: int = Field(ge=1, le=MAX_TOTAL_SHARES, description="New shares to issue to them.")


class ShareTransferIn(Strict):
    asset_id: int = Field(ge=ORG_ID_BASE, le=MAX_PARTY_ID, description="The community asset.")
    to_vid: str = Field(pattern=VID_PATTERN, description="The recipient's current virtual id.")
    shares: int = Field(ge=1, le=MAX_TOTAL_SHARES, description="How many of yours to give.")


class ShareEventOut(BaseModel):
    id: int = Field(description="The share event (a leaf of the audit log).")
    asset_id: int
    kind: str = Field(description="issue or transfer")
    vid: str = Field(description="The resident who received the shares.")
    shares: int
    holding: int = Field(description="Shares of this asset you (or, for an issue, they) hold now.")


class DistributeIn(Strict):
    period_end: str | None = Field(
        None,
        max_length=40,
        description="Settle only the period ending then: an ISO 8601 date (local midnight in "
        "the tariff's timezone) or date and time. Default: every ended period not yet settled.",
    )


class DistributionOut(BaseModel):
    id: int
    asset_id: int
    period_end: str = Field(description="Local time in the tariff's timezone.")
    period_end_ns: int
    credit_milli: int = Field(description="Milli-points paid out, all holders together.")
    carbon_g: int = Field(description="Grams CO2e paid out, all holders together.")
    holders: int
    total_shares: int

    @classmethod
    def of(cls, row: DistributionRow, zone: zoneinfo.ZoneInfo) -> DistributionOut:
        return cls(
            id=row.id,
            asset_id=row.asset_id,
            period_end=local_iso(row.period_end, zone),
            period_end_ns=row.period_end,
            credit_milli=row.credit_milli,
            carbon_g=row.carbon_g,
            holders=row.holders,
            total_shares=row.total_shares,
        )


class SettlementOut(BaseModel):
    asset_id: int
    period_end: str
    status: str = Field(
        description="distributed, already_distributed (an earlier run paid it), "
        "nothing_to_distribute (the wallets were empty) or no_holders (the earnings wait)."
    )
    distribution: DistributionOut | None = None

    @classmethod
    def of(cls, outcome: DistributionOutcome, zone: zoneinfo.ZoneInfo) -> SettlementOut:
        d = outcome.distribution
        return cls(
            asset_id=outcome.asset_id,
            period_end=local_iso(outcome.period_end, zone),
            status=outcome.status.value,
            distribution=DistributionOut.of(d, zone) if d is not None else None,
        )


class SettlementRunOut(BaseModel):
    """What a settlement run did for one asset, and why: `settlements` lists each period end
    it settled (empty when none was due), and the rest says which boundaries were checked and
    when the open period ends, so an empty run is never an unexplained `[]`."""

    settlements: list[SettlementOut] = Field(
        description="One entry per period end settled by this run, oldest first."
    )
    message: str = Field(description="What was done, or why nothing was due.")
    period: str = Field(description="The settlement period: monthly or daily.")
    checked_after: str = Field(
        description="Period ends after this instant were checked (the latest settled, or the "
        "asset's creation); local time in the tariff's timezone."
    )
    checked_until: str = Field(description="… up to this instant (now), local time.")
    current_period_end: str = Field(
        description="When the open period ends: its earnings are due for settlement then."
    )

    @classmethod
    def of(
        cls,
        outcomes: list[DistributionOutcome],
        window: SettlementWindow,
        zone: zoneinfo.ZoneInfo,
    ) -> SettlementRunOut:
        after = local_iso(window.checked_after, zone)
        ends = local_iso(window.current_period_end, zone)
        if outcomes:
            statuses = [o.status.value for o in outcomes]
            counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
            message = f"{len(outcomes)} period end(s) settled: {counts}"
        else:
            since = "the last settled period end" if window.settled_before else "its creation"
            message = (
                f"nothing was due: no {window.period} period of this asset has ended since "
                f"{since} ({after}); the current period ends at {ends}"
            )
        return cls(
            settlements=[SettlementOut.of(o, zone) for o in outcomes],
            message=message,
            period=str(window.period),
            checked_after=after,
            checked_until=local_iso(window.now, zone),
            current_period_end=ends,
        )


class HoldingOut(BaseModel):
    asset_id: int
    asset_name: str
    shares: int
    total_shares: int


class PayoutOut(BaseModel):
    asset_id: int
    period_end: str
    shares: int = Field(description="Your shares at the period end.")
    credit_milli: int
    carbon_g: int


class MySharesOut(BaseModel):
    holdings: list[HoldingOut]
    payouts: list[PayoutOut] = Field(description="What each distribution paid you, newest first.")

    @classmethod
    def of(cls, data: ResidentShares, zone: zoneinfo.ZoneInfo) -> MySharesOut:
        return cls(
            holdings=[
                HoldingOut(
                    asset_id=h.asset_id,
                    asset_name=h.asset_name,
                    shares=h.shares,
                    total_shares=h.total_shares,
                )
                for h in data.holdings
            ],
            payouts=[
                PayoutOut(
                    asset_id=p.asset_id,
                    period_end=local_iso(p.period_end, zone),
                    shares=p.shares,
                    credit_milli=p.credit_milli,
                    carbon_g=p.carbon_g,
                )
                for p in data.payouts
            ],
        )


class HolderOut(BaseModel):
    vid: str
    shares: int


class AssetSharesOut(BaseModel):
    asset_id: int
    name: str
    total_shares: int
    holders: int
    holdings: list[HolderOut] | None = Field(
        None, description="Holders by VID: only for the billing purpose (each read recorded)."
    )
    next_offset: int | None = Field(
        None, description="Pass as `offset` for the next page of holders."
    )
    distributions: list[DistributionOut]

    @classmethod
    def of(
        cls, data: AssetShares, zone: zoneinfo.ZoneInfo, *, listed: bool, next_offset: int | None
    ) -> AssetSharesOut:
        return cls(
            asset_id=data.asset.id,
            name=data.asset.name,
            total_shares=data.total_shares,
            holders=data.holders,
            holdings=[HolderOut(vid=v, shares=n) for _, v, n in data.holdings] if listed else None,
            next_offset=next_offset,
            distributions=[DistributionOut.of(d, zone) for d in data.distributions],
        )
