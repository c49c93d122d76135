"""The issuer's own files: its signing key, its pseudonym secret and its SQLite database.

They live in one directory (`--dir`, else $CITYSHARE_ISSUER_DIR, else ./issuer) that belongs to
the identity authority, not to the platform, which never reads it:

    issuer.skey       the signed-note private key that signs assertions (mode 0600)
    pseudonym.secret  32 random bytes keying every derivation from a national id (mode 0600)
    issuer.db         persons and their VIDs (SQLite, WAL, durable commits)

Even the issuer keeps no raw national id: a person row is keyed by an HMAC of the id under the
secret (with its own label, so it never equals a sector pseudonym). Whoever holds the secret
can still test a candidate id, which is why the directory is owner-only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cityshare.tlog import note

DIR_ENV = "CITYSHARE_ISSUER_DIR"
DEFAULT_DIR = Path("issuer")
KEY_FILE = "issuer.skey"
SECRET_FILE = "pseudonym.secret"
DB_FILE = "issuer.db"
SECRET_BYTES = 32
SCHEMA_VERSION = 1
_PERSON_LABEL = b"cityshare-issuer-person/v1\x00"

_SCHEMA = """
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    national_id_mac BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE vids (
    vid TEXT PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons (id),
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CHECK ((state = 'active') = (revoked_at IS NULL))
);
-- One active VID per person, enforced by the database and not only by the code.
CREATE UNIQUE INDEX vids_one_active ON vids (person_id) WHERE state = 'active';
"""

VidState = Literal["active", "revoked"]


class IssuerError(ValueError):
    """A request the issuer refuses, or an issuer directory it cannot use; says why.

    Messages never contain a national id.
    """


@dataclass(frozen=True, slots=True)
class VidRecord:
    vid: str
    state: VidState
    created_at: int
    revoked_at: int | None


def resolve_directory(directory: Path | None) -> Path:
    """The issuer directory: the one given, else $CITYSHARE_ISSUER_DIR, else ./issuer."""
    if directory is not None:
        return directory
    from_env = os.environ.get(DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_DIR


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` owner-only, refusing to replace a file already there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE (see `write`).
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _connect_existing(path: Path) -> sqlite3.Connection:
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        raise IssuerError(f"{path} is not a usable issuer database: {exc}") from exc
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IssuerError(f"{path} is not a usable issuer database: {exc}") from exc
    if version != SCHEMA_VERSION:
        conn.close()
        raise IssuerError(f"{path} has schema version {version}, not {SCHEMA_VERSION}")
    return conn


class IssuerStore:
    """The issuer directory, opened: its key, its secret and a connection to its database."""

    def __init__(
        self, directory: Path, signer: note.Signer, secret: bytes, conn: sqlite3.Connection
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.secret = secret
        self._conn = conn

    @classmethod
    def create(cls, directory: Path, name: str) -> IssuerStore:
        """Make a new issuer in `directory` (created if missing); never overwrite one."""
        try:
            signer = note.Signer.generate(name)
        except note.NoteError as exc:
            raise IssuerError(f"unusable issuer name: {exc}") from exc
        existing = [f for f in (KEY_FILE, SECRET_FILE, DB_FILE) if (directory / f).exists()]
        if existing:
            raise IssuerError(
                f"{directory} already holds an issuer ({', '.join(existing)}); refusing to "
                "overwrite it"
            )
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise IssuerError(f"cannot create the directory {directory}: {exc.strerror}") from exc
        try:
            _write_private(directory / SECRET_FILE, secret)
            _write_private(directory / KEY_FILE, (signer.skey + "\n").encode())
            _write_private(directory / DB_FILE, b"")  # SQLite keeps the mode of a file it finds
        except FileExistsError as exc:  # another `init` got there between the check and here
            raise IssuerError(
                f"{directory} already holds an issuer; refusing to overwrite it"
            ) from exc
        except OSError as exc:
            raise IssuerError(f"cannot create the issuer in {directory}: {exc.strerror}") from exc
        conn = _connect(directory / DB_FILE)
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        return cls(directory, signer, secret, conn)

    @classmethod
    def open(cls, directory: Path) -> IssuerStore:
        """Open the issuer made in `directory` by `create`."""
        if not (directory / KEY_FILE).is_file():
            raise IssuerError(
                f"no issuer in {directory} (create one with `cityshare issuer init --dir "
                f"{directory}`, or set {DIR_ENV})"
            )
        try:
            signer = note.Signer.parse((directory / KEY_FILE).read_text().strip())
            secret = (directory / SECRET_FILE).read_bytes()
        except note.NoteError as exc:
            raise IssuerError(f"{directory / KEY_FILE} is not an issuer key: {exc}") from exc
        except OSError as exc:
            raise IssuerError(f"the issuer in {directory} is incomplete: {exc.strerror}") from exc
        if len(secret) != SECRET_BYTES:
            raise IssuerError(f"{directory / SECRET_FILE} is not {SECRET_BYTES} bytes")
        if not (directory / DB_FILE).is_file():
            raise IssuerError(f"the issuer in {directory} has no {DB_FILE}")
        conn = _connect_existing(directory / DB_FILE)
        return cls(directory, signer, secret, conn)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction, taken up front so concurrent enrolments queue, not deadlock."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def person_key(self, national_id: str) -> bytes:
        """What the database knows a person by: a keyed hash of the national id."""
        return hmac.new(self.secret, _PERSON_LABEL + national_id.encode(), hashlib.sha256).digest()

    def find_person(self, key: bytes) -> int | None:
        row = self._conn.execute("SELECT id FROM persons WHERE national_id_mac = ?", (key,))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def add_person(self, key: bytes, now: int) -> int:
        row = self._conn.execute(
            "INSERT INTO persons (national_id_mac, created_at) VALUES (?, ?) RETURNING id",
            (key, now),
        ).fetchone()
        return int(row[0])

    def active_vid(self, person_id: int) -> str | None:
        row = self._conn.execute(
            "SELECT vid FROM vids WHERE person_id = ? AND state = 'active'", (person_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def vid_taken(self, vid: str) -> bool:
        """Whether `vid` was ever issued: a VID, even revoked, is never handed out again."""
        return self._conn.execute("SELECT 1 FROM vids WHERE vid = ?", (vid,)).fetchone() is not None

    def add_vid(self, person_id: int, vid: str, now: int) -> None:
        self._conn.execute(
            "INSERT INTO vids (vid, person_id, state, created_at) VALUES (?, ?, 'active', ?)",
            (vid, person_id, now),
        )

    def revoke_active_vid(self, person_id: int, now: int) -> str | None:
        """Revoke the person's active VID; return it, or None if they had none."""
        vid = self.active_vid(person_id)
        if vid is not None:
            self._conn.execute(
                "UPDATE vids SET state = 'revoked', revoked_at = ? WHERE vid = ?", (now, vid)
            )
        return vid

    def vid_record(self, vid: str) -> VidRecord | None:
        row = self._conn.execute(
            "SELECT vid, state, created_at, revoked_at FROM vids WHERE vid = ?", (vid,)
        ).fetchone()
        if row is None:
            return None
        return VidRecord(str(row[0]), row[1], int(row[2]), row[3])
