"""Billing's settings: the default provider and how often it bills.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class BillingSettings(BaseModel):
    default_provider: int | None = Field(
        None,
        description="The organisation (a provider or community id) that sells energy to "
        "residents who never chose one; if unset, the first organisation of kind provider.",
    )
    billing_seconds: float = Field(
        60.0,
        ge=0,
        description="How often `serve` bills new meter intervals and retries arrears (0: "
        "never; `cityshare energy bill` does it by hand).",
    )
