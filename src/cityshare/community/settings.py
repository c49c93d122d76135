"""Community assets' settings: the settlement period and how often it settles.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from cityshare.community.model import SettlementPeriod


class CommunitySettings(BaseModel):
    community_period: SettlementPeriod = Field(
        SettlementPeriod.MONTHLY,
        description="How often community assets pay their earnings out to shareholders: daily "
        "or monthly (periods end at local midnight in the tariff's timezone).",
    )
    community_settle_seconds: float = Field(
        3600.0,
        ge=0,
        description="How often `serve` settles community assets whose period ended (0: never; "
        "`cityshare community settle` does it by hand).",
    )
