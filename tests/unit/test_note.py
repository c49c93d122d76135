"""Signed notes and checkpoints, checked against the reference vector of Go's sumdb/note."""

from __future__ import annotations

import pytest

from cityshare.tlog.note import Checkpoint, NoteError, Signer, Verifier, open_note, sign_note

# The example key and note of golang.org/x/mod/sumdb/note (its documentation and tests).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signing_reproduces_the_go_reference_note_byte_for_byte() -> None:
    signer = Signer.parse(GO_SKEY)
    assert signer.verifier.vkey == GO_VKEY
    assert signer.skey == GO_SKEY
    assert sign_note(GO_TEXT, signer) == GO_NOTE


def test_the_go_reference_note_opens_with_its_verifier_key() -> None:
    opened = open_note(GO_NOTE, Verifier.parse(GO_VKEY))
    assert opened.text == GO_TEXT
    assert opened.verified_by == ("PeterNeumann",)


def test_a_changed_text_or_signature_does_not_verify() -> None:
    verifier = Verifier.parse(GO_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("problem,", "problem;"), verifier)
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("x08go", "x08gp"), verifier)


def test_a_note_signed_only_by_unknown_keys_is_refused_but_their_lines_are_kept() -> None:
    other = Signer.generate("witness.example")
    note = sign_note(GO_TEXT, Signer.parse(GO_SKEY), other)
    opened = open_note(note, Verifier.parse(GO_VKEY))
    assert len(opened.other_signatures) == 1
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, Signer.generate("stranger").verifier)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+zzzzzzzz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(vkey)


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\nPeterNeumann x08go\n",
        GO_TEXT + "\n— PeterNeumann !!!\n",
        "no newline\n\n— PeterNeumann AAAA",
        "bell\x07\n\n— PeterNeumann AAAAAAAA\n",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, Verifier.parse(GO_VKEY))


def test_a_checkpoint_round_trips_through_a_signed_note() -> None:
    log = Signer.generate("cityshare.example/log")
    checkpoint = Checkpoint("cityshare.example/log", 42, bytes(range(32)))
    note = sign_note(checkpoint.text(), log)
    assert note.startswith(
        "cityshare.example/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n"
    )
    assert Checkpoint.parse(open_note(note, log.verifier).text) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        "origin\n42\n",
        "origin\n042\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAEC\n",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


def test_a_signature_spelled_in_non_canonical_base64_is_refused() -> None:
    # "M=" and "N=" decode to the same byte: the unused low bits of the last character must be
    # zero, or a stored note (or root) could be changed without changing what it decodes to.
    sig_b64 = GO_NOTE.rsplit(" ", 1)[1].rstrip("\n")
    assert sig_b64.endswith("M=")
    altered = GO_NOTE.replace(sig_b64, sig_b64[:-2] + "N=")
    with pytest.raises(NoteError, match="base64"):
        open_note(altered, Verifier.parse(GO_VKEY))
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)).verified_by == ("PeterNeumann",)
