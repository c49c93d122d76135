"""The ledger's settings.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LedgerSettings(BaseModel):
    expiry_sweep_seconds: float = Field(
        1.0, gt=0, description="How often `serve` releases pending transfers whose timeout passed."
    )
