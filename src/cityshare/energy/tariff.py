"""The tariff: what an exported interval earns (smart credit points per kWh, by time-of-day
window, with a peak export incentive; grams CO2e by the device's source and region) and the rules
that judge a reading (a device kind's maximum power, the register reset threshold, the tolerance
for future timestamps, the gap horizon). Pure, no I/O but reading the tariff file.

A tariff is loaded from TOML (`load_tariff`: `CITYSHARE_TARIFFS_PATH`, or the one shipped in the
package), logged once as canonical JSON (`Tariff.canonical_json`, identified by its `digest`), and
named by every interval credited under it (`tariff_from_json` reads a logged one back). How its
rates become credits, remainders carried per device, is `energy.chain`'s *Credits*.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from cityshare.energy.model import METERED_KINDS
from cityshare.ledger.model import MAX_INT


class TariffError(ValueError):
    """A tariff file that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class Window:
    """A time-of-day window, [start, end) in minutes after local midnight."""

    name: str
    start: int
    end: int
    multiplier: Fraction
    peak: bool = False

    def holds(self, minute: int) -> bool:
        return self.start <= minute < self.end


NORMAL = Window("normal", 0, 24 * 60, Fraction(1))
_MAX_CACHED_MINUTES = 1 << 16


@dataclass(frozen=True, slots=True)
class CarbonFactor:
    source: str
    region: str
    g_per_wh: Fraction
    reference: str


@dataclass(frozen=True, slots=True)
class Tariff:
    """Everything that decides what an interval is worth and whether it is anomalous."""

    name: str
    timezone: str
    region: str
    source_by_device_kind: Mapping[str, str]
    carbon_factors: tuple[CarbonFactor, ...]
    points_per_kwh: Fraction
    peak_export_incentive: Fraction
    windows: tuple[Window, ...]
    credit_reference: str
    max_power_w: Mapping[str, int]
    reset_near_zero_wh: int
    future_tolerance_s: int
    gap_horizon_s: int
    _zone: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _credit_den: int = field(init=False, repr=False, compare=False)
    #: Ingestion asks for the same few answers for every interval (Fraction arithmetic and a
    #: timezone conversion each), so they are computed once: window name -> that very window
    #: (answered only for it, by identity) and its credit numerator; UTC minute -> window;
    #: device kind -> carbon fraction (a kind with no factor raises every time).
    _credit_nums: dict[str, tuple[Window, int]] = field(init=False, repr=False, compare=False)
    _windows_by_minute: dict[int, Window] = field(init=False, repr=False, compare=False)
    _carbon_fractions: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", zoneinfo.ZoneInfo(self.timezone))
        rates = [self.points_rate(w) for w in (NORMAL, *self.windows)]
        object.__setattr__(self, "_credit_den", math.lcm(*(r.denominator for r in rates)))
        object.__setattr__(
            self,
            "_credit_nums",
            {w.name: (w, self._credit_numerator(w)) for w in (NORMAL, *self.windows)},
        )
        object.__setattr__(self, "_windows_by_minute", {})
        object.__setattr__(self, "_carbon_fractions", {})

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    # -- carbon ------------------------------------------------------------------------------

    def carbon_factor(self, kind: str) -> CarbonFactor:
        source = self.source_by_device_kind.get(kind)
        for factor in self.carbon_factors:
            if factor.source == source and factor.region == self.region:
                return factor
        raise TariffError(f"no carbon factor for a {kind} ({source}) in region {self.region}")

    def carbon_fraction(self, kind: str) -> tuple[int, int]:
        """Grams CO2e per Wh as (numerator, denominator)."""
        known = self._carbon_fractions.get(kind)
        if known is None:
            f = self.carbon_factor(kind).g_per_wh
            known = self._carbon_fractions[kind] = (f.numerator, f.denominator)
        return known

    # -- smart credit points -----------------------------------------------------------------

    def window_at(self, ts: int) -> Window:
        """The time-of-day window holding the instant `ts` (unix seconds), in local time."""
        cached = self._windows_by_minute.get(ts // 60)
        if cached is not None:
            return cached
        local = dt.datetime.fromtimestamp(ts, self._zone)
        minute = local.hour * 60 + local.minute
        found = NORMAL
        for window in self.windows:
            if window.holds(minute):
                found = window
                break
        # Every instant of a UTC minute has the same local minute when the offset is whole
        # minutes and does not change within it (true of today's zones; some historical ones
        # have offsets with seconds, and those minutes are never cached).
        first = ts // 60 * 60
        offsets = {
            dt.datetime.fromtimestamp(t, self._zone).utcoffset() for t in (first, first + 59)
        }
        if len(offsets) == 1 and local.utcoffset() in offsets:
            offset = local.utcoffset()
            if offset is not None and offset.total_seconds() % 60 == 0:
                cache = self._windows_by_minute
                if len(cache) >= _MAX_CACHED_MINUTES:
                    cache.clear()
                cache[ts // 60] = found
        return found

    def points_rate(self, window: Window) -> Fraction:
        """Milli-points per exported Wh in `window`."""
        rate = self.points_per_kwh * window.multiplier
        return rate * self.peak_export_incentive if window.peak else rate

    @property
    def credit_denominator(self) -> int:
        """The common denominator of every window's rate: remainders are carried in it."""
        return self._credit_den

    def credit_numerator(self, window: Window) -> int:
        known = self._credit_nums.get(window.name)
        if known is not None and known[0] is window:
            return known[1]
        return self._credit_numerator(window)

    def _credit_numerator(self, window: Window) -> int:
        rate = self.points_rate(window)
        return rate.numerator * (self._credit_den // rate.denominator)

    # -- identity of a tariff (it is logged once, and every credited interval names it) ------

    def as_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timezone": self.timezone,
            "region": self.region,
            "carbon": {
                "source_by_device_kind": dict(sorted(self.source_by_device_kind.items())),
                "factors": [
                    {
                        "source": f.source,
                        "region": f.region,
                        "g_per_wh": _decimal(f.g_per_wh),
                        "reference": f.reference,
                    }
                    for f in self.carbon_factors
                ],
            },
            "credit": {
                "points_per_kwh": _decimal(self.points_per_kwh),
                "peak_export_incentive": _decimal(self.peak_export_incentive),
                "reference": self.credit_reference,
                "windows": [
                    {
                        "name": w.name,
                        "start": _clock(w.start),
                        "end": _clock(w.end),
                        "multiplier": _decimal(w.multiplier),
                        "peak": w.peak,
                    }
                    for w in self.windows
                ],
            },
            "rules": {
                "max_power_w": dict(sorted(self.max_power_w.items())),
                "reset_near_zero_wh": self.reset_near_zero_wh,
                "future_tolerance_s": self.future_tolerance_s,
                "gap_horizon_s": self.gap_horizon_s,
            },
        }

    def canonical_json(self) -> str:
        return json.dumps(self.as_data(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _decimal(value: Fraction) -> str:
    """An exact decimal string for a fraction read from one (else `numerator/denominator`)."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value * 10**places
    text = str(abs(scaled.numerator)).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    if places == 0:
        return sign + text
    return f"{sign}{text[:-places]}.{text[-places:]}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


_CLOCK_RE = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")
_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _exact(value: Any, where: str) -> Fraction:
    if not isinstance(value, str) or not _DECIMAL_RE.match(value):
        raise TariffError(f'{where}: write a non-negative decimal as a string, e.g. "0.861"')
    return Fraction(value)


def _minutes(value: Any, where: str) -> int:
    match = _CLOCK_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise TariffError(f'{where}: a local time "HH:MM"')
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 24 * 60:
        raise TariffError(f"{where}: at most 24:00")
    return minutes


def _int(value: Any, where: str, *, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_INT:
        raise TariffError(f"{where}: an integer of at least {low}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TariffError(f"{where}: a non-empty string")
    return value


def tariff_from_data(data: Mapping[str, Any]) -> Tariff:
    """Build a tariff from parsed TOML (or the JSON a logged tariff holds); TariffError if bad."""
    try:
        carbon = data["carbon"]
        credit = data["credit"]
        rules = data["rules"]
        factors = tuple(
            CarbonFactor(
                _text(f["source"], "carbon.factors.source"),
                _text(f["region"], "carbon.factors.region"),
                _exact(f["g_per_wh"], "carbon.factors.g_per_wh"),
                _text(f["reference"], "carbon.factors.reference"),
            )
            for f in carbon["factors"]
        )
        windows = tuple(
            Window(
                _text(w["name"], "credit.windows.name"),
                _minutes(w["start"], f"credit.windows[{w['name']}].start"),
                _minutes(w["end"], f"credit.windows[{w['name']}].end"),
                _exact(w["multiplier"], f"credit.windows[{w['name']}].multiplier"),
                bool(w.get("peak", False)),
            )
            for w in credit.get("windows", [])
        )
        sources = {
            _text(k, "carbon.source_by_device_kind"): _text(v, "carbon.source_by_device_kind")
            for k, v in carbon["source_by_device_kind"].items()
        }
        max_power = {
            _text(k, "rules.max_power_w"): _int(v, f"rules.max_power_w.{k}", low=1)
            for k, v in rules["max_power_w"].items()
        }
        tariff = Tariff(
            name=_text(data["name"], "name"),
            timezone=_text(data["timezone"], "timezone"),
            region=_text(data["region"], "region"),
            source_by_device_kind=sources,
            carbon_factors=factors,
            points_per_kwh=_exact(credit["points_per_kwh"], "credit.points_per_kwh"),
            peak_export_incentive=_exact(
                credit["peak_export_incentive"], "credit.peak_export_incentive"
            ),
            windows=windows,
            credit_reference=_text(credit["reference"], "credit.reference"),
            max_power_w=max_power,
            reset_near_zero_wh=_int(rules["reset_near_zero_wh"], "rules.reset_near_zero_wh"),
            future_tolerance_s=_int(rules["future_tolerance_s"], "rules.future_tolerance_s"),
            gap_horizon_s=_int(rules["gap_horizon_s"], "rules.gap_horizon_s", low=1),
        )
    except zoneinfo.ZoneInfoNotFoundError as exc:  # (a KeyError)
        raise TariffError(f"unknown timezone {data.get('timezone')!r}") from exc
    except KeyError as exc:
        raise TariffError(f"the tariff is missing {exc}") from exc
    except (TypeError, AttributeError, ValueError) as exc:
        raise TariffError(f"the tariff is not shaped as expected: {exc}") from exc
    _check_windows(tariff.windows)
    for kind in METERED_KINDS:
        if kind not in tariff.max_power_w:
            raise TariffError(f"rules.max_power_w has no limit for a {kind}")
        tariff.carbon_factor(kind)  # raises when a metered kind has no factor
    return tariff


def _check_windows(windows: tuple[Window, ...]) -> None:
    names = [w.name for w in windows]
    if len(set(names)) != len(names) or NORMAL.name in names:
        raise TariffError("window names are unique and not 'normal'")
    spans = sorted((w.start, w.end, w.name) for w in windows)
    for start, end, name in spans:
        if start >= end:
            raise TariffError(f"window {name}: start before end (split one across midnight)")
    for (_, end, name), (start, _, other) in itertools.pairwise(spans):
        if start < end:
            raise TariffError(f"windows {name} and {other} overlap")


def load_tariff(path: Path | None = None) -> Tariff:
    """The tariff in `path` (TOML), or the one shipped with the package."""
    try:
        if path is None:
            text = resources.files("cityshare").joinpath("data/tariffs.toml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TariffError(f"cannot read the tariff file: {exc}") from exc
    return tariff_from_data(data)


def tariff_from_json(text: str) -> Tariff:
    """A tariff as logged (`Tariff.canonical_json`)."""
    return tariff_from_data(json.loads(text))

