"""Audit log capability: checkpoints, entries and proofs (DESIGN.md §4), and witnesses.

Appends happen inside each capability's own handlers (a record and its leaf commit together);
the unit of work signs one checkpoint per commit. What is here reads, and keeps the
cosignatures witnesses (such as the digital twin) add to checkpoints the log signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.identity.residents import resident_of
from cityshare.kernel.uow import UnitOfWork
from cityshare.tlog import commands, cosignature, merkle, note
from cityshare.tlog import entries as log_entries

#: Most entries one request returns (a client pages with `start`).
MAX_ENTRIES = 1000


#: A cosignature dated further ahead of the log's clock than this is refused (seconds).
MAX_COSIGNATURE_SKEW = 600


class LogRangeError(ValueError):
    """A size or index outside the log as it stands."""


class CosignatureRejected(ValueError):  # noqa: N818 (a verdict, not a fault: named as one)
    """A posted cosigned checkpoint the log does not keep; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckpointView:
    size: int
    root: bytes
    #: The signed note with every witness cosignature the log holds for it.
    note: str


def latest_checkpoint(uow: UnitOfWork, signer: note.Signer) -> CheckpointView:
    """The newest signed checkpoint; for a log that has no entries yet, the empty tree."""
    with uow:
        stored = uow.log.latest_checkpoint()
        if stored is None:
            body = note.Checkpoint(signer.name, 0, merkle.EMPTY_ROOT).text()
            return CheckpointView(0, merkle.EMPTY_ROOT, note.sign_note(body, signer))
        cosignatures = uow.log.cosignatures(stored.size)
    return CheckpointView(stored.size, stored.root, _with_lines(stored.note, cosignatures))


def checkpoint_at(uow: UnitOfWork, size: int) -> CheckpointView | None:
    with uow:
        stored = uow.log.checkpoint(size)
        if stored is None:
            return None
        cosignatures = uow.log.cosignatures(size)
    return CheckpointView(stored.size, stored.root, _with_lines(stored.note, cosignatures))


def _with_lines(signed: str, lines: list[str]) -> str:
    return signed + "".join(line + "\n" for line in lines)


def entries(uow: UnitOfWork, start: int, end: int) -> list[bytes]:
    """Leaves [start, end), at most MAX_ENTRIES; fewer when the log ends sooner."""
    if start < 0 or end <= start:
        raise LogRangeError("start must be >= 0 and end greater than start")
    with uow:
        size = uow.log.size()
        if start >= size:
            raise LogRangeError(f"start {start} is beyond the log's {size} entries")
        rows = uow.log.entries(start, min(end, size, start + MAX_ENTRIES))
    return [data for _, data in rows]


def inclusion_proof(uow: UnitOfWork, index: int, size: int) -> list[bytes]:
    with uow:
        current = uow.log.size()
        if not 0 <= index < size <= current:
            raise LogRangeError(
                f"an inclusion proof needs 0 <= index < size <= {current} (the log's size)"
            )
        return uow.log.inclusion_proof(index, size)


def consistency_proof(uow: UnitOfWork, first: int, second: int) -> list[bytes]:
    with uow:
        current = uow.log.size()
        if not 0 < first <= second <= current:
            raise LogRangeError(
                f"a consistency proof needs 0 < first <= second <= {current} (the log's size)"
            )
        return uow.log.consistency_proof(first, second)


# -- witnesses -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CosignaturesAdded:
    size: int
    #: Names of the configured witnesses whose cosignature of that checkpoint was verified.
    accepted: list[str]


def add_cosignatures(
    cmd: commands.AddCosignatures,
    uow: UnitOfWork,
    *,
    log_verifier: note.Verifier,
    witnesses: Sequence[cosignature.CosignatureVerifier],
) -> CosignaturesAdded:
    """Keep the cosignatures of configured witnesses on a checkpoint this log signed.

    The note must carry the log's own valid signature and its body must be exactly the body of
    a checkpoint the log stored (so a witness cannot get a forged tree head served beside the
    log's signature). Lines from keys not configured are ignored (a note may carry other
    witnesses' lines); a configured witness's line that does not verify, or is dated more than
    MAX_COSIGNATURE_SKEW seconds ahead of our clock, rejects the whole request, so nothing is
    half kept. Raises :class:`CosignatureRejected`.
    """
    try:
        opened = note.open_note(cmd.note, log_verifier)
        checkpoint = note.Checkpoint.parse(opened.text)
    except note.NoteError as exc:
        raise CosignatureRejected(f"not a checkpoint signed by this log: {exc}") from exc
    lines = [
        (witness, line)
        for line in opened.other_signatures
        if (witness := cosignature.find(witnesses, line)) is not None
    ]
    if not lines:
        configured = ", ".join(w.name for w in witnesses) or "none"
        raise CosignatureRejected(
            "the note carries no cosignature from a witness this log is configured to accept "
            f"(configured: {configured})"
        )
    with uow:
        now = uow.clock.now_ns() // 1_000_000_000
        stored = uow.log.checkpoint(checkpoint.size)
        if stored is None:
            raise CosignatureRejected(f"the log signed no checkpoint at size {checkpoint.size}")
        # The stored note is the body, a blank line, then the log's signature: compare bodies.
        if stored.note[: stored.note.rfind("\n\n") + 1] != opened.text:
            # Same size, other root (or extensions): a tree head the log never published.
            raise CosignatureRejected(
                f"the checkpoint differs from the one the log signed at size {checkpoint.size}"
            )
        stored_lines = uow.log.cosignatures(checkpoint.size)
        newest = _newest_cosignatures(stored_lines, opened.text, witnesses)
        accepted: list[str] = []
        for witness, line in lines:
            try:
                timestamp = witness.verify(opened.text, line)
            except note.NoteError as exc:
                raise CosignatureRejected(str(exc)) from exc
            if timestamp > now + MAX_COSIGNATURE_SKEW:
                raise CosignatureRejected(
                    f"the cosignature of {witness.name} is dated {timestamp - now} s in the "
                    f"future (at most {MAX_COSIGNATURE_SKEW} s is allowed)"
                )
            if witness.name in accepted:
                raise CosignatureRejected(f"two cosignatures from {witness.name}")
            accepted.append(witness.name)
            # One line per witness and size: a resent older cosignature must not replace a
            # newer one (its time says when the witness last saw this as the log's head).
            if timestamp >= newest.get(witness.name, -1):
                uow.log.save_cosignature(checkpoint.size, witness.name, line)
        uow.commit()
    return CosignaturesAdded(checkpoint.size, accepted)


def _newest_cosignatures(
    lines: list[str], text: str, witnesses: Sequence[cosignature.CosignatureVerifier]
) -> dict[str, int]:
    """The time of each stored cosignature still from a configured key, by witness name."""
    newest: dict[str, int] = {}
    for line in lines:
        witness = cosignature.find(witnesses, line)
        if witness is None:
            continue
        try:
            newest[witness.name] = witness.verify(text, line)
        except note.NoteError:
            continue  # e.g. the witness's key was rotated: the new line replaces it
    return newest


def residents_named(data: list[bytes]) -> list[int]:
    """The residents whose records appear in these entries (their reads must be recorded)."""
    named: dict[int, None] = {}
    for item in data:
        try:
            entry = log_entries.decode(item)
        except log_entries.EntryError:
            continue
        if isinstance(entry, log_entries.AccountEntry):
            rid = resident_of(entry.account.owner)
        elif isinstance(entry, log_entries.RecordEntry) and entry.type != "access":
            # Reading an access record is not itself recorded: otherwise every audit read of
            # the log would beget a new access record to read, and a twin never caught up.
            key = {"resident": "id", "device": "owner_id"}.get(entry.type, "resident_id")
            value = entry.fields.get(key)
            rid = value if isinstance(value, int) else None
        else:
            rid = None
        if rid:
            named[rid] = None
    return list(named)
