"""C2SP signed notes and checkpoints: Go's known answer, round trips, tampering, key handling."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from exchange.audit.checkpoint import (
    Checkpoint,
    NoteKey,
    add_signature,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from exchange.audit.tree import EMPTY_ROOT, leaf_hash
from exchange.errors import SignatureError
from exchange.signing.keys import generate, load_raw_private_key
from tests.unit.audit.helpers import ORIGIN, checkpoint_key, note_key

GO = json.loads(
    (Path(__file__).parents[2] / "vectors" / "audit" / "signed-note-go.json").read_text()
)
ROOT = leaf_hash(b"root")


def _go_signer() -> tuple[str, bytes]:
    name, hash_hex, material = GO["signer_key"].split("+", 4)[2:]
    raw = base64.b64decode(material)
    assert raw[0] == 1
    assert hash_hex == GO["key_id_hex"]
    return name, raw[1:]


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    name, seed = _go_signer()
    note = sign_note(GO["text"], load_raw_private_key("Ed25519", seed), name)
    assert note == GO["note"]


def test_the_go_verifier_key_parses_and_opens_the_go_note() -> None:
    key = NoteKey.parse(GO["verifier_key"])
    assert key.name == GO["key_name"]
    assert key.key_id.hex() == GO["key_id_hex"]
    assert key.verifier() == GO["verifier_key"]
    opened = open_note(GO["note"], [key])
    assert opened.text == GO["text"]
    assert opened.signed_by == (key,)
    _, seed = _go_signer()
    assert NoteKey.of(key.name, load_raw_private_key("Ed25519", seed)) == key


def test_a_changed_go_note_is_refused() -> None:
    key = NoteKey.parse(GO["verifier_key"])
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(GO["note"].replace("cryptography", "cryptographY"), [key])


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(GO["verifier_key"].replace("c74f20a3", "c74f20a4"), id="wrong-id"),
        pytest.param(GO["verifier_key"].replace("c74f20a3", "C74F20A3"), id="upper-hex"),
        pytest.param(GO["verifier_key"].replace("+ARpc", "+AhPc"), id="wrong-type"),
        pytest.param("PeterNeumann+c74f20a3", id="no-key"),
        pytest.param("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="no-name"),
        pytest.param(GO["verifier_key"][:-2], id="truncated"),
    ],
)
def test_malformed_verifier_keys_are_refused(verifier: str) -> None:
    with pytest.raises(SignatureError):
        NoteKey.parse(verifier)


def test_checkpoint_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 1234, ROOT)
    note = sign_checkpoint(checkpoint, checkpoint_key())
    body, signature_line = note.split("\n\n")
    assert body.split("\n") == [ORIGIN, "1234", base64.b64encode(ROOT).decode()]
    assert signature_line.startswith(f"\u2014 {ORIGIN} ")
    blob = base64.b64decode(signature_line.split(" ")[2])
    assert blob[:4] == note_key().key_id
    assert len(blob) == 4 + 64
    assert verify_checkpoint(note, [note_key()], origin=ORIGIN) == checkpoint


def test_empty_tree_checkpoint() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), checkpoint_key())
    assert verify_checkpoint(note, [note_key()]).size == 0


def test_extension_lines_are_kept() -> None:
    checkpoint = Checkpoint(ORIGIN, 5, ROOT, ("Timestamp: 1700000000",))
    note = sign_checkpoint(checkpoint, checkpoint_key())
    assert verify_checkpoint(note, [note_key()]) == checkpoint


def _good_note() -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, 1234, ROOT), checkpoint_key())


def _tamper(old: str, new: str) -> str:
    note = _good_note()
    assert old in note
    return note.replace(old, new, 1)


@pytest.mark.parametrize(
    ("note", "message"),
    [
        pytest.param(_tamper("\n1234\n", "\n1235\n"), "does not verify", id="size"),
        pytest.param(_tamper(ORIGIN + "\n", "audit.test.example/log2\n"), "does not verify",
                     id="origin"),
        pytest.param(_tamper(base64.b64encode(ROOT).decode(), base64.b64encode(
            leaf_hash(b"other")).decode()), "does not verify", id="root"),
        pytest.param(_good_note().replace("\n\n", "\n"), "no blank line", id="no-separator"),
        pytest.param(_good_note()[:-1], "newline", id="no-final-newline"),
        pytest.param(_good_note().replace("\u2014", "-"), "signature line", id="hyphen"),
        pytest.param(_good_note().split("\n\n")[0] + "\n\n", "no signature", id="unsigned"),
        pytest.param(_tamper("1234", "12\x0134"), "control", id="control-char"),
        pytest.param(_good_note() + "\u2014 x\n", "signature line", id="short-sig-line"),
        pytest.param(_good_note() + f"\u2014 {ORIGIN} AAAA\n", "too short", id="short-sig"),
    ],
)
def test_tampered_or_malformed_notes_are_refused(note: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_checkpoint(note, [note_key()])


def test_a_note_signed_only_by_unknown_keys_is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        verify_checkpoint(_good_note(), [note_key(2)])
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        verify_checkpoint(_good_note(), [note_key(1, name="other.example/log")])


def test_unknown_signatures_are_ignored_and_known_ones_must_all_verify() -> None:
    note = add_signature(_good_note(), checkpoint_key(2), "witness.pk-cert.example")
    witness = NoteKey.of("witness.pk-cert.example", checkpoint_key(2))
    assert verify_checkpoint(note, [note_key()]).size == 1234
    opened = open_note(note, [note_key(), witness])
    assert opened.signed_by == (note_key(), witness)
    # A signature line claiming a trusted key's name and id but carrying a bad signature.
    bad = base64.b64encode(witness.key_id + b"\x00" * 64).decode()
    forged = note + f"\u2014 witness.pk-cert.example {bad}\n"
    with pytest.raises(SignatureError, match=r"witness\.pk-cert\.example.*does not verify"):
        open_note(forged, [note_key(), witness])
    assert verify_checkpoint(forged, [note_key()]).size == 1234  # unknown to this verifier


def test_the_wrong_origin_is_refused() -> None:
    note = sign_checkpoint(Checkpoint("audit.other.example/log", 1, ROOT), checkpoint_key(),
                           ORIGIN)
    with pytest.raises(SignatureError, match=r"not 'audit\.test\.example/log1'"):
        verify_checkpoint(note, [note_key()], origin=ORIGIN)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"{ORIGIN}\n01\n{base64.b64encode(ROOT).decode()}\n", id="leading-zero"),
        pytest.param(f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", id="negative"),
        pytest.param(f"{ORIGIN}\n\u0661\n{base64.b64encode(ROOT).decode()}\n", id="arabic-digit"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", id="short-root"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()[:-1]}\n", id="bad-base64"),
        pytest.param(f"{ORIGIN}\n1\n", id="two-lines"),
        pytest.param(f"\n1\n{base64.b64encode(ROOT).decode()}\n", id="empty-origin"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n", id="empty-extension"),
    ],
)
def test_malformed_checkpoint_texts_are_refused(text: str) -> None:
    with pytest.raises(SignatureError):
        Checkpoint.parse(text)


def test_only_ed25519_keys_sign_checkpoints() -> None:
    ecdsa = generate("ECDSA-P256")
    with pytest.raises(SignatureError, match="Ed25519"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), ecdsa)
    with pytest.raises(SignatureError, match="Ed25519"):
        NoteKey.of(ORIGIN, ecdsa.public_key)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\tname"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(SignatureError):
        NoteKey.of(name, checkpoint_key())


def test_texts_without_a_final_newline_cannot_be_signed() -> None:
    with pytest.raises(SignatureError, match="newline"):
        sign_note("no newline", checkpoint_key(), ORIGIN)
