"""Settings, from the environment (prefix `CITYSHARE_`) or a `.env` file; secrets live only here."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYSHARE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./cityshare.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    operator_token: SecretStr | None = Field(
        None,
        description="Bearer token that grants operator access to /api/v1 (ledger operations).",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    max_batch: int = Field(
        8190, ge=1, le=100_000, description="Most transfers or accounts accepted in one request."
    )
    expiry_sweep_seconds: float = Field(
        1.0, gt=0, description="How often `serve` releases pending transfers whose timeout passed."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
