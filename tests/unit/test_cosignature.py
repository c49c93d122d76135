"""Witness cosignatures (C2SP tlog-cosignature v1, Ed25519): format, known answer, rejections."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.tlog import note
from cityshare.tlog.cosignature import (
    CosignatureError,
    CosignatureVerifier,
    Cosigner,
    parse_verifiers,
)

SEED = bytes(range(32))
NAME = "witness.example/twin"
BODY = "cityshare.local/audit-log\n7\n" + base64.b64encode(bytes(range(32, 64))).decode() + "\n"
TIME = 1_700_000_123


def cosigner() -> Cosigner:
    return Cosigner(NAME, Ed25519PrivateKey.from_private_bytes(SEED))


def test_a_known_answer_built_by_hand_from_the_spec() -> None:
    """Everything here is computed from the C2SP text directly, not by the module under test."""
    private = Ed25519PrivateKey.from_private_bytes(SEED)
    public = private.public_key().public_bytes_raw()
    kid = hashlib.sha256(NAME.encode() + b"\n\x04" + public).digest()[:4]
    expected_message = (
        b"cosignature/v1\n"
        b"time 1700000123\n"
        b"cityshare.local/audit-log\n"
        b"7\n" + base64.b64encode(bytes(range(32, 64))) + b"\n"
    )
    # Ed25519 is deterministic: the same key and message give the same signature.
    signature = private.sign(expected_message)
    blob = kid + struct.pack(">Q", TIME) + signature
    expected_line = "\u2014 " + NAME + " " + base64.b64encode(blob).decode()

    signer = cosigner()
    assert signer.vkey == f"{NAME}+{kid.hex()}+" + base64.b64encode(b"\x04" + public).decode()
    assert (
        signer.skey
        == f"PRIVATE+KEY+{NAME}+{kid.hex()}+" + base64.b64encode(b"\x04" + SEED).decode()
    )
    line = signer.cosign(BODY, TIME)
    assert line == expected_line
    # And the other way round: cryptography itself accepts the line the module made.
    raw = base64.b64decode(line.split(" ")[-1])
    assert raw[:4] == kid
    assert struct.unpack(">Q", raw[4:12])[0] == TIME
    private.public_key().verify(raw[12:], expected_message)
    assert CosignatureVerifier.parse(signer.vkey).verify(BODY, line) == TIME


def test_keys_round_trip() -> None:
    signer = Cosigner.generate(NAME)
    again = Cosigner.parse(signer.skey)
    assert again.vkey == signer.vkey
    verifier = CosignatureVerifier.parse(signer.vkey)
    assert verifier.vkey == signer.vkey
    assert verifier.verify(BODY, again.cosign(BODY, 0)) == 0


def test_a_cosignature_travels_in_a_signed_note_beside_the_log_signature() -> None:
    log = note.Signer.generate("cityshare.local/audit-log")
    signed = note.sign_note(BODY, log)
    line = cosigner().cosign(BODY, TIME)
    opened = note.open_note(signed + line + "\n", log.verifier)
    assert opened.other_signatures == (line,)
    assert cosigner().verifier.verify(opened.text, opened.other_signatures[0]) == TIME


def _replace_blob(line: str, blob: bytes) -> str:
    head, _, _ = line.rpartition(" ")
    return f"{head} {base64.b64encode(blob).decode()}"


def _blob(line: str) -> bytes:
    return base64.b64decode(line.rpartition(" ")[2])


def test_a_cosignature_from_another_key_is_refused() -> None:
    line = Cosigner.generate(NAME).cosign(BODY, TIME)  # same name, other key
    with pytest.raises(CosignatureError, match="key ID"):
        cosigner().verifier.verify(BODY, line)
    other_name = Cosigner.generate("someone.else").cosign(BODY, TIME)
    with pytest.raises(CosignatureError, match="not by"):
        cosigner().verifier.verify(BODY, other_name)
    assert not cosigner().verifier.matches(other_name)
    assert cosigner().verifier.matches(cosigner().cosign(BODY, TIME))


def test_a_key_or_signature_of_the_plain_note_type_is_refused() -> None:
    # The same Ed25519 key written as a plain signed-note key (type 0x01) is not a witness key.
    plain = note.Signer(NAME, Ed25519PrivateKey.from_private_bytes(SEED))
    with pytest.raises(CosignatureError, match="0x04"):
        CosignatureVerifier.parse(plain.verifier.vkey)
    with pytest.raises(CosignatureError, match="0x04"):
        Cosigner.parse(plain.skey)
    # A vkey whose type byte was flipped to 0x04 but whose id was computed for 0x01.
    raw = b"\x04" + plain.verifier.public_key.public_bytes_raw()
    forged = f"{NAME}+{plain.verifier.key_id.hex()}+{base64.b64encode(raw).decode()}"
    with pytest.raises(CosignatureError, match="id does not match"):
        CosignatureVerifier.parse(forged)
    # A plain note signature by the same key (key ID for type 0x01, no timestamp).
    plain_line = note.sign_note(BODY, plain).splitlines()[-1]
    with pytest.raises(CosignatureError):
        cosigner().verifier.verify(BODY, plain_line)
    # A cosignature blob re-labelled with the type-0x01 key ID.
    line = cosigner().cosign(BODY, TIME)
    relabelled = _replace_blob(line, plain.verifier.key_id + _blob(line)[4:])
    with pytest.raises(CosignatureError, match="key ID"):
        cosigner().verifier.verify(BODY, relabelled)


def test_a_tampered_body_is_refused() -> None:
    line = cosigner().cosign(BODY, TIME)
    with pytest.raises(CosignatureError, match="does not verify"):
        cosigner().verifier.verify(BODY.replace("\n7\n", "\n8\n"), line)
    with pytest.raises(CosignatureError, match="does not verify"):
        cosigner().verifier.verify(BODY + "extension line\n", line)


def test_a_tampered_timestamp_is_refused() -> None:
    line = cosigner().cosign(BODY, TIME)
    blob = _blob(line)
    later = _replace_blob(line, blob[:4] + struct.pack(">Q", TIME + 1) + blob[12:])
    with pytest.raises(CosignatureError, match="does not verify"):
        cosigner().verifier.verify(BODY, later)
    beyond = _replace_blob(line, blob[:4] + struct.pack(">Q", 2**63) + blob[12:])
    with pytest.raises(CosignatureError, match="2\\^63"):
        cosigner().verifier.verify(BODY, beyond)


@pytest.mark.parametrize("keep", [0, 4, 12, 75])
def test_a_truncated_or_padded_blob_is_refused(keep: int) -> None:
    line = cosigner().cosign(BODY, TIME)
    with pytest.raises(CosignatureError, match="bytes"):
        cosigner().verifier.verify(BODY, _replace_blob(line, _blob(line)[:keep]))
    with pytest.raises(CosignatureError, match="bytes"):
        cosigner().verifier.verify(BODY, _replace_blob(line, _blob(line) + b"\0"))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "- witness.example/twin AAAA",
        "\u2014 witness.example/twin not*base64",
        "\u2014  AAAA",
    ],
)
def test_malformed_lines_are_refused_and_match_nothing(line: str) -> None:
    with pytest.raises(note.NoteError):
        cosigner().verifier.verify(BODY, line)
    assert not cosigner().verifier.matches(line)


def test_only_checkpoints_are_cosigned() -> None:
    with pytest.raises(note.NoteError):
        cosigner().cosign("just some text\n", TIME)
    with pytest.raises(note.NoteError):
        cosigner().cosign(BODY + "\n", TIME)  # a blank line: a whole note, not a body
    with pytest.raises(CosignatureError):
        cosigner().cosign(BODY, -1)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name+1234+AAAA",
        "bad name+12345678+" + base64.b64encode(b"\x04" + bytes(32)).decode(),
        "name+zzzzzzzz+" + base64.b64encode(b"\x04" + bytes(32)).decode(),
        "name+12345678+" + base64.b64encode(b"\x04" + bytes(31)).decode(),
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(CosignatureError):
        CosignatureVerifier.parse(vkey)


def test_a_settings_list_of_keys_names_the_bad_one() -> None:
    good = Cosigner.generate("a.example").vkey
    assert [v.name for v in parse_verifiers(f" {good}\n{cosigner().vkey} ")] == [
        "a.example",
        NAME,
    ]
    assert parse_verifiers("  ") == []
    with pytest.raises(CosignatureError, match="'nonsense'"):
        parse_verifiers(f"{good} nonsense")
