"""Wires the platform together: engine, unit of work, bus and handlers, from settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, make_url

from cityshare import migrate
from cityshare.capabilities import CAPABILITIES
from cityshare.energy import verify as energy
from cityshare.energy.tariff import Tariff, load_tariff
from cityshare.identity import access
from cityshare.identity.model import check_sector
from cityshare.identity.tokens import TokenService
from cityshare.kernel import keys
from cityshare.kernel.bus import MessageBus
from cityshare.kernel.capability import Capability, RepositoryFactory
from cityshare.kernel.clock import Clock, SystemClock
from cityshare.kernel.db import make_engine
from cityshare.kernel.idempotency import IdempotencyMiddleware
from cityshare.kernel.scheduler import Lease, Scheduler, scheduled_jobs
from cityshare.kernel.seal import Sealer
from cityshare.kernel.uow import SqlUnitOfWork
from cityshare.settings import Settings, get_settings
from cityshare.tlog import cosignature, note

TOKEN_KEY_NAME = "cityshare.local/tokens"


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    clock: Clock
    bus: MessageBus
    log_signer: note.Signer
    tokens: TokenService
    #: Keys the per-counterparty pseudonyms of vehicles (never leaves the platform).
    pseudonym_secret: bytes
    #: What exported energy earns (CITYSHARE_TARIFFS_PATH, or the tariff shipped in the package).
    tariff: Tariff
    #: Checks signed readings (and owns the process pool that may do it).
    reading_verifier: energy.ReadingVerifier
    #: Witnesses (e.g. digital twins) whose cosignatures of checkpoints the log keeps.
    witnesses: list[cosignature.CosignatureVerifier] = field(default_factory=list)
    #: Seals the stored rows the public log does not cover (kernel/seals.py); never leaves the
    #: platform (not in the database, not in the log).
    sealer: Sealer | None = None

    def uow(self) -> SqlUnitOfWork:
        """A read-only unit of work for queries."""
        return unit_of_work(self.engine, self.clock, write=False, sealer=self.sealer)

    @property
    def personal_data(self) -> access.PersonalData:
        """Reads of a resident's data by someone else: checked and recorded (every door)."""
        return access.PersonalData(self.uow, self.bus, self.tariff, self.settings.default_provider)

    def scheduler(self) -> Scheduler:
        """A scheduler of every capability's jobs on this platform's bus, under the lease on
        its database (`serve` and `cityshare worker` each run one; kernel/scheduler.py)."""
        lease = Lease(self.engine, self.clock, self.settings.scheduler_lease_seconds)
        jobs = scheduled_jobs(CAPABILITIES, self.settings)
        return Scheduler(jobs, self.bus.handle, lease, self.settings)

    def close(self) -> None:
        self.reading_verifier.close()
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    upgrade: bool = True,
) -> Platform:
    settings = settings or get_settings()
    url = database_url or settings.database_url
    key_dir = settings.key_dir or default_key_dir(url)
    log_signer = keys.signer_from(settings.log_key, key_dir / "log.skey", settings.log_name)
    tokens = TokenService(
        keys.signer_from(settings.token_key, key_dir / "token.skey", TOKEN_KEY_NAME)
    )
    pseudonym_secret = keys.secret_from(settings.pseudonym_secret, key_dir / "pseudonym.secret")
    sealer = seal_key(settings, url)
    keys.parse_verifiers(settings.issuer_keys)  # a bad setting fails here, at start
    check_sector(settings.sector)  # a bad setting fails here, not on the first enrolment
    witnesses = parse_witness_keys(settings.witness_keys)
    tariff = load_tariff(settings.tariffs_path)
    engine = make_engine(url)
    if upgrade:
        migrate.upgrade(engine, sealer=sealer)
    clock = clock or SystemClock()
    verifier = energy.ReadingVerifier(
        lambda: unit_of_work(engine, clock, write=False), workers=settings.verify_workers
    )
    platform = Platform(
        settings,
        engine,
        clock,
        MessageBus(
            uow_factory=lambda: unit_of_work(engine, clock, log_signer=log_signer, sealer=sealer),
            command_handlers={},
            middleware=[IdempotencyMiddleware(writer_lock(CAPABILITIES))],
        ),
        log_signer,
        tokens,
        pseudonym_secret,
        tariff,
        verifier,
        witnesses=witnesses,
        sealer=sealer,
    )
    for capability in CAPABILITIES:
        platform.bus.command_handlers.update(capability.handlers(platform))
        for event, handlers in capability.event_handlers(platform).items():
            platform.bus.event_handlers.setdefault(event, []).extend(handlers)
    return platform


def writer_lock(capabilities: Sequence[Capability]) -> Callable[[Any], None]:
    """The locks every writer takes (`Capability.writer_lock`), taken in the capabilities'
    order."""
    locks = [c.writer_lock for c in capabilities if c.writer_lock is not None]

    def lock(uow: Any) -> None:
        for take in locks:
            take(uow)

    return lock


#: Each capability's repository, by its name on a unit of work.
REPOSITORIES: dict[str, RepositoryFactory] = {
    name: factory
    for capability in CAPABILITIES
    for name, factory in capability.repositories.items()
}


def unit_of_work(
    engine: Engine,
    clock: Clock | None = None,
    *,
    write: bool = True,
    log_signer: note.Signer | None = None,
    sealer: Sealer | None = None,
) -> SqlUnitOfWork:
    """A unit of work on `engine` with every capability's repository (see `SqlUnitOfWork`)."""
    return SqlUnitOfWork(
        engine, REPOSITORIES, clock, write=write, log_signer=log_signer, sealer=sealer
    )


def seal_key(settings: Settings, database_url: str) -> Sealer:
    """The key of row seals: CITYSHARE_SEAL_SECRET, else <key_dir>/seal.secret (made on first
    use, like the other keys)."""
    key_dir = settings.key_dir or default_key_dir(database_url)
    return Sealer(keys.secret_from(settings.seal_secret, key_dir / "seal.secret"))


def parse_witness_keys(text: str) -> list[cosignature.CosignatureVerifier]:
    """The witness keys of `CITYSHARE_WITNESS_KEYS`; a bad one stops the platform from starting
    (a silently ignored witness would make every cosignature it posts look refused)."""
    try:
        return cosignature.parse_verifiers(text)
    except note.NoteError as exc:
        raise keys.KeyStoreError(f"CITYSHARE_WITNESS_KEYS holds an unusable key: {exc}") from exc


def default_key_dir(database_url: str) -> Path:
    """Keys the platform made itself live beside its SQLite file, so each database keeps its
    own log identity; a server database has no file, so they go to ./keys."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "keys"
    return Path("keys")
