"""Signed notes (C2SP signed-note) and transparency-log checkpoints (C2SP tlog-checkpoint).

A note is UTF-8 text ending in a newline, then a blank line, then one line per signature:
``— <key name> <base64(4-byte key id || signature)>``. Ed25519 keys are written as
``<name>+<key id hex>+<base64(0x01 || public key)>`` (verifier) and
``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`` (signer), where the key id is the
first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key). This is the format of Go's
golang.org/x/mod/sumdb/note, so Go-ecosystem witnesses and verifiers accept our checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or does not verify."""


def b64decode_canonical(text: str) -> bytes:
    """Standard base64 with padding, refusing any spelling but the one canonical encoding:
    otherwise the unused low bits of the last character let someone change the stored text of
    a signature or root without changing what it decodes to (and still "verify")."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise binascii.Error("not the canonical base64 encoding")
    return raw


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name) and name.isprintable()


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey = field(repr=False)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, b64 = parts
        try:
            wanted = bytes.fromhex(hex_id)
            raw = b64decode_canonical(b64)
        except (ValueError, binascii.Error) as exc:
            raise NoteError("the verifier key is not hex and base64") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        if key_id(name, raw[1:]) != wanted:
            raise NoteError("the verifier key's id does not match its name and key")
        return cls(name, wanted, Ed25519PublicKey.from_public_bytes(raw[1:]))

    @property
    def vkey(self) -> str:
        raw = bytes([ALG_ED25519]) + self.public_key.public_bytes_raw()
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> Signer:
        if not _valid_name(name):
            raise NoteError("a key name has no spaces and no '+'")
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _valid_name(parts[2]):
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>")
        _, _, name, hex_id, b64 = parts
        try:
            raw = b64decode_canonical(b64)
        except binascii.Error as exc:
            raise NoteError("the signer key is not base64") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("only Ed25519 signer keys are supported")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier.key_id.hex() != hex_id:
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    @property
    def skey(self) -> str:
        seed = self.private_key.private_bytes_raw()
        raw = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{raw}"

    @property
    def verifier(self) -> Verifier:
        public = self.private_key.public_key()
        return Verifier(self.name, key_id(self.name, public.public_bytes_raw()), public)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    if any(c != "\n" and not c.isprintable() for c in text):
        raise NoteError("a note's text has no control characters")


def sign_note(text: str, *signers: Signer) -> str:
    _check_text(text)
    message = text.encode()
    lines = []
    for signer in signers:
        blob = signer.verifier.key_id + signer.sign(message)
        lines.append(f"{SIGNATURE_PREFIX}{signer.name} {base64.b64encode(blob).decode()}\n")
    return text + "\n" + "".join(lines)


@dataclass(frozen=True)
class SignedNote:
    text: str
    #: Names of the known keys whose signatures verified.
    verified_by: tuple[str, ...]
    #: Signature lines from keys we do not know (kept, e.g. a witness's cosignature).
    other_signatures: tuple[str, ...]


def open_note(note: str, *verifiers: Verifier) -> SignedNote:
    """Split a signed note, check every signature from a known key; at least one must verify.

    A signature from a known key that does not verify is an error, never silently skipped.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, and signature lines")
    text, sig_block = note[: split + 1], note[split + 2 :]
    _check_text(text)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = text.encode()
    verified: list[str] = []
    others: list[str] = []
    lines = sig_block.splitlines()
    if not lines or len(lines) > MAX_SIGNATURES:
        raise NoteError("a signed note has between 1 and 100 signatures")
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        name, _, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            blob = b64decode_canonical(b64)
        except binascii.Error as exc:
            raise NoteError("a signature is not base64") from exc
        if not _valid_name(name) or len(blob) < 5:
            raise NoteError("a signature line is '— <name> <base64>'")
        verifier = known.get((name, blob[:4]))
        if verifier is None:
            others.append(line)
            continue
        if not verifier.verify(message, blob[4:]):
            raise NoteError(f"the signature of {name} does not verify")
        if name not in verified:
            verified.append(name)
    if not verified:
        raise NoteError("no signature from a known key")
    return SignedNote(text, tuple(verified), tuple(others))


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP tlog-checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0]:
            raise NoteError("a checkpoint is origin, tree size and root hash, one per line")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError("the tree size is a decimal number without leading zeros")
        try:
            root_hash = b64decode_canonical(root_text)
        except binascii.Error as exc:
            raise NoteError("the root hash is not base64") from exc
        if len(root_hash) != 32:
            raise NoteError("the root hash is not 32 bytes")
        if any(not e for e in extensions):
            raise NoteError("a checkpoint has no empty lines")
        return cls(origin, int(size_text), root_hash, tuple(extensions))
