"""Audit log capability, read side: checkpoints, entries and proofs (DESIGN.md §4).

Appends happen inside each capability's own handlers (a record and its leaf commit together);
the unit of work signs one checkpoint per commit. What is here only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.services.unit_of_work import AbstractUnitOfWork
from cityshare.trust import merkle, note

#: Most entries one request returns (a client pages with `start`).
MAX_ENTRIES = 1000


class LogRangeError(ValueError):
    """A size or index outside the log as it stands."""


@dataclass(frozen=True, slots=True)
class CheckpointView:
    size: int
    root: bytes
    #: The signed note with every witness cosignature the log holds for it.
    note: str


def latest_checkpoint(uow: AbstractUnitOfWork, signer: note.Signer) -> CheckpointView:
    """The newest signed checkpoint; for a log that has no entries yet, the empty tree."""
    with uow:
        stored = uow.log.latest_checkpoint()
        if stored is None:
            body = note.Checkpoint(signer.name, 0, merkle.EMPTY_ROOT).text()
            return CheckpointView(0, merkle.EMPTY_ROOT, note.sign_note(body, signer))
        cosignatures = uow.log.cosignatures(stored.size)
    return CheckpointView(stored.size, stored.root, _with_lines(stored.note, cosignatures))


def checkpoint_at(uow: AbstractUnitOfWork, size: int) -> CheckpointView | None:
    with uow:
        stored = uow.log.checkpoint(size)
        if stored is None:
            return None
        cosignatures = uow.log.cosignatures(size)
    return CheckpointView(stored.size, stored.root, _with_lines(stored.note, cosignatures))


def _with_lines(signed: str, lines: list[str]) -> str:
    return signed + "".join(line + "\n" for line in lines)


def entries(uow: AbstractUnitOfWork, start: int, end: int) -> list[bytes]:
    """Leaves [start, end), at most MAX_ENTRIES; fewer when the log ends sooner."""
    if start < 0 or end <= start:
        raise LogRangeError("start must be >= 0 and end greater than start")
    with uow:
        size = uow.log.size()
        if start >= size:
            raise LogRangeError(f"start {start} is beyond the log's {size} entries")
        rows = uow.log.entries(start, min(end, size, start + MAX_ENTRIES))
    return [data for _, data in rows]


def inclusion_proof(uow: AbstractUnitOfWork, index: int, size: int) -> list[bytes]:
    with uow:
        current = uow.log.size()
        if not 0 <= index < size <= current:
            raise LogRangeError(
                f"an inclusion proof needs 0 <= index < size <= {current} (the log's size)"
            )
        return uow.log.inclusion_proof(index, size)


def consistency_proof(uow: AbstractUnitOfWork, first: int, second: int) -> list[bytes]:
    with uow:
        current = uow.log.size()
        if not 0 < first <= second <= current:
            raise LogRangeError(
                f"a consistency proof needs 0 < first <= second <= {current} (the log's size)"
            )
        return uow.log.consistency_proof(first, second)
