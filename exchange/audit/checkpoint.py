"""Signed checkpoints of the audit log: C2SP signed notes over (origin, size, root).

Formats (research/security.md 2.1):

* **signed note** (c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line,
  then signature lines ``— <key name> <base64(key id || signature)>`` (U+2014 em dash).
  For Ed25519 (signature type ``0x01``) the 4-byte key id is
  ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` and the signature is
  RFC 8032 Ed25519 over the note text. Verifiers ignore signatures by unknown keys,
  reject the note when a known key's signature fails, and require at least one known
  key's signature.
* **checkpoint** (c2sp.org/tlog-checkpoint): the note text is the origin line, the tree
  size in decimal without leading zeros, the base64 RFC 9162 root hash, then optional
  non-empty extension lines.
* **verifier key**: ``<name>+<key id as 8 hex digits>+<base64(0x01 || public key)>``, the
  form of Go's ``golang.org/x/mod/sumdb/note`` that witnesses and monitors read.

Checkpoints are signed with Ed25519 only (:class:`~exchange.signing.keys.SigningKey`);
the raw public key is taken from the Ed25519 SubjectPublicKeyInfo (RFC 8410), whose
last 32 bytes it is, so this module needs no ``cryptography.hazmat`` import. Pure code,
no I/O; the ledger decides when to sign and where notes are kept.

Errors: :class:`~exchange.errors.SignatureError` for every refusal (malformed note or
checkpoint, unknown or wrong key, failed signature), with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from exchange.errors import SignatureError
from exchange.signing.keys import PublicKey, SigningKey, load_public_der

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_NOTE_BYTES",
    "Checkpoint",
    "NoteKey",
    "OpenedNote",
    "add_signature",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
]

#: The signed-note signature type byte of Ed25519.
ED25519_SIGNATURE_TYPE: Final = 0x01

#: The largest note accepted (room for many post-quantum cosignatures).
MAX_NOTE_BYTES: Final = 256 * 1024
_MAX_SIGNATURES: Final = 64
_EM_DASH: Final = "\u2014"
#: DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 section 4); the key follows.
_ED25519_SPKI_PREFIX: Final = bytes.fromhex("302a300506032b6570032100")
_HASH_SIZE: Final = 32


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise SignatureError(f"{what} is not in canonical base64")
    return raw


def _check_key_name(name: str) -> None:
    if not name:
        raise SignatureError("a signed-note key name must not be empty")
    if any(ch.isspace() for ch in name) or "+" in name:
        raise SignatureError(f"key name {name!r} contains a space or '+', which notes forbid")
    _check_text_characters(name, "key name")


def _check_text_characters(text: str, what: str) -> None:
    for ch in text:
        if ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            raise SignatureError(f"{what} contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(f"{what} is not valid UTF-8 (a lone surrogate)") from None


def _raw_ed25519(public_key: PublicKey) -> bytes:
    der = public_key.spki_der
    if public_key.alg != "Ed25519" or not der.startswith(_ED25519_SPKI_PREFIX) or len(der) != 44:
        raise SignatureError(
            f"checkpoints are signed with Ed25519 keys only, not {public_key.alg}"
        )
    return der[len(_ED25519_SPKI_PREFIX) :]


@dataclass(frozen=True, slots=True)
class NoteKey:
    """A named Ed25519 key that signs or verifies notes.

    Build with :meth:`of` or :meth:`parse`.

    Attributes:
        name: The key name (for the log's own key, the origin).
        public_key: The Ed25519 public key.
        raw: The 32-byte RFC 8032 public key.
        key_id: The 4-byte signed-note key id.
    """

    name: str
    public_key: PublicKey
    raw: bytes = field(init=False, repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        raw = _raw_ed25519(self.public_key)
        key_id = hashlib.sha256(
            self.name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + raw
        ).digest()[:4]
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "key_id", key_id)

    @classmethod
    def of(cls, name: str, key: PublicKey | SigningKey) -> NoteKey:
        """The note key of a public or signing key under a name.

        Raises:
            SignatureError: The name is not a valid key name or the key is not Ed25519.
        """
        return cls(name, key.public_key if isinstance(key, SigningKey) else key)

    @classmethod
    def from_raw(cls, name: str, raw: bytes) -> NoteKey:
        """The note key of a raw 32-byte Ed25519 public key.

        Raises:
            SignatureError: The name is invalid or ``raw`` is not an Ed25519 public key.
        """
        if len(raw) != 32:
            raise SignatureError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        return cls(name, load_public_der(_ED25519_SPKI_PREFIX + raw))

    @classmethod
    def parse(cls, verifier: str) -> NoteKey:
        """Read a verifier key ``<name>+<hex key id>+<base64(0x01 || key)>``.

        Raises:
            SignatureError: The text is malformed, names another signature type, or its
                key id does not match the name and key.
        """
        name, sep, rest = verifier.partition("+")
        key_hex, sep2, material = rest.partition("+")
        if not (sep and sep2 and name and len(key_hex) == 8):
            raise SignatureError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        try:
            key_id = bytes.fromhex(key_hex)
        except ValueError:
            raise SignatureError("the verifier key's id is not 8 hex digits") from None
        typed = _b64decode(material, "the verifier key's key material")
        if not typed or typed[0] != ED25519_SIGNATURE_TYPE:
            raise SignatureError("the verifier key is not an Ed25519 (type 0x01) key")
        key = cls.from_raw(name, typed[1:])
        if key.key_id != key_id or key_hex != key_hex.lower():
            raise SignatureError(f"the verifier key's id {key_hex} does not match its key")
        return key

    def verifier(self) -> str:
        """This key as a verifier key string (the inverse of :meth:`parse`)."""
        material = base64.b64encode(bytes([ED25519_SIGNATURE_TYPE]) + self.raw).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"


@dataclass(frozen=True, slots=True)
class OpenedNote:
    """A note whose signatures checked out.

    Attributes:
        text: The note text, ending in a newline.
        signed_by: The known keys whose signatures verified.
    """

    text: str
    signed_by: tuple[NoteKey, ...]


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise SignatureError("a note text must end with a newline")
    _check_text_characters(text, "the note text")


def _signature_line(text: str, signer: SigningKey, name: str) -> str:
    key = NoteKey.of(name, signer)
    signature = signer.sign(text.encode("utf-8"))
    blob = base64.b64encode(key.key_id + signature).decode("ascii")
    return f"{_EM_DASH} {name} {blob}\n"


def sign_note(text: str, signer: SigningKey, name: str) -> str:
    """Sign a note text with one Ed25519 key.

    Args:
        text: The text, ending in a newline, without control characters but newlines.
        signer: An Ed25519 signing key.
        name: The key name written in the signature line.

    Returns:
        The signed note: ``text``, a blank line, one signature line.

    Raises:
        SignatureError: The text or name is not allowed in a note, or the key is not
            Ed25519.
    """
    _check_note_text(text)
    return text + "\n" + _signature_line(text, signer, name)


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise SignatureError(f"the note is larger than {MAX_NOTE_BYTES} bytes")
    _check_text_characters(note, "the note")
    if not note.endswith("\n"):
        raise SignatureError("a signed note must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise SignatureError("the note has no blank line before its signatures")
    text = note[: cut + 1]
    lines = note[cut + 2 :].split("\n")[:-1]
    if not lines:
        raise SignatureError("the note has no signature lines")
    if len(lines) > _MAX_SIGNATURES:
        raise SignatureError(f"the note has more than {_MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        prefix = _EM_DASH + " "
        parts = line[len(prefix) :].split(" ")
        if not line.startswith(prefix) or len(parts) != 2:
            raise SignatureError("a signature line reads '\u2014 <key name> <base64>'")
        name, blob = parts
        _check_key_name(name)
        raw = _b64decode(blob, f"the signature by {name}")
        if len(raw) < 5:
            raise SignatureError(f"the signature by {name} is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str, keys: Iterable[NoteKey]) -> OpenedNote:
    """Check a signed note against the keys the caller trusts.

    Args:
        note: The whole note (text, blank line, signature lines).
        keys: The trusted keys; signatures by other keys are ignored.

    Returns:
        The text and the keys that signed it.

    Raises:
        SignatureError: The note is malformed, a trusted key's signature does not verify,
            or no trusted key signed it.
    """
    text, signatures = _split_note(note)
    known = {(key.name, key.key_id): key for key in keys}
    message = text.encode("utf-8")
    signed_by: list[NoteKey] = []
    for name, key_id, signature in signatures:
        key = known.get((name, key_id))
        if key is None:
            continue
        try:
            key.public_key.verify(message, signature)
        except SignatureError:
            raise SignatureError(
                f"the signature by {name} ({key_id.hex()}) does not verify"
            ) from None
        if key not in signed_by:
            signed_by.append(key)
    if not signed_by:
        names = ", ".join(sorted({key.name for key in known.values()})) or "none given"
        raise SignatureError(f"the note is not signed by any trusted key (trusted: {names})")
    _check_note_text(text)
    return OpenedNote(text, tuple(signed_by))


def add_signature(note: str, signer: SigningKey, name: str) -> str:
    """Add a signature (a cosignature, or a second log key during rotation) to a note.

    The existing signatures are not checked; open the result with :func:`open_note`.

    Args:
        note: A signed note.
        signer: An Ed25519 signing key.
        name: Its key name.

    Returns:
        The note with one more signature line.

    Raises:
        SignatureError: The note is malformed, or the key or name cannot sign notes.
    """
    text, _ = _split_note(note)
    return note + _signature_line(text, signer, name)


def _check_origin(origin: str) -> None:
    if not origin:
        raise SignatureError("a checkpoint origin must not be empty")
    if "\n" in origin:
        raise SignatureError("a checkpoint origin is one line")
    _check_key_name(origin)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the log at one size: what a signed checkpoint states.

    Attributes:
        origin: The log's identity, e.g. ``audit.exchange.example/log1``.
        size: The number of records.
        root: The RFC 9162 root hash of the first ``size`` records.
        extensions: Extra lines (opaque; this log writes none).
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_origin(self.origin)
        if type(self.size) is not int or self.size < 0:
            raise SignatureError("a checkpoint's size is a non-negative integer")
        if len(self.root) != _HASH_SIZE:
            raise SignatureError(f"a checkpoint's root is {_HASH_SIZE} bytes")
        for line in self.extensions:
            if not line or "\n" in line:
                raise SignatureError("checkpoint extension lines are non-empty single lines")
            _check_text_characters(line, "a checkpoint extension line")

    def text(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint from a note text (after :func:`open_note`).

        Raises:
            SignatureError: Fewer than three lines, an empty origin or extension line, a
                size with a sign, leading zeros or non-digits, or a root that is not the
                canonical base64 of 32 bytes.
        """
        if not text.endswith("\n"):
            raise SignatureError("a checkpoint text ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise SignatureError("a checkpoint has an origin, a size and a root hash line")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isascii() or not size_text.isdigit() or (
            size_text != "0" and size_text.startswith("0")
        ):
            raise SignatureError(f"checkpoint size {size_text!r} is not a decimal number")
        root = _b64decode(root_text, "the checkpoint root")
        if len(root) != _HASH_SIZE:
            raise SignatureError(f"the checkpoint root is {len(root)} bytes, not {_HASH_SIZE}")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: SigningKey, name: str | None = None) -> str:
    """Sign a checkpoint as a signed note.

    Args:
        checkpoint: The tree head.
        signer: The log's Ed25519 key.
        name: The key name; by default the origin (as tlog-checkpoint recommends).

    Returns:
        The signed note.

    Raises:
        SignatureError: The key is not Ed25519 or the name is invalid.
    """
    return sign_note(checkpoint.text(), signer, checkpoint.origin if name is None else name)


def verify_checkpoint(
    note: str, keys: Sequence[NoteKey], *, origin: str | None = None
) -> Checkpoint:
    """Open a signed checkpoint and read it.

    Args:
        note: The signed note.
        keys: The log keys the caller trusts.
        origin: The origin it must carry, if the caller knows it.

    Returns:
        The checkpoint.

    Raises:
        SignatureError: The note does not verify (see :func:`open_note`), its text is
            not a checkpoint, or it is from another origin.
    """
    checkpoint = Checkpoint.parse(open_note(note, keys).text)
    if origin is not None and checkpoint.origin != origin:
        raise SignatureError(
            f"the checkpoint is from log {checkpoint.origin!r}, not {origin!r}"
        )
    return checkpoint
