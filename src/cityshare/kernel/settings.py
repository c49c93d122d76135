"""The platform-wide settings, from the environment (prefix `CITYSHARE_`) or a `.env` file;
secrets live only here. Each capability adds its own in its `settings.py`, and
`cityshare.settings.Settings` is all of them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KernelSettings(BaseSettings):
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
    token_key: SecretStr | None = Field(
        None,
        description="Signing key of bearer tokens (signed-note private key); if unset, "
        "<key_dir>/token.skey (made on first use).",
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
    scheduler_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="How long the periodic jobs' database lease lasts: of the `serve` and "
        "`cityshare worker` processes on one database, only the lease's holder runs the jobs "
        "(billing, expiry, sweeps); it renews the lease every third of this, and another "
        "takes over this long after the holder stopped renewing. Longer than any one job.",
    )
