"""`cityshare audit verify`: check every stored row against the audit log, and the log itself.

What the platform stores falls in four groups, and each is checked against what it must equal:

1. **The log against itself.** Every leaf's stored hash is recomputed from its bytes; every
   perfect subtree the store kept (`log_nodes`, whatever levels it keeps) is recomputed from
   the leaves; `log_head.size` is the number of leaves; every checkpoint's note is signed by
   the log key, parses, and names the root of the first `size` leaves as recomputed here.
2. **Records against the log.** Every account, transfer and lapsed hold (and every JSON record
   type registered with :func:`register_record_type`) is re-encoded from its stored row and
   must equal, byte for byte, the one leaf that logged it; a leaf with no row, or a row with
   no leaf, is a problem. So an edit to any logged column shows.
3. **Derived state against the records.** Account balances, the state of pending transfers and
   the ledger clock are not in the log; they are recomputed from the transfers (and the
   lapsed-hold leaves) and must equal what is stored: the clock is the newest record's
   timestamp.
4. **Sealed rows against the seal key.** Rows that are no public fact but change an answer
   (charger password hashes, stored replies to keyed writes) carry a seal, a MAC under a key
   only the platform holds (kernel/seals.py); each must verify. Without the key (an auditor
   from outside) they are only counted.

Everything streams: leaves are read in chunks of :data:`CHUNK` by index and checked, hashed
into the tree, and matched against their rows one chunk at a time; checkpoints are read in
size order alongside, and the root at each checkpoint's size is taken from the running
frontier when it gets there. Memory stays bounded by the chunk with two exceptions: the keys
of lapsed holds and JSON records are remembered (one dict entry per such record) to catch one
logged twice, whereas accounts and transfers need nothing because their ledger timestamps must
strictly increase along the log; and only when a table has more rows than matched leaves is a
second pass made, remembering that table's logged keys, to name the rows without a leaf.

Checkpoints' sizes are unique (the key) and each note must sign its own row's size, so they
increase with the log. Every column of every table is accounted for: covered by a signature or
a leaf, re-derived here, or shown by a test to change no answer (the list, with the reason for
each, is `EXEMPT` in tests/integration/test_audit_verify.py, which fails for a new column that
is neither caught nor listed).

What a self-contained check cannot see: a history rewritten *by the holder of the log key*, or
the newest commits removed whole (leaves, nodes, checkpoints, rows and balances together).
Catching those needs a checkpoint kept elsewhere (a witness or the digital twin, DESIGN.md §3).
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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

from cityshare.kernel import seals
from cityshare.kernel import tables as kernel_tables
from cityshare.kernel.capability import DerivedCheck
from cityshare.kernel.seal import Sealer
from cityshare.kernel.uow import AbstractUnitOfWork
from cityshare.ledger import tables as ledger_tables
from cityshare.ledger.model import (
    NANOSECONDS,
    AccountFlags,
    NewAccount,
    PendingState,
    TransferFlags,
    TransferRecord,
)
from cityshare.ledger.repo import TRANSFER_COLUMNS
from cityshare.tlog import cosignature, entries, merkle, note
from cityshare.tlog import tables as tlog_tables
from cityshare.tlog.repo import LEVEL_SHIFT, StoredCheckpoint, node_key

#: Leaves (and rows of any other streamed table) read per query.
CHUNK = 10_000

_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_EXPIRED = int(PendingState.EXPIRED)
_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_TRANSFER_FIELDS = [c.strip() for c in TRANSFER_COLUMNS.split(",")]
_INDEX_MASK = (1 << LEVEL_SHIFT) - 1

Progress = Callable[[int, int], None]
#: A stored checkpoint and its cosignatures as (witness, line).
_Checkpoint = tuple[StoredCheckpoint, list[tuple[str, str]]]


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is wrong: the table, the row's key and, if it has one, its leaf index.

    `message` is a whole sentence that already names all three, ready to print.
    """

    table: str
    key: int | str | None
    leaf: int | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class AuditReport:
    problems: list[Problem] = field(default_factory=list)
    #: Problems found beyond `max_problems` (counted, not kept).
    omitted: int = 0
    leaves: int = 0
    #: Stored `log_nodes` rows compared with their recomputed hash.
    nodes: int = 0
    checkpoints: int = 0
    cosignatures: int = 0
    #: Cosignature lines of witnesses whose key was not given (only parsed, not verified).
    cosignatures_unchecked: int = 0
    #: Rows of sealed tables whose seal was checked with the seal key.
    seals: int = 0
    #: Rows of sealed tables not checked, because no seal key was given.
    seals_unchecked: int = 0
    #: Per table, the rows matched with their leaf (accounts, transfers, pending_transfers, …).
    records: dict[str, int] = field(default_factory=dict)
    #: Accounts whose four balances were recomputed from the transfers.
    accounts: int = 0
    pending_transfers: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    @property
    def problem_count(self) -> int:
        return len(self.problems) + self.omitted

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": {
                "leaves": self.leaves,
                "nodes": self.nodes,
                "checkpoints": self.checkpoints,
                "cosignatures": self.cosignatures,
                "cosignatures_unchecked": self.cosignatures_unchecked,
                "seals": self.seals,
                "seals_unchecked": self.seals_unchecked,
                "records": dict(self.records),
                "accounts": self.accounts,
                "pending_transfers": self.pending_transfers,
            },
            "problem_count": self.problem_count,
            "problems": [
                {"table": p.table, "key": p.key, "leaf": p.leaf, "message": p.message}
                for p in self.problems
            ],
        }


# -- which table each kind of log entry belongs to -------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordType:
    """Where the rows of one JSON record type live and how a row becomes its leaf again."""

    table: str
    #: Re-encode a stored row (column name -> value) as the exact bytes of its log entry.
    encode: Callable[[Mapping[str, Any]], bytes]
    #: The primary key column; the entry carries the same value under the field of this name.
    key: str = "id"


def record_types() -> Mapping[str, RecordType]:
    """JSON record `type` -> its table: every capability's `records` (kernel/capability.py).
    A JSON leaf of a type not listed here is reported as a problem."""
    return _registry()[0]


def derived_checks() -> Sequence[DerivedCheck]:
    """State capabilities derive from their logged records and keep beside them (e.g. share
    holdings, the sum of share events): each check runs in the audit's read transaction and
    yields (table, key, message) for every derived row that is not what the records say."""
    return _registry()[1]


@functools.cache
def _registry() -> tuple[dict[str, RecordType], tuple[DerivedCheck, ...]]:
    # The platform's list sits above the verifier, which every capability's records feed:
    # imported when first needed, not at import.
    from cityshare.capabilities import CAPABILITIES

    types: dict[str, RecordType] = {}
    for capability in CAPABILITIES:
        for record in capability.records:
            register_record_type(
                record.type, record.table, record.encode, key=record.key, registry=types
            )
    return types, tuple(check for capability in CAPABILITIES for check in capability.checks)


#: Tables whose leaves are the binary ledger entries (not available to JSON record types).
_LEDGER_TABLES = frozenset({"accounts", "transfers", "pending_transfers"})


def register_record_type(
    record_type: str,
    table: str,
    encode: Callable[[Mapping[str, Any]], bytes],
    *,
    key: str = "id",
    registry: dict[str, RecordType],
) -> None:
    """Declare that JSON entries of `record_type` log the rows of `table`, keyed by `key`.

    One type per table, so that "every row has exactly one leaf" can be counted per table.
    """
    if not record_type or record_type in registry:
        raise ValueError(f"record type {record_type!r} is empty or already registered")
    if table in _LEDGER_TABLES or any(r.table == table for r in registry.values()):
        raise ValueError(f"the rows of {table} are already logged by another entry type")
    registry[record_type] = RecordType(table, encode, key)


class UnknownEntryError(LookupError):
    """A decoded entry that no table claims (the message says why)."""


def entry_key(
    entry: entries.Entry, registry: Mapping[str, RecordType] | None = None
) -> tuple[str, int | str]:
    """The table and primary key of the row an entry logs. Raises :class:`UnknownEntryError`."""
    if isinstance(entry, TransferRecord):
        return "transfers", entry.id
    if isinstance(entry, entries.AccountEntry):
        return "accounts", entry.account.id
    if isinstance(entry, entries.HoldExpiredEntry):
        return "pending_transfers", entry.pending_id
    registry = record_types() if registry is None else registry
    record_type = registry.get(entry.type)
    if record_type is None:
        raise UnknownEntryError(f"a {entry.type!r} record, a type no table is registered for")
    key = entry.fields.get(record_type.key)
    if not isinstance(key, int | str) or isinstance(key, bool):
        raise UnknownEntryError(
            f"a {entry.type!r} record without an integer or text {record_type.key!r}"
        )
    return record_type.table, key


def _encode_account(row: Sequence[Any]) -> bytes:
    return entries.encode_account(NewAccount(*row[:6]), row[6])


def _encode_transfer(row: Sequence[Any]) -> bytes:
    return entries.encode_transfer(TransferRecord(*row))


def _encode_hold_expired(row: Sequence[Any]) -> bytes:
    return entries.encode_hold_expired(row[0], row[1])


@dataclass(frozen=True, slots=True)
class _Kind:
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


def _kinds() -> dict[str, _Kind]:
    p = ledger_tables.pending_transfers
    account = ("id", "ledger", "code", "flags", "owner", "user_data", "timestamp")
    kinds = {
        "accounts": _Kind(ledger_tables.accounts, account, _encode_account, ordered=True),
        "transfers": _Kind(
            ledger_tables.transfers, tuple(_TRANSFER_FIELDS), _encode_transfer, ordered=True
        ),
        # Only lapsed holds are logged (as hold-expired entries); a hold's other states are
        # derived from the transfers and checked with the ledger.
        "pending_transfers": _Kind(
            p, ("id", "expires_at", "state"), _encode_hold_expired, logged=p.c.state == _EXPIRED
        ),
    }
    for record_type in record_types().values():
        table = kernel_tables.metadata.tables.get(record_type.table)
        if table is None:
            raise ValueError(f"record table {record_type.table!r} is not in the schema")
        names = (record_type.key, *(c.name for c in table.columns if c.name != record_type.key))
        kinds[table.name] = _Kind(table, names, _json_encoder(names, record_type.encode))
    return kinds


def _json_encoder(
    names: tuple[str, ...], encode: Callable[[Mapping[str, Any]], bytes]
) -> Callable[[Sequence[Any]], bytes]:
    return lambda row: encode(dict(zip(names, row, strict=True)))


# -- verify ----------------------------------------------------------------------------------


def verify(
    uow: AbstractUnitOfWork,
    log_verifier: note.Verifier,
    *,
    progress: Progress | None = None,
    max_problems: int = 100,
    chunk_size: int = CHUNK,
    witnesses: Sequence[cosignature.CosignatureVerifier] = (),
    sealer: Sealer | None = None,
) -> AuditReport:
    """Check the audit log, every logged record and all derived ledger state (see the module
    docstring); `progress(leaves done, leaves in the log)` is called after each chunk.

    Each cosignature line of a witness named in `witnesses` must verify with one of that
    witness's keys there (keep a rotated witness's old key listed to check its old lines);
    lines of other witnesses are only parsed, and counted as unchecked.

    Each row of a sealed table (kernel/seals.py) must carry its seal by `sealer` (the platform's
    seal key); without one, those rows are only counted, as unchecked (an auditor from
    outside the platform holds no seal key).

    Runs in one read transaction (one snapshot on PostgreSQL, as in SQLite's WAL mode)."""
    with uow:
        audit = _Audit(uow.ledger.conn, log_verifier, max_problems, chunk_size, progress)
        audit.witnesses = list(witnesses)
        audit.sealer = sealer
        audit.run()
        for check in derived_checks():
            for table, key, message in check(uow):
                audit.problem(table, key, None, message)
    return audit.report


class _Audit:
    def __init__(
        self,
        conn: Connection,
        verifier: note.Verifier,
        max_problems: int,
        chunk: int,
        progress: Progress | None,
    ) -> None:
        self.conn = conn
        self.verifier = verifier
        self.max_problems = max_problems
        self.chunk = chunk
        self.progress = progress
        self.report = AuditReport()
        self.witnesses: list[cosignature.CosignatureVerifier] = []
        self.sealer: Sealer | None = None
        self.kinds = _kinds()
        #: Per table, leaves matched with their row (for kinds that are not `ordered`, each key
        #: at most once; for `ordered` ones the strictly increasing timestamps see to that).
        self.matched: dict[str, int] = dict.fromkeys(self.kinds, 0)
        #: For kinds that are not `ordered`: key -> the first leaf naming it.
        self.seen: dict[str, dict[int | str, int]] = {
            name: {} for name, kind in self.kinds.items() if not kind.ordered
        }
        self.max_record_timestamp = 0
        self.last_timestamp: tuple[int, int] | None = None  # (timestamp, leaf) of the last record
        #: Leaf position from which the tree cannot be checked (indexes stopped being 0, 1, …).
        self.broken_at: int | None = None
        self.next_checkpoint: _Checkpoint | None = None
        #: The largest checkpoint size reached while scanning the leaves.
        self.newest_checkpoint_size = 0

    def problem(self, table: str, key: int | str | None, leaf: int | None, message: str) -> None:
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(Problem(table, key, leaf, message))
        else:
            self.report.omitted += 1

    def run(self) -> None:
        head = self._single("log_head", tlog_tables.log_head, "size")
        leaves = self._scan_log(head)
        if head is not None and head != leaves:
            self.problem(
                "log_head", 1, None, f"log_head 1: size is {head} but the log has {leaves} leaves"
            )
        self._check_stored_nodes(leaves)
        self._check_orphan_cosignatures()
        self._check_rows_without_leaves()
        for table in seals.sealed_tables():
            self._check_seals(table)
        try:
            self._check_balances()
        except OperationalError as exc:
            # SQLite's SUM refuses a total beyond 64 bits (PostgreSQL sums into numeric).
            if "overflow" not in str(exc):
                raise
            self.problem(
                "transfers",
                None,
                None,
                "transfers: the amounts add up beyond 64 bits, so balances cannot be "
                "recomputed (some amount is out of range)",
            )
        self._check_pending_transfers()
        self._check_clock()
        self.report.records = dict(self.matched)

    def _single(self, name: str, table: Table, column: str) -> int | None:
        """The value of a one-row table's row 1, or None (a problem) when that row is gone."""
        rows = self.conn.execute(select(table.c.id, table.c[column])).all()
        values = {row[0]: row[1] for row in rows}
        if 1 not in values:
            self.problem(name, 1, None, f"{name} 1: the row is missing")
        for other in sorted(values.keys() - {1}):
            self.problem(name, other, None, f"{name} {other}: an unexpected row (only 1 exists)")
        value = values.get(1)
        return None if value is None else int(value)

    # -- 1 and 2: the log, its tree and checkpoints, and the records it logs ---------------

    def _scan_log(self, head: int | None) -> int:
        """Stream every leaf once; return how many there are."""
        frontier = merkle.Frontier()
        checkpoints = self._checkpoints()
        self.next_checkpoint = next(checkpoints, None)
        self._settle_checkpoints(frontier, checkpoints)
        position = 0
        for rows in self._leaf_pages(with_hash=True):
            hashes: list[bytes] = []
            claimed: dict[str, list[tuple[int | str, int, bytes]]] = {}
            for idx, stored_hash, raw in rows:
                data = bytes(raw)
                if idx != position and self.broken_at is None:
                    self.broken_at = position
                    self.problem(
                        "log_leaves",
                        idx,
                        idx,
                        f"log_leaves {idx}: found where leaf {position} should be (leaf indexes "
                        f"must run 0, 1, 2, …), so the tree is not checked beyond leaf {position}",
                    )
                leaf = merkle.leaf_hash(data)
                if leaf != bytes(stored_hash):
                    self.problem(
                        "log_leaves",
                        idx,
                        idx,
                        f"log_leaves {idx} (leaf {idx}): the stored hash is not the hash of the "
                        "leaf's bytes",
                    )
                hashes.append(leaf)
                self._claim(idx, data, claimed)
                position += 1
            self._match_records(claimed)
            self._grow_tree(frontier, hashes, checkpoints)
            self.report.leaves = position
            if self.progress is not None:
                self.progress(position, max(position, head or 0))
        # Checkpoints larger than the log: their size is beyond what there is.
        checkpoint = self.next_checkpoint
        while checkpoint is not None:
            cp, lines = checkpoint
            self._check_checkpoint(cp, lines, None)
            self.problem(
                "log_checkpoints",
                cp.size,
                None,
                f"log_checkpoints {cp.size}: signs a tree of {cp.size} leaves but the log has "
                f"only {position}",
            )
            checkpoint = next(checkpoints, None)
        newest = self.newest_checkpoint_size
        if position > newest:
            # Each commit signs a checkpoint of the whole tree: leaves past the newest one were
            # never published (an append that bypassed the platform).
            self.problem(
                "log_leaves",
                newest,
                newest,
                f"log_leaves {newest}..{position - 1} (leaves {newest} to {position - 1}): not "
                f"covered by any signed checkpoint (the newest is of size {newest})",
            )
        return position

    def _claim(
        self, idx: int, data: bytes, claimed: dict[str, list[tuple[int | str, int, bytes]]]
    ) -> None:
        """Decode a leaf and note which row it claims to log."""
        try:
            entry = entries.decode(data)
            table, key = entry_key(entry)
        except (entries.EntryError, UnknownEntryError) as exc:
            self.problem("log_leaves", idx, idx, f"log_leaves {idx} (leaf {idx}): {exc}")
            return
        if isinstance(entry, TransferRecord | entries.AccountEntry):
            timestamp = entry.timestamp
            if self.last_timestamp is not None and timestamp <= self.last_timestamp[0]:
                before, at = self.last_timestamp
                self.problem(
                    table,
                    key,
                    idx,
                    f"{table} {key} (leaf {idx}): its timestamp {timestamp} is not after the "
                    f"previous record's ({before}, leaf {at}); ledger timestamps strictly increase",
                )
            self.last_timestamp = (timestamp, idx)
            self.max_record_timestamp = max(self.max_record_timestamp, timestamp)
        claimed.setdefault(table, []).append((key, idx, data))

    def _match_records(self, claimed: dict[str, list[tuple[int | str, int, bytes]]]) -> None:
        """Compare each claimed row, re-encoded, with its leaf (one query per table)."""
        for name, items in claimed.items():
            kind = self.kinds[name]
            column = kind.table.c[kind.key]
            columns = [kind.table.c[c] for c in kind.columns]
            keys = list({key for key, _, _ in items})
            rows: dict[Any, Sequence[Any]] = {}
            for start in range(0, len(keys), 1000):  # bounded IN lists on every backend
                query = select(*columns).where(column.in_(keys[start : start + 1000]))
                rows.update((found[0], found) for found in self.conn.execute(query).all())
            seen = self.seen.get(name)
            for key, idx, data in items:
                where = f"{name} {key} (leaf {idx})"
                if seen is not None:
                    first = seen.setdefault(key, idx)
                    if first != idx:
                        self.problem(
                            name, key, idx, f"{where}: logged a second time (first at leaf {first})"
                        )
                        continue
                row = rows.get(key)
                if row is None:
                    self.problem(
                        name, key, idx, f"{where}: the log has it but the table has no row"
                    )
                    continue
                if name == "pending_transfers" and row[2] != _EXPIRED:
                    self.problem(
                        name,
                        key,
                        idx,
                        f"{where}: the log says the hold lapsed but its state is "
                        f"{_state_name(row[2])}",
                    )
                    continue
                self.matched[name] += 1
                try:
                    stored = kind.encode(row)
                except (ValueError, TypeError, KeyError, entries.EntryError) as exc:
                    # A column edited into something its record cannot hold (e.g. JSON text
                    # that no longer parses) is a mismatch to report, not a crash.
                    self.problem(
                        name,
                        key,
                        idx,
                        f"{where}: the stored row does not match its log entry (it cannot be "
                        f"encoded: {exc})",
                    )
                    continue
                if stored != data:
                    self.problem(
                        name,
                        key,
                        idx,
                        f"{where}: the stored row does not match its log entry "
                        f"({_differences(stored, data)})",
                    )

    def _grow_tree(
        self,
        frontier: merkle.Frontier,
        hashes: list[bytes],
        checkpoints: Iterator[_Checkpoint],
    ) -> None:
        """Append a chunk's leaf hashes, stopping at every checkpoint size on the way to check
        its root, and compare every new perfect subtree with the stored node, if any."""
        start = frontier.size
        end = start + len(hashes)
        new: dict[int, tuple[int, list[bytes]]] = {}  # level -> (first index, hashes)
        done = 0
        while done < len(hashes):
            stop = end
            if self.next_checkpoint is not None and start + done < self.next_checkpoint[0].size:
                stop = min(end, self.next_checkpoint[0].size)
            levels = frontier.append_levels(hashes[done : stop - start])
            for level, (first, level_hashes) in enumerate(levels):
                if level == 0:
                    continue
                if level in new:
                    new[level][1].extend(level_hashes)
                else:
                    new[level] = (first, list(level_hashes))
            done = stop - start
            self._settle_checkpoints(frontier, checkpoints)
        self._compare_nodes(new)

    def _compare_nodes(self, new: dict[int, tuple[int, list[bytes]]]) -> None:
        nodes = tlog_tables.log_nodes
        for level, (first, level_hashes) in sorted(new.items()):
            lo, hi = node_key(level, first), node_key(level, first + len(level_hashes))
            rows = self.conn.execute(
                select(nodes.c.id, nodes.c.hash).where(nodes.c.id >= lo, nodes.c.id < hi)
            ).all()
            for key, stored in rows:
                index = key & _INDEX_MASK
                leaves = (index << level, (index + 1) << level)
                if self.broken_at is not None and leaves[1] > self.broken_at:
                    continue
                self.report.nodes += 1
                if bytes(stored) != level_hashes[index - first]:
                    self.problem(
                        "log_nodes",
                        key,
                        None,
                        f"log_nodes {key} (level {level}, index {index}: leaves {leaves[0]} to "
                        f"{leaves[1] - 1}): the stored hash is not the hash recomputed from "
                        "the leaves",
                    )

    def _checkpoints(self) -> Iterator[_Checkpoint]:
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

    def _settle_checkpoints(
        self,
        frontier: merkle.Frontier,
        checkpoints: Iterator[_Checkpoint],
    ) -> None:
        """Check every checkpoint whose size the frontier has reached."""
        while self.next_checkpoint is not None and self.next_checkpoint[0].size <= frontier.size:
            cp, lines = self.next_checkpoint
            if cp.size < 0:
                self._check_checkpoint(cp, lines, None)
                self.problem(
                    "log_checkpoints",
                    cp.size,
                    None,
                    f"log_checkpoints {cp.size}: a negative tree size",
                )
            else:
                intact = self.broken_at is None or cp.size <= self.broken_at
                self._check_checkpoint(cp, lines, frontier.root() if intact else None)
                self.newest_checkpoint_size = cp.size
            self.next_checkpoint = next(checkpoints, None)

    def _check_checkpoint(
        self, cp: StoredCheckpoint, cosignatures: list[tuple[str, str]], root: bytes | None
    ) -> None:
        """The note is the log's signature on a checkpoint of this size and root; `root` is the
        root recomputed from the first `cp.size` leaves (None when it cannot be)."""
        self.report.checkpoints += 1
        where = f"log_checkpoints {cp.size}"

        def bad(message: str) -> None:
            self.problem("log_checkpoints", cp.size, None, f"{where}: {message}")

        signed: bytes | None = None
        body_text: str | None = None
        try:
            opened = note.open_note(cp.note, self.verifier)
        except note.NoteError as exc:
            bad(f"the note does not verify with the log key {self.verifier.name}: {exc}")
        else:
            # The log signs each note once and keeps witnesses' lines apart, so the stored note
            # is exactly body, blank line, one canonical signature line by the log key.
            signatures = cp.note[len(opened.text) + 1 :].splitlines()
            if opened.other_signatures or len(signatures) != 1:
                bad("the note carries signatures other than the log's own")
            for line in signatures:
                error = _signature_line_error(line)
                if error is not None:
                    bad(f"the note's signature line {error}")
            try:
                body = note.Checkpoint.parse(opened.text)
            except note.NoteError as exc:
                bad(f"the signed text is not a checkpoint: {exc}")
            else:
                if body.text() != opened.text:
                    bad("the signed checkpoint is not in canonical form")
                if body.origin != self.verifier.name:
                    bad(f"the checkpoint's origin is {body.origin!r}, not {self.verifier.name!r}")
                if body.size != cp.size:
                    bad(f"the note signs size {body.size}, not {cp.size}")
                if body.root_hash != cp.root:
                    bad("the root column is not the root the note signs")
                signed = body.root_hash
                body_text = opened.text
        if root is not None and (signed or cp.root) != root:
            bad(f"the root is not the root recomputed from the first {cp.size} leaves")
        for witness, line in cosignatures:
            self.report.cosignatures += 1
            error = _signature_line_error(line)
            if error is not None:
                self.problem(
                    "log_cosignatures",
                    f"{cp.size}/{witness}",
                    None,
                    f"log_cosignatures {cp.size}/{witness}: the cosignature line {error}",
                )
            elif line[len(note.SIGNATURE_PREFIX) :].partition(" ")[0] != witness:
                self.problem(
                    "log_cosignatures",
                    f"{cp.size}/{witness}",
                    None,
                    f"log_cosignatures {cp.size}/{witness}: the line is signed by another name",
                )
            else:
                self._check_cosignature(cp.size, witness, line, body_text)

    def _check_cosignature(self, size: int, witness: str, line: str, body: str | None) -> None:
        """A line of a witness whose key we hold verifies on the checkpoint's signed body
        (None when the note itself is bad, which is reported already)."""
        keys = [w for w in self.witnesses if w.name == witness]
        if not keys:
            self.report.cosignatures_unchecked += 1
            return
        if body is None:
            return
        for key in keys:
            try:
                key.verify(body, line)
            except note.NoteError:
                continue
            return
        self.problem(
            "log_cosignatures",
            f"{size}/{witness}",
            None,
            f"log_cosignatures {size}/{witness}: the cosignature does not verify with the "
            f"configured key of {witness} (changed, or made with a key no longer configured)",
        )

    def _check_orphan_cosignatures(self) -> None:
        cs = tlog_tables.log_cosignatures
        cp = tlog_tables.log_checkpoints
        rows = self.conn.execute(
            select(cs.c.size, cs.c.witness)
            .select_from(cs.outerjoin(cp, cp.c.size == cs.c.size))
            .where(cp.c.size.is_(None))
            .order_by(cs.c.size, cs.c.witness)
            .limit(self.max_problems + 1)
        ).all()
        for size, witness in rows:
            self.problem(
                "log_cosignatures",
                f"{size}/{witness}",
                None,
                f"log_cosignatures {size}/{witness}: cosigns a checkpoint the log does not have",
            )

    def _check_stored_nodes(self, leaves: int) -> None:
        """Stored nodes the scan did not compare must not exist: a node of level 0, or one
        whose leaves reach past the log's end, is not a perfect subtree of this tree."""
        nodes = tlog_tables.log_nodes
        total = self.conn.execute(select(func.count()).select_from(nodes)).scalar_one()
        if total == self.report.nodes:
            return
        last: int | None = None
        while True:
            query = select(nodes.c.id).order_by(nodes.c.id).limit(self.chunk)
            if last is not None:
                query = query.where(nodes.c.id > last)
            keys = self.conn.execute(query).scalars().all()
            if not keys:
                return
            for key in keys:
                level, index = key >> LEVEL_SHIFT, key & _INDEX_MASK
                if level < 1 or index < 0 or (index + 1) << level > leaves:
                    self.problem(
                        "log_nodes",
                        key,
                        None,
                        f"log_nodes {key} (level {level}, index {index}): not a complete "
                        f"subtree of the log's {leaves} leaves",
                    )
            last = keys[-1]

    def _check_rows_without_leaves(self) -> None:
        """Every row that must be logged was matched with a leaf: count, and only when the
        counts disagree, find which rows (which for `ordered` kinds takes one more scan)."""
        for name, kind in self.kinds.items():
            query = select(func.count()).select_from(kind.table)
            if kind.logged is not None:
                query = query.where(kind.logged)
            rows = int(self.conn.execute(query).scalar_one())
            matched = self.matched[name]
            if kind.ordered and matched > rows:
                self.problem(
                    name,
                    None,
                    None,
                    f"{name}: {matched} leaves were matched with only {rows} rows, so some "
                    "record is logged more than once",
                )
            if rows > matched:
                self._report_rows_without_leaves(name, kind)

    def _report_rows_without_leaves(self, name: str, kind: _Kind) -> None:
        keys = self.seen.get(name)
        if keys is None:
            keys = dict.fromkeys(self._logged_keys(name), 0)
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
            for key in page:
                if key not in keys:
                    self.problem(name, key, None, f"{name} {key}: the row has no log entry")
            last = page[-1]

    def _check_seals(self, table: Table) -> None:
        """Every row of a sealed table carries its seal (or, with no seal key, is counted)."""
        key = list(table.primary_key.columns)
        last: tuple[Any, ...] | None = None
        while True:
            query = select(table).order_by(*key).limit(self.chunk)
            if last is not None:
                query = query.where(tuple_(*key) > tuple_(*last))
            page = self.conn.execute(query).mappings().all()
            if not page:
                return
            for row in page:
                if self.sealer is None:
                    self.report.seals_unchecked += 1
                    continue
                self.report.seals += 1
                if not self.sealer.verify(table.name, seals.fields(table, row), row[seals.SEAL]):
                    name = "/".join(str(row[c.name]) for c in key)
                    self.problem(
                        table.name,
                        name if len(key) > 1 else row[key[0].name],
                        None,
                        f"{table.name} {name}: the row's seal does not verify (a field was "
                        "changed outside the platform, or the row was sealed with another key)",
                    )
            last = tuple(page[-1][c.name] for c in key)

    def _logged_keys(self, name: str) -> Iterator[int | str]:
        """Every key of table `name` the leaves name (a second pass over the log)."""
        for rows in self._leaf_pages(with_hash=False):
            for _, data in rows:
                try:
                    table, key = entry_key(entries.decode(bytes(data)))
                except (entries.EntryError, UnknownEntryError):
                    continue
                if table == name:
                    yield key

    def _leaf_pages(self, *, with_hash: bool) -> Iterator[Sequence[Any]]:
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

    # -- 3: derived state ------------------------------------------------------------------

    def _check_balances(self) -> None:
        """Each account's four balances equal what the transfers add up to, per ledger
        debits equal credits, and no flagged account is overdrawn."""
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
        # One pass over every account; the comparisons and sums are done here, in exact
        # integers, because SQL arithmetic on tampered values near 2^63 would overflow.
        query = (
            select(a.c.id, a.c.ledger, a.c.flags, *have, *want)
            .select_from(a.outerjoin(dr, dr.c.id == a.c.id).outerjoin(cr, cr.c.id == a.c.id))
            .order_by(a.c.id)
        )
        totals: dict[int, list[int]] = {}
        result = self.conn.execute(query, execution_options={"yield_per": self.chunk})
        for partition in result.partitions():
            for row in partition:
                self.report.accounts += 1
                self._check_account(row[0], row[1], row[2], row[3:7], row[7:11], totals)
        for ledger, (dpo, cpo, dp, cp) in sorted(totals.items()):
            where = f"accounts of ledger {ledger}"
            if dpo != cpo:
                self.problem(
                    "accounts", None, None, f"{where}: posted debits {dpo} but credits {cpo}"
                )
            if dp != cp:
                self.problem(
                    "accounts", None, None, f"{where}: pending debits {dp} but credits {cp}"
                )
        named = union(
            select(ledger_tables.transfers.c.debit_account_id.label("id")),
            select(ledger_tables.transfers.c.credit_account_id.label("id")),
        ).subquery("named")
        for (account_id,) in self.conn.execute(
            select(named.c.id)
            .select_from(named.outerjoin(a, a.c.id == named.c.id))
            .where(a.c.id.is_(None))
            .order_by(named.c.id)
            .limit(self.max_problems + 1)
        ):
            self.problem(
                "transfers",
                None,
                None,
                f"transfers: name account {account_id}, which is not in accounts",
            )

    def _check_account(
        self,
        account_id: int,
        ledger: int,
        flags: int,
        stored: Sequence[Any],
        replayed: Sequence[Any],
        totals: dict[int, list[int]],
    ) -> None:
        dp, dpo, cp, cpo = (int(v) for v in stored)
        want = tuple(int(v) for v in replayed)
        if (dp, dpo, cp, cpo) != want:
            self.problem(
                "accounts",
                account_id,
                None,
                f"accounts {account_id}: balances (debits pending, debits posted, credits "
                f"pending, credits posted) are {(dp, dpo, cp, cpo)} but its transfers add up "
                f"to {want}",
            )
        if (flags & _DMNEC and dpo + dp > cpo) or (flags & _CMNED and cpo + cp > dpo):
            self.problem(
                "accounts",
                account_id,
                None,
                f"accounts {account_id}: its balances break its flags ({flags})",
            )
        sums = totals.setdefault(ledger, [0, 0, 0, 0])
        sums[0] += dpo
        sums[1] += cpo
        sums[2] += dp
        sums[3] += cp

    def _check_pending_transfers(self) -> None:
        """`pending_transfers` holds exactly what the transfers imply: one row per pending
        transfer, its expiry from the transfer's timestamp and timeout, and its state and
        `resolved_by` from the post or void that names it (lapsed holds were matched with
        their leaves above)."""
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
            for row in partition:
                self.report.pending_transfers += 1
                self._check_pending_row(*row)
        for (transfer_id,) in self.conn.execute(
            select(t.c.id)
            .select_from(t.outerjoin(p, p.c.id == t.c.id))
            .where(t.c.flags.op("&")(_PENDING) != 0, p.c.id.is_(None))
            .order_by(t.c.id)
            .limit(self.max_problems + 1)
        ):
            self.problem(
                "pending_transfers",
                transfer_id,
                None,
                f"pending_transfers {transfer_id}: missing (transfers {transfer_id} is pending)",
            )
        target = t.alias("target")
        for resolver_id, pending_id in self.conn.execute(
            select(t.c.id, t.c.pending_id)
            .select_from(t.outerjoin(target, target.c.id == t.c.pending_id))
            .where(
                t.c.flags.op("&")(_POST | _VOID) != 0,
                or_(target.c.id.is_(None), target.c.flags.op("&")(_PENDING) == 0),
            )
            .order_by(t.c.id)
            .limit(self.max_problems + 1)
        ):
            self.problem(
                "transfers",
                resolver_id,
                None,
                f"transfers {resolver_id}: posts or voids transfer {pending_id}, which is not a "
                "pending transfer",
            )

    def _check_pending_row(
        self,
        pending_id: int,
        state: int,
        expires_at: int,
        resolved_by: int,
        transfer_id: int | None,
        flags: int | None,
        timestamp: int | None,
        timeout: int | None,
        resolvers: int | None,
        resolver_id: int | None,
        resolver_flags: int | None,
    ) -> None:
        where = f"pending_transfers {pending_id}"

        def bad(message: str) -> None:
            self.problem("pending_transfers", pending_id, None, f"{where}: {message}")

        if transfer_id is None or flags is None or not flags & _PENDING:
            bad(f"there is no pending transfer {pending_id} in transfers")
            return
        assert timestamp is not None
        assert timeout is not None
        # As ledger/model.py sets it: the transfer's timestamp plus its timeout, 0 for none.
        expected = timestamp + timeout * NANOSECONDS if timeout else 0
        if expires_at != expected:
            bad(f"expires_at is {expires_at} but transfer {pending_id} implies {expected}")
        if resolvers:
            assert resolver_id is not None
            assert resolver_flags is not None
            if resolvers > 1:
                bad(f"{resolvers} transfers post or void it (at most one may)")
            want = PendingState.POSTED if resolver_flags & _POST else PendingState.VOIDED
            if state != want or resolved_by != resolver_id:
                bad(
                    f"state {_state_name(state)}, resolved_by {resolved_by}, but transfer "
                    f"{resolver_id} {want.name.lower()} it (state {want.name}, resolved_by "
                    f"{resolver_id})"
                )
        else:
            if state not in (PendingState.PENDING, PendingState.EXPIRED):
                bad(f"state {_state_name(state)} but no transfer posts or voids it")
            if resolved_by != 0:
                bad(f"resolved_by {resolved_by} but no transfer posts or voids it")

    def _check_clock(self) -> None:
        """The ledger clock is the timestamp of the newest account or transfer (0 before the
        first): the ledger moves it only with a stored record (ledger/model.py). Behind, the
        next record could repeat a timestamp; ahead, every later record would carry a time
        in the future (or, near 2^63, none could be written at all)."""
        last = self._single("ledger_clock", ledger_tables.ledger_clock, "last_timestamp")
        if last is None:
            return
        newest = self.max_record_timestamp
        for table in (ledger_tables.accounts, ledger_tables.transfers):
            value = self.conn.execute(select(func.max(table.c.timestamp))).scalar_one()
            if value is not None:
                newest = max(newest, int(value))
        if last != newest:
            where = "before" if last < newest else "after"
            self.problem(
                "ledger_clock",
                1,
                None,
                f"ledger_clock 1: last_timestamp {last} is {where} the newest record timestamp "
                f"{newest} (it must equal it)",
            )


# -- helpers ---------------------------------------------------------------------------------


def _state_name(state: int) -> str:
    try:
        return PendingState(state).name
    except ValueError:
        return f"{state} (not a state)"


def _signature_line_error(line: str) -> str | None:
    """Why `line` is not a well-formed signed-note signature line (None when it is).

    The base64 must be canonical (see note.b64decode_canonical), or a stored note could be
    altered without changing the signature it decodes to."""
    if not line.startswith(note.SIGNATURE_PREFIX):
        return "does not start with an em dash and a space"
    name, _, b64 = line[len(note.SIGNATURE_PREFIX) :].partition(" ")
    if not name or not name.isprintable() or any(c.isspace() or c == "+" for c in name):
        return "has no valid key name"
    try:
        blob = note.b64decode_canonical(b64)
    except binascii.Error:
        return "has a signature that is not canonical base64"
    if len(blob) < 5:
        return "has a signature too short to hold a key id"
    return None


def _fields(data: bytes) -> dict[str, Any] | None:
    try:
        entry = entries.decode(data)
    except entries.EntryError:
        return None
    if isinstance(entry, TransferRecord):
        return entry._asdict()
    if isinstance(entry, entries.AccountEntry):
        return {**entry.account._asdict(), "timestamp": entry.timestamp}
    if isinstance(entry, entries.HoldExpiredEntry):
        return {"id": entry.pending_id, "expires_at": entry.expires_at}
    return {"type": entry.type, **entry.fields}


def _differences(stored: bytes, logged: bytes) -> str:
    """Which fields differ between a row re-encoded and its leaf, for the problem message."""
    row, log = _fields(stored), _fields(logged)
    if row is None or log is None:
        return "the bytes differ"
    names: Sequence[str] = [k for k in {**row, **log} if row.get(k) != log.get(k)]
    if not names:
        return "the encodings differ"
    return "; ".join(f"{k}: {row.get(k)!r} in the row, {log.get(k)!r} in the log" for k in names)
