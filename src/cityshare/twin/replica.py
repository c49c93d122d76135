"""The digital twin: a replica of the audit log that trusts only the log's key, and a witness.

`sync` follows the primary the way a Certificate Transparency monitor follows a log:

1. pin the log's verifier key (given, or trusted on first use);
2. fetch the newest checkpoint and check the log's signature on it;
3. refuse a checkpoint smaller than the one already trusted (a rollback), and check the
   consistency proof from the trusted checkpoint to the new one: a history rewritten after the
   twin trusted it cannot be proven consistent, however well the primary recomputed its own
   hashes and re-signed its own checkpoints;
4. download the new entries, append them to the replica and recompute the root itself: it must
   equal the checkpoint's root (so entries changed in transit, or served differently from what
   the tree commits to, are caught even when the proof was right);
5. only then trust the new checkpoint — entries and checkpoint commit in one SQLite
   transaction, so a sync killed half way leaves the replica as it was and can simply rerun;
6. cosign the checkpoint (C2SP tlog-cosignature) and give the cosignature back to the primary,
   which serves it beside its own signature: clients of the log can then require that a witness
   saw the same history they are shown.

`verify` rebuilds the whole tree from the stored entries, checks it against the trusted
checkpoint, and replays the ledger from the entries alone (`twin/replay.py`).

A checkpoint refused because it contradicts the trusted one (a smaller tree, the same size with
another root, or a bigger tree not proven consistent with it) is evidence that the log showed
two histories. The twin keeps it: both signed notes, as received, in `evidence/` (one JSON file
per contradicting pair, see :func:`keep_evidence`), and `verify` re-checks and reports every
file there, and fails while any is held.

The replica is one SQLite file (`replica.db`), authoritative for what is trusted; the trusted
checkpoint is also written to `checkpoint` after each commit, for people and other tools.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cityshare.kernel.files import private_database
from cityshare.tlog import merkle, note
from cityshare.tlog.cosignature import Cosigner
from cityshare.twin.replay import Replayer, ReplayResult

REPLICA_FILE = "replica.db"
CHECKPOINT_FILE = "checkpoint"
WITNESS_KEY_FILE = "witness.skey"
EVIDENCE_DIR = "evidence"
DEFAULT_WITNESS_NAME = "witness.example/twin"
#: The primary serves at most this many entries per request.
PAGE_SIZE = 1000
#: Largest checkpoint or proof answer accepted (a checkpoint with 100 signatures is ~12 KiB).
MAX_SMALL_ANSWER = 64 * 1024

ProgressCallback = Callable[[int, int], None]
WarnCallback = Callable[[str], None]


class TwinError(Exception):
    """A sync or verify that cannot go on: the message says why, for the person running it."""


class TamperError(TwinError):
    """The log is caught misbehaving: a bad signature, a rollback, a rewritten history, or
    entries that do not hash to the signed root. `evidence` is the file that keeps the two
    contradicting signed checkpoints, when there are two."""

    def __init__(self, message: str, evidence: Path | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


# -- the witness key -------------------------------------------------------------------------


def init(directory: Path, name: str = DEFAULT_WITNESS_NAME) -> tuple[Cosigner, bool]:
    """Make the twin's cosigning key in `directory` (mode 0600); return it and whether it is new.

    An existing key is kept (and returned): replacing it would orphan every cosignature the
    primary holds from it and need the primary's settings changed.
    """
    path = directory / WITNESS_KEY_FILE
    if path.exists():
        return load_cosigner(directory), False
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cosigner = Cosigner.generate(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_cosigner(directory), False
    with os.fdopen(fd, "w") as f:
        f.write(cosigner.skey + "\n")
        f.flush()
        os.fsync(f.fileno())
    return cosigner, True


def load_cosigner(directory: Path) -> Cosigner:
    path = directory / WITNESS_KEY_FILE
    try:
        return Cosigner.parse(path.read_text())
    except FileNotFoundError as exc:
        raise TwinError(f"no witness key at {path}: run `cityshare twin init` first") from exc
    except note.NoteError as exc:
        raise TwinError(f"{path} does not hold a witness private key: {exc}") from exc


# -- the replica -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trusted:
    size: int
    root: bytes
    #: The checkpoint note as the twin received and checked it.
    note: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS frontier (
    id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, nodes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, trusted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO frontier (id, size, nodes) VALUES (1, 0, x'');
"""


class Replica:
    """The twin's SQLite file: entries, the tree's right edge, trusted checkpoints, the log key.

    Only the right edge of the tree (:class:`merkle.Frontier`) is kept besides the entries: it
    is enough to append and to compute the root, and `verify` rebuilds the rest from the
    entries rather than trusting stored hashes.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise TwinError(f"no replica at {path}: run `cityshare twin sync` first")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_database(path)  # the entries are the platform's records: owner-only, like the key
        # Autocommit mode: transactions are begun and committed explicitly below.
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        if not create:
            return  # a reader (verify) takes no write lock: a running sync does not block it
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the twin's write lock); rolled back on error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def frontier(self) -> merkle.Frontier:
        size, nodes = self.conn.execute("SELECT size, nodes FROM frontier WHERE id = 1").fetchone()
        blob = bytes(nodes)
        hashes = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
        try:
            return merkle.Frontier(int(size), hashes)
        except ValueError as exc:
            raise TwinError(f"the replica's tree state is damaged: {exc}") from exc

    def leaf_count(self) -> int:
        row = self.conn.execute("SELECT count(*), coalesce(max(idx) + 1, 0) FROM leaves").fetchone()
        return int(row[0]) if row[0] == row[1] else -1  # -1: a gap, the replica is damaged

    def append(self, frontier: merkle.Frontier, leaves: list[bytes]) -> None:
        """Store `leaves` after the current ones and advance `frontier` (inside a transaction)."""
        start = frontier.size
        frontier.append([merkle.leaf_hash(data) for data in leaves])
        self.conn.executemany(
            "INSERT INTO leaves (idx, data) VALUES (?, ?)",
            [(start + i, data) for i, data in enumerate(leaves)],
        )
        self.conn.execute(
            "UPDATE frontier SET size = ?, nodes = ? WHERE id = 1",
            (frontier.size, b"".join(frontier.nodes)),
        )

    def trusted(self) -> Trusted | None:
        row = self.conn.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else Trusted(int(row[0]), bytes(row[1]), str(row[2]))

    def trust(self, checkpoint: Trusted) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO checkpoints (size, root, note, trusted_at) VALUES (?, ?, ?, ?)",
            (checkpoint.size, checkpoint.root, checkpoint.note, time.time_ns()),
        )

    def iter_leaves(self, chunk: int = 10_000) -> Iterator[tuple[int, bytes]]:
        """Every stored entry in index order, read a chunk at a time."""
        start = 0
        while True:
            rows = self.conn.execute(
                "SELECT idx, data FROM leaves WHERE idx >= ? ORDER BY idx LIMIT ?", (start, chunk)
            ).fetchall()
            if not rows:
                return
            for idx, data in rows:
                yield int(idx), bytes(data)
            start = int(rows[-1][0]) + 1


def _write_checkpoint_file(directory: Path, text: str) -> None:
    """Replace DIR/checkpoint atomically (write, fsync, rename)."""
    path = directory / CHECKPOINT_FILE
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- talking to the primary ------------------------------------------------------------------


def _error_message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    return response.text[:200]


def _get(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.get(path, **kwargs)
    except httpx.HTTPError as exc:
        raise TwinError(f"cannot reach the primary at {client.base_url}: {exc}") from exc
    if response.status_code != 200:
        raise TwinError(f"GET {path} answered {response.status_code} ({_error_message(response)})")
    return response


def _text(response: httpx.Response, what: str) -> str:
    if len(response.content) > MAX_SMALL_ANSWER:
        raise TwinError(f"the primary's {what} is implausibly large ({len(response.content)} B)")
    try:
        return response.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TwinError(f"the primary's {what} is not UTF-8 text") from exc


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TwinError(f"the primary's {what} is not JSON: {response.text[:80]!r}") from exc


def _hashes(body: Any, what: str) -> list[bytes]:
    items = body.get("proof") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(h, str) for h in items):
        raise TwinError(f"the primary's {what} is not {{'proof': [base64, ...]}}")
    try:
        hashes = [base64.b64decode(h, validate=True) for h in items]
    except binascii.Error as exc:
        raise TwinError(f"the primary's {what} holds something that is not base64") from exc
    if any(len(h) != merkle.HASH_SIZE for h in hashes) or len(hashes) > 128:
        raise TwinError(f"the primary's {what} is not a list of 32-byte hashes")
    return hashes


def _entries(client: httpx.Client, start: int, end: int, token: str | None) -> list[bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = client.get(
            "/api/v1/log/entries", params={"start": start, "end": end}, headers=headers
        )
    except httpx.HTTPError as exc:
        raise TwinError(f"cannot reach the primary at {client.base_url}: {exc}") from exc
    if response.status_code in (401, 403):
        raise TwinError(
            f"the primary refused to serve entries ({response.status_code}, "
            f"{_error_message(response)}): pass --token or set CITYSHARE_OPERATOR_TOKEN"
        )
    if response.status_code != 200:
        raise TwinError(
            f"GET entries [{start}, {end}) answered {response.status_code} "
            f"({_error_message(response)})"
        )
    body = _json(response, f"entries [{start}, {end})")
    items = body.get("entries") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("start") != start
        or not isinstance(items, list)
        or not 0 < len(items) <= end - start
        or not all(isinstance(item, str) for item in items)
    ):
        raise TwinError(
            f"the primary's answer for entries [{start}, {end}) is not "
            f'{{"start": {start}, "entries": [1 to {end - start} base64 strings]}}'
        )
    try:
        return [base64.b64decode(item, validate=True) for item in items]
    except binascii.Error as exc:
        raise TwinError(f"an entry in [{start}, {end}) is not base64") from exc


# -- sync ------------------------------------------------------------------------------------


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
    vkey = _text(_get(client, "/api/v1/log/key"), "log key").strip()
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
        _write_checkpoint_file(directory, trusted.note)  # repair a copy a crash left stale

    signed = _text(_get(client, "/api/v1/log/checkpoint"), "checkpoint")
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
            raise _equivocation(
                directory,
                replica,
                "rollback",
                f"the log shrank: its checkpoint is of size {size}, but this twin already "
                f"trusts a checkpoint of size {trusted.size} (a rollback or a forked log)",
                trusted,
                offered,
            )
        if size == trusted.size and root != trusted.root:
            raise _equivocation(
                directory,
                replica,
                "fork",
                f"the log's checkpoint of size {size} has root {_b64(root)}, but the checkpoint "
                f"of the same size this twin trusts has root {_b64(trusted.root)}",
                trusted,
                offered,
            )
        if size > trusted.size:
            proof_answer = _get(
                client,
                "/api/v1/log/proof/consistency",
                params={"first": trusted.size, "second": size},
            )
            proof = _hashes(
                _json(proof_answer, "consistency proof"),
                f"consistency proof {trusted.size} → {size}",
            )
            try:
                merkle.verify_consistency(trusted.size, size, trusted.root, root, proof)
            except merkle.ProofError as exc:
                raise _equivocation(
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
                page = _entries(client, position, end, token)
                replica.append(frontier, page)
                position += len(page)
                if on_progress is not None:
                    on_progress(position - old_size, size - old_size)
            computed = frontier.root()
            if computed != root:
                raise TamperError(
                    f"the entries the primary served do not hash to the root of its checkpoint "
                    f"of size {size}: the replica computes {_b64(computed)}, the checkpoint "
                    f"says {_b64(root)}"
                )
            replica.set_meta("log_key", verifier.vkey)
            replica.set_meta("origin", checkpoint.origin)
            replica.trust(Trusted(size, root, signed))
        report.fetched = size - old_size
        _write_checkpoint_file(directory, signed)

    _cosign_and_post(client, cosigner, signed, opened.text, int(now()), report)
    return report


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- evidence of equivocation ----------------------------------------------------------------

#: What each kind of evidence shows (said by `verify`).
EVIDENCE_KINDS = {
    "rollback": "the log served a checkpoint of a smaller tree than one it signed before",
    "fork": "the log signed two different roots for the same tree size",
    "inconsistent": "the log signed a bigger tree whose consistency proof from the trusted "
    "checkpoint fails: the history it had published was rewritten",
}


def _equivocation(
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
        "proof": None if proof is None else [_b64(h) for h in proof],
        "replica_root_at_offered_size": None if replica_root is None else _b64(replica_root),
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
            return None if value is None else {"size": value[0], "root": _b64(value[1])}

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
            return Evidence(
                path.name, kind, detected_at, None, None, f"the {which} note: {exc}"
            )
        checkpoints.append((body.size, body.root_hash))
    trusted, offered = checkpoints
    problem = detail = None
    if kind == "rollback" and not offered[0] < trusted[0]:
        problem = "the offered checkpoint is not smaller than the trusted one"
    elif kind == "rollback" and isinstance(replica_root, str):
        same = replica_root == _b64(offered[1])
        detail = (
            "the replica's entries give the same root at that size: an old checkpoint served "
            "again"
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




def _cosign_and_post(
    client: httpx.Client, cosigner: Cosigner, signed: str, body: str, now: int, report: SyncReport
) -> None:
    """Cosign the trusted checkpoint and give it to the primary; failures are only warnings
    (the replica is verified either way; the primary may simply not know this witness)."""
    line = cosigner.cosign(body, now)
    signature_lines = signed[len(body) + 1 :].splitlines()
    # Drop our own older cosignature, which the primary serves back with the checkpoint.
    kept = [
        s for s in signature_lines if not s.startswith(f"{note.SIGNATURE_PREFIX}{cosigner.name} ")
    ]
    cosigned = body + "\n" + "".join(s + "\n" for s in kept) + line + "\n"
    report.cosigned = True
    try:
        response = client.post(
            "/api/v1/log/cosignatures",
            content=cosigned.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    except httpx.HTTPError as exc:
        report.cosignature_warning = f"could not post the cosignature: {exc}"
        return
    if response.status_code != 200:
        report.cosignature_warning = (
            f"the primary did not keep this twin's cosignature ({response.status_code}, "
            f"{_error_message(response)}); give it this twin's key as CITYSHARE_WITNESS_KEYS "
            f"({cosigner.vkey})"
        )
        return
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        accepted = response.json()["accepted"]
        report.accepted = [str(name) for name in accepted]
    if cosigner.name not in report.accepted:
        report.cosignature_warning = "the primary answered but did not list this twin as accepted"


# -- verify ----------------------------------------------------------------------------------


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
            f"the stored entries hash to {_b64(computed)}, not to the root {_b64(trusted.root)} "
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
        "root": _b64(report.root) if report.root is not None else None,
        "computed_root": _b64(report.computed_root),
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
