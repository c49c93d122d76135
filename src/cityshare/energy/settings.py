"""Energy's settings: the tariff, the signature checkers, the MQTT door, the sweep.

Each is a `CITYSHARE_` variable, read by `cityshare.settings.Settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class EnergySettings(BaseModel):
    tariffs_path: Path | None = Field(
        None,
        description="A TOML file of tariffs and crediting rules replacing the one shipped in "
        "the package (cityshare/data/tariffs.toml shows the format).",
    )
    verify_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Processes that check reading signatures in parallel for large batches "
        "(0: check them in the serving process).",
    )
    mqtt_username: str | None = Field(
        None, description="User name `cityshare ingest` gives the MQTT broker (if it asks one)."
    )
    mqtt_password: SecretStr | None = Field(
        None, description="Password `cityshare ingest` gives the MQTT broker."
    )
    reading_sweep_seconds: float = Field(
        300.0,
        ge=0,
        description="How often `serve` bridges the gaps of meters gone silent: readings that "
        "waited the tariff's gap horizon for a reading that never came are credited (0: never; "
        "`cityshare energy sweep` does it by hand).",
    )
