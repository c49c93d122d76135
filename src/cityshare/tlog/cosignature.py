"""Witness cosignatures of checkpoints (C2SP tlog-cosignature v1, Ed25519).

A witness (here: the digital twin) cosigns a checkpoint after it has checked that the log only
grew since the last checkpoint it cosigned. The cosignature is an ordinary signed-note
signature line, so it travels inside the checkpoint note next to the log's own signature::

    — <witness name> base64(key ID (4) || timestamp (u64, big-endian) || Ed25519 signature (64))

What is signed is not the note text alone but a domain-separated message::

    cosignature/v1
    time <unix seconds, no leading zeros>
    <the whole checkpoint body, with its final newline>

Keys use signature type 0x04 (not the 0x01 of plain note keys), in the key ID and in the
vkey/skey encodings, so a witness key can never be mistaken for the log's key or vice versa,
and a plain note signature made with a witness key does not pass as a cosignature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cityshare.tlog import note

#: The signature type byte of Ed25519 cosignatures (C2SP tlog-cosignature).
ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
#: C2SP: the timestamp "MUST NOT exceed 2^63 - 1".
MAX_TIMESTAMP = 2**63 - 1
_BLOB = struct.Struct(">4sQ64s")  # key ID, timestamp, Ed25519 signature


class CosignatureError(note.NoteError):
    """A cosigner key or cosignature line that is malformed or does not verify."""


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || "\\n" || 0x04 || public key)[:4]."""
    return hashlib.sha256(
        name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()[:4]


def message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes a cosigner signs: header line, time line, then the checkpoint body.

    The body must be a well-formed checkpoint (origin, size, root, extension lines), so a
    witness key cannot be used to cosign arbitrary text that merely looks like a note.
    """
    note.Checkpoint.parse(checkpoint_text)  # raises NoteError on anything else
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"a cosignature time is between 0 and 2^63-1, not {timestamp}")
    return f"{HEADER}time {timestamp}\n{checkpoint_text}".encode()


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name) and name.isprintable()


def _split_line(line: str) -> tuple[str, bytes]:
    """(name, decoded blob) of a signature line `— <name> <base64>`."""
    if not line.startswith(note.SIGNATURE_PREFIX):
        raise CosignatureError("a signature line starts with an em dash and a space")
    name, _, b64 = line[len(note.SIGNATURE_PREFIX) :].partition(" ")
    try:
        blob = note.b64decode_canonical(b64)
    except binascii.Error as exc:
        raise CosignatureError("a cosignature is not base64") from exc
    if not _valid_name(name):
        raise CosignatureError("a signature line is '— <name> <base64>'")
    return name, blob


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's public key, as the log (or any client) that trusts the witness holds it."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey = field(repr=False)

    @classmethod
    def parse(cls, vkey: str) -> CosignatureVerifier:
        parts = vkey.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise CosignatureError("a witness key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, b64 = parts
        try:
            wanted = bytes.fromhex(hex_id)
            raw = note.b64decode_canonical(b64)
        except (ValueError, binascii.Error) as exc:
            raise CosignatureError("the witness key is not hex and base64") from exc
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise CosignatureError(
                "only Ed25519 cosignature keys (type 0x04, 32 bytes) are supported"
                + (" (this is a plain signed-note key, type 0x01)" if raw[:1] == b"\x01" else "")
            )
        if key_id(name, raw[1:]) != wanted:
            raise CosignatureError("the witness key's id does not match its name and key")
        return cls(name, wanted, Ed25519PublicKey.from_public_bytes(raw[1:]))

    @property
    def vkey(self) -> str:
        raw = bytes([ALG_COSIGNATURE_V1]) + self.public_key.public_bytes_raw()
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def matches(self, line: str) -> bool:
        """Does this signature line claim to be from this key (name and key ID)?

        Malformed lines match nothing: a client skips lines of keys it does not know.
        """
        try:
            name, blob = _split_line(line)
        except CosignatureError:
            return False
        return name == self.name and blob[:4] == self.key_id

    def verify(self, checkpoint_text: str, line: str) -> int:
        """Check `line` cosigns the checkpoint body `checkpoint_text`; return its timestamp.

        Raises :class:`CosignatureError` (a :class:`note.NoteError`) on anything wrong.
        """
        name, blob = _split_line(line)
        if name != self.name:
            raise CosignatureError(f"the line is signed by {name!r}, not by {self.name!r}")
        if len(blob) != _BLOB.size:
            raise CosignatureError(
                f"an Ed25519 cosignature is {_BLOB.size} bytes, this one is {len(blob)}"
            )
        kid, timestamp, signature = _BLOB.unpack(blob)
        if kid != self.key_id:
            raise CosignatureError(f"the cosignature's key ID is not that of {self.name}'s key")
        if timestamp > MAX_TIMESTAMP:
            raise CosignatureError("the cosignature's time is beyond 2^63-1")
        try:
            self.public_key.verify(signature, message(checkpoint_text, timestamp))
        except InvalidSignature as exc:
            raise CosignatureError(f"the cosignature of {self.name} does not verify") from exc
        return int(timestamp)


@dataclass(frozen=True)
class Cosigner:
    """A witness's private key: it cosigns checkpoints it has checked."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        if not _valid_name(name):
            raise CosignatureError("a witness name has no spaces and no '+'")
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, skey: str) -> Cosigner:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _valid_name(parts[2]):
            raise CosignatureError(
                "a witness private key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
            )
        _, _, name, hex_id, b64 = parts
        try:
            raw = note.b64decode_canonical(b64)
        except binascii.Error as exc:
            raise CosignatureError("the witness private key is not base64") from exc
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise CosignatureError("only Ed25519 cosignature keys (type 0x04) are supported")
        cosigner = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if cosigner.verifier.key_id.hex() != hex_id.lower():
            raise CosignatureError("the witness private key's id does not match its name and key")
        return cosigner

    @property
    def skey(self) -> str:
        seed = self.private_key.private_bytes_raw()
        raw = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{raw}"

    @property
    def verifier(self) -> CosignatureVerifier:
        public = self.private_key.public_key()
        return CosignatureVerifier(self.name, key_id(self.name, public.public_bytes_raw()), public)

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """The signature line (no trailing newline) cosigning `checkpoint_text` at `timestamp`."""
        signature = self.private_key.sign(message(checkpoint_text, timestamp))
        blob = _BLOB.pack(self.verifier.key_id, timestamp, signature)
        return f"{note.SIGNATURE_PREFIX}{self.name} {base64.b64encode(blob).decode()}"


def parse_verifiers(text: str) -> list[CosignatureVerifier]:
    """Witness keys from a whitespace-separated list (as `CITYSHARE_WITNESS_KEYS` holds them).

    The error names the offending key, since a settings value may hold several.
    """
    verifiers: list[CosignatureVerifier] = []
    for item in text.split():
        try:
            verifiers.append(CosignatureVerifier.parse(item))
        except CosignatureError as exc:
            raise CosignatureError(f"{item!r}: {exc}") from exc
    return verifiers


def find(verifiers: Sequence[CosignatureVerifier], line: str) -> CosignatureVerifier | None:
    """The verifier among `verifiers` that `line` claims to be from, if any."""
    return next((v for v in verifiers if v.matches(line)), None)
