"""Commands of community assets: shares, and the payout of each period's earnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class ShareGrant:
    """New shares of a community asset for the resident holding this virtual id."""

    vid: str
    shares: int


@dataclass(frozen=True, slots=True)
class IssueShares(Command):
    """Issue new shares of a community asset (all grants or none); `actor` names who asked."""

    asset_id: int
    grants: Sequence[ShareGrant]
    actor: str


@dataclass(frozen=True, slots=True)
class TransferShares(Command):
    """A holder gives some of their shares of a community asset to another resident."""

    asset_id: int
    from_resident: int
    to_vid: str
    shares: int
    actor: str


@dataclass(frozen=True, slots=True)
class DistributeCommunityEarnings(Command):
    """Pay out what the asset's wallets held at the end of one settlement period to its
    holders at that instant, pro rata; a rerun for the same period pays nothing again."""

    asset_id: int
    period_end_ns: int


@dataclass(frozen=True, slots=True)
class SettleCommunityAssets(Command):
    """Distribute every ended settlement period not yet settled (of one asset, or of all;
    only the period ending at `period_end_ns` when one is given), oldest first."""

    asset_id: int | None = None
    period_end_ns: int | None = None
