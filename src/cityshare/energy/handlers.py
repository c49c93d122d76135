"""Energy capability, the write path: ingest meter readings and credit residents' wallets.

One write path for every door: HTTP and MQTT hand over signed readings (`IngestReadings`), the
OCPP door the readings it attests (`IngestAttestedReadings`: verified as they are, by
`verify.check_attested`, then step 2 as below):

1. **Verify, outside the write lock** (`energy.verify`). Each item is parsed
   (`energy.readings`), its device and keys (revoked ones too) are looked up for the whole
   batch in one read query, and signatures are checked; an item byte for byte equal to a
   stored reading (a replay: its signature was checked when it was stored) is a duplicate
   without a second check. When the batch is large and `CITYSHARE_VERIFY_WORKERS` > 0,
   parsing and checking run in a process pool across cores (this process reads only the
   headers, to look devices up, and leaves replays to step 2).
2. **Write, in one transaction under the ledger lock.** Readings are deduplicated by (device,
   seq) against the store (a replay or a retried batch changes nothing: "duplicate", even when
   the key that signed it has been revoked since), then readings signed by a key revoked by now
   are refused, then duplicates within the batch are dropped; new readings are stored; each
   device's chain (`energy.chain`) takes every reading that can join it; each joined reading
   records its interval, what it credited and the chain after it; the credits are posted as
   ledger transfers; readings, intervals (and a tariff seen for the first time) become audit-log
   leaves; one commit.

Accounts and transfers. Three of the platform's named accounts (`ledger.ids`: 901-904 are the
platform's, no client may open or move them), opened on first use (code 20, no balance limits,
so they go negative by what the platform has issued):

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
twice, and the id space above 2^62 (the platform's own postings, `ledger.ids`: clients are
refused any id from 2^61 up) never meets ids a client picks, unlike a 62-bit hash of (device,
seq, kind), which at city scale (10^9 postings) would collide with a probability near 10%.
Should the ledger still refuse an interval's credits (a transfer planted in the store), that
interval stays recorded uncredited, with an ERROR alarm and an `audit verify` problem, and
every other interval is credited (`_Batch._post`).

The module is the command handlers (ingest, attested, sweep), then `_Batch`, the write path of
one batch kept whole because it is the hot loop (dedupe, store, chain, post, log: in that order,
one method each), then the interval rows and wallet credits it builds; about 540 lines.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from cityshare.energy import commands
from cityshare.energy.chain import (
    ChainState,
    Device,
    Reading,
    Step,
    advance,
    reading_anomaly,
    rescale_carries,
)
from cityshare.energy.model import (
    BASELINE,
    OK,
    PLATFORM_ACCOUNTS,
    DeviceKeys,
    EnergyCode,
    IntervalRow,
    IntervalSums,
    ReadingRow,
    TariffRow,
    Verdict,
    transfer_id,
)
from cityshare.energy.records import INTERVALS, READINGS, TARIFF
from cityshare.energy.tariff import Tariff, tariff_from_json
from cityshare.energy.uow import EnergyUnitOfWork
from cityshare.energy.verify import Checked, ReadingVerifier, Verified, check_attested
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.handlers import open_accounts, post_transfers
from cityshare.ledger.ids import CARBON_ISSUANCE, CREDIT_ISSUANCE, GRID_ENERGY
from cityshare.ledger.model import CreateAccountResult, Ledger, Transfer, same_account

log = logging.getLogger(__name__)

#: The doors that hand over signed readings (`IngestReadings`); the OCPP door's readings are
#: attested (`IngestAttestedReadings`, source "ocpp").
SOURCES = frozenset({"http", "mqtt"})
ATTESTED_SOURCE = "ocpp"


class EnergyError(RuntimeError):
    """Ingestion cannot run at all (a setting or the platform's own accounts are wrong)."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    verdict: Verdict
    #: An anomaly's kind or a rejection's reason; None when accepted or a duplicate.
    detail: str | None = None
    #: The device, when the item is authentic (signed by one of its keys).
    device: str | None = None

    @property
    def result(self) -> str:
        """As the doors answer it: accepted, duplicate, anomaly:<kind> or rejected:<reason>."""
        return self.verdict.value if self.detail is None else f"{self.verdict}:{self.detail}"


@dataclass(slots=True)
class IngestOutcome:
    results: list[ItemResult]
    #: New readings stored by this batch (accepted or anomalous).
    stored: int = 0
    #: Readings that joined their device's chain (each with its interval) in this batch.
    intervals: int = 0
    credited: IntervalSums = field(default_factory=IntervalSums)
    #: `ok` intervals recorded in this batch whose credits the ledger refused (an alarm: see
    #: `_Batch._post`); their amounts are not in `credited`.
    uncredited: list[int] = field(default_factory=list)


def ingest_readings(
    cmd: commands.IngestReadings,
    uow: EnergyUnitOfWork,
    *,
    verifier: ReadingVerifier,
    tariff: Tariff,
) -> IngestOutcome:
    if cmd.source not in SOURCES:
        raise ValueError(f"unknown source {cmd.source!r}")
    # Only the in-process OCPP door attests readings (`IngestAttestedReadings`); here such an
    # item is not a JWS string, and is refused as malformed.
    checked = verifier.check(cmd.readings)
    return ingest_checked(uow, len(cmd.readings), checked, source=cmd.source, tariff=tariff)


def ingest_attested_readings(
    cmd: commands.IngestAttestedReadings, uow: EnergyUnitOfWork, *, tariff: Tariff
) -> IngestOutcome:
    """The readings of the OCPP door, verified as attested (`verify.check_attested`), then
    the same write path as signed ones, with source "ocpp"."""
    checked = check_attested(cmd.readings)
    return ingest_checked(
        uow, len(cmd.readings), checked, source=ATTESTED_SOURCE, tariff=tariff
    )


def ingest_checked(
    uow: EnergyUnitOfWork, n: int, checked: Checked, *, source: str, tariff: Tariff
) -> IngestOutcome:
    """The write half of ingestion, for `n` items already checked by a ReadingVerifier: one
    transaction under the ledger lock (see the module docstring). A caller may check the next
    batch while this one is written (`cityshare bench ingest --pipeline` does)."""
    results: dict[int, ItemResult] = {
        i: ItemResult(i, Verdict.REJECTED, reason) for i, reason in checked.rejected.items()
    }
    for i, device_id in checked.duplicates.items():
        results[i] = ItemResult(i, Verdict.DUPLICATE, device=device_id)
    outcome = IngestOutcome([])
    with uow:
        last = uow.ledger.lock_ledger()
        _Batch(uow, tariff, source, results, outcome).run(checked.verified, last)
    for i in sorted(results):
        result = results[i]
        if result.verdict is Verdict.REJECTED:
            log.info("reading %d of a batch from %s rejected: %s", i, source, result.detail)
    outcome.results = [results[i] for i in range(n)]
    return outcome


@dataclass(slots=True)
class SweepOutcome:
    #: Devices whose overdue waiting readings were looked at.
    devices: int = 0
    #: Readings that joined their chain (each with its interval).
    intervals: int = 0
    credited: IntervalSums = field(default_factory=IntervalSums)


def sweep_waiting_readings(
    cmd: commands.SweepWaitingReadings, uow: EnergyUnitOfWork, *, tariff: Tariff
) -> SweepOutcome:
    """Bridge the gaps of meters gone silent: each stored reading that has waited the tariff's
    gap horizon beside its chain joins it, exactly as the next reading of its device would have
    made it join (`energy.chain.advance`); `cmd.limit` devices per transaction."""
    if cmd.limit < 1:
        raise ValueError("a sweep looks at one device or more per transaction")
    total = SweepOutcome()
    while True:
        outcome = IngestOutcome([])
        with uow:
            last = uow.ledger.lock_ledger()
            looked = _Batch(uow, tariff, "sweep", {}, outcome).sweep(cmd.limit, last)
        total.devices += looked
        total.intervals += outcome.intervals
        total.credited = IntervalSums(
            *(a + b for a, b in zip(dataclasses.astuple(total.credited),
                                    dataclasses.astuple(outcome.credited), strict=True))
        )  # fmt: skip
        # Every device looked at is unmarked or marked again with a reading not overdue yet.
        if looked < cmd.limit:
            break
    if total.intervals:
        log.info(
            "bridged the gaps of %d silent devices: %d intervals", total.devices, total.intervals
        )
    return total


class _Batch:
    """The write half of one `IngestReadings`, inside the caller's locked transaction."""

    def __init__(
        self,
        uow: EnergyUnitOfWork,
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
        tariff = self.tariff
        devices = {v.device.device_id: v.device for v in fresh}
        reading_id, interval_id = self.repo.next_ids()
        now = self.now
        source = self.source
        results = self.results
        kinds = {d: Device(k.kind, k.registered_at) for d, k in devices.items()}
        reading_rows: list[ReadingRow] = []
        pools: dict[str, dict[int, Reading]] = {d: {} for d in devices}
        index_of: dict[tuple[str, int], int] = {}
        for v in fresh:
            r = v.reading
            d = r.device_id
            reading_rows.append(
                (reading_id, d, r.seq, r.ts, r.import_wh, r.export_wh, now, source, r.token)
            )
            reading_id += 1
            reading = Reading(r.seq, r.ts, r.import_wh, r.export_wh, now)
            pools[d][r.seq] = reading
            index_of[(d, r.seq)] = v.index
            bad = reading_anomaly(reading, kinds[d], tariff)
            results[v.index] = (
                ItemResult(v.index, Verdict.ANOMALY, bad, d)
                if bad
                else ItemResult(v.index, Verdict.ACCEPTED, device=d)
            )
        self.outcome.stored = len(reading_rows)
        self._join(devices, pools, index_of, interval_id, last_timestamp, reading_rows)

    def sweep(self, limit: int, last_timestamp: int) -> int:
        """Join the readings of up to `limit` devices whose waiting readings are overdue (see
        `SweepWaitingReadings`); returns how many devices were looked at (0: none overdue)."""
        overdue = self.now - self.tariff.gap_horizon_s * 1_000_000_000
        # A mark names the party its chain credits: an OCPP transaction's chain is no device.
        devices = {p.device_id: p for p in self.repo.overdue_waiting(overdue, limit)}
        if not devices:
            return 0
        pools: dict[str, dict[int, Reading]] = {d: {} for d in devices}
        interval_id = self.repo.next_ids()[1]
        self._join(devices, pools, {}, interval_id, last_timestamp, marked=devices.keys())
        return len(devices)

    def _join(
        self,
        devices: Mapping[str, DeviceKeys],
        pools: dict[str, dict[int, Reading]],
        index_of: Mapping[tuple[str, int], int],
        interval_id: int,
        last_timestamp: int,
        reading_rows: Sequence[ReadingRow] = (),
        *,
        marked: Collection[str] = (),
    ) -> None:
        """Store the new readings (`reading_rows`, also in `pools`); each device's chain takes
        every reading that can join it now (new ones, and those stored earlier that wait
        beside it); devices left with readings waiting are marked for the sweep (`marked`: the
        devices known to be marked already); one commit."""
        tariff = self.tariff
        tariff_id = self._tariff_id()
        states = self.repo.chain_states(devices.keys())
        bounds = []
        for d, keys in devices.items():
            if (s := states.get(d)) is not None:
                bounds.append((d, s.base_seq, s.top_seq))
            elif any(
                reading_anomaly(r, Device(keys.kind, keys.registered_at), tariff) is None
                for r in pools[d].values()
            ):
                # A device with no chain has only anomalous readings stored (a usable one would
                # have started it): they matter only once a usable new one starts the chain.
                bounds.append((d, -1, -1))
        waiting = self.repo.waiting_readings(bounds)  # before the new readings are stored
        for device_id, stored in waiting.items():
            for reading in stored:
                pools[device_id].setdefault(reading.seq, reading)
        self.repo.insert_readings(reading_rows)
        self.leaves += READINGS.encode_all(reading_rows)
        now = self.now
        results = self.results
        interval_rows: list[IntervalRow] = []
        transfers: list[Transfer] = []
        old_tariffs: dict[int, Tariff] = {}
        credited = [0, 0, 0, 0]
        still_waiting: dict[str, tuple[int, DeviceKeys]] = {}
        for device_id, pool in pools.items():
            keys = devices[device_id]
            owner = keys.owner_id
            state = states.get(device_id)
            if state is not None and state.tariff_id != tariff_id:
                state = rescale_carries(
                    state, self._old_tariff(state.tariff_id, old_tariffs), tariff,
                    keys.kind, tariff_id,
                )  # fmt: skip
            wallets: tuple[int, int, int] | None = None
            device = Device(keys.kind, keys.registered_at)
            steps = advance(state, pool, device, tariff, tariff_id, now=now)
            for step in steps:
                interval_rows.append(_interval_row(interval_id, device_id, owner, step, now))
                status = step.status
                if status == OK:
                    if wallets is None:
                        wallets = _wallets(owner)
                    _add_credits(transfers, interval_id, wallets, step)
                    credited[0] += step.import_wh
                    credited[1] += step.export_wh
                    credited[2] += step.carbon_g
                    credited[3] += step.credit_milli
                elif status != BASELINE:
                    index = index_of.get((device_id, step.seq))
                    if index is not None:
                        results[index] = ItemResult(index, Verdict.ANOMALY, status, device_id)
                interval_id += 1
            chain = steps[-1].state if steps else state
            if pool and chain is not None:
                # Readings left above or below the chain wait for the ones between (those
                # inside it only filled the profile); a device with no chain yet (every reading
                # so far anomalous) waits for a usable reading, which no sweep can supply.
                outside = [
                    r.received_at
                    for seq, r in pool.items()
                    if seq > chain.top_seq or seq < chain.base_seq
                ]
                if outside:
                    still_waiting[device_id] = (min(outside), keys)
        # Only devices that had readings waiting can have been marked.
        cleared = (waiting.keys() | set(marked)) - still_waiting.keys()
        self.repo.set_waiting(still_waiting, cleared)
        self.repo.insert_intervals(interval_rows)
        self.leaves += INTERVALS.encode_all(interval_rows)
        if self.leaves:
            self.uow.log.append(self.leaves)
        if transfers:
            refused = self._post(transfers, last_timestamp)
            for t in refused:
                credited[_CREDITED_AT[t.code]] -= t.amount
            self.outcome.uncredited = sorted({t.user_data for t in refused})
        self.uow.commit()
        self.outcome.intervals = len(interval_rows)
        self.outcome.credited = IntervalSums(*credited)

    def _fresh(self, verified: list[Verified]) -> list[Verified]:
        """The readings to store: not stored already, not signed by a key revoked by now, and
        not earlier in the batch. A reading stored before its key was revoked is still a
        duplicate when it comes again (a redelivery is not a new claim); a reading with the
        same device and seq but other claims is refused as `seq_reused`."""
        results = self.results
        stored = self.repo.existing_readings(
            {(v.reading.device_id, v.reading.seq) for v in verified}
        )
        unseen = []
        for v in verified:
            r = v.reading
            prior = stored.get((r.device_id, r.seq))
            if prior is None:
                unseen.append(v)
            elif (prior.ts, prior.import_wh, prior.export_wh) == (r.ts, r.import_wh, r.export_wh):
                results[v.index] = ItemResult(v.index, Verdict.DUPLICATE, device=r.device_id)
            else:
                results[v.index] = ItemResult(v.index, Verdict.REJECTED, "seq_reused", r.device_id)
        revoked = self.repo.revoked_among({v.key_id for v in unseen if v.key_id})
        seen: dict[tuple[str, int], tuple[int, int, int]] = {}
        fresh = []
        for v in unseen:
            r = v.reading
            if v.key_id in revoked:
                results[v.index] = ItemResult(v.index, Verdict.REJECTED, "revoked_key", r.device_id)
                continue
            key = (r.device_id, r.seq)
            claims = (r.ts, r.import_wh, r.export_wh)
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = claims
                fresh.append(v)
            elif earlier == claims:
                results[v.index] = ItemResult(v.index, Verdict.DUPLICATE, device=r.device_id)
            else:
                results[v.index] = ItemResult(v.index, Verdict.REJECTED, "seq_reused", r.device_id)
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
            self.leaves.append(TARIFF.of(row))
        return row.id

    def _old_tariff(self, tariff_id: int, cache: dict[int, Tariff]) -> Tariff:
        if tariff_id not in cache:
            row = self.repo.tariff(tariff_id)
            if row is None:
                raise EnergyError(f"tariff {tariff_id} named by a chain is not stored")
            cache[tariff_id] = tariff_from_json(row.body)
        return cache[tariff_id]

    def _post(self, transfers: list[Transfer], last_timestamp: int) -> list[Transfer]:
        """Post the intervals' credits; returns the transfers of the intervals left uncredited.

        The ids are minted from the interval ids (`transfer_id`), which no client can name
        (`ledger.ids`), so the ledger refusing one is a platform fault (a transfer planted in
        the store, a bug): an alarm, never a wedge. The intervals whose transfers the ledger
        refuses are dropped whole (an interval is credited in full or not at all) and logged at
        ERROR with the ids; the others are posted, in this same transaction, and the intervals
        stay recorded, so `audit verify` reports each one uncredited (`checks.derived_problems`).
        Keeping the reading and the interval matters: were the batch refused instead, the
        next batch would mint the same interval id again and fail the same way, for every
        meter, for ever.
        """
        ledger = self.uow.ledger
        have = ledger.load_accounts([a.id for a in PLATFORM_ACCOUNTS])
        # Those that exist are checked whether or not others are still to be opened: an
        # account a client opened before 901-904 were reserved must never stand in for one.
        for account in PLATFORM_ACCOUNTS:
            found = have.get(account.id)
            if found is not None and not same_account(found, account):
                raise EnergyError(
                    f"account {account.id} is not the platform's {Ledger(account.ledger).name} "
                    "account (901-904 are the platform's; see ledger/ids.py)"
                )
        missing = [a for a in PLATFORM_ACCOUNTS if a.id not in have]
        if missing:
            opened = open_accounts(self.uow, missing, last_timestamp=last_timestamp, atomic=True)
            if any(r != CreateAccountResult.CREATED for r in opened):
                raise EnergyError(f"cannot open the platform's energy accounts: {opened}")
            last_timestamp = ledger.lock_ledger()
        refused: list[Transfer] = []
        while transfers:
            result = post_transfers(
                self.uow, transfers, last_timestamp=last_timestamp, atomic=True
            )
            if not result.failed:
                break
            # Nothing was written (atomic); each round drops at least one interval.
            failed = {transfers[i].user_data: (transfers[i].id, r) for i, r in result.failed}
            for interval_id, (tid, reason) in failed.items():
                log.error(
                    "ALARM: the credits of interval %d were refused by the ledger (transfer %d: "
                    "%s); the interval stays recorded and uncredited, other intervals are "
                    "credited; `cityshare audit verify` lists it",
                    interval_id, tid, reason.value,
                )  # fmt: skip
            refused += [t for t in transfers if t.user_data in failed]
            transfers = [t for t in transfers if t.user_data not in failed]
        return refused


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


def _wallets(owner_id: int) -> tuple[int, int, int]:
    """The owner's CREDIT, CARBON and ENERGY wallets."""
    return (
        wallet_account_id(owner_id, Ledger.CREDIT),
        wallet_account_id(owner_id, Ledger.CARBON),
        wallet_account_id(owner_id, Ledger.ENERGY),
    )


#: Builds a Transfer from a ready 10-tuple without the keyword-handling __new__ (up to four
#: per interval).
_new_transfer = tuple.__new__
_POINTS = int(EnergyCode.EXPORT_CREDIT)
_CARBON = int(EnergyCode.CARBON_CREDIT)
_EXPORT = int(EnergyCode.ENERGY_EXPORT)
_IMPORT = int(EnergyCode.ENERGY_IMPORT)
_LEDGER_CREDIT = int(Ledger.CREDIT)
_LEDGER_CARBON = int(Ledger.CARBON)
_LEDGER_ENERGY = int(Ledger.ENERGY)
#: Where a posting's amount counts in `IntervalSums` (import, export, carbon, credit).
_CREDITED_AT = {_POINTS: 3, _CARBON: 2, _EXPORT: 1, _IMPORT: 0}


def _add_credits(
    out: list[Transfer], interval_id: int, wallets: tuple[int, int, int], step: Step
) -> None:
    """Append the transfers of an `ok` interval (see the module docstring; zero amounts are
    not posted): id `transfer_id(interval_id, code)`, user_data the interval."""
    credit, carbon, energy = wallets
    base = transfer_id(interval_id, EnergyCode.EXPORT_CREDIT)  # checks the id's range
    new = _new_transfer
    for amount, debit, credit_account, ledger, code in (
        (step.credit_milli, CREDIT_ISSUANCE, credit, _LEDGER_CREDIT, _POINTS),
        (step.carbon_g, CARBON_ISSUANCE, carbon, _LEDGER_CARBON, _CARBON),
        (step.export_wh, GRID_ENERGY, energy, _LEDGER_ENERGY, _EXPORT),
        (step.import_wh, energy, GRID_ENERGY, _LEDGER_ENERGY, _IMPORT),
    ):
        if amount > 0:
            row = (base | (code - _POINTS), debit, credit_account, amount, ledger, code, 0, 0, 0)
            out.append(new(Transfer, (*row, interval_id)))
