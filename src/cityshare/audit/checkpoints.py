"""Checking one stored checkpoint of the log and its witnesses' cosignatures (audit check 1).

The engine (audit/verify.py) reads the checkpoints in size order alongside the leaves and hands
each one here with the root recomputed from the first `size` leaves, when it can be.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

from cityshare.audit.report import AuditReport, ProblemSink
from cityshare.tlog import cosignature, note
from cityshare.tlog.repo import StoredCheckpoint


class CheckpointChecks:
    def __init__(
        self,
        verifier: note.Verifier,
        witnesses: Sequence[cosignature.CosignatureVerifier],
        report: AuditReport,
        problem: ProblemSink,
    ) -> None:
        self.verifier = verifier
        self.witnesses = list(witnesses)
        self.report = report
        self.problem = problem

    def check(
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
                error = signature_line_error(line)
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
            error = signature_line_error(line)
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


def signature_line_error(line: str) -> str | None:
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
