"""Signature checking of meter readings, outside the write lock: the `ReadingVerifier` (one read
query per batch for devices and keys; Ed25519 checks in this process or in a process pool, the
adapter that spreads them across cores) and the check of the readings the OCPP door attests.

Its answer, a `Checked` batch, is what the write path (`energy.handlers.ingest_checked`) takes.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import cast

from cityshare.energy.commands import AttestedReading
from cityshare.energy.model import METERED_KINDS, DeviceKey, DeviceKeys
from cityshare.energy.readings import (
    Job,
    ReadingError,
    SignedReading,
    known_device,
    parse,
    which_key,
)
from cityshare.energy.uow import EnergyUnitOfWork


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
        for i, item in enumerate(items):
            kid = known_device(item) if type(item) is str else None
            if kid is None:
                try:
                    kid = parse(item).device_id  # a header not seen yet, or a bad item
                except ReadingError as exc:
                    rejected[i] = exc.reason
                    continue
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



#: The key id of an attested reading: none (key ids start at 1), so never a revoked one.
ATTESTED_KEY_ID = 0
_MAX_REGISTER = (1 << 63) - 1


def check_attested(items: Sequence[AttestedReading]) -> Checked:
    """The check of a batch of the OCPP door (`IngestAttestedReadings`): its `AttestedReading`s
    are verified as they are (the door authenticated the charger; the owner named is the one
    credited); anything else is refused as malformed (it is no JWS to check either)."""
    out = Checked()
    for i, item in enumerate(items):
        if type(item) is not AttestedReading:
            out.rejected[i] = "malformed"
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
