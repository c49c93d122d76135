"""Energy's read side: a resident's devices and credits (`GET /api/v1/me/energy`) and the
intervals awaiting review (the resident's, and every meter's for the grid operators)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cityshare.energy.model import MAX_INTERVAL_ID, METERED_KINDS, IntervalSums
from cityshare.energy.tariff import Tariff
from cityshare.energy.uow import EnergyUnitOfWork

#: How many waiting sequence numbers a device's summary lists (the count is always whole).
WAITING_LISTED = 20


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """An anomalous interval whose energy no later reading has covered: it awaits review
    (see `energy.chain`, *Awaiting review*)."""

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
