"""Energy capability: ingest signed meter readings and credit residents' wallets.

One handler for every door (HTTP now; MQTT and OCPP hand over the same `IngestReadings`):

1. **Verify, outside the write lock.** Each item is parsed (`trust.readings`), its device and
   keys are looked up for the whole batch in one read query, and signatures are checked, in a
   process pool across cores when the batch is large and `CITYSHARE_VERIFY_WORKERS` > 0.
2. **Write, in one transaction under the ledger lock.** Keys revoked meanwhile are refused;
   readings are deduplicated by (device, seq) against the store and the batch (a replay or a
   retried batch changes nothing: "duplicate"); new readings are stored; each device's chain
   (`domain.energy`) takes every reading that can join it; each joined reading records its
   interval, what it credited and the chain after it; the credits are posted as ledger
   transfers; readings, intervals (and a tariff seen for the first time) become audit-log
   leaves; one commit.

Accounts and transfers. Three platform accounts, opened on first use (ids below 1000, code 20,
no balance limits, so they go negative by what the platform has issued):

| id | ledger | what |
| --- | --- | --- |
| 901 | CREDIT | smart-credit issuance: debited by every point credited for exports |
| 902 | ENERGY | the grid: debited by every Wh exported to it, credited by every Wh imported |
| 903 | CARBON | carbon-credit issuance: debited by every gram CO2e credited |

For each `ok` interval: points 901 -> the owner's CREDIT wallet (code 4001), grams 903 -> the
CARBON wallet (4002), exported Wh 902 -> the ENERGY wallet (4003), imported Wh the ENERGY
wallet -> 902 (4004); so a resident's ENERGY wallet is their net export (it may go negative),
and paying for imports (pay-as-you-go) can later settle against 902. Zero amounts are not
posted. A transfer's id is `2^62 | interval id << 2 | kind` and its `user_data` the interval
id: an interval exists at most once per (device, seq) (a unique index), so no retry can post
twice, and the id space above 2^62 (the platform's own postings) never meets ids a client
picks by hand, unlike a 62-bit hash of (device, seq, kind), which at city scale (10^9
postings) would collide with a probability near 10%.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import multiprocessing
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cityshare.domain import commands, events
from cityshare.domain.energy import (
    BASELINE,
    METERED_KINDS,
    OK,
    ChainState,
    Device,
    Reading,
    Step,
    Tariff,
    advance,
    reading_anomaly,
    rescale_carries,
    tariff_from_json,
)
from cityshare.domain.ledger import (
    CreateAccountResult,
    Ledger,
    NewAccount,
    Transfer,
    same_account,
)
from cityshare.domain.residents import wallet_account_id
from cityshare.services.ledger import open_accounts, post_transfers
from cityshare.services.unit_of_work import AbstractUnitOfWork
from cityshare.store.energy_repo import (
    DeviceKeys,
    IntervalRow,
    IntervalSums,
    ReadingRow,
    TariffRow,
)
from cityshare.trust import entries
from cityshare.trust.readings import ReadingError, SignedReading, parse, which_key

log = logging.getLogger(__name__)

SOURCES = frozenset({"http", "mqtt", "ocpp"})

CREDIT_ISSUANCE = 901
GRID_ENERGY = 902
CARBON_ISSUANCE = 903
PLATFORM_ACCOUNT_CODE = 20
PLATFORM_ACCOUNTS = (
    NewAccount(
        CREDIT_ISSUANCE, Ledger.CREDIT, PLATFORM_ACCOUNT_CODE, 0, "platform:credit-issuance"
    ),
    NewAccount(GRID_ENERGY, Ledger.ENERGY, PLATFORM_ACCOUNT_CODE, 0, "platform:grid"),
    NewAccount(
        CARBON_ISSUANCE, Ledger.CARBON, PLATFORM_ACCOUNT_CODE, 0, "platform:carbon-issuance"
    ),
)
ENERGY_TRANSFER_BASE = 1 << 62


class EnergyCode(enum.IntEnum):
    """Transfer codes of the postings ingestion makes (kind = code - 4001 in the id)."""

    EXPORT_CREDIT = 4001  # smart credit points for exported energy
    CARBON_CREDIT = 4002  # grams CO2e avoided by exported energy
    ENERGY_EXPORT = 4003  # Wh the resident gave the grid
    ENERGY_IMPORT = 4004  # Wh the resident took from it


def transfer_id(interval_id: int, code: EnergyCode) -> int:
    return ENERGY_TRANSFER_BASE | (interval_id << 2) | (code - EnergyCode.EXPORT_CREDIT)


class EnergyError(RuntimeError):
    """Ingestion cannot run at all (a setting or the platform's own accounts are wrong)."""


# -- how each record becomes a log entry (and is checked again by `audit verify`) ------------

_READING_FIELDS = (
    "id",
    "device_id",
    "seq",
    "ts",
    "import_wh",
    "export_wh",
    "received_at",
    "source",
    "jws",
)
_INTERVAL_FIELDS = (
    "id", "device_id", "seq", "prev_seq", "status", "start_ts", "end_ts", "tod", "import_wh",
    "export_wh", "carbon_g", "credit_milli", "owner_id", "tariff_id", "base_seq", "base_ts",
    "base_import", "base_export", "top_seq", "top_ts", "hw_ts", "hw_import", "hw_export",
    "carbon_carry", "credit_carry", "at",
)  # fmt: skip


def reading_entry(row: Sequence[Any]) -> bytes:
    return entries.encode_record("meter_reading", dict(zip(_READING_FIELDS, row, strict=True)))


def interval_entry(row: Sequence[Any]) -> bytes:
    return entries.encode_record("meter_interval", dict(zip(_INTERVAL_FIELDS, row, strict=True)))


def tariff_entry(row: TariffRow) -> bytes:
    return entries.encode_record(
        "tariff",
        {
            "id": row.id,
            "digest": row.digest,
            "name": row.name,
            "body": row.body,
            "added_at": row.added_at,
        },
    )


#: JSON entry type -> (table, how a stored row of it is encoded). `audit verify` walks this.
RECORD_ENCODERS: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes]]] = {
    "tariff": ("tariffs", lambda r: tariff_entry(TariffRow(**r))),
    "meter_reading": ("meter_readings", lambda r: reading_entry([r[f] for f in _READING_FIELDS])),
    "meter_interval": (
        "meter_intervals",
        lambda r: interval_entry([r[f] for f in _INTERVAL_FIELDS]),
    ),
}


# -- verification (outside the write lock) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    """An item whose signature a live key of a metered device made."""

    index: int
    reading: SignedReading
    device: DeviceKeys
    key_id: int


@dataclass(slots=True)
class Checked:
    verified: list[Verified] = field(default_factory=list)
    #: index -> why it was refused (a short code), and the device when it is known to be
    #: authentic (a signature made by a revoked key).
    rejected: dict[int, tuple[str, str | None]] = field(default_factory=dict)


class ReadingVerifier:
    """Checks the form and signature of readings, in batches.

    Devices and keys are looked up in one read query per batch (`read_uow`). Signatures are
    checked in this process, or, for batches of at least `pool_threshold` when `workers` > 0,
    in a pool of `workers` processes (started on first use, "spawn" so no lock or connection
    of this process is inherited).
    """

    def __init__(
        self,
        read_uow: Callable[[], AbstractUnitOfWork],
        *,
        workers: int = 0,
        pool_threshold: int = 512,
    ) -> None:
        self.read_uow = read_uow
        self.workers = workers
        self.pool_threshold = pool_threshold
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None

    def check(self, items: Sequence[object]) -> Checked:
        out = Checked()
        parsed: list[tuple[int, SignedReading]] = []
        for i, item in enumerate(items):
            try:
                parsed.append((i, parse(item)))
            except ReadingError as exc:
                out.rejected[i] = (exc.reason, None)
        if not parsed:
            return out
        with self.read_uow() as uow:
            devices = uow.energy.device_keys({r.device_id for _, r in parsed})
        jobs: list[tuple[list[bytes], bytes, bytes]] = []
        candidates: list[tuple[int, SignedReading, DeviceKeys, list[int]]] = []
        for i, reading in parsed:
            device = devices.get(reading.device_id)
            if device is None:
                out.rejected[i] = ("unknown_device", None)
            elif device.kind not in METERED_KINDS:
                out.rejected[i] = ("wrong_kind", None)
            else:
                # Live keys first, then revoked ones (to tell "revoked key" from "forged").
                keys = sorted(device.keys, key=lambda k: not k.live)
                jobs.append(
                    ([k.public_key for k in keys], reading.signing_input, reading.signature)
                )
                candidates.append((i, reading, device, [k.id for k in keys]))
        for (i, reading, device, key_ids), found in zip(
            candidates, self._which_keys(jobs), strict=True
        ):
            if found < 0:
                out.rejected[i] = ("bad_signature", None)
                continue
            key = next(k for k in device.keys if k.id == key_ids[found])
            if key.live:
                out.verified.append(Verified(i, reading, device, key.id))
            else:
                out.rejected[i] = ("revoked_key", device.device_id)
        return out

    def _which_keys(self, jobs: list[tuple[list[bytes], bytes, bytes]]) -> list[int]:
        if self.workers <= 0 or len(jobs) < self.pool_threshold:
            return which_key(jobs)
        pool = self._executor()
        size = -(-len(jobs) // (self.workers * 4))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        return [found for part in pool.map(which_key, chunks) for found in part]


# -- the command handler ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    #: accepted, duplicate, anomaly:<kind> or rejected:<reason>
    result: str
    #: The device, when the item is authentic (signed by one of its keys).
    device: str | None = None


@dataclass(slots=True)
class IngestOutcome:
    results: list[ItemResult]
    #: New readings stored by this batch (accepted or anomalous).
    stored: int = 0
    #: Readings that joined their device's chain (each with its interval) in this batch.
    intervals: int = 0
    credited: IntervalSums = field(default_factory=IntervalSums)

    @property
    def accepted(self) -> int:
        return self.stored


def ingest_readings(
    cmd: commands.IngestReadings,
    uow: AbstractUnitOfWork,
    *,
    verifier: ReadingVerifier,
    tariff: Tariff,
) -> IngestOutcome:
    if cmd.source not in SOURCES:
        raise ValueError(f"unknown source {cmd.source!r}")
    checked = verifier.check(cmd.readings)
    return ingest_checked(uow, len(cmd.readings), checked, source=cmd.source, tariff=tariff)


def ingest_checked(
    uow: AbstractUnitOfWork, n: int, checked: Checked, *, source: str, tariff: Tariff
) -> IngestOutcome:
    """The write half of ingestion, for `n` items already checked by a ReadingVerifier: one
    transaction under the ledger lock (see the module docstring). A caller may check the next
    batch while this one is written (`cityshare bench ingest --pipeline` does)."""
    results: dict[int, ItemResult] = {
        i: ItemResult(i, f"rejected:{reason}", device)
        for i, (reason, device) in checked.rejected.items()
    }
    outcome = IngestOutcome([])
    with uow:
        last = uow.ledger.lock_ledger()
        _Batch(uow, tariff, source, results, outcome).run(checked.verified, last)
    for i in sorted(results):
        result = results[i]
        if result.result.startswith("rejected:"):
            log.info(
                "reading %d of a batch from %s rejected: %s",
                i,
                source,
                result.result.removeprefix("rejected:"),
            )
    outcome.results = [results[i] for i in range(n)]
    return outcome


class _Batch:
    """The write half of one `IngestReadings`, inside the caller's locked transaction."""

    def __init__(
        self,
        uow: AbstractUnitOfWork,
        tariff: Tariff,
        source: str,
        results: dict[int, ItemResult],
        outcome: IngestOutcome,
    ) -> None:
        self.uow = uow
        self.repo = uow.energy
        self.tariff = tariff
        self.source = source
        self.results = results
        self.outcome = outcome
        self.now = uow.clock.now_ns()
        self.leaves: list[bytes] = []

    def run(self, verified: list[Verified], last_timestamp: int) -> None:
        fresh = self._fresh(verified)
        if not fresh:
            return  # nothing new: nothing is written (the transaction rolls back)
        tariff_id = self._tariff_id()
        devices = {v.device.device_id: v.device for v in fresh}
        states = self.repo.chain_states(devices.keys())
        bounds = [
            (d, s.base_seq, s.top_seq) if (s := states.get(d)) else (d, -1, -1) for d in devices
        ]
        waiting = self.repo.waiting_readings(bounds)
        reading_id, interval_id = self.repo.next_ids()

        reading_rows: list[ReadingRow] = []
        pools: dict[str, dict[int, Reading]] = {d: {} for d in devices}
        index_of: dict[tuple[str, int], int] = {}
        for v in fresh:
            r = v.reading
            reading_rows.append(
                (reading_id, r.device_id, r.seq, r.ts, r.import_wh, r.export_wh, self.now,
                 self.source, r.token)
            )  # fmt: skip
            reading_id += 1
            pools[r.device_id][r.seq] = Reading(r.seq, r.ts, r.import_wh, r.export_wh, self.now)
            index_of[(r.device_id, r.seq)] = v.index
            device = Device(v.device.kind, v.device.registered_at)
            bad = reading_anomaly(pools[r.device_id][r.seq], device, self.tariff)
            self.results[v.index] = ItemResult(
                v.index, f"anomaly:{bad}" if bad else "accepted", r.device_id
            )
        for device_id, stored in waiting.items():
            for reading in stored:
                pools[device_id].setdefault(reading.seq, reading)

        interval_rows: list[IntervalRow] = []
        transfers: list[Transfer] = []
        old_tariffs: dict[int, Tariff] = {}
        for device_id, pool in pools.items():
            keys = devices[device_id]
            device = Device(keys.kind, keys.registered_at)
            state = states.get(device_id)
            if state is not None and state.tariff_id != tariff_id:
                state = rescale_carries(
                    state, self._old_tariff(state.tariff_id, old_tariffs), self.tariff,
                    keys.kind, tariff_id,
                )  # fmt: skip
            for step in advance(state, pool, device, self.tariff, tariff_id):
                interval_rows.append(
                    _interval_row(interval_id, device_id, keys.owner_id, step, self.now)
                )
                transfers += _credits(interval_id, keys.owner_id, step)
                interval_id += 1
                index = index_of.get((device_id, step.seq))
                if index is not None and step.status not in (OK, BASELINE):
                    self.results[index] = ItemResult(index, f"anomaly:{step.status}", device_id)
                if step.status == OK:
                    self._add_credit(step)

        self.repo.insert_readings(reading_rows)
        self.repo.insert_intervals(interval_rows)
        self.leaves += [reading_entry(row) for row in reading_rows]
        self.leaves += [interval_entry(row) for row in interval_rows]
        self.uow.log.append(self.leaves)
        if transfers:
            self._post(transfers, last_timestamp)
        self.uow.commit()
        self.outcome.stored = len(reading_rows)
        self.outcome.intervals = len(interval_rows)
        self.uow.add_event(events.ReadingsIngested(len(reading_rows), len(interval_rows)))

    def _fresh(self, verified: list[Verified]) -> list[Verified]:
        """Drop duplicates (same device and seq: stored, or earlier in the batch) and readings
        signed by a key revoked since it was checked."""
        revoked = self.repo.revoked_among({v.key_id for v in verified})
        live = []
        for v in verified:
            if v.key_id in revoked:
                self.results[v.index] = ItemResult(
                    v.index, "rejected:revoked_key", v.device.device_id
                )
            else:
                live.append(v)
        stored = self.repo.existing_readings({(v.device.device_id, v.reading.seq) for v in live})
        seen: dict[tuple[str, int], tuple[int, int, int]] = {}
        fresh = []
        for v in live:
            r = v.reading
            key = (r.device_id, r.seq)
            claims = (r.ts, r.import_wh, r.export_wh)
            prior = stored.get(key)
            earlier = seen.get(key)
            if prior is not None:
                earlier = (prior.ts, prior.import_wh, prior.export_wh)
            if earlier is None:
                seen[key] = claims
                fresh.append(v)
            elif earlier == claims:
                self.results[v.index] = ItemResult(v.index, "duplicate", r.device_id)
            else:
                self.results[v.index] = ItemResult(v.index, "rejected:seq_reused", r.device_id)
        return fresh

    def _tariff_id(self) -> int:
        digest = self.tariff.digest
        row = self.repo.tariff_by_digest(digest)
        if row is None:
            row = TariffRow(
                self.repo.next_tariff_id(),
                digest,
                self.tariff.name,
                self.tariff.canonical_json(),
                self.now,
            )
            self.repo.insert_tariff(row)
            self.leaves.append(tariff_entry(row))
        return row.id

    def _old_tariff(self, tariff_id: int, cache: dict[int, Tariff]) -> Tariff:
        if tariff_id not in cache:
            row = self.repo.tariff(tariff_id)
            if row is None:
                raise EnergyError(f"tariff {tariff_id} named by a chain is not stored")
            cache[tariff_id] = tariff_from_json(row.body)
        return cache[tariff_id]

    def _add_credit(self, step: Step) -> None:
        c = self.outcome.credited
        self.outcome.credited = IntervalSums(
            c.import_wh + step.import_wh,
            c.export_wh + step.export_wh,
            c.carbon_g + step.carbon_g,
            c.credit_milli + step.credit_milli,
        )

    def _post(self, transfers: list[Transfer], last_timestamp: int) -> None:
        ledger = self.uow.ledger
        have = ledger.load_accounts([a.id for a in PLATFORM_ACCOUNTS])
        missing = [a for a in PLATFORM_ACCOUNTS if a.id not in have]
        if missing:
            opened = open_accounts(self.uow, missing, last_timestamp=last_timestamp, atomic=True)
            if any(r != CreateAccountResult.CREATED for r in opened):
                raise EnergyError(f"cannot open the platform's energy accounts: {opened}")
            last_timestamp = ledger.lock_ledger()
        else:
            for account in PLATFORM_ACCOUNTS:
                if not same_account(have[account.id], account):
                    raise EnergyError(
                        f"account {account.id} is not the platform's {Ledger(account.ledger).name} "
                        "account (its ids below 1000 are reserved; see services/energy.py)"
                    )
        result = post_transfers(self.uow, transfers, last_timestamp=last_timestamp, atomic=True)
        if result.failed:
            raise EnergyError(f"crediting failed: {result.failed[:5]}")


def _interval_row(
    interval_id: int, device_id: str, owner_id: int, step: Step, at: int
) -> IntervalRow:
    s: ChainState = step.state
    return (
        interval_id, device_id, step.seq, step.prev_seq, step.status, step.start_ts, step.end_ts,
        step.window, step.import_wh, step.export_wh, step.carbon_g, step.credit_milli, owner_id,
        s.tariff_id, s.base_seq, s.base_ts, s.base_import, s.base_export, s.top_seq, s.top_ts,
        s.hw_ts, s.hw_import, s.hw_export, s.carbon_carry, s.credit_carry, at,
    )  # fmt: skip


def _credits(interval_id: int, owner_id: int, step: Step) -> list[Transfer]:
    if step.status != OK:
        return []
    out = []
    for code, amount, debit, credit, ledger in (
        (EnergyCode.EXPORT_CREDIT, step.credit_milli, CREDIT_ISSUANCE,
         wallet_account_id(owner_id, Ledger.CREDIT), Ledger.CREDIT),
        (EnergyCode.CARBON_CREDIT, step.carbon_g, CARBON_ISSUANCE,
         wallet_account_id(owner_id, Ledger.CARBON), Ledger.CARBON),
        (EnergyCode.ENERGY_EXPORT, step.export_wh, GRID_ENERGY,
         wallet_account_id(owner_id, Ledger.ENERGY), Ledger.ENERGY),
        (EnergyCode.ENERGY_IMPORT, step.import_wh, wallet_account_id(owner_id, Ledger.ENERGY),
         GRID_ENERGY, Ledger.ENERGY),
    ):  # fmt: skip
        if amount > 0:
            out.append(
                Transfer(
                    transfer_id(interval_id, code),
                    debit,
                    credit,
                    amount,
                    ledger,
                    code,
                    user_data=interval_id,
                )
            )
    return out


# -- queries (read side) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRegisters:
    device_id: str
    kind: str
    label: str | None
    seq: int | None = None
    ts: int | None = None
    import_wh: int | None = None
    export_wh: int | None = None


@dataclass(frozen=True, slots=True)
class DayCredits:
    date: dt.date
    sums: IntervalSums


@dataclass(frozen=True, slots=True)
class EnergySummary:
    devices: list[DeviceRegisters]
    totals: IntervalSums
    days: list[DayCredits]
    timezone: str


def energy_summary(
    uow: AbstractUnitOfWork, owner_id: int, *, days: int, tariff: Tariff
) -> EnergySummary:
    """A resident's metered devices with their latest registers, everything credited to them,
    and what was credited per local day (by interval start) over the last `days` days."""
    zone = tariff.zone
    with uow:
        now = uow.clock.now_ns() // 1_000_000_000
        devices = [d for d in uow.identity.devices_of(owner_id) if d.kind in METERED_KINDS]
        latest = uow.energy.latest_readings([d.id for d in devices])
        totals = uow.energy.owner_totals(owner_id)
        today = dt.datetime.fromtimestamp(now, zone).date()
        first = today - dt.timedelta(days=days - 1)
        since = int(dt.datetime.combine(first, dt.time(), zone).timestamp())
        rows = uow.energy.owner_intervals(owner_id, since)
    per_day: dict[dt.date, list[int]] = {
        first + dt.timedelta(days=i): [0, 0, 0, 0] for i in range(days)
    }
    for start_ts, imported, exported, grams, milli in rows:
        sums = per_day.get(dt.datetime.fromtimestamp(start_ts, zone).date())
        if sums is not None:
            sums[0] += imported
            sums[1] += exported
            sums[2] += grams
            sums[3] += milli
    return EnergySummary(
        [DeviceRegisters(d.id, d.kind, d.label, *latest.get(d.id, (None,) * 4)) for d in devices],
        totals,
        [DayCredits(day, IntervalSums(*sums)) for day, sums in sorted(per_day.items())],
        tariff.timezone,
    )
