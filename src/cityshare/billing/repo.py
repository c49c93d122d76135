"""Billing storage: price lists, provider choices, bills, the arrears queue, billing runs; and
the reads of meter intervals and ledger transfers that billing and statements need.

Billing runs over every new interval, so its batch reads are one set-based query each (as in
`energy_repo`) and its inserts use the driver cursor (executemany on SQLite, COPY on
PostgreSQL). Statements are per resident and read like the schema.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Table, and_, case, func, or_, select

from cityshare.billing.model import (
    BillRow,
    ChoiceRow,
    Due,
    IntervalHead,
    PriceListRow,
    RunRow,
    TopUpRow,
    WalletMoves,
)
from cityshare.billing.tables import (
    billing_runs,
    energy_arrears,
    energy_bills,
    price_lists,
    provider_choices,
    top_ups,
)
from cityshare.energy.tables import meter_intervals
from cityshare.kernel.driver import DriverRepository
from cityshare.ledger.model import TransferFlags
from cityshare.ledger.tables import transfers

#: The table's columns in order: the INSERT and COPY below, `BillRow` and the logged fields
#: (`records.ENERGY_BILL`) all follow this one list.
BILL_COLUMNS = ", ".join(energy_bills.c.keys())

_MOVES_BALANCE = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)


class BillingRepository(DriverRepository):
    """Reads and writes billing rows on one open connection inside one transaction."""

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        cur = self._cursor()
        try:
            cur.execute(self._sql(sql) if "%s" not in sql else sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def _next_id(self, table: Table) -> int:
        return int(self.conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1

    def next_price_list_id(self) -> int:
        return self._next_id(price_lists)

    def next_choice_id(self) -> int:
        return self._next_id(provider_choices)

    def next_top_up_id(self) -> int:
        return self._next_id(top_ups)

    def next_run_id(self) -> int:
        return self._next_id(billing_runs)

    # -- price lists and choices ----------------------------------------------------------

    def insert_price_list(self, row: PriceListRow) -> None:
        self.conn.execute(
            price_lists.insert().values(
                id=row.id, provider_id=row.provider_id, effective_from=row.effective_from,
                prices=row.prices, set_by=row.set_by, at=row.at,
            )
        )  # fmt: skip

    def price_lists_of(self, provider_ids: Collection[int]) -> list[PriceListRow]:
        if not provider_ids:
            return []
        p = price_lists.c
        rows = self.conn.execute(
            select(price_lists)
            .where(p.provider_id.in_(list(provider_ids)))
            .order_by(p.provider_id, p.effective_from, p.id)
        ).all()
        return [PriceListRow(*r) for r in rows]

    def insert_choice(self, row: ChoiceRow) -> None:
        self.conn.execute(
            provider_choices.insert().values(
                id=row.id, resident_id=row.resident_id, provider_id=row.provider_id,
                effective_from=row.effective_from, at=row.at,
            )
        )  # fmt: skip

    def choices_of(self, resident_ids: Collection[int]) -> list[ChoiceRow]:
        if not resident_ids:
            return []
        rows = self._fetch_by_ids(
            "SELECT id, resident_id, provider_id, effective_from, at FROM provider_choices "
            f"WHERE {self._in_ids('resident_id')} ORDER BY resident_id, id",
            resident_ids,
        )
        return [ChoiceRow(*r) for r in rows]

    def customers_among(self, provider_id: int, resident_ids: Collection[int]) -> set[int]:
        """Those of `resident_ids` who ever chose `provider_id` or were billed by it (access
        scoping: a provider's staff read its customers)."""
        if not resident_ids:
            return set()
        ids = list(resident_ids)
        c, b = provider_choices.c, energy_bills.c
        chose = select(c.resident_id).where(c.provider_id == provider_id, c.resident_id.in_(ids))
        billed = select(b.resident_id).where(b.provider_id == provider_id, b.resident_id.in_(ids))
        return {int(r[0]) for r in self.conn.execute(chose.union(billed)).all()}

    # -- top-ups --------------------------------------------------------------------------

    def top_up_by_reference(self, reference: str) -> TopUpRow | None:
        row = self.conn.execute(
            select(top_ups).where(top_ups.c.reference == reference)
        ).first()
        return TopUpRow(*row) if row is not None else None

    def insert_top_up(self, row: TopUpRow) -> None:
        self.conn.execute(
            top_ups.insert().values(
                id=row.id, reference=row.reference, resident_id=row.resident_id,
                amount=row.amount, transfer_id=row.transfer_id, actor=row.actor, at=row.at,
            )
        )  # fmt: skip

    # -- a billing batch ------------------------------------------------------------------

    def last_run(self) -> RunRow | None:
        row = self.conn.execute(
            select(billing_runs).order_by(billing_runs.c.id.desc()).limit(1)
        ).first()
        return None if row is None else RunRow(*row)

    def intervals_after(self, after_id: int, limit: int) -> list[IntervalHead]:
        """The next `limit` meter intervals by id (every status: the caller picks)."""
        return self._rows(
            "SELECT id, owner_id, status, start_ts, tod, import_wh, at FROM meter_intervals "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )

    def carries(self, pairs: Collection[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """The carry of each (resident, provider)'s latest bill (pairs without one omitted)."""
        if not pairs:
            return {}
        latest = (
            "SELECT b.carry FROM energy_bills b WHERE b.resident_id = {r} "
            "AND b.provider_id = {p} ORDER BY b.id DESC LIMIT 1"
        )
        if self.sqlite:
            r, p = "json_extract(j.value, '$[0]')", "json_extract(j.value, '$[1]')"
            sql = f"SELECT {r}, {p}, ({latest.format(r=r, p=p)}) FROM json_each(?) j"
            params: tuple[Any, ...] = (json.dumps([list(x) for x in pairs]),)
        else:
            sql = (
                f"SELECT v.r, v.p, ({latest.format(r='v.r', p='v.p')}) "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(r, p)"
            )
            residents, providers = zip(*pairs, strict=True)
            params = (list(residents), list(providers))
        return {(row[0], row[1]): row[2] for row in self._rows(sql, params) if row[2] is not None}

    def insert_bills(self, rows: Sequence[BillRow]) -> None:
        self._bulk_insert("energy_bills", BILL_COLUMNS, rows)

    def insert_run(self, row: RunRow) -> None:
        self.conn.execute(
            billing_runs.insert().values(
                id=row.id, through_id=row.through_id, bills=row.bills, billed=row.billed,
                at=row.at,
            )
        )  # fmt: skip

    # -- arrears --------------------------------------------------------------------------

    def residents_in_arrears(self) -> list[int]:
        a = energy_arrears.c
        return [r[0] for r in self.conn.execute(select(a.resident_id).distinct()).all()]

    def arrears_of(self, resident_ids: Collection[int]) -> dict[int, list[Due]]:
        """Each resident's unpaid bills, oldest first."""
        rows = self._fetch_by_ids(
            "SELECT a.resident_id, b.id, b.provider_id, b.amount FROM energy_arrears a "
            f"JOIN energy_bills b ON b.id = a.bill_id WHERE {self._in_ids('a.resident_id')} "
            "ORDER BY a.resident_id, a.bill_id",
            resident_ids,
        )
        out: dict[int, list[Due]] = {}
        for resident, bill_id, provider, amount in rows:
            out.setdefault(resident, []).append(Due(bill_id, provider, amount))
        return out

    def oldest_arrears(self, resident_ids: Collection[int]) -> dict[int, Due]:
        """Each resident's oldest unpaid bill (residents with none omitted)."""
        rows = self._fetch_by_ids(
            "SELECT a.resident_id, b.id, b.provider_id, b.amount FROM energy_arrears a "
            "JOIN energy_bills b ON b.id = a.bill_id WHERE a.bill_id IN (SELECT min(bill_id) "
            f"FROM energy_arrears WHERE {self._in_ids('resident_id')} GROUP BY resident_id)",
            resident_ids,
        )
        return {r[0]: Due(r[1], r[2], r[3]) for r in rows}

    def add_arrears(self, rows: Sequence[tuple[int, int]]) -> None:
        """(bill id, resident id) pairs left unpaid."""
        self._bulk_insert("energy_arrears", "bill_id, resident_id", rows)

    def remove_arrears(self, bill_ids: Collection[int]) -> None:
        if not bill_ids:
            return
        cur = self._cursor()
        try:
            cur.execute(
                f"DELETE FROM energy_arrears WHERE {self._in_ids('bill_id')}",
                (self._ids_param(bill_ids),),
            )
        finally:
            cur.close()

    def arrears_mismatches(self, base: int, limit: int) -> tuple[list[int], list[int]]:
        """Bills the arrears queue should hold and does not (amount > 0, no payment transfer
        `base` + id), and queue entries that are not such a bill."""
        b, a, t = energy_bills.c, energy_arrears.c, transfers.c
        missing = self.conn.execute(
            select(b.id)
            .select_from(
                energy_bills.outerjoin(transfers, t.id == b.id + base).outerjoin(
                    energy_arrears, a.bill_id == b.id
                )
            )
            .where(b.amount > 0, t.id.is_(None), a.bill_id.is_(None))
            .order_by(b.id)
            .limit(limit)
        ).all()
        extra = self.conn.execute(
            select(a.bill_id)
            .select_from(
                energy_arrears.outerjoin(energy_bills, b.id == a.bill_id).outerjoin(
                    transfers, t.id == a.bill_id + base
                )
            )
            .where(
                or_(
                    b.id.is_(None), b.amount <= 0, t.id.is_not(None), b.resident_id != a.resident_id
                )
            )
            .order_by(a.bill_id)
            .limit(limit)
        ).all()
        return [r[0] for r in missing], [r[0] for r in extra]

    # -- statements -----------------------------------------------------------------------

    def bill_sums(
        self, resident_id: int, start_s: int, end_s: int
    ) -> list[tuple[int, str, int, int, int]]:
        """(provider, window, import Wh, amount, bills) of the resident's bills for intervals
        starting in [start_s, end_s)."""
        b = energy_bills.c
        rows = self.conn.execute(
            select(b.provider_id, b.tod, func.sum(b.import_wh), func.sum(b.amount), func.count())
            .where(b.resident_id == resident_id, b.start_ts >= start_s, b.start_ts < end_s)
            .group_by(b.provider_id, b.tod)
            .order_by(b.provider_id, b.tod)
        ).all()
        return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def interval_sums(
        self, owner_id: int, start_s: int, end_s: int
    ) -> list[tuple[str, int, int, int, int]]:
        """(window, import Wh, export Wh, carbon g, milli-points) of the owner's credited
        intervals starting in [start_s, end_s)."""
        i = meter_intervals.c
        rows = self.conn.execute(
            select(
                i.tod,
                func.sum(i.import_wh),
                func.sum(i.export_wh),
                func.sum(i.carbon_g),
                func.sum(i.credit_milli),
            )
            .where(
                i.owner_id == owner_id,
                i.start_ts >= start_s,
                i.start_ts < end_s,
                i.status == "ok",
            )
            .group_by(i.tod)
            .order_by(i.tod)
        ).all()
        return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def wallet_moves(
        self, account_id: int, start_ns: int, end_ns: int, bill_code: int
    ) -> tuple[WalletMoves, list[tuple[int, int, int]]]:
        """What was posted into and out of the account in [start_ns, end_ns), and the bill
        payments among the debits per payee account: (payee, amount, count)."""
        t = transfers.c
        moves = (t.flags.op("&")(_MOVES_BALANCE)) == 0
        in_range = and_(t.timestamp >= start_ns, t.timestamp < end_ns)
        received = self.conn.execute(
            select(func.coalesce(func.sum(t.amount), 0)).where(
                t.credit_account_id == account_id, in_range, moves
            )
        ).scalar()
        is_bill = and_(t.code == bill_code, t.flags == 0)
        debits = self.conn.execute(
            select(
                func.coalesce(func.sum(case((is_bill, t.amount), else_=0)), 0),
                func.coalesce(func.sum(case((is_bill, 0), else_=t.amount)), 0),
            ).where(t.debit_account_id == account_id, in_range, moves)
        ).one()
        payees = self.conn.execute(
            select(t.credit_account_id, func.sum(t.amount), func.count())
            .where(t.debit_account_id == account_id, in_range, is_bill)
            .group_by(t.credit_account_id)
            .order_by(t.credit_account_id)
        ).all()
        return (
            WalletMoves(int(received or 0), int(debits[0]), int(debits[1])),
            [(r[0], int(r[1]), int(r[2])) for r in payees],
        )

    def arrears_at(self, resident_id: int, end_s: int, end_ns: int, base: int) -> tuple[int, int]:
        """(amount, bills) owed for intervals starting before `end_s` and not paid before
        `end_ns` (payment transfer id = `base` + bill id)."""
        b, t = energy_bills.c, transfers.c
        row = self.conn.execute(
            select(func.coalesce(func.sum(b.amount), 0), func.count())
            .select_from(energy_bills.outerjoin(transfers, t.id == b.id + base))
            .where(
                b.resident_id == resident_id,
                b.start_ts < end_s,
                b.amount > 0,
                or_(t.id.is_(None), t.timestamp >= end_ns),
            )
        ).one()
        return int(row[0]), int(row[1])

    def arrears_now(self, resident_id: int) -> tuple[int, int]:
        """(amount, bills) the resident owes now."""
        a, b = energy_arrears.c, energy_bills.c
        row = self.conn.execute(
            select(func.coalesce(func.sum(b.amount), 0), func.count())
            .select_from(energy_arrears.join(energy_bills, b.id == a.bill_id))
            .where(a.resident_id == resident_id)
        ).one()
        return int(row[0]), int(row[1])
