"""The key store: signing keys come from settings, or from files the platform made itself.

A key given in settings always wins (that is how a deployment with several servers shares
one key). Otherwise the key is read from, or on first use created in, the key directory with
owner-only permissions, so a developer's `cityshare serve` keeps the same log identity across
restarts without anyone pasting secrets around.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from cityshare.tlog import note


class KeyStoreError(ValueError):
    """A key in settings or in the key directory that cannot be used."""


def signer_from(setting: SecretStr | None, path: Path, name: str) -> note.Signer:
    """The signer given in `setting`, else the one stored at `path` (made there if missing)."""
    if setting is not None:
        try:
            return note.Signer.parse(setting.get_secret_value().strip())
        except note.NoteError as exc:
            raise KeyStoreError(f"the configured key is unusable: {exc}") from exc
    return load_or_create_signer(path, name)


def load_or_create_signer(path: Path, name: str) -> note.Signer:
    try:
        return _read_signer(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = note.Signer.generate(name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_signer(path)  # another process made it first: use theirs
    with os.fdopen(fd, "w") as f:
        f.write(signer.skey + "\n")
        f.flush()
        os.fsync(f.fileno())
    return signer


def secret_from(setting: SecretStr | None, path: Path) -> bytes:
    """A symmetric secret from settings, else from `path` (32 random bytes made on first use)."""
    if setting is not None:
        value = setting.get_secret_value().encode()
        if len(value) < 32:
            raise KeyStoreError("a configured secret is at least 32 characters")
        return value
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def _read_secret(path: Path) -> bytes:
    value = path.read_bytes()
    if len(value) < 32:
        raise KeyStoreError(f"{path} holds fewer than 32 bytes")
    return value


def _read_signer(path: Path) -> note.Signer:
    text = path.read_text().strip()
    try:
        return note.Signer.parse(text)
    except note.NoteError as exc:
        raise KeyStoreError(f"{path} does not hold a signed-note private key: {exc}") from exc


def parse_verifiers(text: str) -> list[note.Verifier]:
    """Verifier keys from a whitespace-separated list (as settings hold them)."""
    try:
        return [note.Verifier.parse(item) for item in text.split()]
    except note.NoteError as exc:
        raise KeyStoreError(f"a configured verifier key is unusable: {exc}") from exc
