"""Settings, from the environment (prefix `CITYSHARE_`) or a `.env` file; secrets live only here."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cityshare.community.model import SettlementPeriod


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
    idempotency_retention_seconds: int = Field(
        86400,
        ge=86400,
        le=366 * 86400,
        description="How long the answer to a write sent with an `Idempotency-Key` is kept "
        "for retries of it (at least a day); older ones are purged and the key may be used "
        "again.",
    )
    key_dir: Path | None = Field(
        None,
        description="Where the platform keeps keys it generated itself (mode 0600) when no key "
        "is given in settings: the audit log's signing key, the token signing key, the "
        "pseudonym and seal secrets. Default: "
        "a `keys` folder beside the SQLite database file, or ./keys for PostgreSQL.",
    )
    log_key: SecretStr | None = Field(
        None,
        description="The audit log's signing key, a signed-note private key "
        "(PRIVATE+KEY+<name>+<id>+<base64>); if unset, <key_dir>/log.skey (made on first use).",
    )
    log_name: str = Field(
        "cityshare.local/audit-log",
        description="Name (and checkpoint origin) of a log key generated on first use.",
    )
    issuer_keys: str = Field(
        "",
        description="Verifier keys (vkeys, whitespace-separated) of the identity issuers whose "
        "enrolment assertions the platform accepts (`cityshare issuer key` prints one).",
    )
    sector: str = Field(
        "cityshare",
        description="The sector (assertion audience) residents' pseudonyms are derived for.",
    )
    token_key: SecretStr | None = Field(
        None,
        description="Signing key of bearer tokens (signed-note private key); if unset, "
        "<key_dir>/token.skey (made on first use).",
    )
    token_ttl_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="How long a resident's or device's token lasts."
    )
    pseudonym_secret: SecretStr | None = Field(
        None,
        description="Secret (at least 32 characters) keying the per-counterparty pseudonyms of "
        "vehicles; if unset, <key_dir>/pseudonym.secret (made on first use).",
    )
    seal_secret: SecretStr | None = Field(
        None,
        description="Secret (at least 32 characters) keying the seals of stored rows the "
        "public audit log does not cover (charger password hashes, stored replies to keyed "
        "writes), which `audit verify` checks; if unset, <key_dir>/seal.secret (made on first "
        "use). Keep it as the other keys: a changed one makes every seal fail.",
    )
    witness_keys: str = Field(
        "",
        description="Verifier keys (vkeys, whitespace-separated) of the witnesses whose "
        "cosignatures of checkpoints the log accepts and serves.",
    )
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
    ocpp_recheck_seconds: float = Field(
        60.0,
        ge=0,
        description="How often `cityshare ocpp serve` checks that every connected charger is "
        "still admitted (live, its operator's, the password it logged in with) and closes the "
        "connection of one that is not, even if it sends nothing (0: only at its next message).",
    )
    reading_sweep_seconds: float = Field(
        300.0,
        ge=0,
        description="How often `serve` bridges the gaps of meters gone silent: readings that "
        "waited the tariff's gap horizon for a reading that never came are credited (0: never; "
        "`cityshare energy sweep` does it by hand).",
    )
    scheduler_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="How long the periodic jobs' database lease lasts: of the `serve` and "
        "`cityshare worker` processes on one database, only the lease's holder runs the jobs "
        "(billing, expiry, sweeps); it renews the lease every third of this, and another "
        "takes over this long after the holder stopped renewing. Longer than any one job.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
