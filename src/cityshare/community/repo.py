"""Community storage: share events, derived holdings, distributions and their payouts.

A distribution to every holder of a large asset writes thousands of payout rows in one
transaction, so those go through the driver cursor (executemany on SQLite, COPY on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import and_, case, func, literal, select, union_all

from cityshare.community.model import (
    TRANSFER,
    DistributionRow,
    PayoutRow,
    ShareEventRow,
)
from cityshare.community.tables import (
    community_distributions,
    community_payouts,
    share_events,
    share_holdings,
)
from cityshare.kernel.driver import DriverRepository

#: The table's columns in order (`PayoutRow`'s fields and the logged ones follow them).
PAYOUT_COLUMNS = ", ".join(community_payouts.c.keys())


class CommunityRepository(DriverRepository):
    """Reads and writes community rows on one open connection inside one transaction."""

    def _next(self, column: Any) -> int:
        return int(self.conn.execute(select(func.max(column))).scalar() or 0) + 1

    # -- shares ---------------------------------------------------------------------------

    def next_event_id(self) -> int:
        """Callers hold the ledger's write lock, which serialises every writer."""
        return self._next(share_events.c.id)

    def insert_events(self, rows: Sequence[ShareEventRow]) -> None:
        if rows:
            self.conn.execute(share_events.insert(), [_values(r) for r in rows])

    def holding(self, asset_id: int, resident_id: int) -> int:
        h = share_holdings.c
        found = self.conn.execute(
            select(h.shares).where(h.asset_id == asset_id, h.resident_id == resident_id)
        ).scalar()
        return int(found or 0)

    def add_to_holding(self, asset_id: int, resident_id: int, delta: int) -> None:
        """Change a holder's shares by `delta`; a holding that reaches 0 is removed."""
        h = share_holdings.c
        where = and_(h.asset_id == asset_id, h.resident_id == resident_id)
        current = self.holding(asset_id, resident_id)
        new = current + delta
        if new < 0:
            raise ValueError("a holding cannot go below zero")
        if current == 0:
            self.conn.execute(
                share_holdings.insert().values(
                    asset_id=asset_id, resident_id=resident_id, shares=new
                )
            )
        elif new == 0:
            self.conn.execute(share_holdings.delete().where(where))
        else:
            self.conn.execute(share_holdings.update().where(where).values(shares=new))

    def total_shares(self, asset_id: int) -> int:
        h = share_holdings.c
        total = self.conn.execute(
            select(func.coalesce(func.sum(h.shares), 0)).where(h.asset_id == asset_id)
        ).scalar()
        return int(total or 0)

    def holdings(self, asset_id: int) -> dict[int, int]:
        """The asset's current holders: resident -> shares."""
        h = share_holdings.c
        rows = self.conn.execute(
            select(h.resident_id, h.shares).where(h.asset_id == asset_id).order_by(h.resident_id)
        ).all()
        return {int(r[0]): int(r[1]) for r in rows}

    def holdings_of(self, resident_id: int) -> dict[int, int]:
        """A resident's holdings: asset -> shares."""
        h = share_holdings.c
        rows = self.conn.execute(
            select(h.asset_id, h.shares).where(h.resident_id == resident_id).order_by(h.asset_id)
        ).all()
        return {int(r[0]): int(r[1]) for r in rows}

    def holders_among(self, asset_id: int, resident_ids: Collection[int]) -> set[int]:
        """Those of `resident_ids` who hold or ever held shares of the asset (every holding
        began with an event giving them shares)."""
        if not resident_ids:
            return set()
        e = share_events.c
        rows = self.conn.execute(
            select(e.to_id)
            .where(e.asset_id == asset_id, e.to_id.in_(list(resident_ids)))
            .distinct()
        ).all()
        return {int(r[0]) for r in rows}

    def holdings_at(self, asset_id: int, at_ns: int) -> dict[int, int]:
        """The asset's holders as of `at_ns` (events at or before it), summed from the events."""
        e = share_events.c
        gains = select(e.to_id.label("resident"), e.shares.label("delta")).where(
            e.asset_id == asset_id, e.at <= at_ns
        )
        losses = select(e.from_id.label("resident"), (-e.shares).label("delta")).where(
            e.asset_id == asset_id, e.at <= at_ns, e.kind == TRANSFER
        )
        both = union_all(gains, losses).subquery()
        rows = self.conn.execute(
            select(both.c.resident, func.sum(both.c.delta))
            .group_by(both.c.resident)
            .order_by(both.c.resident)
        ).all()
        return {int(r[0]): int(r[1]) for r in rows if int(r[1]) != 0}

    # -- distributions --------------------------------------------------------------------

    def next_distribution_ids(self) -> tuple[int, int]:
        """The next distribution id and payout id (callers hold the ledger's write lock)."""
        return self._next(community_distributions.c.id), self._next(community_payouts.c.id)

    def distribution(self, asset_id: int, period_end: int) -> DistributionRow | None:
        d = community_distributions.c
        row = self.conn.execute(
            select(community_distributions).where(
                d.asset_id == asset_id, d.period_end == period_end
            )
        ).first()
        return None if row is None else DistributionRow(*row)

    def last_period_end(self, asset_id: int) -> int | None:
        d = community_distributions.c
        found = self.conn.execute(select(func.max(d.period_end)).where(d.asset_id == asset_id))
        value = found.scalar()
        return None if value is None else int(value)

    def distributions(self, asset_id: int, *, limit: int) -> list[DistributionRow]:
        d = community_distributions.c
        rows = self.conn.execute(
            select(community_distributions)
            .where(d.asset_id == asset_id)
            .order_by(d.period_end.desc())
            .limit(limit)
        ).all()
        return [DistributionRow(*r) for r in rows]

    def insert_distribution(self, row: DistributionRow) -> None:
        self.conn.execute(community_distributions.insert().values(**_values(row)))

    def insert_payouts(self, rows: Sequence[PayoutRow]) -> None:
        if not rows:
            return
        # Plain tuples: dataclasses.astuple deep-copies every field (half the time of a
        # 10,000-holder distribution went there).
        values = [
            (r.id, r.distribution_id, r.asset_id, r.resident_id, r.shares, r.credit_milli,
             r.carbon_g)
            for r in rows
        ]  # fmt: skip
        self._bulk_insert("community_payouts", PAYOUT_COLUMNS, values)

    def payouts(self, distribution_id: int) -> list[PayoutRow]:
        p = community_payouts.c
        rows = self.conn.execute(
            select(community_payouts).where(p.distribution_id == distribution_id).order_by(p.id)
        ).all()
        return [PayoutRow(*r) for r in rows]

    def payouts_to(self, resident_id: int, *, limit: int) -> list[tuple[PayoutRow, int]]:
        """A resident's payouts, newest first, each with its distribution's period end."""
        p, d = community_payouts.c, community_distributions.c
        rows = self.conn.execute(
            select(community_payouts, d.period_end)
            .join(community_distributions, d.id == p.distribution_id)
            .where(p.resident_id == resident_id)
            .order_by(p.id.desc())
            .limit(limit)
        ).all()
        return [(PayoutRow(*r[:7]), int(r[7])) for r in rows]

    # -- the asset's wallet ---------------------------------------------------------------

    # -- audit ----------------------------------------------------------------------------

    def replayed_holdings(self) -> dict[tuple[int, int], int]:
        """Every (asset, resident) -> shares summed from the events (nonzero ones)."""
        e = share_events.c
        gains = select(e.asset_id, e.to_id.label("resident"), e.shares.label("delta"))
        losses = select(
            e.asset_id,
            e.from_id.label("resident"),
            case((e.kind == TRANSFER, -e.shares), else_=literal(0)).label("delta"),
        )
        both = union_all(gains, losses).subquery()
        rows = self.conn.execute(
            select(both.c.asset_id, both.c.resident, func.sum(both.c.delta)).group_by(
                both.c.asset_id, both.c.resident
            )
        ).all()
        return {(int(r[0]), int(r[1])): int(r[2]) for r in rows if int(r[2]) != 0}

    def stored_holdings(self) -> dict[tuple[int, int], int]:
        h = share_holdings.c
        rows = self.conn.execute(select(h.asset_id, h.resident_id, h.shares)).all()
        return {(int(r[0]), int(r[1])): int(r[2]) for r in rows}

    def distribution_sums(self) -> list[tuple[int, int, int, int, int, int, int]]:
        """Per distribution: (id, credit, carbon, holders, total shares) as recorded, and the
        credit and carbon its payouts add up to."""
        d, p = community_distributions.c, community_payouts.c
        sums = (
            select(
                p.distribution_id,
                func.sum(p.credit_milli).label("credit"),
                func.sum(p.carbon_g).label("carbon"),
            )
            .group_by(p.distribution_id)
            .subquery()
        )
        rows = self.conn.execute(
            select(
                d.id,
                d.credit_milli,
                d.carbon_g,
                d.holders,
                d.total_shares,
                func.coalesce(sums.c.credit, 0),
                func.coalesce(sums.c.carbon, 0),
            ).outerjoin(sums, sums.c.distribution_id == d.id)
        ).all()
        return [tuple(int(v) for v in r) for r in rows]  # type: ignore[misc]


def _values(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}
