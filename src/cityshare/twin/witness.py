"""The twin as a witness: its cosigning key, and the cosignature of each trusted checkpoint
(C2SP tlog-cosignature) given back to the primary, which serves it beside its own signature."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from cityshare.tlog import note
from cityshare.tlog.cosignature import Cosigner
from cityshare.twin.primary import error_message
from cityshare.twin.replica import TwinError

if TYPE_CHECKING:
    from cityshare.twin.sync import SyncReport

WITNESS_KEY_FILE = "witness.skey"
DEFAULT_WITNESS_NAME = "witness.example/twin"


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


def cosign_and_post(
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
            f"{error_message(response)}); give it this twin's key as CITYSHARE_WITNESS_KEYS "
            f"({cosigner.vkey})"
        )
        return
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        accepted = response.json()["accepted"]
        report.accepted = [str(name) for name in accepted]
    if cosigner.name not in report.accepted:
        report.cosignature_warning = "the primary answered but did not list this twin as accepted"
