"""`twin sync`: bring the replica up to the primary's newest checkpoint (the steps are in the
package docstring, cityshare/twin/__init__.py), cosign it and post the cosignature."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cityshare.tlog import merkle, note
from cityshare.tlog.cosignature import Cosigner
from cityshare.twin.evidence import equivocation
from cityshare.twin.primary import PAGE_SIZE, fetch_entries, get, json_answer, proof_hashes, text
from cityshare.twin.replica import (
    REPLICA_FILE,
    ProgressCallback,
    Replica,
    TamperError,
    Trusted,
    TwinError,
    b64,
    write_checkpoint_file,
)
from cityshare.twin.witness import cosign_and_post, load_cosigner

WarnCallback = Callable[[str], None]


@dataclass
class SyncReport:
    origin: str
    log_key: str
    previous_size: int
    size: int
    root: bytes
    fetched: int
    #: The log key was pinned by this sync without being given (trust on first use).
    pinned_on_first_use: bool = False
    cosigned: bool = False
    #: Witnesses the primary said it kept a cosignature of (ours, if it is configured there).
    accepted: list[str] = field(default_factory=list)
    #: Why the cosignature was not kept, when it was not (never a failure of the sync).
    cosignature_warning: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "origin": self.origin,
            "log_key": self.log_key,
            "previous_size": self.previous_size,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "fetched": self.fetched,
            "pinned_on_first_use": self.pinned_on_first_use,
            "cosigned": self.cosigned,
            "accepted": self.accepted,
            "cosignature_warning": self.cosignature_warning,
        }


def _choose_log_key(
    client: httpx.Client, replica: Replica, given: str | None, warn: WarnCallback
) -> tuple[note.Verifier, bool]:
    """The pinned log key; a different --log-key is refused; else --log-key, else TOFU."""
    pinned = replica.meta("log_key")
    if pinned is not None:
        if given is not None and given.strip() != pinned:
            raise TwinError(
                f"this twin already trusts the log key {pinned}; refusing --log-key "
                f"{given.strip()} (a twin follows one log: use another --dir for another)"
            )
        return note.Verifier.parse(pinned), False
    if given is not None:
        try:
            return note.Verifier.parse(given.strip()), False
        except note.NoteError as exc:
            raise TwinError(f"--log-key is not a signed-note verifier key: {exc}") from exc
    vkey = text(get(client, "/api/v1/log/key"), "log key").strip()
    try:
        verifier = note.Verifier.parse(vkey)
    except note.NoteError as exc:
        raise TwinError(f"the primary's log key is not a verifier key: {exc}") from exc
    warn(
        f"trusting the log key {vkey} on first use, as the primary served it; check it "
        "out of band (or pass --log-key) — every later sync is checked against it"
    )
    return verifier, True


def sync(
    client: httpx.Client,
    directory: Path,
    *,
    log_key: str | None = None,
    token: str | None = None,
    warn: WarnCallback = lambda _: None,
    on_progress: ProgressCallback | None = None,
    now: Callable[[], float] = time.time,
) -> SyncReport:
    """Bring the replica in `directory` up to the primary's newest checkpoint (see the module
    docstring), cosign it and post the cosignature. `client` has the primary as base URL.

    Raises :class:`TamperError` when the log misbehaved and :class:`TwinError` when the
    sync cannot proceed; either way the trusted checkpoint is unchanged.
    """
    cosigner = load_cosigner(directory)
    replica = Replica(directory / REPLICA_FILE)
    try:
        return _sync(client, directory, replica, cosigner, log_key, token, warn, on_progress, now)
    finally:
        replica.close()


def _sync(
    client: httpx.Client,
    directory: Path,
    replica: Replica,
    cosigner: Cosigner,
    log_key: str | None,
    token: str | None,
    warn: WarnCallback,
    on_progress: ProgressCallback | None,
    now: Callable[[], float],
) -> SyncReport:
    verifier, tofu = _choose_log_key(client, replica, log_key, warn)
    trusted = replica.trusted()
    if trusted is not None:
        write_checkpoint_file(directory, trusted.note)  # repair a copy a crash left stale

    signed = text(get(client, "/api/v1/log/checkpoint"), "checkpoint")
    try:
        opened = note.open_note(signed, verifier)
    except note.NoteError as exc:
        raise TamperError(
            f"the primary's checkpoint does not verify with the log key {verifier.vkey}: {exc}"
        ) from exc
    try:
        checkpoint = note.Checkpoint.parse(opened.text)
    except note.NoteError as exc:
        raise TwinError(f"the primary's signed note is not a checkpoint: {exc}") from exc
    if checkpoint.origin != verifier.name:
        raise TamperError(
            f"the checkpoint is for the log {checkpoint.origin!r}, not {verifier.name!r}"
        )
    size, root = checkpoint.size, checkpoint.root_hash
    old_size = trusted.size if trusted is not None else 0
    report = SyncReport(checkpoint.origin, verifier.vkey, old_size, size, root, 0, tofu)

    if trusted is not None:
        offered = Trusted(size, root, signed)
        if size < trusted.size:
            raise equivocation(
                directory,
                replica,
                "rollback",
                f"the log shrank: its checkpoint is of size {size}, but this twin already "
                f"trusts a checkpoint of size {trusted.size} (a rollback or a forked log)",
                trusted,
                offered,
            )
        if size == trusted.size and root != trusted.root:
            raise equivocation(
                directory,
                replica,
                "fork",
                f"the log's checkpoint of size {size} has root {b64(root)}, but the checkpoint "
                f"of the same size this twin trusts has root {b64(trusted.root)}",
                trusted,
                offered,
            )
        if size > trusted.size:
            proof_answer = get(
                client,
                "/api/v1/log/proof/consistency",
                params={"first": trusted.size, "second": size},
            )
            proof = proof_hashes(
                json_answer(proof_answer, "consistency proof"),
                f"consistency proof {trusted.size} → {size}",
            )
            try:
                merkle.verify_consistency(trusted.size, size, trusted.root, root, proof)
            except merkle.ProofError as exc:
                raise equivocation(
                    directory,
                    replica,
                    "inconsistent",
                    f"the log's new checkpoint of size {size} is inconsistent with the "
                    f"checkpoint of size {trusted.size} this twin trusts ({exc}): the history "
                    "it had already published was rewritten",
                    trusted,
                    offered,
                    proof,
                ) from exc

    if size == 0:
        # An empty log proves nothing yet; keep the key pinned so the next sync checks it.
        with replica.transaction():
            replica.set_meta("log_key", verifier.vkey)
        return report

    if size > old_size:
        with replica.transaction():
            current = replica.trusted()
            if (current.size if current is not None else 0) != old_size:
                # Checked under the write lock: another sync of this folder got there first.
                raise TwinError("another `twin sync` of this folder ran meanwhile: run it again")
            frontier = replica.frontier()
            if frontier.size != old_size:
                raise TwinError(
                    f"the replica holds {frontier.size} entries but trusts a checkpoint of size "
                    f"{old_size}: it is damaged (run `cityshare twin verify`)"
                )
            position = old_size
            if on_progress is not None:
                on_progress(0, size - old_size)
            while position < size:
                end = min(position + PAGE_SIZE, size)
                page = fetch_entries(client, position, end, token)
                replica.append(frontier, page)
                position += len(page)
                if on_progress is not None:
                    on_progress(position - old_size, size - old_size)
            computed = frontier.root()
            if computed != root:
                raise TamperError(
                    f"the entries the primary served do not hash to the root of its checkpoint "
                    f"of size {size}: the replica computes {b64(computed)}, the checkpoint "
                    f"says {b64(root)}"
                )
            replica.set_meta("log_key", verifier.vkey)
            replica.set_meta("origin", checkpoint.origin)
            replica.trust(Trusted(size, root, signed))
        report.fetched = size - old_size
        write_checkpoint_file(directory, signed)

    cosign_and_post(client, cosigner, signed, opened.text, int(now()), report)
    return report
