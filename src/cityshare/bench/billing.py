"""`cityshare bench billing`: pay-as-you-go billing of imported energy, through the service layer.

Setup (not timed): two providers with price lists (the first is every resident's default;
every other resident chooses the second), N residents each with one meter and K 15-minute
intervals of a rooftop-solar day ingested as signed readings (`bench ingest`'s setup), and
every resident's INR wallet topped up by a platform settlement account, except every tenth,
left empty so its bills go into arrears.

Timed: one `BillEnergy` over everything: read the intervals in id order, price each in its
time-of-day window at the price list in force of the provider chosen at its start (remainders
carried per resident and provider), pay from the wallets oldest first, store the bills and a
run record, log them all, one durable commit per batch. Then a rerun (nothing new: it bills
and pays nothing) is timed too.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from cityshare.bench.ingest import INTERVAL, START, _setup, make_readings
from cityshare.bench.ledger import machine
from cityshare.billing import commands as billing_commands
from cityshare.billing import handlers as billing
from cityshare.billing import records as billing_records
from cityshare.billing.model import ChoiceRow
from cityshare.bootstrap import Platform, bootstrap, unit_of_work
from cityshare.energy import commands as energy_commands
from cityshare.identity import commands as identity_commands
from cityshare.identity.residents import wallet_account_id
from cityshare.identity.tables import residents
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.db import is_sqlite
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger, NewAccount, Transfer
from cityshare.settings import Settings
from cityshare.tlog import note

SETTLEMENT = 900_001
TOP_UP = 1_000_000  # ₹10,000: more than a day of any household's imports
INGEST_BATCH = 4_096


def run(
    *,
    residents: int,
    intervals: int,
    batch: int = billing.DEFAULT_BATCH,
    database_url: str | None = None,
    seed: int = 20261125,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cityshare-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(
            database_url=url,
            log_key=SecretStr(note.Signer.generate("bench.cityshare.local/log").skey),
            token_key=SecretStr(note.Signer.generate("bench.cityshare.local/tokens").skey),
            pseudonym_secret=SecretStr(secrets.token_urlsafe(32)),
            key_dir=Path(tmp) / "keys",
            max_batch=INGEST_BATCH,
        )
        clock = ManualClock((START - 3600) * 1_000_000_000)
        platform = bootstrap(settings, clock=clock)
        try:
            bus = platform.bus
            setup_started = time.perf_counter()
            utility = bus.handle(
                identity_commands.CreateOrganisation("provider", "Bench Utility")
            ).id
            eaas = bus.handle(identity_commands.CreateOrganisation("provider", "Bench EaaS")).id
            for org, prices in (
                (utility, {"normal": 650, "solar": 480, "peak": 790}),
                (eaas, {"normal": 600, "solar": 420, "peak": 760}),
            ):
                bus.handle(billing_commands.SetPriceList(org, {"prices": prices}, "bench"))
            keys = _setup(platform, residents, seed)
            resident_ids = _resident_ids(platform)
            _choose(platform, resident_ids[1::2], eaas)
            readings = [token for row in make_readings(keys, intervals, seed) for token in row]
            clock.advance(INTERVAL * (intervals + 1) + 3600)
            for start in range(0, len(readings), INGEST_BATCH):
                bus.handle(energy_commands.IngestReadings(readings[start : start + INGEST_BATCH]))
            _top_up(platform, [r for i, r in enumerate(resident_ids) if i % 10 != 9])
            setup_seconds = time.perf_counter() - setup_started

            started = time.perf_counter()
            outcome: billing.BillingOutcome = bus.handle(billing_commands.BillEnergy(batch=batch))
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            rerun: billing.BillingOutcome = bus.handle(billing_commands.BillEnergy(batch=batch))
            rerun_seconds = time.perf_counter() - started
            report = ledger_service.check_invariants(platform.uow())
            with platform.uow() as uow:
                leaves = uow.log.size()
            rate = outcome.bills / seconds if seconds else 0.0
            return {
                "scenario": "billing",
                "n": outcome.bills,
                "seconds": round(seconds, 3),
                "intervals_billed_per_s": round(rate, 1),
                "per_s": round(rate, 1),
                "residents": residents,
                "intervals": intervals,
                "batch": batch,
                "database": "sqlite" if is_sqlite(platform.engine) else "postgresql",
                "examined": outcome.examined,
                "bills": outcome.bills,
                "billed_paise": outcome.billed,
                "paid_bills": outcome.paid_bills,
                "paid_paise": outcome.paid,
                "unpaid_bills": outcome.unpaid_bills,
                "residents_short": len(outcome.short),
                "batches": outcome.batches,
                "us_per_interval": round(seconds / outcome.examined * 1e6, 1)
                if outcome.examined
                else 0.0,
                "rerun_seconds": round(rerun_seconds, 3),
                "rerun_billed_nothing": rerun.bills == 0 and rerun.paid_bills == 0,
                "log_leaves": leaves,
                "setup_seconds": round(setup_seconds, 1),
                "invariants_ok": report.ok,
                "machine": machine(),
            }
        finally:
            platform.close()


def _resident_ids(platform: Platform) -> list[int]:
    with platform.uow() as uow:
        rows = uow.identity.conn.execute(select(residents.c.id).order_by(residents.c.id)).all()
    return [r[0] for r in rows]


def _choose(platform: Platform, resident_ids: list[int], provider: int) -> None:
    """These residents choose `provider`: the records `ChooseProvider` writes, in one commit."""
    uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
    with uow:
        uow.ledger.lock_ledger()
        now = platform.clock.now_ns()
        first = uow.billing.next_choice_id()
        rows = [
            ChoiceRow(first + i, rid, provider, now // 1_000_000_000, now)
            for i, rid in enumerate(resident_ids)
        ]
        for row in rows:
            uow.billing.insert_choice(row)
        uow.log.append([billing_records.PROVIDER_CHOICE.of(r) for r in rows])
        uow.commit()


def _top_up(platform: Platform, resident_ids: list[int]) -> None:
    """A platform settlement account pays `TOP_UP` into each wallet (batches of 8190)."""
    platform.bus.handle(
        ledger_commands.CreateAccounts(
            [NewAccount(SETTLEMENT, Ledger.INR, 1, 0, "platform:settlement")]
        )
    )
    transfers = [
        Transfer(SETTLEMENT * 100_000 + i, SETTLEMENT, wallet_account_id(rid, Ledger.INR), TOP_UP,
                 Ledger.INR, 1)
        for i, rid in enumerate(resident_ids)
    ]  # fmt: skip
    for start in range(0, len(transfers), 8190):
        outcome = platform.bus.handle(
            ledger_commands.CreateTransfers(transfers[start : start + 8190], atomic=True)
        )
        if outcome.failed:
            raise RuntimeError(f"top-ups failed: {outcome.failed[:3]}")
