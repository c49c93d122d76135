"""Evidence of equivocation: a checkpoint refused because it contradicts the trusted one.

A smaller tree, the same size with another root, or a bigger tree not proven consistent with
it shows that the log showed two histories. The twin keeps both signed notes, as received, in
`evidence/` (one JSON file per contradicting pair, see :func:`keep_evidence`), and `verify`
re-checks and reports every file there, and fails while any is held.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityshare.tlog import merkle, note
from cityshare.twin.replica import Replica, TamperError, Trusted, b64

EVIDENCE_DIR = "evidence"

#: What each kind of evidence shows (said by `verify`).
EVIDENCE_KINDS = {
    "rollback": "the log served a checkpoint of a smaller tree than one it signed before",
    "fork": "the log signed two different roots for the same tree size",
    "inconsistent": "the log signed a bigger tree whose consistency proof from the trusted "
    "checkpoint fails: the history it had published was rewritten",
}


def equivocation(
    directory: Path,
    replica: Replica,
    kind: str,
    message: str,
    trusted: Trusted,
    offered: Trusted,
    proof: list[bytes] | None = None,
) -> TamperError:
    """The error to raise for a contradicting checkpoint, once its evidence is kept."""
    replica_root = None
    if kind == "rollback" and offered.size > 0:
        # The replica holds the entries of the trusted tree: the root it computes at the
        # offered size tells a plain rollback (same root) from a fork (another root).
        tree = merkle.Frontier()
        for index, data in replica.iter_leaves():
            if index >= offered.size:
                break
            tree.append([merkle.leaf_hash(data)])
        if tree.size == offered.size:
            replica_root = tree.root()
    path = keep_evidence(directory, kind, message, trusted, offered, proof, replica_root)
    return TamperError(f"{message}; both signed checkpoints are kept in {path}", path)


def keep_evidence(
    directory: Path,
    kind: str,
    message: str,
    trusted: Trusted,
    offered: Trusted,
    proof: list[bytes] | None = None,
    replica_root: bytes | None = None,
) -> Path:
    """Write DIR/evidence/<kind>-<digest>.json: both signed notes exactly as received, the
    served consistency proof (for `inconsistent`), and for a rollback the root the replica's
    own entries give at the smaller size. One file per pair of notes, so a primary that keeps
    serving the same contradiction does not fill the folder; written atomically, mode 0600."""
    folder = directory / EVIDENCE_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{trusted.note}\0{offered.note}".encode()).hexdigest()[:16]
    path = folder / f"{kind}-{digest}.json"
    if path.exists():
        return path
    record = {
        "kind": kind,
        "detected_at": int(time.time()),
        "message": message,
        "trusted": trusted.note,
        "offered": offered.note,
        "proof": None if proof is None else [b64(h) for h in proof],
        "replica_root_at_offered_size": None if replica_root is None else b64(replica_root),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True, slots=True)
class Evidence:
    """One evidence file as `verify` re-checked it."""

    file: str
    kind: str
    detected_at: int | None
    trusted: tuple[int, bytes] | None
    offered: tuple[int, bytes] | None
    #: Why the file does not hold what it claims (None: both notes verify with the log key
    #: and contradict each other as `kind` says).
    problem: str | None
    #: For a rollback: whether the replica's own entries give the offered root at its size.
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        def checkpoint(value: tuple[int, bytes] | None) -> dict[str, Any] | None:
            return None if value is None else {"size": value[0], "root": b64(value[1])}

        return {
            "file": self.file,
            "kind": self.kind,
            "meaning": EVIDENCE_KINDS.get(self.kind),
            "detected_at": self.detected_at,
            "trusted": checkpoint(self.trusted),
            "offered": checkpoint(self.offered),
            "problem": self.problem,
            "detail": self.detail,
        }


def read_evidence(directory: Path, log_key: str | None) -> list[Evidence]:
    """Every evidence file in DIR/evidence, each re-checked against the pinned log key."""
    folder = directory / EVIDENCE_DIR
    if not folder.is_dir():
        return []
    return [_check_evidence(path, log_key) for path in sorted(folder.glob("*.json"))]


def _check_evidence(path: Path, log_key: str | None) -> Evidence:
    try:
        record = json.loads(path.read_text())
        kind, trusted_note, offered_note = record["kind"], record["trusted"], record["offered"]
        if not all(isinstance(v, str) for v in (kind, trusted_note, offered_note)):
            raise TypeError("kind, trusted and offered are text")
        detected = record.get("detected_at")
        detected_at = detected if isinstance(detected, int) else None
        proof_b64 = record.get("proof")
        replica_root = record.get("replica_root_at_offered_size")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Evidence(path.name, "?", None, None, None, f"unreadable: {exc}")
    if log_key is None:
        return Evidence(path.name, kind, detected_at, None, None, "no pinned log key to check it")
    checkpoints: list[tuple[int, bytes]] = []
    for which, text in (("trusted", trusted_note), ("offered", offered_note)):
        try:
            opened = note.open_note(text, note.Verifier.parse(log_key))
            body = note.Checkpoint.parse(opened.text)
        except note.NoteError as exc:
            return Evidence(path.name, kind, detected_at, None, None, f"the {which} note: {exc}")
        checkpoints.append((body.size, body.root_hash))
    trusted, offered = checkpoints
    problem = detail = None
    if kind == "rollback" and not offered[0] < trusted[0]:
        problem = "the offered checkpoint is not smaller than the trusted one"
    elif kind == "rollback" and isinstance(replica_root, str):
        same = replica_root == b64(offered[1])
        detail = (
            "the replica's entries give the same root at that size: an old checkpoint served again"
            if same
            else "the replica's entries give another root at that size: a forked history"
        )
    elif kind == "fork" and not (offered[0] == trusted[0] and offered[1] != trusted[1]):
        problem = "the two checkpoints are not of one size with two roots"
    elif kind == "inconsistent":
        try:
            proof = [base64.b64decode(h, validate=True) for h in proof_b64]
            merkle.verify_consistency(trusted[0], offered[0], trusted[1], offered[1], proof)
        except merkle.ProofError:
            pass  # as recorded: the proof served does not prove the bigger tree consistent
        except (TypeError, ValueError, binascii.Error):
            problem = "the recorded consistency proof is unreadable"
        else:
            problem = "the recorded consistency proof does verify"
    elif kind not in EVIDENCE_KINDS:
        problem = f"an unknown kind {kind!r}"
    return Evidence(path.name, kind, detected_at, trusted, offered, problem, detail)
