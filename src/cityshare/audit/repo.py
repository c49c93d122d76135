"""The SQL of `cityshare audit verify`: every read of the store it checks, over one Connection.

The engine (audit/verify.py) compares; this module only reads, in pages of `chunk` rows or as
streamed results, so memory stays bounded by the chunk: the leaves in index order, the stored
tree nodes, the checkpoints with their cosignatures, the rows each leaf claims, the rows of
every logged and sealed table, and the ledger's balances and pending transfers recomputed from
the transfers in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    func,
    or_,
    select,
    tuple_,
    union,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from cityshare.kernel import tables as kernel_tables
from cityshare.ledger import tables as ledger_tables
from cityshare.ledger.model import NewAccount, PendingState, TransferFlags, TransferRecord
from cityshare.ledger.repo import TRANSFER_COLUMNS
from cityshare.tlog import entries
from cityshare.tlog import tables as tlog_tables
from cityshare.tlog.repo import StoredCheckpoint

_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_EXPIRED = int(PendingState.EXPIRED)
_TRANSFER_FIELDS = [c.strip() for c in TRANSFER_COLUMNS.split(",")]

#: A stored checkpoint and its cosignatures as (witness, line).
Checkpoint = tuple[StoredCheckpoint, list[tuple[str, str]]]


class SumOverflowError(Exception):
    """The transfers' amounts add up beyond what the database sums (SQLite's SUM refuses a
    total beyond 64 bits; PostgreSQL sums into numeric)."""


def _encode_account(row: Sequence[Any]) -> bytes:
    return entries.encode_account(NewAccount(*row[:6]), row[6])


def _encode_transfer(row: Sequence[Any]) -> bytes:
    return entries.encode_transfer(TransferRecord(*row))


def _encode_hold_expired(row: Sequence[Any]) -> bytes:
    return entries.encode_hold_expired(row[0], row[1])


@dataclass(frozen=True, slots=True)
class Kind:
    """How the rows of one table are matched with their leaves."""

    table: Table
    #: The columns read, key first, in the order `encode` takes them.
    columns: tuple[str, ...]
    #: Re-encode a row (the values of `columns`) as the bytes of its log entry.
    encode: Callable[[Sequence[Any]], bytes]
    #: Which rows must have a leaf (None: all of them).
    logged: ColumnElement[bool] | None = None
    #: Entries of this kind carry ledger timestamps, which strictly increase along the log:
    #: then no record can be logged twice with the same bytes, and matched leaves are counted
    #: instead of remembered. Other kinds remember each key's leaf (memory: one per record).
    ordered: bool = False

    @property
    def key(self) -> str:
        return self.columns[0]


class LoggedTable(Protocol):
    """Where the rows of one JSON record type live and how a row becomes its leaf again
    (`audit.registry.RecordType`)."""

    @property
    def table(self) -> str: ...

    @property
    def encode(self) -> Callable[[Mapping[str, Any]], bytes]: ...

    @property
    def key(self) -> str: ...


def kinds(record_types: Iterable[LoggedTable]) -> dict[str, Kind]:
    """How the rows of each logged table are matched with their leaves: the ledger's, and
    those of every JSON record type given (the registry's)."""
    p = ledger_tables.pending_transfers
    account = ("id", "ledger", "code", "flags", "owner", "user_data", "timestamp")
    kinds = {
        "accounts": Kind(ledger_tables.accounts, account, _encode_account, ordered=True),
        "transfers": Kind(
            ledger_tables.transfers, tuple(_TRANSFER_FIELDS), _encode_transfer, ordered=True
        ),
        # Only lapsed holds are logged (as hold-expired entries); a hold's other states are
        # derived from the transfers and checked with the ledger.
        "pending_transfers": Kind(
            p, ("id", "expires_at", "state"), _encode_hold_expired, logged=p.c.state == _EXPIRED
        ),
    }
    for record_type in record_types:
        table = kernel_tables.metadata.tables.get(record_type.table)
        if table is None:
            raise ValueError(f"record table {record_type.table!r} is not in the schema")
        names = (record_type.key, *(c.name for c in table.columns if c.name != record_type.key))
        kinds[table.name] = Kind(table, names, _json_encoder(names, record_type.encode))
    return kinds


def _json_encoder(
    names: tuple[str, ...], encode: Callable[[Mapping[str, Any]], bytes]
) -> Callable[[Sequence[Any]], bytes]:
    return lambda row: encode(dict(zip(names, row, strict=True)))


class AuditRepo:
    """Every read the audit makes, on one connection (the audit's one read transaction)."""

    def __init__(self, conn: Connection, chunk: int) -> None:
        self.conn = conn
        #: Rows read per query (or per streamed partition).
        self.chunk = chunk

    # -- one-row tables ----------------------------------------------------------------------

    def log_head(self) -> dict[Any, Any]:
        """The rows of `log_head`: id -> size."""
        return self._single(tlog_tables.log_head, "size")

    def ledger_clock(self) -> dict[Any, Any]:
        """The rows of `ledger_clock`: id -> last_timestamp."""
        return self._single(ledger_tables.ledger_clock, "last_timestamp")

    def _single(self, table: Table, column: str) -> dict[Any, Any]:
        rows = self.conn.execute(select(table.c.id, table.c[column])).all()
        return {row[0]: row[1] for row in rows}

    # -- the log: leaves, nodes, checkpoints and cosignatures --------------------------------

    def leaf_pages(self, *, with_hash: bool) -> Iterator[Sequence[Any]]:
        """The leaves in index order, `chunk` at a time: rows of (idx, [hash,] data)."""
        leaves = tlog_tables.log_leaves
        columns = (
            [leaves.c.idx, leaves.c.hash, leaves.c.data]
            if with_hash
            else [
                leaves.c.idx,
                leaves.c.data,
            ]
        )
        last: int | None = None
        while True:
            query = select(*columns).order_by(leaves.c.idx).limit(self.chunk)
            if last is not None:
                query = query.where(leaves.c.idx > last)
            rows = self.conn.execute(query).all()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def nodes_between(self, lo: int, hi: int) -> Sequence[Any]:
        """The stored nodes with keys in [lo, hi): rows of (id, hash)."""
        nodes = tlog_tables.log_nodes
        return self.conn.execute(
            select(nodes.c.id, nodes.c.hash).where(nodes.c.id >= lo, nodes.c.id < hi)
        ).all()

    def node_count(self) -> int:
        nodes = tlog_tables.log_nodes
        return int(self.conn.execute(select(func.count()).select_from(nodes)).scalar_one())

    def node_key_pages(self) -> Iterator[Sequence[int]]:
        """The keys of every stored node in order, `chunk` at a time."""
        nodes = tlog_tables.log_nodes
        last: int | None = None
        while True:
            query = select(nodes.c.id).order_by(nodes.c.id).limit(self.chunk)
            if last is not None:
                query = query.where(nodes.c.id > last)
            keys = self.conn.execute(query).scalars().all()
            if not keys:
                return
            yield keys
            last = keys[-1]

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every checkpoint in size order with its cosignature lines, a page at a time."""
        cp = tlog_tables.log_checkpoints
        cs = tlog_tables.log_cosignatures
        last: int | None = None
        while True:
            query = select(cp.c.size, cp.c.root, cp.c.note).order_by(cp.c.size)
            if last is not None:
                query = query.where(cp.c.size > last)
            page = self.conn.execute(query.limit(self.chunk)).all()
            if not page:
                return
            lines: dict[int, list[tuple[str, str]]] = {}
            for size, witness, line in self.conn.execute(
                select(cs.c.size, cs.c.witness, cs.c.line)
                .where(cs.c.size >= page[0][0], cs.c.size <= page[-1][0])
                .order_by(cs.c.size, cs.c.witness)
            ):
                lines.setdefault(size, []).append((witness, line))
            for size, root, text in page:
                yield StoredCheckpoint(size, bytes(root), text), lines.get(size, [])
            last = page[-1][0]

    def orphan_cosignatures(self, limit: int) -> Sequence[Any]:
        """Up to `limit` cosignatures of a checkpoint the log does not have: (size, witness)."""
        cs = tlog_tables.log_cosignatures
        cp = tlog_tables.log_checkpoints
        return self.conn.execute(
            select(cs.c.size, cs.c.witness)
            .select_from(cs.outerjoin(cp, cp.c.size == cs.c.size))
            .where(cp.c.size.is_(None))
            .order_by(cs.c.size, cs.c.witness)
            .limit(limit)
        ).all()

    # -- the rows leaves log, and sealed rows ------------------------------------------------

    def rows_by_key(self, kind: Kind, keys: Sequence[int | str]) -> dict[Any, Sequence[Any]]:
        """The rows of `kind` with these keys (the values of `kind.columns`), by key."""
        column = kind.table.c[kind.key]
        columns = [kind.table.c[c] for c in kind.columns]
        rows: dict[Any, Sequence[Any]] = {}
        for start in range(0, len(keys), 1000):  # bounded IN lists on every backend
            query = select(*columns).where(column.in_(keys[start : start + 1000]))
            rows.update((found[0], found) for found in self.conn.execute(query).all())
        return rows

    def logged_row_count(self, kind: Kind) -> int:
        """How many rows of `kind` must have a leaf."""
        query = select(func.count()).select_from(kind.table)
        if kind.logged is not None:
            query = query.where(kind.logged)
        return int(self.conn.execute(query).scalar_one())

    def logged_key_pages(self, kind: Kind) -> Iterator[Sequence[Any]]:
        """The keys of the rows of `kind` that must have a leaf, in order, `chunk` at a time."""
        column = kind.table.c[kind.key]
        last: Any = None
        while True:
            query = select(column).order_by(column).limit(self.chunk)
            if kind.logged is not None:
                query = query.where(kind.logged)
            if last is not None:
                query = query.where(column > last)
            page = self.conn.execute(query).scalars().all()
            if not page:
                return
            yield page
            last = page[-1]

    def row_pages(self, table: Table) -> Iterator[Sequence[Any]]:
        """Every row of `table` in primary-key order, `chunk` at a time, as mappings."""
        key = list(table.primary_key.columns)
        last: tuple[Any, ...] | None = None
        while True:
            query = select(table).order_by(*key).limit(self.chunk)
            if last is not None:
                query = query.where(tuple_(*key) > tuple_(*last))
            page = self.conn.execute(query).mappings().all()
            if not page:
                return
            yield page
            last = tuple(page[-1][c.name] for c in key)

    # -- the ledger's derived state, recomputed from the transfers ---------------------------

    def balances(self) -> Iterator[Sequence[Any]]:
        """Every account in id order: (id, ledger, flags, its four stored balances, the four
        its transfers add up to), both as (debits pending, debits posted, credits pending,
        credits posted). Raises :class:`SumOverflowError`."""
        t = ledger_tables.transfers.alias("t")
        p = ledger_tables.pending_transfers
        a = ledger_tables.accounts
        flags = t.c.flags.op("&")
        resolved = (
            select(ledger_tables.transfers.c.pending_id)
            .where(ledger_tables.transfers.c.flags.op("&")(_POST | _VOID) != 0)
            .group_by(ledger_tables.transfers.c.pending_id)
            .subquery("resolved")
        )
        # Posted: ordinary transfers and posts (a pending transfer only holds; a void moves
        # nothing). Held: a pending transfer no post or void names and that has not lapsed.
        posted = flags(_PENDING | _VOID) == 0
        held = and_(
            flags(_PENDING) != 0,
            resolved.c.pending_id.is_(None),
            or_(p.c.state.is_(None), p.c.state != _EXPIRED),
        )
        joined = t.outerjoin(resolved, resolved.c.pending_id == t.c.id).outerjoin(
            p, p.c.id == t.c.id
        )

        def side(account: ColumnElement[int], name: str) -> Any:
            return (
                select(
                    account.label("id"),
                    func.sum(case((posted, t.c.amount), else_=0)).label("posted"),
                    func.sum(case((held, t.c.amount), else_=0)).label("held"),
                )
                .select_from(joined)
                .group_by(account)
                .subquery(name)
            )

        dr = side(t.c.debit_account_id, "dr")
        cr = side(t.c.credit_account_id, "cr")
        want = (
            func.coalesce(dr.c.held, 0),
            func.coalesce(dr.c.posted, 0),
            func.coalesce(cr.c.held, 0),
            func.coalesce(cr.c.posted, 0),
        )
        have = (a.c.debits_pending, a.c.debits_posted, a.c.credits_pending, a.c.credits_posted)
        # One pass over every account; the comparisons and sums are done by the caller, in
        # exact integers, because SQL arithmetic on tampered values near 2^63 would overflow.
        query = (
            select(a.c.id, a.c.ledger, a.c.flags, *have, *want)
            .select_from(a.outerjoin(dr, dr.c.id == a.c.id).outerjoin(cr, cr.c.id == a.c.id))
            .order_by(a.c.id)
        )
        try:
            result = self.conn.execute(query, execution_options={"yield_per": self.chunk})
            for partition in result.partitions():
                yield from partition
        except OperationalError as exc:
            if "overflow" not in str(exc):
                raise
            raise SumOverflowError(str(exc)) from exc

    def unknown_accounts(self, limit: int) -> Sequence[int]:
        """Up to `limit` account ids that transfers name but `accounts` does not hold."""
        a = ledger_tables.accounts
        named = union(
            select(ledger_tables.transfers.c.debit_account_id.label("id")),
            select(ledger_tables.transfers.c.credit_account_id.label("id")),
        ).subquery("named")
        return [
            account_id
            for (account_id,) in self.conn.execute(
                select(named.c.id)
                .select_from(named.outerjoin(a, a.c.id == named.c.id))
                .where(a.c.id.is_(None))
                .order_by(named.c.id)
                .limit(limit)
            )
        ]

    def pending_rows(self) -> Iterator[Sequence[Any]]:
        """Every pending_transfers row in id order beside what the transfers imply: (id,
        state, expires_at, resolved_by, the transfer's id, flags, timestamp and timeout, and
        how many transfers post or void it, the largest such id and flags)."""
        t = ledger_tables.transfers
        p = ledger_tables.pending_transfers
        r = t.alias("r")
        resolvers = (
            select(
                r.c.pending_id,
                func.count().label("n"),
                func.max(r.c.id).label("rid"),
                func.max(r.c.flags).label("rflags"),
            )
            .where(r.c.flags.op("&")(_POST | _VOID) != 0)
            .group_by(r.c.pending_id)
            .subquery("resolvers")
        )
        query = (
            select(
                p.c.id,
                p.c.state,
                p.c.expires_at,
                p.c.resolved_by,
                t.c.id,
                t.c.flags,
                t.c.timestamp,
                t.c.timeout,
                resolvers.c.n,
                resolvers.c.rid,
                resolvers.c.rflags,
            )
            .select_from(
                p.outerjoin(t, t.c.id == p.c.id).outerjoin(
                    resolvers, resolvers.c.pending_id == p.c.id
                )
            )
            .order_by(p.c.id)
        )
        result = self.conn.execute(query, execution_options={"yield_per": self.chunk})
        for partition in result.partitions():
            yield from partition

    def pending_without_row(self, limit: int) -> Sequence[int]:
        """Up to `limit` pending transfers with no pending_transfers row."""
        t = ledger_tables.transfers
        p = ledger_tables.pending_transfers
        return [
            transfer_id
            for (transfer_id,) in self.conn.execute(
                select(t.c.id)
                .select_from(t.outerjoin(p, p.c.id == t.c.id))
                .where(t.c.flags.op("&")(_PENDING) != 0, p.c.id.is_(None))
                .order_by(t.c.id)
                .limit(limit)
            )
        ]

    def resolvers_of_non_pending(self, limit: int) -> Sequence[tuple[int, int]]:
        """Up to `limit` posts or voids naming a transfer that is not pending:
        (resolver id, pending_id)."""
        t = ledger_tables.transfers
        target = t.alias("target")
        return [
            (resolver_id, pending_id)
            for resolver_id, pending_id in self.conn.execute(
                select(t.c.id, t.c.pending_id)
                .select_from(t.outerjoin(target, target.c.id == t.c.pending_id))
                .where(
                    t.c.flags.op("&")(_POST | _VOID) != 0,
                    or_(target.c.id.is_(None), target.c.flags.op("&")(_PENDING) == 0),
                )
                .order_by(t.c.id)
                .limit(limit)
            )
        ]

    def newest_timestamps(self) -> list[int]:
        """The newest timestamp of accounts and of transfers (those not empty)."""
        values = []
        for table in (ledger_tables.accounts, ledger_tables.transfers):
            value = self.conn.execute(select(func.max(table.c.timestamp))).scalar_one()
            if value is not None:
                values.append(int(value))
        return values
