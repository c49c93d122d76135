"""Charging's settings: the pseudonyms of vehicles, the OCPP door's re-checks.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class ChargingSettings(BaseModel):
    pseudonym_secret: SecretStr | None = Field(
        None,
        description="Secret (at least 32 characters) keying the per-counterparty pseudonyms of "
        "vehicles; if unset, <key_dir>/pseudonym.secret (made on first use).",
    )
    ocpp_recheck_seconds: float = Field(
        60.0,
        ge=0,
        description="How often `cityshare ocpp serve` checks that every connected charger is "
        "still admitted (live, its operator's, the password it logged in with) and closes the "
        "connection of one that is not, even if it sends nothing (0: only at its next message).",
    )
