"""`cityshare bench community`: one settlement period of a community asset paid out to N
shareholders through the service layer.

Setup (not timed): N enrolled residents with their wallets (written in bulk, each record and
its log leaf as the handlers write them), one community asset, shares issued to every
resident (1 to 100 each, one `IssueShares`), and the asset's CREDIT and CARBON wallets funded
with a month's earnings (amounts that do not divide evenly, so remainders are handed out).

Timed: one `DistributeCommunityEarnings` on the message bus: holdings at the period end
summed from the share events, the pro-rata split of both ledgers, one linked chain of up to
2N transfers checked and posted atomically, the distribution and N payout rows, every record
appended to the audit log, a checkpoint signed, one durable commit. Then a rerun of the same
period (which must pay nothing) is timed on its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cityshare.audit import verify as audit_service
from cityshare.bench.ledger import machine
from cityshare.bootstrap import Platform, bootstrap, unit_of_work
from cityshare.community import commands as community_commands
from cityshare.community.handlers import Status
from cityshare.identity import commands as identity_commands
from cityshare.identity import records as identity_records
from cityshare.identity.model import EnrolmentRow, ResidentRow, new_vid
from cityshare.identity.residents import wallet_account_id, wallet_accounts
from cityshare.identity.tables import residents
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.db import is_sqlite
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger, NewAccount, Transfer
from cityshare.settings import Settings
from cityshare.tlog import note

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
#: Shares are issued and earnings credited in June 2026; the period ends 1 July (India).
START = int(dt.datetime(2026, 6, 10, 12, tzinfo=IST).timestamp())
PERIOD_END = int(dt.datetime(2026, 7, 1, tzinfo=IST).timestamp()) * 1_000_000_000
SETUP_CHUNK = 2_000
#: A month of a large array's earnings: 1,234,567.891 points and 9,876,543 g CO2e.
CREDIT_EARNED = 1_234_567_891
CARBON_EARNED = 9_876_543


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _residents(platform: Platform, n: int, rng: random.Random) -> list[str]:
    """N residents (enrolled, with wallets) in bulk; their VIDs."""
    now = platform.clock.now_ns()
    vids: list[str] = []
    for start in range(0, n, SETUP_CHUNK):
        count = min(SETUP_CHUNK, n - start)
        uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
        with uow:
            last = uow.ledger.lock_ledger()
            repo = uow.identity
            first = repo.next_id(residents)
            leaves: list[bytes] = []
            wallets: list[NewAccount] = []
            for i in range(count):
                rid = first + i
                vid = new_vid(rng)
                resident = ResidentRow(rid, _b64(secrets.token_bytes(32)), "bench", now)
                enrolment = EnrolmentRow(rid, rid, vid, {"ward": str(rid % 30)}, f"b-{rid}", now)
                repo.insert_resident(resident)
                repo.insert_enrolment(enrolment)
                leaves += [
                    identity_records.RESIDENT.of(resident),
                    identity_records.ENROLMENT.of(enrolment),
                ]
                wallets += wallet_accounts(rid)
                vids.append(vid)
            uow.log.append(leaves)
            ledger_service.open_accounts(uow, wallets, last_timestamp=last, atomic=True)
            uow.commit()
    return vids


def _setup(platform: Platform, holders: int, seed: int) -> int:
    rng = random.Random(seed)
    vids = _residents(platform, holders, rng)
    asset = platform.bus.handle(
        identity_commands.CreateOrganisation("community", "Bench Solar Park")
    ).id
    grants = [community_commands.ShareGrant(vid, rng.randint(1, 100)) for vid in vids]
    platform.bus.handle(community_commands.IssueShares(asset, grants, "bench"))
    funding = [NewAccount(1, Ledger.CREDIT, 1), NewAccount(2, Ledger.CARBON, 1)]
    platform.bus.handle(ledger_commands.CreateAccounts(funding))
    outcome = platform.bus.handle(
        ledger_commands.CreateTransfers(
            [
                Transfer(1, 1, wallet_account_id(asset, Ledger.CREDIT), CREDIT_EARNED, 1),
                Transfer(2, 2, wallet_account_id(asset, Ledger.CARBON), CARBON_EARNED, 3),
            ],
            atomic=True,
        )
    )
    if outcome.failed:
        raise RuntimeError(f"funding the asset failed: {outcome.failed}")
    return int(asset)


def run(
    *, holders: int, database_url: str | None = None, seed: int = 20261126, audit: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cityshare-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        signer = note.Signer.generate("bench.cityshare.local/log")
        settings = Settings(
            database_url=url,
            log_key=SecretStr(signer.skey),
            token_key=SecretStr(note.Signer.generate("bench.cityshare.local/tokens").skey),
            pseudonym_secret=SecretStr(secrets.token_urlsafe(32)),
            key_dir=Path(tmp) / "keys",
        )
        clock = ManualClock(START * 1_000_000_000)
        platform = bootstrap(settings, clock=clock)
        try:
            setup_started = time.perf_counter()
            asset = _setup(platform, holders, seed)
            setup_seconds = time.perf_counter() - setup_started
            clock.advance((PERIOD_END - clock.now_ns()) / 1e9 + 3600)
            with platform.uow() as uow:
                leaves_before = uow.log.size()

            started = time.perf_counter()
            outcome = platform.bus.handle(
                community_commands.DistributeCommunityEarnings(asset, PERIOD_END)
            )
            seconds = time.perf_counter() - started

            rerun_started = time.perf_counter()
            again = platform.bus.handle(
                community_commands.DistributeCommunityEarnings(asset, PERIOD_END)
            )
            rerun_seconds = time.perf_counter() - rerun_started

            with platform.uow() as uow:
                leaves = uow.log.size() - leaves_before
                left = {
                    ledger.name: uow.ledger.load_accounts([wallet_account_id(asset, ledger)])[
                        wallet_account_id(asset, ledger)
                    ].balance
                    for ledger in (Ledger.CREDIT, Ledger.CARBON)
                }
            invariants = ledger_service.check_invariants(platform.uow())
            audit_result = None
            if audit:
                audit_started = time.perf_counter()
                report = audit_service.verify(
                    unit_of_work(platform.engine, write=False), signer.verifier
                )
                audit_result = {
                    "ok": report.ok,
                    "seconds": round(time.perf_counter() - audit_started, 1),
                    "problems": [p.message for p in report.problems[:10]],
                }
            database = "sqlite" if is_sqlite(platform.engine) else "postgresql"
        finally:
            platform.close()
    payouts = outcome.payouts
    paid_credit = sum(p.credit_milli for p in payouts)
    paid_carbon = sum(p.carbon_g for p in payouts)
    rate = outcome.transfers / seconds if seconds else 0.0
    result: dict[str, Any] = {
        "scenario": "community",
        "n": holders,
        "seconds": round(seconds, 3),
        "transfers": outcome.transfers,
        "transfers_per_s": round(rate, 1),
        "per_s": round(rate, 1),
        "holders_per_s": round(holders / seconds, 1) if seconds else 0.0,
        "log_leaves": leaves,
        "status": outcome.status.value,
        "exact": paid_credit == CREDIT_EARNED and paid_carbon == CARBON_EARNED,
        "paid": {"credit_milli": paid_credit, "carbon_g": paid_carbon},
        "left_in_wallets": left,
        "rerun_seconds": round(rerun_seconds, 3),
        "rerun_paid_nothing": again.status == Status.ALREADY_DISTRIBUTED,
        "database": database,
        "setup_seconds": round(setup_seconds, 1),
        "invariants_ok": invariants.ok,
        "machine": machine(),
    }
    if audit_result is not None:
        result["audit"] = audit_result
    return result
