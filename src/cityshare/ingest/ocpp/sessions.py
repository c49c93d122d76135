"""How a charging session's meter values become readings of its chain (pure, no I/O).

A transaction the central system accepted is one reading chain of the energy capability
(`domain.charging.chain_id`), credited to the vehicle's owner like a meter. Its readings carry
the charger's cumulative registers at the charger's sample times:

- `export_wh` from `Energy.Active.Export.Register` (the vehicle discharging: V2G), and
- `import_wh` from `Energy.Active.Import.Register` (the measurand OCPP assumes when none is
  named), tracked only when the transaction's start told it (1.6 `meterStart`, or a 2.0.1
  start event's sample); otherwise it stays 0, so a register first seen mid-session is
  never taken for energy drawn in one interval.

Seq 0 is the first moment the export register is known (a 2.0.1 start event's sample, else
the first sample that has it); each later sample timestamp is the next seq. A register a
sample leaves out keeps its last value. A sample not newer than the chain's latest reading
(a message resent after a reconnect, a duplicate) is dropped here, before it is a reading, so
a resend changes nothing. Values are cut down to whole Wh (kWh and 2.0.1 multipliers are
converted exactly; phase values are ignored, the registers are totals).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cityshare.domain.ledger import MAX_INT

EXPORT = "Energy.Active.Export.Register"
IMPORT = "Energy.Active.Import.Register"
_UNITS = {"Wh": Decimal(1), "kWh": Decimal(1000)}
_REDACTED = "[redacted]"
_TOKEN_KEYS = frozenset({"idTag", "parentIdTag", "idToken"})


class SampleError(ValueError):
    """A meter value or timestamp the central system cannot read (the message is refused)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The registers a charger reported at one instant (None: not in this sample)."""

    ts: int
    import_wh: int | None = None
    export_wh: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a session's chain stands: its next seq, its latest reading's timestamp and
    registers (None before its first reading), and whether it tracks the import register."""

    next_seq: int
    last_ts: int | None
    import_wh: int | None
    export_wh: int | None
    tracks_import: bool

    @classmethod
    def start(cls, meter_start_wh: int | None) -> Progress:
        return cls(0, None, meter_start_wh, None, meter_start_wh is not None)

    @classmethod
    def after(
        cls, latest: tuple[int, int, int, int] | None, meter_start_wh: int | None
    ) -> Progress:
        """From the chain's latest stored reading (seq, ts, import_wh, export_wh), if any."""
        if latest is None:
            return cls.start(meter_start_wh)
        seq, ts, imported, exported = latest
        tracks = meter_start_wh is not None
        return cls(seq + 1, ts, imported if tracks else None, exported, tracks)


@dataclass(frozen=True, slots=True)
class Planned:
    seq: int
    ts: int
    import_wh: int
    export_wh: int


def plan(progress: Progress, samples: Iterable[Sample]) -> list[Planned]:
    """The readings `samples` add to a chain at `progress` (see the module docstring)."""
    merged: dict[int, list[int | None]] = {}
    for s in samples:
        slot = merged.setdefault(s.ts, [None, None])
        if s.import_wh is not None:
            slot[0] = s.import_wh
        if s.export_wh is not None:
            slot[1] = s.export_wh
    out: list[Planned] = []
    seq, last = progress.next_seq, progress.last_ts
    imported, exported = progress.import_wh, progress.export_wh
    for ts in sorted(merged):
        if last is not None and ts <= last:
            continue  # already seen (a resend) or older than what the chain holds
        sample_import, sample_export = merged[ts]
        if sample_import is not None and progress.tracks_import:
            imported = sample_import
        if sample_export is not None:
            exported = sample_export
        if exported is None:
            continue  # no export register yet: nothing to measure discharge against
        out.append(Planned(seq, ts, imported or 0, exported))
        seq += 1
        last = ts
    return out


# -- reading OCPP messages -------------------------------------------------------------------


def parse_timestamp(text: object) -> int:
    """An OCPP dateTime (RFC 3339; UTC when it names no offset) in unix seconds."""
    if not isinstance(text, str):
        raise SampleError("a timestamp is an RFC 3339 string")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise SampleError(f"not an RFC 3339 timestamp: {text[:40]!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(when.timestamp() // 1)
    if seconds < 0:
        raise SampleError("a timestamp before 1970")
    return seconds


def _wh(value: object, unit: object, multiplier: object = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SampleError("a meter value is a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise SampleError(f"not a number: {str(value)[:40]!r}") from exc
    scale = _UNITS.get(unit if isinstance(unit, str) else "")
    if scale is None:
        raise SampleError(f"an energy register is in Wh or kWh, not {unit!r}")
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or abs(multiplier) > 9:
        raise SampleError("a unit multiplier is a small integer")
    if not number.is_finite() or number < 0:
        raise SampleError("an energy register is a finite number, at least 0")
    wh = int(number * scale * Decimal(10) ** multiplier)  # whole Wh, rounded down
    if wh > MAX_INT:
        raise SampleError("an energy register too large")
    return wh


def _sample(ts: int, values: Iterable[tuple[str, int]]) -> Sample:
    imported = exported = None
    for measurand, wh in values:
        if measurand == IMPORT:
            imported = wh
        elif measurand == EXPORT:
            exported = wh
    return Sample(ts, imported, exported)


def samples_v16(meter_values: Sequence[Mapping[str, Any]] | None) -> list[Sample]:
    """Samples of OCPP 1.6 `meterValue` items (keys as the `ocpp` package hands them over:
    snake_case; `value` is a decimal string, `unit` defaults to Wh)."""
    out = []
    for item in meter_values or ():
        ts = parse_timestamp(item.get("timestamp"))
        values = []
        for sv in item.get("sampled_value") or ():
            measurand = sv.get("measurand", IMPORT)
            if measurand not in (IMPORT, EXPORT) or sv.get("phase") is not None:
                continue
            if sv.get("format", "Raw") != "Raw":
                continue  # SignedData: a blob only the vendor's tool can read
            values.append((measurand, _wh(sv.get("value"), sv.get("unit", "Wh"))))
        out.append(_sample(ts, values))
    return out


def samples_v201(meter_values: Sequence[Mapping[str, Any]] | None) -> list[Sample]:
    """Samples of OCPP 2.0.1 `meterValue` items (snake_case keys; `value` is a number, the
    unit is `unit_of_measure` {unit, multiplier}, Wh and 0 by default)."""
    out = []
    for item in meter_values or ():
        ts = parse_timestamp(item.get("timestamp"))
        values = []
        for sv in item.get("sampled_value") or ():
            measurand = sv.get("measurand", IMPORT)
            if measurand not in (IMPORT, EXPORT) or sv.get("phase") is not None:
                continue
            unit = sv.get("unit_of_measure") or {}
            values.append(
                (
                    measurand,
                    _wh(sv.get("value"), unit.get("unit", "Wh"), unit.get("multiplier", 0)),
                )
            )
        out.append(_sample(ts, values))
    return out


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _REDACTED if k in _TOKEN_KEYS and isinstance(v, str) else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def evidence(unique_id: str, action: str, payload: Mapping[str, Any]) -> str:
    """The OCPP-J CALL a reading came from, as canonical JSON (sorted keys, no spaces, ASCII),
    with the vehicle's token redacted: the audit log keeps what the charger reported, and the
    session record already names the token by its keyed hash."""
    try:
        return json.dumps(
            [2, unique_id, action, _redact(payload)],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except ValueError as exc:
        raise SampleError("the message holds a number JSON cannot write (NaN, Infinity)") from exc
