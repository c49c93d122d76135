"""The reading chain: how signed meter readings become credited intervals (pure, no I/O).

A meter (or a bidirectional charger) reports cumulative registers: `import_wh` (energy taken
from the grid) and `export_wh` (energy given to it), with a per-device sequence number `seq`
and a timestamp `ts` (unix seconds). Energy is credited per *interval* between two readings.

**The chain.** Each device's readings are credited in sequence order, each against the one
before it, whatever order they arrive in. A device's *chain* covers the contiguous run of
sequence numbers `base_seq … top_seq` already credited; a reading that arrives

- with `seq = top_seq + 1` joins at the top: the interval from the top to it is judged and
  credited, and readings already waiting above it follow;
- with `seq = base_seq - 1` joins at the bottom: the interval from it to the base is judged
  and credited, and readings waiting below follow;
- anywhere else above or below the chain waits (it is stored) until the readings between
  arrive; inside the chain (a gap bridged earlier, see below) it only fills the profile;
- as the lowest usable reading among the first of its device to arrive (one batch, in any
  order), starts the chain (the *baseline*, credited nothing).

So each interval between two consecutive readings is judged exactly once, and any permutation
or duplication of a device's readings, in batches of any shape, credits exactly what orderly
delivery credits -- but for one case, a reading that contradicts the chain from below (see
*Trust at the bottom of the chain*): duplicates are dropped by `(device, seq)` before they get
here, and a late reading never re-credits an interval.

A sequence number that never arrives would hold back everything beyond it, so once a reading
has waited above the chain for `gap_horizon_s` of *platform* time (since it was received), the
gap is *bridged*: the nearest waiting reading joins over it (and likewise below the base). The
missing reading, should it come after all, only fills the profile. The horizon is measured in
arrival time, not device time, so a backlog (a meter back online after a day, split across
workers in any order) that arrives within the horizon is never bridged. Only a reading lost
for good (or later than the horizon) makes order matter here: which side of the gap the chain
started on decides which side waits.

**Judging an interval** (previous reading p, current reading c, in sequence order), first rule
that applies:

1. `seq_ts_order`: `c.ts <= p.ts` (sequence and time must increase together);
2. a register fell: `meter_reset` when both of c's registers are at most
   `reset_near_zero_wh` (a new baseline: the interval credits nothing, the next counts from
   c), else `register_backwards` (nothing credited; the chain keeps p's registers as its high
   water mark, so energy is never credited twice) -- unless the chain's registers got there
   by an impossible jump (below) and c is `ok` against the registers from before the jump:
   the jump was one corrupt reading, and c is credited from before it (see *fallback*);
3. `impossible_power`: more Wh than the device kind's `max_power_w` can move in the time
   between (nothing credited; the chain continues from c, so a jump that persists is never
   credited, but keeps the registers from before it as its *fallback*);
4. otherwise `ok`: the increases of both registers are credited.

**The fallback (one anomalous reading never freezes a meter).** A corrupt reading far above
its neighbours (import 1040 -> 3040 -> 1240 Wh in minutes) is an impossible jump followed by a
register that falls. Were the jumped register the high-water mark, every honest reading after
it would be refused until the register passed it, and the Wh in between would never be
billed. So while the chain's last move was an impossible jump (until an `ok` or a reset moves
its registers again), it keeps the registers from before the first such jump; a reading that
falls below the jump but is `ok` against them is credited from them (1040 -> 1240), and the
intervals of the corrupt reading are thereby covered. The same holds at the bottom of the
chain, mirrored, so either arrival order credits the same. A chain's first reading (its
baseline) is trusted: a corrupt one can still hold the chain, visibly (below).

**Trust at the bottom of the chain (the one limit to order independence).** In sequence order a
reading is judged against the high-water mark the readings before it left; a chain that started
above them has already judged, and credited, the readings above its base against the base. So
when a reading joins at the bottom and *contradicts* the base (`register_backwards` or
`seq_ts_order` against it, or an `impossible_power` jump that the base made, not the reading: a
corrupt baseline), orderly delivery would have judged the base anomalous against that reading,
and what follows against the reading; the chain cannot, for its credits are final. Export 5000,
3000, 5100 Wh (seq 0, 1, 2, 15 minutes apart): in order, 3000 is a glitch below the high-water
mark and 5100 credits 100; newest first in separate batches, 3000 -> 5100 is an honest 2100 Wh
interval (all that orderly delivery of seq 1 and 2 credits), and 5000, arriving last,
contradicts it: it is refused as `register_backwards` and awaits review. The two readings
disagree, and which one is the glitch depends on which was trusted first. No rule that credits
an interval when its readings are there can do better: 3000 -> 5100 must credit 2100 while seq
0 has not come, which is more than the 100 orderly delivery credits once it comes; only holding
every chain's credits until nothing older can arrive would decide it (nothing tells a device's
first reading). So the chain trusts its baseline and the readings that moved it, refuses a
reading that contradicts them from below, and never credits more than its trusted span: without
resets, its credited import and export are at most the registers of its high-water mark minus
those of its base (the jumps it skipped make up the rest), and in every case at most what the
registers rose by from each reading to the next, in sequence order. In every other arrival
order and batch shape -- no reading contradicting the chain from below -- it credits exactly
what orderly delivery does, interval by interval (the same spans of device time and credits; an
interval measured across a reading that is anomalous on its own is recorded with whichever of
its ends joined last). That is the common case: a backlog that arrives in one batch, in any
order, starts the chain at its lowest reading, where orderly delivery starts it.

**Awaiting review.** An anomalous interval credits nothing; its energy is not lost as long
as a later `ok` interval on the same side of the chain is measured from a reading at or
beyond its far end (it *covers* it: a glitch, a future timestamp, a corrupt jump). Any other
anomalous interval -- a reset (the Wh between the last reading and the reset were never
measured), a jump that persisted, a register still below its high-water mark -- *awaits
review*: the resident and the grid operators see it (`GET /api/v1/me/energy`,
`GET /api/v1/energy/review`) until a later reading covers it.

**Credits** of an `ok` interval, integers only: the exported Wh; grams CO2e = Wh * the carbon
factor of the device's source and region (an exact fraction); milli-points = Wh * points per
kWh * the time-of-day window's multiplier (* the peak export incentive in peak windows). The
window is the one holding the interval's *start* (local time). Each device carries the
remainder of both divisions to its next interval, so a device is credited exactly
floor(total numerator / denominator): many small intervals lose and invent nothing, in any
order.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, replace

from cityshare.energy.model import BASELINE, OK, Anomaly
from cityshare.energy.tariff import Tariff


@dataclass(frozen=True, slots=True)
class Reading:
    """A verified reading as the chain sees it; `received_at` in ns since the epoch."""

    seq: int
    ts: int
    import_wh: int
    export_wh: int
    received_at: int

    def same_claims(self, other: Reading) -> bool:
        return (self.seq, self.ts, self.import_wh, self.export_wh) == (
            other.seq,
            other.ts,
            other.import_wh,
            other.export_wh,
        )


@dataclass(frozen=True, slots=True)
class Device:
    """What the rules need to know of a device."""

    kind: str
    registered_at: int  # ns since the epoch


@dataclass(frozen=True, slots=True)
class ChainState:
    """A device's chain after its latest step (kept in that step's record).

    `hw_*` is the high-water mark at the top: the registers (and their timestamp) the next
    reading above is judged against. `base_*` is what the next reading below is judged
    against. Carries are remainders in units of 1/denominator of the tariff named `tariff_id`.
    """

    base_seq: int
    base_ts: int
    base_import: int
    base_export: int
    top_seq: int
    top_ts: int
    hw_ts: int
    hw_import: int
    hw_export: int
    carbon_carry: int
    credit_carry: int
    tariff_id: int
    #: (ts, import, export) the top (`fb_top`) or the base (`fb_base`) had before the first
    #: impossible jump since it last moved otherwise (see the module docstring), or None. Not
    #: stored: the energy repository derives it from the recorded intervals.
    fb_top: tuple[int, int, int] | None = None
    fb_base: tuple[int, int, int] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One reading joining its device's chain: the interval judged, what it credited, and the
    chain after it. The baseline step (a chain's first reading) is an empty interval."""

    seq: int  # the reading that joined
    prev_seq: int  # the other end of the interval (== seq for the baseline)
    status: str  # "baseline", "ok" or an Anomaly
    start_ts: int
    end_ts: int
    window: str
    import_wh: int
    export_wh: int
    carbon_g: int
    credit_milli: int
    state: ChainState


def reading_anomaly(reading: Reading, device: Device, tariff: Tariff) -> Anomaly | None:
    """What is wrong with a reading on its own (its timestamp), or None."""
    tolerance = tariff.future_tolerance_s
    if reading.ts > reading.received_at // 1_000_000_000 + tolerance:
        return Anomaly.FUTURE_TIMESTAMP
    if reading.ts < device.registered_at // 1_000_000_000 - tolerance:
        return Anomaly.BEFORE_REGISTRATION
    return None


def judge(
    prev: tuple[int, int, int],
    cur: tuple[int, int, int],
    *,
    max_power_w: int,
    near_zero_wh: int,
) -> str:
    """Judge the interval between two readings given as (ts, import_wh, export_wh)."""
    prev_ts, prev_import, prev_export = prev
    ts, imported, exported = cur
    if ts <= prev_ts:
        return Anomaly.SEQ_TS_ORDER
    d_import = imported - prev_import
    d_export = exported - prev_export
    if d_import < 0 or d_export < 0:
        if imported <= near_zero_wh and exported <= near_zero_wh:
            return Anomaly.METER_RESET
        return Anomaly.REGISTER_BACKWARDS
    if max(d_import, d_export) * 3600 > max_power_w * (ts - prev_ts):
        return Anomaly.IMPOSSIBLE_POWER
    return OK


#: Outcomes after which the chain's registers move to the new reading (a reset or an
#: impossible jump starts a new baseline there); after any other anomaly they stay.
_MOVES = frozenset({OK, Anomaly.METER_RESET, Anomaly.IMPOSSIBLE_POWER})
_JUMP = Anomaly.IMPOSSIBLE_POWER
_BACKWARDS = Anomaly.REGISTER_BACKWARDS


def rescale_carries(
    state: ChainState, old: Tariff, new: Tariff, kind: str, new_id: int
) -> ChainState:
    """Carry a chain's remainders over to another tariff's denominators (rounding down: under
    a unit of the new denominator may be dropped, deterministically)."""
    if state.tariff_id == new_id:
        return state
    old_c = old.carbon_fraction(kind)[1]
    new_c = new.carbon_fraction(kind)[1]
    return replace(
        state,
        carbon_carry=state.carbon_carry * new_c // old_c,
        credit_carry=state.credit_carry * new.credit_denominator // old.credit_denominator,
        tariff_id=new_id,
    )


class _Walk:
    """Joins waiting readings to one device's chain; see the module docstring."""

    def __init__(self, device: Device, tariff: Tariff, tariff_id: int) -> None:
        self.device = device
        self.tariff = tariff
        self.tariff_id = tariff_id
        self.max_power = tariff.max_power_w[device.kind]
        self.carbon_num, self.carbon_den = tariff.carbon_fraction(device.kind)
        self.credit_den = tariff.credit_denominator
        self.steps: list[Step] = []

    def start(self, r: Reading) -> ChainState:
        state = ChainState(
            r.seq,
            r.ts,
            r.import_wh,
            r.export_wh,
            r.seq,
            r.ts,
            r.ts,
            r.import_wh,
            r.export_wh,
            0,
            0,
            self.tariff_id,
        )
        self.steps.append(Step(r.seq, r.seq, BASELINE, r.ts, r.ts, "", 0, 0, 0, 0, state))
        return state

    def _credit(
        self, state: ChainState, status: str, start_ts: int, d_import: int, d_export: int
    ) -> tuple[str, int, int, int, int, int, int]:
        """(window, import, export, grams, milli-points, carbon carry, credit carry)."""
        if status != OK:
            return "", 0, 0, 0, 0, state.carbon_carry, state.credit_carry
        window = self.tariff.window_at(start_ts)
        carbon_total = d_export * self.carbon_num + state.carbon_carry
        credit_total = d_export * self.tariff.credit_numerator(window) + state.credit_carry
        grams, carbon_carry = divmod(carbon_total, self.carbon_den)
        milli, credit_carry = divmod(credit_total, self.credit_den)
        return window.name, d_import, d_export, grams, milli, carbon_carry, credit_carry

    def up(self, state: ChainState, r: Reading) -> ChainState:
        """`r` joins at the top (the next sequence number, or over a bridged gap)."""
        bad = reading_anomaly(r, self.device, self.tariff)
        origin = (state.hw_ts, state.hw_import, state.hw_export)
        cur = (r.ts, r.import_wh, r.export_wh)
        near_zero = self.tariff.reset_near_zero_wh
        status: str = bad or judge(
            origin, cur, max_power_w=self.max_power, near_zero_wh=near_zero
        )
        fb = state.fb_top
        if (
            status == _BACKWARDS
            and fb is not None
            and judge(fb, cur, max_power_w=self.max_power, near_zero_wh=near_zero) == OK
        ):
            status, origin = OK, fb  # the jump was one corrupt reading: credit from before
        window, d_imp, d_exp, grams, milli, c_carry, p_carry = self._credit(
            state, status, origin[0], r.import_wh - origin[1], r.export_wh - origin[2]
        )
        # ChainState(...) rather than dataclasses.replace: this runs once per reading.
        s = state
        if status in _MOVES:
            # A jump keeps the registers from before the first one; any other move clears.
            fb = (fb or (s.hw_ts, s.hw_import, s.hw_export)) if status == _JUMP else None
            new = ChainState(
                s.base_seq, s.base_ts, s.base_import, s.base_export, r.seq, r.ts, r.ts,
                r.import_wh, r.export_wh, c_carry, p_carry, s.tariff_id, fb, s.fb_base,
            )  # fmt: skip
        else:
            new = ChainState(
                s.base_seq, s.base_ts, s.base_import, s.base_export, r.seq, s.top_ts, s.hw_ts,
                s.hw_import, s.hw_export, s.carbon_carry, s.credit_carry, s.tariff_id, fb,
                s.fb_base,
            )  # fmt: skip
        self.steps.append(
            Step(
                r.seq,
                state.top_seq,
                status,
                origin[0],
                r.ts,
                window,
                d_imp,
                d_exp,
                grams,
                milli,
                new,
            )
        )
        return new

    def down(self, state: ChainState, r: Reading) -> ChainState:
        """`r` (sequence number `base_seq - 1`) joins at the bottom."""
        bad = reading_anomaly(r, self.device, self.tariff)
        target = (state.base_ts, state.base_import, state.base_export)
        mine = (r.ts, r.import_wh, r.export_wh)
        near_zero = self.tariff.reset_near_zero_wh
        status: str = bad or judge(
            mine, target, max_power_w=self.max_power, near_zero_wh=near_zero
        )
        fb = state.fb_base
        if (
            status == _BACKWARDS
            and fb is not None
            and judge(mine, fb, max_power_w=self.max_power, near_zero_wh=near_zero) == OK
        ):
            status, target = OK, fb  # the jump above was one corrupt reading
        window, d_imp, d_exp, grams, milli, c_carry, p_carry = self._credit(
            state, status, r.ts, target[1] - r.import_wh, target[2] - r.export_wh
        )
        s = state
        if status in _MOVES:
            fb = (fb or (s.base_ts, s.base_import, s.base_export)) if status == _JUMP else None
            new = ChainState(
                r.seq, r.ts, r.import_wh, r.export_wh, s.top_seq, s.top_ts, s.hw_ts,
                s.hw_import, s.hw_export, c_carry, p_carry, s.tariff_id, s.fb_top, fb,
            )  # fmt: skip
        else:
            new = ChainState(
                r.seq, s.base_ts, s.base_import, s.base_export, s.top_seq, s.top_ts, s.hw_ts,
                s.hw_import, s.hw_export, s.carbon_carry, s.credit_carry, s.tariff_id,
                s.fb_top, fb,
            )  # fmt: skip
        self.steps.append(
            Step(
                r.seq,
                state.base_seq,
                status,
                r.ts,
                target[0],
                window,
                d_imp,
                d_exp,
                grams,
                milli,
                new,
            )
        )
        return new


def advance(
    state: ChainState | None,
    waiting: MutableMapping[int, Reading],
    device: Device,
    tariff: Tariff,
    tariff_id: int,
    *,
    now: int,
) -> list[Step]:
    """Join every reading of `waiting` (seq -> reading) that can join the chain now (`now`, ns
    since the epoch, decides which gaps have waited long enough to be bridged), in the order
    the module docstring gives; they are removed from `waiting`. Returns the steps taken (the
    last one holds the new state). `state` must already use `tariff_id`'s denominators (see
    :func:`rescale_carries`)."""
    walk = _Walk(device, tariff, tariff_id)
    if state is None:
        # The lowest usable reading at hand starts the chain: readings that arrive together
        # start it where orderly delivery does (see *Trust at the bottom of the chain*).
        usable = [s for s, r in waiting.items() if reading_anomaly(r, device, tariff) is None]
        if not usable:
            return []
        state = walk.start(waiting.pop(min(usable)))
    # Readings received at or before this instant have waited out the horizon.
    overdue = now - tariff.gap_horizon_s * 1_000_000_000
    while True:
        while state.top_seq + 1 in waiting:
            state = walk.up(state, waiting.pop(state.top_seq + 1))
        while state.base_seq - 1 in waiting:
            state = walk.down(state, waiting.pop(state.base_seq - 1))
        above = [s for s in waiting if s > state.top_seq]
        if above and min(waiting[s].received_at for s in above) <= overdue:
            state = walk.up(state, waiting.pop(min(above)))  # bridge the gap above
            continue
        below = [s for s in waiting if s < state.base_seq]
        if below and min(waiting[s].received_at for s in below) <= overdue:
            state = walk.down(state, waiting.pop(max(below)))  # and the gap below
            continue
        return walk.steps
