"""Identity's settings: the issuers trusted, the sector, how long tokens last.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class IdentitySettings(BaseModel):
    issuer_keys: str = Field(
        "",
        description="Verifier keys (vkeys, whitespace-separated) of the identity issuers whose "
        "enrolment assertions the platform accepts (`cityshare issuer key` prints one).",
    )
    sector: str = Field(
        "cityshare",
        description="The sector (assertion audience) residents' pseudonyms are derived for.",
    )
    token_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="How long a resident's or device's token lasts."
    )
