"""`twin verify`: rebuild the whole tree from the stored entries, check it against the trusted
checkpoint, replay the ledger from the entries alone (`twin/replay.py`), and re-check every
evidence file the twin holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityshare.tlog import merkle, note
from cityshare.twin.evidence import Evidence, read_evidence
from cityshare.twin.primary import PAGE_SIZE
from cityshare.twin.replay import Replayer, ReplayResult
from cityshare.twin.replica import REPLICA_FILE, ProgressCallback, Replica, b64


@dataclass
class VerifyReport:
    log_key: str | None
    size: int
    root: bytes | None
    computed_root: bytes
    #: Problems of the replica itself (tree, checkpoint); ledger problems are in `replay`.
    problems: list[str]
    replay: ReplayResult
    #: Evidence of the log's equivocation the twin keeps (DIR/evidence).
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing wrong with the replica, and no evidence that the log equivocated."""
        return not self.problems and self.replay.ok and not self.evidence


def verify(directory: Path, *, on_progress: ProgressCallback | None = None) -> VerifyReport:
    """Rebuild the tree from the stored entries, compare it with the trusted checkpoint, and
    replay the ledger from the entries alone."""
    replica = Replica(directory / REPLICA_FILE, create=False)
    try:
        report = _verify(replica, on_progress)
    finally:
        replica.close()
    report.evidence = read_evidence(directory, report.log_key)
    return report


def _verify(replica: Replica, on_progress: ProgressCallback | None) -> VerifyReport:
    problems: list[str] = []
    log_key = replica.meta("log_key")
    trusted = replica.trusted()
    size = trusted.size if trusted is not None else 0
    if trusted is not None:
        if log_key is None:
            problems.append("the replica trusts a checkpoint but has no pinned log key")
        else:
            try:
                opened = note.open_note(trusted.note, note.Verifier.parse(log_key))
                checkpoint = note.Checkpoint.parse(opened.text)
                if (checkpoint.size, checkpoint.root_hash) != (trusted.size, trusted.root):
                    problems.append(
                        "the trusted checkpoint's note does not say its recorded size and root"
                    )
            except note.NoteError as exc:
                problems.append(f"the trusted checkpoint does not verify with the log key: {exc}")
    count = replica.leaf_count()
    if count != size:
        problems.append(
            f"the replica holds {count if count >= 0 else 'a gap in its'} entries but trusts a "
            f"checkpoint of size {size}"
        )
    tree = merkle.Frontier()
    replayer = Replayer()
    for index, data in replica.iter_leaves():
        if index >= size:
            break
        tree.append([merkle.leaf_hash(data)])
        replayer.feed(data)
        if on_progress is not None and (index + 1) % PAGE_SIZE == 0:
            on_progress(index + 1, size)
    if on_progress is not None:
        on_progress(tree.size, size)
    computed = tree.root()
    if trusted is not None and computed != trusted.root:
        problems.append(
            f"the stored entries hash to {b64(computed)}, not to the root {b64(trusted.root)} "
            f"of the trusted checkpoint of size {size}: the replica was changed"
        )
    stored_edge = replica.frontier()
    if (stored_edge.size, stored_edge.nodes) != (tree.size, tree.nodes) and count == size:
        problems.append("the replica's stored tree edge differs from the one its entries give")
    return VerifyReport(
        log_key,
        size,
        trusted.root if trusted is not None else None,
        computed,
        problems,
        replayer.result(),
    )


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """`twin verify --json`: the checks, per-ledger totals, every account and every problem."""
    result = report.replay
    return {
        "ok": report.ok,
        "log_key": report.log_key,
        "size": report.size,
        "root": b64(report.root) if report.root is not None else None,
        "computed_root": b64(report.computed_root),
        "entries": {
            "total": result.entries,
            "accounts": result.account_entries,
            "transfers": result.transfer_entries,
            "holds_expired": result.hold_expired_entries,
            "records": result.record_entries,
        },
        "open_holds": result.open_holds,
        "ledgers": [
            {"ledger": ledger, **{k: getattr(t, k) for k in _TOTALS}}
            for ledger, t in sorted(result.ledgers.items())
        ],
        "accounts": [
            {
                "id": a.id,
                "ledger": a.ledger,
                "code": a.code,
                "flags": a.flags,
                "owner": a.owner,
                "debits_pending": a.debits_pending,
                "debits_posted": a.debits_posted,
                "credits_pending": a.credits_pending,
                "credits_posted": a.credits_posted,
                "balance": a.balance,
                "available": a.available,
            }
            for a in sorted(result.accounts.values(), key=lambda a: a.id)
        ],
        "problems": report.problems + [str(p) for p in result.problems],
        "problem_count": len(report.problems) + result.problem_count,
        "evidence": [e.as_json() for e in report.evidence],
    }


_TOTALS = ("accounts", "debits_posted", "credits_posted", "debits_pending", "credits_pending")
