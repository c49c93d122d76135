"""Reading OCPP meter values and timestamps (pure, no I/O).

Samples (`charging.model.Sample`) are what a charger's `meterValue` items say of the two
registers a session's chain carries: `Energy.Active.Export.Register` (the vehicle
discharging: V2G) and `Energy.Active.Import.Register` (the measurand OCPP assumes when none
is named). Values are cut down to whole Wh (kWh and 2.0.1 multipliers are converted exactly;
phase values are ignored, the registers are totals). How samples become readings of the
chain is `charging.model.plan`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cityshare.charging.model import Sample
from cityshare.ledger.model import MAX_INT

EXPORT = "Energy.Active.Export.Register"
IMPORT = "Energy.Active.Import.Register"
_UNITS = {"Wh": Decimal(1), "kWh": Decimal(1000)}
_REDACTED = "[redacted]"
#: Fields of OCPP messages that carry a vehicle's or a driver's token (1.6 idTag and
#: parentIdTag; 2.0.1 IdTokenType.idToken and AdditionalInfoType.additionalIdToken).
TOKEN_KEYS = frozenset({"idTag", "parentIdTag", "idToken", "additionalIdToken"})


class SampleError(ValueError):
    """A meter value or timestamp the central system cannot read (the message is refused)."""


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
    # Judged by its exponent first: int() of "1e999990" would build a million-digit number.
    scaled = number * scale * Decimal(10) ** multiplier if number.adjusted() <= 40 else None
    if scaled is None or scaled > MAX_INT:
        raise SampleError("an energy register too large")
    return int(scaled)  # whole Wh, rounded down


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


def _stamped(item: Any) -> int | None:
    try:
        return parse_timestamp(item.get("timestamp")) if isinstance(item, dict) else None
    except SampleError:
        return None


def redact(value: Any) -> Any:
    """A message's payload with the tokens it names replaced (the rest as it was)."""
    if isinstance(value, dict):
        return {
            k: _REDACTED if k in TOKEN_KEYS and isinstance(v, str) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


#: The lists of a CALL's payload that hold meter values stamped with their own time.
SAMPLE_LISTS = ("meterValue", "transactionData")


def evidence(
    unique_id: str, action: str, payload: Mapping[str, Any], at: int | None = None
) -> str:
    """The OCPP-J CALL a reading came from, as canonical JSON (sorted keys, no spaces, ASCII),
    with the vehicle's token redacted: the audit log keeps what the charger reported, and the
    session record already names the token by its keyed hash. With `at`, the meter values of
    the CALL are only those stamped at that time (the reading's own): a message of K samples
    is then stored once in all, not K times over."""
    if at is not None:
        payload = {
            k: [item for item in v if _stamped(item) == at]
            if k in SAMPLE_LISTS and isinstance(v, list) else v
            for k, v in payload.items()
        }  # fmt: skip
    try:
        return json.dumps(
            [2, unique_id, action, redact(payload)],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except ValueError as exc:
        raise SampleError("the message holds a number JSON cannot write (NaN, Infinity)") from exc
