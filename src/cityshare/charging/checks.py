"""Derived checks of charging that `audit verify` runs: the samples the OCPP central system
planned (`charging_chain_seqs`) against the readings stored for them, and the plan's own shape."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select

from cityshare.charging import tables
from cityshare.energy import tables as energy_tables
from cityshare.kernel.uow import SqlReadUnitOfWork


def planned_reading_problems(
    uow: SqlReadUnitOfWork, *, limit: int = 100
) -> list[tuple[str, int | str | None, str]]:
    """Each sample the OCPP central system planned (`charging_chain_seqs`) whose reading was
    stored says what that reading says (time and registers): else a resent sample would be
    mapped to another reading, and credited twice. A planned row with no stored reading (the
    process died before storing it; the sweep bridges the gap) has nothing to be checked by."""
    p = tables.charging_chain_seqs
    r = energy_tables.meter_readings
    planned = (p.c.ts, p.c.import_wh, p.c.export_wh)
    stored = (r.c.ts, r.c.import_wh, r.c.export_wh)
    rows = uow.connection.execute(
        select(p.c.chain_id, p.c.seq, *planned, *stored)
        .join(r, and_(r.c.device_id == p.c.chain_id, r.c.seq == p.c.seq))
        .where(or_(*(a != b for a, b in zip(planned, stored, strict=True))))
        .order_by(p.c.chain_id, p.c.seq)
        .limit(limit)
    ).all()
    return [
        (
            "charging_chain_seqs",
            f"{chain}/{seq}",
            f"charging_chain_seqs {chain}/{seq}: planned as (ts, import, export) "
            f"{(ts, imp, exp)} but the reading stored for it says {(rts, rimp, rexp)}",
        )
        for chain, seq, ts, imp, exp, rts, rimp, rexp in rows
    ]


def planned_chain_problems(
    uow: SqlReadUnitOfWork, *, limit: int = 100
) -> list[tuple[str, int | str | None, str]]:
    """The plan of each session's chain is what `plan_readings` gives out and nothing else,
    so a planned row moved to another chain or seq, or removed, shows even where no reading
    was stored for it (the process died first): each planned chain is a charging session's;
    its seqs run without a gap from its first, which is 0 or follows the chain's newest
    reading from before plans were recorded (revision 0012); its times rise with its seqs;
    and every reading of the chain from its first planned seq on was planned.

    Not covered: the registers (and a time moved within its neighbours') of a planned row
    that has no stored reading; a resend of that sample would be stored with them."""
    p = tables.charging_chain_seqs
    r = energy_tables.meter_readings
    sessions = tables.charging_sessions
    conn = uow.connection
    out: list[tuple[str, int | str | None, str]] = []

    def add(key: str, message: str) -> None:
        out.append(("charging_chain_seqs", key, f"charging_chain_seqs {key}: {message}"))

    for (chain,) in conn.execute(
        select(p.c.chain_id)
        .distinct()
        .where(~select(sessions.c.id).where(sessions.c.chain_id == p.c.chain_id).exists())
        .order_by(p.c.chain_id)
        .limit(limit)
    ):
        add(chain, "planned for a chain that is no charging session's")
    first = select(
        p.c.chain_id,
        func.min(p.c.seq).label("first"),
        func.max(p.c.seq).label("last"),
        func.count().label("n"),
    ).group_by(p.c.chain_id)
    runs = first.subquery()
    before = r.alias("before")
    for chain, low, high, n in conn.execute(
        select(runs.c.chain_id, runs.c.first, runs.c.last, runs.c.n)
        .where(
            or_(
                runs.c.last - runs.c.first + 1 != runs.c.n,
                runs.c.first < 0,
                and_(
                    runs.c.first > 0,
                    ~select(before.c.id)
                    .where(before.c.device_id == runs.c.chain_id, before.c.seq == runs.c.first - 1)
                    .exists(),
                ),
            )
        )
        .order_by(runs.c.chain_id)
        .limit(limit)
    ):
        if high - low + 1 != n:
            add(chain, f"{n} seqs planned from {low} to {high}: the plan has a gap")
        else:
            add(chain, f"the plan starts at seq {low}, which follows no stored reading")
    later = p.alias("later")
    for chain, seq, ts, next_ts in conn.execute(
        select(p.c.chain_id, p.c.seq, p.c.ts, later.c.ts)
        .join(later, and_(later.c.chain_id == p.c.chain_id, later.c.seq == p.c.seq + 1))
        .where(later.c.ts <= p.c.ts)
        .order_by(p.c.chain_id, p.c.seq)
        .limit(limit)
    ):
        add(f"{chain}/{seq + 1}", f"planned at {next_ts}, not after seq {seq} ({ts})")
    for chain, seq in conn.execute(
        select(r.c.device_id, r.c.seq)
        .join(runs, and_(runs.c.chain_id == r.c.device_id, r.c.seq >= runs.c.first))
        .where(~select(p.c.seq).where(p.c.chain_id == r.c.device_id, p.c.seq == r.c.seq).exists())
        .order_by(r.c.device_id, r.c.seq)
        .limit(limit)
    ):
        add(f"{chain}/{seq}", "a reading of the chain was stored for it, but it is not planned")
    return out[:limit]
