"""Settings, from the environment (prefix `CITYSHARE_`) or a `.env` file; secrets live only here.

One class of every capability's settings (each in its package's `settings.py`) over the
platform-wide ones (`kernel/settings.py`): a new capability with settings adds its class here.
"""

from __future__ import annotations

from functools import lru_cache

from cityshare.billing.settings import BillingSettings
from cityshare.charging.settings import ChargingSettings
from cityshare.community.settings import CommunitySettings
from cityshare.energy.settings import EnergySettings
from cityshare.identity.settings import IdentitySettings
from cityshare.kernel.settings import KernelSettings
from cityshare.ledger.settings import LedgerSettings


class Settings(
    KernelSettings,
    LedgerSettings,
    IdentitySettings,
    EnergySettings,
    CommunitySettings,
    BillingSettings,
    ChargingSettings,
):
    """Every setting of the platform."""


@lru_cache
def get_settings() -> Settings:
    return Settings()
