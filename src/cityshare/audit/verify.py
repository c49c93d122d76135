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

The work is split by what it touches: audit/registry.py knows which table each kind of log entry
belongs to, audit/repo.py holds every SQL read, audit/checkpoints.py checks one checkpoint and its
cosignatures, audit/ledger_state.py the ledger's derived state, and this module streams the log
and matches it with the rows (checks 1, 2 and 4). It stays one module (a little over 500 lines)
because `_Audit` is one pass over the log: `_scan_log` reads leaf chunks in order, and each
chunk is checked and claimed (`_claim`), matched with its rows (`_match_records`), hashed into
the tree (`_grow_tree`) and settled against the checkpoints it reaches before the next is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import SQLAlchemyError

from cityshare.audit.checkpoints import CheckpointChecks
from cityshare.audit.ledger_state import LedgerStateChecks, state_name
from cityshare.audit.registry import UnknownEntryError, derived_checks, entry_key, record_types
from cityshare.audit.repo import AuditRepo, Checkpoint, Kind, SumOverflowError, kinds
from cityshare.audit.report import AuditReport, Recorder
from cityshare.kernel import seals
from cityshare.kernel.errors import StoreUnavailable
from cityshare.kernel.seal import Sealer
from cityshare.kernel.uow import SqlReadUnitOfWork
from cityshare.ledger.model import PendingState, TransferRecord
from cityshare.tlog import cosignature, entries, merkle, note
from cityshare.tlog.repo import LEVEL_SHIFT, node_key

#: Leaves (and rows of any other streamed table) read per query.
CHUNK = 10_000

_EXPIRED = int(PendingState.EXPIRED)
_INDEX_MASK = (1 << LEVEL_SHIFT) - 1

Progress = Callable[[int, int], None]


# -- verify ----------------------------------------------------------------------------------


def verify(
    uow: SqlReadUnitOfWork,
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

    Runs in one read transaction (one snapshot on PostgreSQL, as in SQLite's WAL mode).
    A database that is not a cityshare database at the current revision (a table or a column
    missing) raises `StoreUnavailable`, as one that does not answer does."""
    try:
        with uow:
            audit = _Audit(
                uow.connection,
                log_verifier,
                max_problems,
                chunk_size,
                progress,
                witnesses=witnesses,
                sealer=sealer,
            )
            audit.run()
            for check in derived_checks():
                for table, key, message in check(uow):
                    audit.problem(table, key, None, message)
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise StoreUnavailable(f"{type(exc).__name__}: {first}") from exc
    return audit.report


class _Audit:
    def __init__(
        self,
        conn: Connection,
        verifier: note.Verifier,
        max_problems: int,
        chunk: int,
        progress: Progress | None,
        *,
        witnesses: Sequence[cosignature.CosignatureVerifier] = (),
        sealer: Sealer | None = None,
    ) -> None:
        self.repo = AuditRepo(conn, chunk)
        self.max_problems = max_problems
        self.progress = progress
        self.report = AuditReport()
        self.problem = Recorder(self.report, max_problems)
        self.checkpoint_checks = CheckpointChecks(verifier, witnesses, self.report, self.problem)
        self.ledger_checks = LedgerStateChecks(self.repo, self.report, self.problem, max_problems)
        self.sealer = sealer
        self.kinds = kinds(record_types().values())
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
        self.next_checkpoint: Checkpoint | None = None
        #: The largest checkpoint size reached while scanning the leaves.
        self.newest_checkpoint_size = 0

    def run(self) -> None:
        head = self._single("log_head", self.repo.log_head())
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
            self.ledger_checks.check_balances()
        except SumOverflowError:
            # SQLite's SUM refuses a total beyond 64 bits (PostgreSQL sums into numeric).
            self.problem(
                "transfers",
                None,
                None,
                "transfers: the amounts add up beyond 64 bits, so balances cannot be "
                "recomputed (some amount is out of range)",
            )
        self.ledger_checks.check_pending_transfers()
        clock = self._single("ledger_clock", self.repo.ledger_clock())
        self.ledger_checks.check_clock(clock, self.max_record_timestamp)
        self.report.records = dict(self.matched)

    def _single(self, name: str, values: dict[Any, Any]) -> int | None:
        """The value of a one-row table's row 1 (`values`: id -> value of its rows), or None
        (a problem) when that row is gone."""
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
        checkpoints = self.repo.checkpoints()
        self.next_checkpoint = next(checkpoints, None)
        self._settle_checkpoints(frontier, checkpoints)
        position = 0
        for rows in self.repo.leaf_pages(with_hash=True):
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
            self.checkpoint_checks.check(cp, lines, None)
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
            rows = self.repo.rows_by_key(kind, list({key for key, _, _ in items}))
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
                        f"{state_name(row[2])}",
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
        checkpoints: Iterator[Checkpoint],
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
        for level, (first, level_hashes) in sorted(new.items()):
            lo, hi = node_key(level, first), node_key(level, first + len(level_hashes))
            for key, stored in self.repo.nodes_between(lo, hi):
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

    def _settle_checkpoints(
        self,
        frontier: merkle.Frontier,
        checkpoints: Iterator[Checkpoint],
    ) -> None:
        """Check every checkpoint whose size the frontier has reached."""
        while self.next_checkpoint is not None and self.next_checkpoint[0].size <= frontier.size:
            cp, lines = self.next_checkpoint
            if cp.size < 0:
                self.checkpoint_checks.check(cp, lines, None)
                self.problem(
                    "log_checkpoints",
                    cp.size,
                    None,
                    f"log_checkpoints {cp.size}: a negative tree size",
                )
            else:
                intact = self.broken_at is None or cp.size <= self.broken_at
                self.checkpoint_checks.check(cp, lines, frontier.root() if intact else None)
                self.newest_checkpoint_size = cp.size
            self.next_checkpoint = next(checkpoints, None)

    def _check_orphan_cosignatures(self) -> None:
        for size, witness in self.repo.orphan_cosignatures(self.max_problems + 1):
            self.problem(
                "log_cosignatures",
                f"{size}/{witness}",
                None,
                f"log_cosignatures {size}/{witness}: cosigns a checkpoint the log does not have",
            )

    def _check_stored_nodes(self, leaves: int) -> None:
        """Stored nodes the scan did not compare must not exist: a node of level 0, or one
        whose leaves reach past the log's end, is not a perfect subtree of this tree."""
        if self.repo.node_count() == self.report.nodes:
            return
        for keys in self.repo.node_key_pages():
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

    def _check_rows_without_leaves(self) -> None:
        """Every row that must be logged was matched with a leaf: count, and only when the
        counts disagree, find which rows (which for `ordered` kinds takes one more scan)."""
        for name, kind in self.kinds.items():
            rows = self.repo.logged_row_count(kind)
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

    def _report_rows_without_leaves(self, name: str, kind: Kind) -> None:
        keys = self.seen.get(name)
        if keys is None:
            keys = dict.fromkeys(self._logged_keys(name), 0)
        for page in self.repo.logged_key_pages(kind):
            for key in page:
                if key not in keys:
                    self.problem(name, key, None, f"{name} {key}: the row has no log entry")

    def _check_seals(self, table: Table) -> None:
        """Every row of a sealed table carries its seal (or, with no seal key, is counted)."""
        key = list(table.primary_key.columns)
        for page in self.repo.row_pages(table):
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

    def _logged_keys(self, name: str) -> Iterator[int | str]:
        """Every key of table `name` the leaves name (a second pass over the log)."""
        for rows in self.repo.leaf_pages(with_hash=False):
            for _, data in rows:
                try:
                    table, key = entry_key(entries.decode(bytes(data)))
                except (entries.EntryError, UnknownEntryError):
                    continue
                if table == name:
                    yield key


# -- helpers ---------------------------------------------------------------------------------


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
