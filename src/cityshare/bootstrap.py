"""Wires the platform together: engine, unit of work, bus and handlers, from settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, make_url

from cityshare.billing import handlers as billing
from cityshare.charging import handlers as charging
from cityshare.community import handlers as community
from cityshare.energy import handlers as energy
from cityshare.energy.model import Tariff, load_tariff
from cityshare.identity import access
from cityshare.identity import handlers as identity
from cityshare.identity.model import check_sector
from cityshare.identity.tokens import TokenService
from cityshare.kernel import commands, idempotency, keys, migrate
from cityshare.kernel.bus import MessageBus
from cityshare.kernel.clock import Clock, SystemClock
from cityshare.kernel.db import make_engine
from cityshare.kernel.seal import Sealer
from cityshare.kernel.settings import Settings, get_settings
from cityshare.kernel.uow import SqlUnitOfWork
from cityshare.ledger import handlers as ledger
from cityshare.tlog import cosignature, note
from cityshare.tlog import handlers as audit_log

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
        return SqlUnitOfWork(self.engine, self.clock, write=False, sealer=self.sealer)

    @property
    def personal_data(self) -> access.PersonalData:
        """Reads of a resident's data by someone else: checked and recorded (every door)."""
        return access.PersonalData(
            self.uow, self.bus, self.tariff, self.settings.default_provider
        )

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
    issuers = keys.parse_verifiers(settings.issuer_keys)
    check_sector(settings.sector)  # a bad setting fails here, not on the first enrolment
    witnesses = parse_witness_keys(settings.witness_keys)
    tariff = load_tariff(settings.tariffs_path)
    engine = make_engine(url)
    if upgrade:
        migrate.upgrade(engine, sealer=sealer)
    clock = clock or SystemClock()
    verifier = energy.ReadingVerifier(
        lambda: SqlUnitOfWork(engine, clock, write=False), workers=settings.verify_workers
    )
    bus = MessageBus(
        uow_factory=lambda: SqlUnitOfWork(engine, clock, log_signer=log_signer, sealer=sealer),
        command_handlers={
            commands.CreateAccounts: ledger.create_accounts,
            commands.CreateTransfers: ledger.create_transfers,
            commands.ExpirePendingTransfers: ledger.expire_pending_transfers,
            commands.PurgeIdempotencyKeys: functools.partial(
                idempotency.purge_expired,
                retention_seconds=settings.idempotency_retention_seconds,
            ),
            commands.EnrolResident: functools.partial(
                identity.enrol_resident, issuers=issuers, sector=settings.sector
            ),
            commands.CreateOrganisation: identity.create_organisation,
            commands.RegisterDevice: identity.register_device,
            commands.RevokeDevice: identity.revoke_device,
            commands.RotateDeviceKey: identity.rotate_device_key,
            commands.RecordAccess: identity.record_access,
            commands.IngestReadings: functools.partial(
                energy.ingest_readings, verifier=verifier, tariff=tariff
            ),
            commands.SweepWaitingReadings: functools.partial(
                energy.sweep_waiting_readings, tariff=tariff
            ),
            commands.IssueShares: community.issue_shares,
            commands.TransferShares: community.transfer_shares,
            commands.DistributeCommunityEarnings: functools.partial(
                community.distribute_earnings,
                zone=tariff.zone,
                period=settings.community_period,
            ),
            commands.SettleCommunityAssets: functools.partial(
                community.settle, zone=tariff.zone, period=settings.community_period
            ),
            commands.SetPriceList: functools.partial(billing.set_price_list, tariff=tariff),
            commands.ChooseProvider: billing.choose_provider,
            commands.TopUpWallet: billing.top_up_wallet,
            commands.BillEnergy: functools.partial(
                billing.bill_energy, default_provider_setting=settings.default_provider
            ),
            commands.SetChargerPassword: charging.set_charger_password,
            commands.RegisterIdToken: functools.partial(
                charging.register_id_token, secret=pseudonym_secret
            ),
            commands.RemoveIdToken: charging.remove_id_token,
            commands.StartChargingSession: functools.partial(
                charging.start_charging_session, secret=pseudonym_secret
            ),
            commands.StopChargingSession: charging.stop_charging_session,
            commands.PlanChargingReadings: charging.plan_readings,
            commands.AddCosignatures: functools.partial(
                audit_log.add_cosignatures,
                log_verifier=log_signer.verifier,
                witnesses=witnesses,
            ),
        },
    )
    return Platform(
        settings,
        engine,
        clock,
        bus,
        log_signer,
        tokens,
        pseudonym_secret,
        tariff,
        verifier,
        witnesses=witnesses,
        sealer=sealer,
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
