"""Ledger storage: loads what a batch needs in a few set-based queries and writes it back in bulk.

The hot path talks to the driver cursor directly (executemany on SQLite, COPY and `unnest` on
PostgreSQL) because it moves thousands of rows per batch and SQLAlchemy's per-row parameter
processing would cost more than the database does. Everything else uses SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import func, literal, select, union_all

from cityshare.kernel.driver import DriverRepository
from cityshare.ledger.model import (
    AccountState,
    NewAccount,
    PendingChange,
    PendingHold,
    PendingState,
    TransferFlags,
    TransferRecord,
)
from cityshare.ledger.tables import accounts, ledger_clock, pending_transfers, transfers

ACCOUNT_COLUMNS = (
    "id, ledger, code, flags, owner, user_data, debits_pending, debits_posted, "
    "credits_pending, credits_posted, timestamp"
)
TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id, timeout, "
    "user_data, timestamp, debit_account_balance, credit_account_balance"
)
_T_COLUMNS = ", ".join("t." + c.strip() for c in TRANSFER_COLUMNS.split(","))


class LedgerRepository(DriverRepository):
    """Reads and writes ledger rows on one open connection inside one transaction."""

    # -- the write lock and clock ----------------------------------------------------------

    def lock_ledger(self) -> int:
        """Take the ledger's write lock for this transaction; return the last timestamp issued.

        Every writer of balances takes this row lock first, so writers are serialised (as in
        TigerBeetle) and never deadlock; on SQLite, BEGIN IMMEDIATE already holds the lock.
        """
        lock = "" if self.sqlite else " FOR UPDATE"
        return self._single_value(
            f"SELECT last_timestamp FROM ledger_clock WHERE id = 1{lock}",
            "the ledger clock row is missing",
        )

    def set_last_timestamp(self, timestamp: int) -> None:
        self.conn.execute(
            ledger_clock.update().where(ledger_clock.c.id == 1).values(last_timestamp=timestamp)
        )

    # -- loads for a batch -----------------------------------------------------------------

    def load_accounts(self, ids: Collection[int]) -> dict[int, AccountState]:
        rows = self._fetch_by_ids(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {self._in_ids('id')}", ids
        )
        return {row[0]: AccountState(*row) for row in rows}

    def load_transfers(self, ids: Collection[int]) -> dict[int, TransferRecord]:
        rows = self._fetch_by_ids(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE {self._in_ids('id')}", ids
        )
        return {row[0]: TransferRecord(*row) for row in rows}

    def load_holds(self, ids: Collection[int]) -> dict[int, PendingHold]:
        rows = self._fetch_by_ids(
            f"SELECT {_T_COLUMNS}, p.state, p.expires_at FROM pending_transfers p "
            f"JOIN transfers t ON t.id = p.id WHERE {self._in_ids('p.id')}",
            ids,
        )
        return {row[0]: PendingHold(TransferRecord(*row[:13]), row[13], row[14]) for row in rows}

    def load_expired_holds(self, now_ns: int, limit: int) -> list[PendingHold]:
        cur = self._cursor()
        try:
            cur.execute(
                self._sql(
                    f"SELECT {_T_COLUMNS}, p.state, p.expires_at FROM pending_transfers p "
                    "JOIN transfers t ON t.id = p.id "
                    "WHERE p.state = 1 AND p.expires_at > 0 AND p.expires_at <= ? "
                    "ORDER BY p.expires_at LIMIT ?"
                ),
                (now_ns, limit),
            )
            rows = cur.fetchall()
        finally:
            cur.close()
        return [PendingHold(TransferRecord(*row[:13]), row[13], row[14]) for row in rows]

    # -- bulk writes -----------------------------------------------------------------------

    def insert_accounts(self, new: Sequence[NewAccount], timestamp: int) -> None:
        if not new:
            return
        rows = [(*a, 0, 0, 0, 0, timestamp + i) for i, a in enumerate(new)]
        cur = self._cursor()
        try:
            cur.executemany(
                self._sql(f"INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ({_marks(11)})"), rows
            )
        finally:
            cur.close()

    def insert_transfers(self, records: Sequence[TransferRecord]) -> None:
        if not records:
            return
        self._bulk_insert("transfers", TRANSFER_COLUMNS, records)

    def save_balances(self, changed: Iterable[AccountState]) -> None:
        rows = [
            (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.id)
            for a in changed
        ]
        if not rows:
            return
        cur = self._cursor()
        try:
            if self.sqlite:
                cur.executemany(
                    "UPDATE accounts SET debits_pending = ?, debits_posted = ?, "
                    "credits_pending = ?, credits_posted = ? WHERE id = ?",
                    rows,
                )
            else:
                columns = list(zip(*rows, strict=True))
                cur.execute(
                    "UPDATE accounts AS a SET debits_pending = v.dp, debits_posted = v.dpo, "
                    "credits_pending = v.cp, credits_posted = v.cpo "
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
                    "%s::bigint[]) AS v(dp, dpo, cp, cpo, id) WHERE a.id = v.id",
                    [list(c) for c in columns],
                )
        finally:
            cur.close()

    def insert_holds(self, holds: Sequence[PendingHold]) -> None:
        if not holds:
            return
        cur = self._cursor()
        try:
            cur.executemany(
                self._sql(
                    "INSERT INTO pending_transfers (id, state, expires_at, resolved_by) "
                    "VALUES (?, ?, ?, 0)"
                ),
                [(h.transfer.id, PendingState.PENDING, h.expires_at) for h in holds],
            )
        finally:
            cur.close()

    def save_pending_changes(self, changes: Sequence[PendingChange]) -> None:
        if not changes:
            return
        cur = self._cursor()
        try:
            cur.executemany(
                self._sql("UPDATE pending_transfers SET state = ?, resolved_by = ? WHERE id = ?"),
                [(int(c.state), c.resolved_by, c.pending_id) for c in changes],
            )
        finally:
            cur.close()

    # -- read side -------------------------------------------------------------------------

    def get_account(self, account_id: int) -> AccountState | None:
        return self.load_accounts([account_id]).get(account_id)

    def find_accounts(
        self, *, owner: str | None = None, ledger: int | None = None, limit: int = 100
    ) -> list[AccountState]:
        query = select(*[accounts.c[c.strip()] for c in ACCOUNT_COLUMNS.split(",")])
        if owner is not None:
            query = query.where(accounts.c.owner == owner)
        if ledger is not None:
            query = query.where(accounts.c.ledger == ledger)
        rows = self.conn.execute(query.order_by(accounts.c.id).limit(limit)).all()
        return [AccountState(*row) for row in rows]

    def get_transfer(self, transfer_id: int) -> TransferRecord | None:
        return self.load_transfers([transfer_id]).get(transfer_id)

    def pending_state(self, transfer_id: int) -> tuple[int, int, int] | None:
        row = self.conn.execute(
            select(
                pending_transfers.c.state,
                pending_transfers.c.expires_at,
                pending_transfers.c.resolved_by,
            ).where(pending_transfers.c.id == transfer_id)
        ).first()
        return None if row is None else (row[0], row[1], row[2])

    def statement_rows(
        self, account_id: int, *, after: int, limit: int
    ) -> list[tuple[TransferRecord, str]]:
        """Transfers touching the account with timestamp > `after`, oldest first, and the side."""
        parts = []
        for side, column in (
            ("debit", transfers.c.debit_account_id),
            ("credit", transfers.c.credit_account_id),
        ):
            # Each side is its own index range scan; SQLite wants them wrapped to LIMIT them.
            part = (
                select(*transfers.c, literal(side).label("side"))
                .where(column == account_id, transfers.c.timestamp > after)
                .order_by(transfers.c.timestamp)
                .limit(limit)
                .subquery()
            )
            parts.append(select(part))
        both = union_all(*parts).subquery()
        rows = self.conn.execute(select(both).order_by(both.c.timestamp).limit(limit)).all()
        return [(TransferRecord(*row[:13]), row[13]) for row in rows]

    # -- whole-ledger checks ---------------------------------------------------------------

    def ledger_totals(self) -> list[tuple[int, int, int, int, int]]:
        """Per ledger: (ledger, debits_posted, credits_posted, debits_pending, credits_pending)."""
        rows = self.conn.execute(
            select(
                accounts.c.ledger,
                func.coalesce(func.sum(accounts.c.debits_posted), 0),
                func.coalesce(func.sum(accounts.c.credits_posted), 0),
                func.coalesce(func.sum(accounts.c.debits_pending), 0),
                func.coalesce(func.sum(accounts.c.credits_pending), 0),
            )
            .group_by(accounts.c.ledger)
            .order_by(accounts.c.ledger)
        ).all()
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def overdrawn_accounts(self, limit: int = 100) -> list[AccountState]:
        """Flagged accounts whose balances break their own flag."""
        a = accounts.c
        query = (
            select(*[a[c.strip()] for c in ACCOUNT_COLUMNS.split(",")])
            .where(
                (
                    (a.flags.op("&")(2) != 0)
                    & (a.debits_posted + a.debits_pending > a.credits_posted)
                )
                | (
                    (a.flags.op("&")(4) != 0)
                    & (a.credits_posted + a.credits_pending > a.debits_posted)
                )
            )
            .limit(limit)
        )
        return [AccountState(*row) for row in self.conn.execute(query).all()]

    def replayed_balances(self) -> dict[int, tuple[int, int, int, int]]:
        """Each account's balances recomputed from the transfers alone (the ledger's history).

        Returns {account id: (debits_pending, debits_posted, credits_pending, credits_posted)}.
        """
        t = transfers.c
        p = pending_transfers.c
        pending_flag, post_flag = 2, 4
        posted = (t.flags.op("&")(pending_flag) == 0) & (
            (t.flags.op("&")(post_flag) != 0) | (t.pending_id == 0)
        )
        totals: dict[int, list[int]] = {}

        def add(account_id: int, index: int, amount: int) -> None:
            totals.setdefault(account_id, [0, 0, 0, 0])[index] += int(amount)

        for account_id, amount in self.conn.execute(
            select(t.debit_account_id, func.sum(t.amount))
            .where(posted)
            .group_by(t.debit_account_id)
        ):
            add(account_id, 1, amount)
        for account_id, amount in self.conn.execute(
            select(t.credit_account_id, func.sum(t.amount))
            .where(posted)
            .group_by(t.credit_account_id)
        ):
            add(account_id, 3, amount)
        live = (
            select(t.debit_account_id, t.credit_account_id, t.amount)
            .join_from(transfers, pending_transfers, p.id == t.id)
            .where(p.state == int(PendingState.PENDING))
        ).subquery()
        for account_id, amount in self.conn.execute(
            select(live.c.debit_account_id, func.sum(live.c.amount)).group_by(
                live.c.debit_account_id
            )
        ):
            add(account_id, 0, amount)
        for account_id, amount in self.conn.execute(
            select(live.c.credit_account_id, func.sum(live.c.amount)).group_by(
                live.c.credit_account_id
            )
        ):
            add(account_id, 2, amount)
        return {k: (v[0], v[1], v[2], v[3]) for k, v in totals.items()}

    def all_balances(self) -> dict[int, tuple[int, int, int, int]]:
        a = accounts.c
        rows = self.conn.execute(
            select(a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        )
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}

    def balance_at(self, account_id: int, at_ns: int) -> int:
        """The account's net posted balance right after the last transfer touching it with a
        ledger timestamp at or before `at_ns` (0 if there was none)."""
        t = transfers.c
        parts = []
        for column, balance in (
            (t.debit_account_id, t.debit_account_balance),
            (t.credit_account_id, t.credit_account_balance),
        ):
            # Each side is its own index range scan; SQLite wants them wrapped to LIMIT them.
            part = (
                select(t.timestamp.label("ts"), balance.label("balance"))
                .where(column == account_id, t.timestamp <= at_ns)
                .order_by(t.timestamp.desc())
                .limit(1)
                .subquery()
            )
            parts.append(select(part))
        both = union_all(*parts).subquery()
        row = self.conn.execute(select(both.c.balance).order_by(both.c.ts.desc()).limit(1)).first()
        return 0 if row is None else int(row[0])

    def posted_debits_after(self, account_id: int, after_ns: int) -> int:
        """What was posted out of the account by transfers with a ledger timestamp after
        `after_ns` (holds and their voids move nothing posted and are not counted)."""
        t = transfers.c
        unposted = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)
        total = self.conn.execute(
            select(func.coalesce(func.sum(t.amount), 0)).where(
                t.debit_account_id == account_id,
                t.timestamp > after_ns,
                t.flags.op("&")(unposted) == 0,
            )
        ).scalar_one()
        return int(total)


def _marks(n: int) -> str:
    return ", ".join(["?"] * n)
