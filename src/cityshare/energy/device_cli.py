"""`cityshare device`: act as a device from the command line (a meter's key, signed readings).

For trying the platform out and for scripts that simulate meters: a real meter keeps its
private key in its secure element and signs with its own firmware. The key file holds the
32-byte Ed25519 seed as base64url (mode 0600); the public key printed is what
`POST /api/v1/me/devices` takes.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from pathlib import Path

import jwt
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.cli.common import err_console
from cityshare.identity.devices import DEVICE_ID_RE, encode_public_key
from cityshare.ledger.model import MAX_INT

app = typer.Typer(
    help="Be a device: make an Ed25519 key and sign meter readings (for trying things out and "
    "simulating meters; real devices sign in their own firmware).",
    no_args_is_help=True,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        text = path.read_text().strip()
        seed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (OSError, ValueError, binascii.Error) as exc:
        err_console.print(f"[red]error:[/] {path} is not a device key made by `keygen`: {exc}")
        raise typer.Exit(2) from exc


def _public(key: Ed25519PrivateKey) -> str:
    return encode_public_key(key.public_key().public_bytes_raw())


@app.command()
def keygen(
    out: Path = typer.Option(..., help="Where to write the private key (refuses to overwrite)."),
) -> None:
    """Make a device key; prints its public key (base64url) for registering the device."""
    key = Ed25519PrivateKey.generate()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        err_console.print(f"[red]error:[/] cannot create {out}: {exc.strerror}")
        raise typer.Exit(2) from exc
    with os.fdopen(fd, "w") as f:
        f.write(_b64(key.private_bytes_raw()) + "\n")
    typer.echo(_public(key))


@app.command("public-key")
def public_key(key: Path = typer.Option(..., help="A key file made by `keygen`.")) -> None:
    """Print the public key of a key file."""
    typer.echo(_public(_load(key)))


def _claim(value: int, name: str) -> int:
    if not 0 <= value <= MAX_INT:
        raise typer.BadParameter(f"{name} is an integer from 0 to 2^63-1")
    return value


@app.command("sign-reading")
def sign_reading(
    key: Path = typer.Option(..., help="The device's key file (from `keygen`)."),
    device: str = typer.Option(..., help="The device id the platform gave (dev-…)."),
    seq: int = typer.Option(..., help="The device's reading counter: one more per reading."),
    import_wh: int = typer.Option(..., "--import-wh", help="Cumulative import register, Wh."),
    export_wh: int = typer.Option(..., "--export-wh", help="Cumulative export register, Wh."),
    ts: int | None = typer.Option(None, help="When read, unix seconds (default: now)."),
) -> None:
    """Print a signed reading (a JWS) to post to /api/v1/readings or publish over MQTT."""
    if not DEVICE_ID_RE.match(device):
        raise typer.BadParameter(
            "a device id looks like dev-abcdefghijklmnop", param_hint="--device"
        )
    claims = {
        "seq": _claim(seq, "seq"),
        "ts": _claim(int(time.time()) if ts is None else ts, "ts"),
        "import_wh": _claim(import_wh, "import_wh"),
        "export_wh": _claim(export_wh, "export_wh"),
    }
    typer.echo(jwt.encode(claims, _load(key), algorithm="EdDSA", headers={"kid": device}))
