"""Energy capability: ingest signed meter readings and credit residents' wallets.

One handler for every door (HTTP, MQTT and OCPP hand over the same `IngestReadings`):

1. **Verify, outside the write lock.** Each item is parsed (`trust.readings`), its device and
   keys (revoked ones too) are looked up for the whole batch in one read query, and signatures
   are checked; an item byte for byte equal to a stored reading (a replay: its signature was
   checked when it was stored) is a duplicate without a second check. When the batch is large
   and `CITYSHARE_VERIFY_WORKERS` > 0, parsing and checking run in a process pool across cores
   (this process reads only the headers, to look devices up, and leaves replays to step 2).
2. **Write, in one transaction under the ledger lock.** Readings are deduplicated by (device,
   seq) against the store (a replay or a retried batch changes nothing: "duplicate", even when
   the key that signed it has been revoked since), then readings signed by a key revoked by now
   are refused, then duplicates within the batch are dropped; new readings are stored; each
   device's chain (`domain.energy`) takes every reading that can join it; each joined reading
   records its interval, what it credited and the chain after it; the credits are posted as
   ledger transfers; readings, intervals (and a tariff seen for the first time) become audit-log
   leaves; one commit.

Accounts and transfers. Three of the platform's named accounts (`domain.ids`: 901-904 are the
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
twice, and the id space above 2^62 (the platform's own postings, `domain.ids`: clients are
refused any id from 2^61 up) never meets ids a client picks, unlike a 62-bit hash of (device,
seq, kind), which at city scale (10^9 postings) would collide with a probability near 10%.
Should the ledger still refuse an interval's credits (a transfer planted in the store), that
interval stays recorded uncredited, with an ERROR alarm and an `audit verify` problem, and
every other interval is credited (`_Batch._post`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import multiprocessing
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, cast

from cityshare.charging.model import CHAIN_KIND, chain_registered_at
from cityshare.energy import commands
from cityshare.energy.model import (
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
from cityshare.energy.readings import Job, ReadingError, SignedReading, parse, which_key
from cityshare.energy.repo import (
    DeviceKey,
    DeviceKeys,
    IntervalRow,
    IntervalSums,
    ReadingRow,
    TariffRow,
)
from cityshare.energy.uow import EnergyUnitOfWork
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.handlers import open_accounts, post_transfers
from cityshare.ledger.ids import (
    CARBON_ISSUANCE,
    CREDIT_ISSUANCE,
    ENERGY_TRANSFERS,
    GRID_ENERGY,
    PLATFORM_ACCOUNT_CODE,
)
from cityshare.ledger.model import CreateAccountResult, Ledger, NewAccount, Transfer, same_account
from cityshare.tlog import entries

log = logging.getLogger(__name__)

SOURCES = frozenset({"http", "mqtt", "ocpp"})

#: The energy capability's named accounts (their ids and code are `domain.ids`').
PLATFORM_ACCOUNTS = (
    NewAccount(
        CREDIT_ISSUANCE, Ledger.CREDIT, PLATFORM_ACCOUNT_CODE, 0, "platform:credit-issuance"
    ),
    NewAccount(GRID_ENERGY, Ledger.ENERGY, PLATFORM_ACCOUNT_CODE, 0, "platform:grid"),
    NewAccount(
        CARBON_ISSUANCE, Ledger.CARBON, PLATFORM_ACCOUNT_CODE, 0, "platform:carbon-issuance"
    ),
)
ENERGY_TRANSFER_BASE = ENERGY_TRANSFERS.first


class EnergyCode(enum.IntEnum):
    """Transfer codes of the postings ingestion makes (kind = code - 4001 in the id)."""

    EXPORT_CREDIT = 4001  # smart credit points for exported energy
    CARBON_CREDIT = 4002  # grams CO2e avoided by exported energy
    ENERGY_EXPORT = 4003  # Wh the resident gave the grid
    ENERGY_IMPORT = 4004  # Wh the resident took from it


#: Platform postings own the ids from 2^61 up, in disjoint ranges (ledger/ids.py): energy's
#: are [2^62, 2^62 + 2^60), two bits of kind below the interval id; clients choose ids below
#: 2^61 and are refused any other (`reserved_id`).
MAX_INTERVAL_ID = (ENERGY_TRANSFERS.last - ENERGY_TRANSFER_BASE) >> 2


def transfer_id(interval_id: int, code: EnergyCode) -> int:
    if not 0 < interval_id <= MAX_INTERVAL_ID:
        raise ValueError("interval ids are 1 … 2^58-1")
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


class _RecordTemplate:
    """`entries.encode_record(record_type, dict(zip(fields, row)))`, byte for byte, for rows of
    integers and strings, from one %-template (ingestion encodes two records per reading, and
    json.dumps with sort_keys costs ~6 µs each; this ~1 µs). `audit verify` re-encodes every
    stored row with `encode_record` itself (`RECORD_ENCODERS`), so a difference would show."""

    def __init__(self, record_type: str, fields: Sequence[str], text: frozenset[str]) -> None:
        names = sorted((*fields, "type"))
        parts = []
        for name in names:
            if name == "type":
                value = json_string(record_type).replace("%", "%%")
            else:
                # json.dumps writes an int with int.__repr__ (as %d does) and a str with
                # encode_basestring_ascii (ensure_ascii=True); %d refuses None, a str or a float.
                value = "%s" if name in text else "%d"
            parts.append(f"{json_string(name)}:{value}")
        self.template = "{" + ",".join(parts) + "}"
        order = [fields.index(n) for n in names if n != "type"]
        self.order = order
        self.text_at = [i for i, n in enumerate(n for n in names if n != "type") if n in text]

    def encode_all(self, rows: Iterable[Sequence[Any]]) -> list[bytes]:
        order = self.order
        text_at = self.text_at
        template = self.template
        out = []
        for row in rows:
            values = [row[i] for i in order]
            for i in text_at:
                values[i] = json_string(values[i])
            out.append((template % tuple(values)).encode("ascii"))
        return out


_READINGS = _RecordTemplate(
    "meter_reading", _READING_FIELDS, frozenset({"device_id", "source", "jws"})
)
_INTERVALS = _RecordTemplate(
    "meter_interval", _INTERVAL_FIELDS, frozenset({"device_id", "status", "tod"})
)


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
    # The reference encoding (what `_READINGS` and `_INTERVALS` must match).
    "meter_reading": (
        "meter_readings",
        lambda r: entries.encode_record("meter_reading", {f: r[f] for f in _READING_FIELDS}),
    ),
    "meter_interval": (
        "meter_intervals",
        lambda r: entries.encode_record("meter_interval", {f: r[f] for f in _INTERVAL_FIELDS}),
    ),
}


# -- verification (outside the write lock) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    """An item whose signature one of a metered device's keys made: a live one, or one revoked
    by now (the writer refuses those, once it knows the reading is not a redelivery)."""

    index: int
    reading: SignedReading
    device: DeviceKeys
    key_id: int


@dataclass(slots=True)
class Checked:
    verified: list[Verified] = field(default_factory=list)
    #: index -> why it was refused (a short code; such an item names no device, since it is
    #: not known to be authentic).
    rejected: dict[int, str] = field(default_factory=dict)
    #: index -> device, for items byte for byte equal to a reading already stored (checked
    #: when it was stored, so not checked again: a replay costs a lookup, not a signature).
    duplicates: dict[int, str] = field(default_factory=dict)


class ReadingVerifier:
    """Checks the form and signature of readings, in batches.

    Devices and keys are looked up in one read query per batch (`read_uow`). Items are parsed
    and their signatures checked in this process, or, for batches of at least
    `pool_threshold` when `workers` > 0, in a pool of `workers` processes (started on first
    use, "spawn" so no lock or connection of this process is inherited). In the pool case
    this process only reads each item's header (the device it names, from a cache of headers
    it has already parsed) to look the devices up; the workers parse and verify, so a writer
    in this process keeps the interpreter to itself. In this process, the tokens stored for the
    batch's (device, seq) pairs are read in the same query transaction, and an item equal to
    one is answered `duplicate` unchecked (in the pool case the writer finds it stored).
    """

    def __init__(
        self,
        read_uow: Callable[[], EnergyUnitOfWork],
        *,
        workers: int = 0,
        pool_threshold: int = 512,
    ) -> None:
        self.read_uow = read_uow
        self.workers = workers
        self.pool_threshold = pool_threshold
        self._pool: Executor | None = None
        self._lock = threading.Lock()
        #: Header segment -> the device it names, for headers parsed here without error.
        self._kids: dict[str, str] = {}

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
        if self.workers > 0 and len(items) >= self.pool_threshold:
            return self._check_in_pool(items)
        out = Checked()
        rejected = out.rejected
        parsed: list[tuple[int, SignedReading]] = []
        for i, item in enumerate(items):
            try:
                parsed.append((i, parse(item)))
            except ReadingError as exc:
                rejected[i] = exc.reason
        if not parsed:
            return out
        devices, orders, stored = self._devices(
            {r.device_id for _, r in parsed}, {(r.device_id, r.seq) for _, r in parsed}
        )
        jobs: list[Job] = []
        candidates: list[tuple[int, SignedReading, list[DeviceKey]]] = []
        for i, reading in parsed:
            order = orders.get(reading.device_id, "unknown_device")
            if isinstance(order, str):
                rejected[i] = order
            elif stored.get((reading.device_id, reading.seq)) == reading.token:
                out.duplicates[i] = reading.device_id
            else:
                jobs.append((order[0], reading.signing_input, reading.signature))
                candidates.append((i, reading, order[1]))
        verified = out.verified
        for (i, reading, keys), found in zip(candidates, which_key(jobs), strict=True):
            if found < 0:
                rejected[i] = "bad_signature"
                continue
            verified.append(Verified(i, reading, devices[reading.device_id], keys[found].id))
        return out

    def _devices(
        self, device_ids: set[str], stored: set[tuple[str, int]] | None = None
    ) -> tuple[
        dict[str, DeviceKeys],
        dict[str, tuple[list[bytes], list[DeviceKey]] | str],
        dict[tuple[str, int], str],
    ]:
        """The devices, and per device, once: its keys with the live ones first, then revoked
        ones (a reading they signed may be a redelivery of one stored before the revocation),
        or why its readings are refused; and the tokens stored for the (device, seq) pairs of
        `stored`, in the same read transaction."""
        with self.read_uow() as uow:
            devices = uow.energy.device_keys(device_ids)
            tokens = uow.energy.stored_tokens(stored) if stored else {}
        orders: dict[str, tuple[list[bytes], list[DeviceKey]] | str] = {}
        for device_id, device in devices.items():
            if device.kind not in METERED_KINDS:
                orders[device_id] = "wrong_kind"
            else:
                keys = device.keys
                if len(keys) > 1:
                    keys = tuple(sorted(keys, key=lambda k: not k.live))
                orders[device_id] = ([k.public_key for k in keys], list(keys))
        return devices, orders, tokens

    def _check_in_pool(self, items: Sequence[object]) -> Checked:
        """`check` with parsing and verification in the pool: the same answers (a reading's
        form is judged before its device, as in this process)."""
        out = Checked()
        rejected = out.rejected
        kids: list[tuple[int, str]] = []
        known = self._kids
        for i, item in enumerate(items):
            kid = known.get(item.partition(".")[0]) if type(item) is str else None
            if kid is None:
                try:
                    kid = parse(item).device_id  # a header not seen yet, or a bad item
                except ReadingError as exc:
                    rejected[i] = exc.reason
                    continue
                if len(known) >= _MAX_KNOWN_HEADERS:
                    known.clear()
                known[cast(str, item).partition(".")[0]] = kid
            kids.append((i, kid))
        if not kids:
            return out
        devices, orders, _ = self._devices({kid for _, kid in kids})
        jobs: list[tuple[str, list[bytes]]] = []
        candidates: list[tuple[int, str, list[DeviceKey]]] = []
        for i, kid in kids:
            order = orders.get(kid, "unknown_device")
            token = cast(str, items[i])
            if isinstance(order, str):
                try:
                    parse(token)  # its form first, as in-process
                    rejected[i] = order
                except ReadingError as exc:
                    rejected[i] = exc.reason
            else:
                jobs.append((token, order[0]))
                candidates.append((i, kid, order[1]))
        if not jobs:
            return out  # every item refused already: nothing for the pool
        pool = self._executor()
        size = -(-len(jobs) // (self.workers * 4))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        answers = [a for part in pool.map(parse_and_verify, chunks) for a in part]
        verified = out.verified
        for (i, kid, keys), answer in zip(candidates, answers, strict=True):
            if isinstance(answer, str):
                rejected[i] = answer
                continue
            found, seq, ts, imported, exported, signing_input, signature = answer
            if found < 0:
                rejected[i] = "bad_signature"
                continue
            token = cast(str, items[i])
            reading = SignedReading(
                kid, seq, ts, imported, exported, signing_input, signature, token
            )
            verified.append(Verified(i, reading, devices[kid], keys[found].id))
        return out


_MAX_KNOWN_HEADERS = 1 << 17

#: The key id of an attested reading: none (key ids start at 1), so never a revoked one.
ATTESTED_KEY_ID = 0
_MAX_REGISTER = (1 << 63) - 1


def check_attested(verifier: ReadingVerifier, items: Sequence[object]) -> Checked:
    """`verifier.check` for a batch of the OCPP door (`IngestReadings` with source "ocpp"): its
    `AttestedReading`s are verified as they are (the door authenticated the charger; the
    owner named is the one credited), any other item is checked as usual."""
    attested = commands.AttestedReading
    rest = [(i, item) for i, item in enumerate(items) if type(item) is not attested]
    signed = verifier.check([item for _, item in rest]) if rest else Checked()
    out = Checked(
        [dataclasses.replace(v, index=rest[v.index][0]) for v in signed.verified],
        {rest[i][0]: why for i, why in signed.rejected.items()},
        {rest[i][0]: device for i, device in signed.duplicates.items()},
    )
    for i, item in enumerate(items):
        if type(item) is not attested:
            continue
        values = (item.seq, item.ts, item.import_wh, item.export_wh, item.registered_at)
        if item.kind not in METERED_KINDS:
            out.rejected[i] = "wrong_kind"
        elif not 0 < len(item.device_id) <= 40 or not all(
            type(v) is int and 0 <= v <= _MAX_REGISTER for v in values
        ):
            out.rejected[i] = "invalid_claims"
        else:
            reading = SignedReading(
                item.device_id, item.seq, item.ts, item.import_wh, item.export_wh, b"", b"",
                item.evidence,
            )  # fmt: skip
            device = DeviceKeys(item.device_id, item.owner_id, item.kind, item.registered_at, ())
            out.verified.append(Verified(i, reading, device, ATTESTED_KEY_ID))
    return out


#: What a pool worker answers for one item: why its form is refused, or (index of the key
#: that signed it or -1, seq, ts, import_wh, export_wh, signing input, signature).
PoolAnswer = str | tuple[int, int, int, int, int, bytes, bytes]


def parse_and_verify(jobs: Sequence[tuple[str, Sequence[bytes]]]) -> list[PoolAnswer]:
    """Parse each token and find which of its device's keys signed it (module-level: a pool
    worker runs it on a chunk of (token, candidate public keys))."""
    out: list[PoolAnswer] = []
    for token, keys in jobs:
        try:
            r = parse(token)
        except ReadingError as exc:
            out.append(exc.reason)
            continue
        found = which_key([(keys, r.signing_input, r.signature)])[0]
        out.append((found, r.seq, r.ts, r.import_wh, r.export_wh, r.signing_input, r.signature))
    return out


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
    # Only the in-process OCPP door attests readings; from any other door such an item is
    # not a JWS string, and is refused as malformed.
    checked = (
        check_attested(verifier, cmd.readings)
        if cmd.source == "ocpp"
        else verifier.check(cmd.readings)
    )
    return ingest_checked(uow, len(cmd.readings), checked, source=cmd.source, tariff=tariff)


def ingest_checked(
    uow: EnergyUnitOfWork, n: int, checked: Checked, *, source: str, tariff: Tariff
) -> IngestOutcome:
    """The write half of ingestion, for `n` items already checked by a ReadingVerifier: one
    transaction under the ledger lock (see the module docstring). A caller may check the next
    batch while this one is written (`cityshare bench ingest --pipeline` does)."""
    results: dict[int, ItemResult] = {
        i: ItemResult(i, f"rejected:{reason}") for i, reason in checked.rejected.items()
    }
    for i, device_id in checked.duplicates.items():
        results[i] = ItemResult(i, "duplicate", device_id)
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
    made it join (`domain.energy.advance`); `cmd.limit` devices per transaction."""
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
            results[v.index] = ItemResult(v.index, f"anomaly:{bad}" if bad else "accepted", d)
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
        self.leaves += _READINGS.encode_all(reading_rows)
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
                        results[index] = ItemResult(index, f"anomaly:{status}", device_id)
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
        self.leaves += _INTERVALS.encode_all(interval_rows)
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
                results[v.index] = ItemResult(v.index, "duplicate", r.device_id)
            else:
                results[v.index] = ItemResult(v.index, "rejected:seq_reused", r.device_id)
        revoked = self.repo.revoked_among({v.key_id for v in unseen if v.key_id})
        seen: dict[tuple[str, int], tuple[int, int, int]] = {}
        fresh = []
        for v in unseen:
            r = v.reading
            if v.key_id in revoked:
                results[v.index] = ItemResult(v.index, "rejected:revoked_key", r.device_id)
                continue
            key = (r.device_id, r.seq)
            claims = (r.ts, r.import_wh, r.export_wh)
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = claims
                fresh.append(v)
            elif earlier == claims:
                results[v.index] = ItemResult(v.index, "duplicate", r.device_id)
            else:
                results[v.index] = ItemResult(v.index, "rejected:seq_reused", r.device_id)
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

    def _post(self, transfers: list[Transfer], last_timestamp: int) -> list[Transfer]:
        """Post the intervals' credits; returns the transfers of the intervals left uncredited.

        The ids are minted from the interval ids (`transfer_id`), which no client can name
        (`domain.ids`), so the ledger refusing one is a platform fault (a transfer planted in
        the store, a bug): an alarm, never a wedge. The intervals whose transfers the ledger
        refuses are dropped whole (an interval is credited in full or not at all) and logged at
        ERROR with the ids; the others are posted, in this same transaction, and the intervals
        stay recorded, so `audit verify` reports each one uncredited (`derived_problems`).
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


def derived_problems(
    uow: EnergyUnitOfWork, *, limit: int = 100
) -> list[tuple[str, int | str | None, str]]:
    """`audit verify`'s check of the credits and of the chains marked for the sweep: every `ok`
    interval is posted as exactly its credits (an interval the ledger refused to credit, see
    `_Batch._post`, shows here); a chain is marked exactly while a reading waits above or below
    it, since the oldest of them was received, with the party its readings credit."""
    out: list[tuple[str, int | str | None, str]] = []
    for interval_id, device_id in uow.energy.uncredited_intervals(ENERGY_TRANSFER_BASE, limit):
        if not 0 < interval_id <= MAX_INTERVAL_ID:  # a changed id: reported, not crashed on
            out.append(
                ("meter_intervals", interval_id,
                 f"ok interval of {device_id} has an id out of range, so it names no credits")
            )  # fmt: skip
            continue
        out.append(
            ("meter_intervals", interval_id,
             f"ok interval of {device_id} not posted as its credits (transfers "
             f"{transfer_id(interval_id, EnergyCode.EXPORT_CREDIT)} + 0..3)")
        )  # fmt: skip
    for device_id, derived, marked in uow.energy.waiting_mismatches(limit):
        if marked is None:
            out.append(("meter_waiting", device_id, "readings wait beside its chain, unmarked"))
        elif derived is None:
            out.append(("meter_waiting", device_id, "marked, but no reading waits"))
        else:
            why = f"marked since {marked}, but readings wait since {derived}"
            out.append(("meter_waiting", device_id, why))
    for party, (owner, device_kind, registered_at, session_start) in uow.energy.waiting_parties():
        if device_kind is not None:
            expected = (owner, device_kind, registered_at)
        elif session_start is not None:  # an OCPP transaction's chain, as the door attests it
            expected = (owner, CHAIN_KIND, chain_registered_at(session_start))
        else:
            expected = None
        if expected != (party.owner_id, party.kind, party.registered_at):
            why = f"marked for {(party.owner_id, party.kind, party.registered_at)}, not {expected}"
            out.append(("meter_waiting", party.device_id, why))
        if len(out) >= limit:
            break
    return out


# -- queries (read side) ---------------------------------------------------------------------


#: How many waiting sequence numbers a device's summary lists (the count is always whole).
WAITING_LISTED = 20


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """An anomalous interval whose energy no later reading has covered: it awaits review
    (see `domain.energy`, *Awaiting review*)."""

    interval_id: int
    device_id: str
    owner_id: int
    seq: int
    prev_seq: int
    status: str
    start_ts: int
    end_ts: int


@dataclass(frozen=True, slots=True)
class DeviceRegisters:
    """A metered device as its owner sees it: the reading at the top of its chain (the latest
    the platform has credited up to; None until its chain starts) and the readings stored but
    still waiting beside the chain (for a missing sequence number, or the gap horizon).

    The top of the chain, not the highest seq received: a reading far ahead of a gap (seq
    2^63-1, say) waits and has credited nothing, so showing it as the latest misled."""

    device_id: str
    kind: str
    label: str | None
    seq: int | None = None
    ts: int | None = None
    import_wh: int | None = None
    export_wh: int | None = None
    #: How many stored readings wait beside the chain.
    waiting: int = 0
    #: The lowest `WAITING_LISTED` of their sequence numbers, ascending.
    waiting_seqs: tuple[int, ...] = ()


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
    #: The owner's intervals awaiting review (the oldest 100).
    review: list[ReviewItem] = field(default_factory=list)


def awaiting_review(
    uow: EnergyUnitOfWork, *, owner_id: int | None = None, after_id: int = 0, limit: int = 100
) -> list[ReviewItem]:
    """The intervals awaiting review, by interval id after `after_id`: one owner's (the
    resident's view) or every meter's (the grid operators' view), at most `limit`."""
    if not 0 <= after_id <= MAX_INTERVAL_ID or not 1 <= limit <= 1000:
        raise ValueError("after_id is an interval id and limit is 1 … 1000")
    with uow:
        rows = uow.energy.awaiting_review(owner_id, after_id, limit)
    return [ReviewItem(*row) for row in rows]


def energy_summary(
    uow: EnergyUnitOfWork, owner_id: int, *, days: int, tariff: Tariff
) -> EnergySummary:
    """A resident's metered devices with their latest registers, everything credited to them,
    and what was credited per local day (by interval start) over the last `days` days."""
    zone = tariff.zone
    with uow:
        now = uow.clock.now_ns() // 1_000_000_000
        devices = [d for d in uow.identity.devices_of(owner_id) if d.kind in METERED_KINDS]
        states = uow.energy.chain_states([d.id for d in devices])
        tops = uow.energy.existing_readings([(d, s.top_seq) for d, s in states.items()])
        waiting = uow.energy.waiting_readings(
            [
                (d.id, states[d.id].base_seq, states[d.id].top_seq)
                if d.id in states
                else (d.id, -1, -1)
                for d in devices
            ]
        )
        totals = uow.energy.owner_totals(owner_id)
        today = dt.datetime.fromtimestamp(now, zone).date()
        first = today - dt.timedelta(days=days - 1)
        since = int(dt.datetime.combine(first, dt.time(), zone).timestamp())
        rows = uow.energy.owner_intervals(owner_id, since)
        review = [ReviewItem(*r) for r in uow.energy.awaiting_review(owner_id, 0, 100)]
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
    registers = []
    for d in devices:
        state = states.get(d.id)
        top = tops.get((d.id, state.top_seq)) if state is not None else None
        seqs = sorted(r.seq for r in waiting.get(d.id, ()))
        registers.append(
            DeviceRegisters(
                d.id,
                d.kind,
                d.label,
                seq=top.seq if top else None,
                ts=top.ts if top else None,
                import_wh=top.import_wh if top else None,
                export_wh=top.export_wh if top else None,
                waiting=len(seqs),
                waiting_seqs=tuple(seqs[:WAITING_LISTED]),
            )
        )
    return EnergySummary(
        registers,
        totals,
        [DayCredits(day, IntervalSums(*sums)) for day, sums in sorted(per_day.items())],
        tariff.timezone,
        review,
    )
