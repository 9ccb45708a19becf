"""cx-sig v1, embedded form: one signature per STIX object version, inside the object.

The signature lives in a STIX 2.1 property-extension (STIX 2.1 section 7.3) defined by the
project (:func:`extension_definition`, id :data:`EXTENSION_ID`)::

    "extensions": {
      "extension-definition--8cfe494a-40dc-48f9-8577-ada1bbcec232": {
        "extension_type": "property-extension",
        "v": 1,
        "alg": "Ed25519",                    # or "ECDSA-P256"
        "kid": "sha256:<base64url SHA-256 of the DER SubjectPublicKeyInfo>",
        "canon": "jcs-rfc8785",
        "signed_at": "2025-01-15T10:21:02.000Z",
        "sig": "<base64url, no padding, of the 64-byte signature>"
      }
    }

``sig`` signs :func:`~exchange.signing.canonical.signing_input`: the DSSE PAE of the RFC 8785
canonical object with only ``sig`` removed, so every other member of the entry is signed.
The entry must have exactly these members; ``sig`` must be the canonical unpadded base64url
of 64 bytes, so one signature has one spelling and a signed object has one byte form.

Any object can be signed: SDOs, SROs and SCOs (STIX 2.1 allows ``extensions`` on all of
them), with or without ``created_by_ref``. The signature says which key signed, not who
wrote the object: the signer is the member that contributes it, which may be the author
(``created_by_ref``), a member relaying a non-member's report, or a member reporting an
SCO, which has no author (DESIGN.md decision 8).

What this module checks: the entry's shape, that the key the caller's resolver returns
has the key id and algorithm the entry names (the algorithm comes from the key, never from
the message), and the signature. What it leaves to the caller (research/security.md 1.3,
verification steps 4-6): that the key's registered owner is the organisation that
contributed the object (the exchange checks this at ingest,
:func:`exchange.node.keyring.verify_for_ingest`) and that the key was valid when the
exchange recorded the object; :class:`exchange.signing.registry.Registry` does both.
``signed_at`` is the signer's claim, informational only.

Pure code, no I/O. The detached DSSE form is :mod:`exchange.signing.envelope`.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from exchange.errors import InvalidObject, LimitExceeded, MalformedJSON, SignatureError
from exchange.model import jcs
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.objects import StixObject
from exchange.model.stix import validate_object
from exchange.model.stixkinds import parse_timestamp
from exchange.signing.canonical import (
    CANON,
    EXTENSION_ID,
    PAYLOAD_TYPE,
    canonical,
    canonical_plain,
    normal_form_same,
    pae,
    require_normal_form,
    without_signature,
)
from exchange.signing.definition import (
    ENTRY_MEMBERS,
    ENTRY_SCHEMA,
    KID_PATTERN,
    PROJECT_IDENTITY_ID,
    SIG_PATTERN,
    extension_definition,
    extension_definition_json,
)
from exchange.signing.keys import (
    ALGORITHMS,
    SIGNATURE_BYTES,
    Algorithm,
    KeyId,
    PublicKey,
    SigningKey,
)

__all__ = [
    "ENTRY_MEMBERS",
    "ENTRY_SCHEMA",
    "EXTENSION_ID",
    "PROJECT_IDENTITY_ID",
    "KeyResolver",
    "SignatureEntry",
    "VerifiedSignature",
    "b64url_decode_signature",
    "b64url_encode",
    "check_unsigned_entry",
    "extension_definition",
    "extension_definition_json",
    "sign_object",
    "sign_validated",
    "signature_of",
    "verify_object",
]

#: A resolver maps a key id to the trusted key; it raises SignatureError when it knows none.
KeyResolver = Callable[[KeyId], PublicKey]


_KID = re.compile(KID_PATTERN)
_SIG = re.compile(SIG_PATTERN)


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """A cx-sig v1 entry whose shape has been checked (not its signature).

    Attributes:
        alg: The algorithm the entry claims; must equal the key's.
        kid: The key id.
        signed_at: The signer's claimed signing time (informational).
        signature: The 64 signature bytes.
    """

    alg: Algorithm
    kid: KeyId
    signed_at: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What :func:`verify_object` proved.

    Attributes:
        kid: The key that signed.
        alg: Its algorithm.
        signed_at: The signer's claimed signing time (not trusted for key validity).
        signed_bytes: RFC 8785 canonical bytes of the object without ``sig``: exactly what
            was signed (the DSSE payload).
    """

    kid: KeyId
    alg: Algorithm
    signed_at: str
    signed_bytes: bytes


def _label(obj: Mapping[str, Any]) -> str:
    identifier = obj.get("id")
    if isinstance(identifier, str) and 0 < len(identifier) <= 120 and identifier.isprintable():
        return identifier
    return "object"


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5), the spelling of ``sig`` and of key ids."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_signature(text: str) -> bytes:
    """Decode a ``sig`` value: exactly the unpadded base64url of 64 bytes.

    Args:
        text: The ``sig`` member.

    Returns:
        The 64 signature bytes.

    Raises:
        SignatureError: Not 86 base64url characters, or not the canonical spelling (the
            unused low bits of the last character are not zero).
    """
    if _SIG.fullmatch(text) is None:
        raise SignatureError(
            f"'sig' must be {SIGNATURE_BYTES} bytes as unpadded base64url"
            f" ({(SIGNATURE_BYTES * 4 + 2) // 3} characters of A-Z a-z 0-9 - _)"
        )
    data = base64.urlsafe_b64decode(text + "==")
    if b64url_encode(data) != text:
        raise SignatureError("'sig' is not canonical base64url (non-zero trailing bits)")
    return data


def _raw_entry(obj: Mapping[str, Any]) -> Any:
    extensions = obj.get("extensions")
    if not isinstance(extensions, Mapping):
        return None
    return extensions.get(EXTENSION_ID)


def _check_entry(entry: Any, *, with_sig: bool) -> tuple[Algorithm, KeyId, str]:
    if not isinstance(entry, Mapping):
        raise SignatureError("the cx-sig entry must be a JSON object")
    expected = ENTRY_MEMBERS if with_sig else ENTRY_MEMBERS - {"sig"}
    extra = sorted(entry.keys() - expected)
    if extra:
        names = ", ".join(repr(name[:40]) for name in extra[:3])
        raise SignatureError(f"the cx-sig entry has unexpected member(s) {names}")
    missing = sorted(expected - entry.keys())
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise SignatureError(f"the cx-sig entry lacks {names}")
    if entry["extension_type"] != "property-extension":
        raise SignatureError("the cx-sig entry's extension_type must be 'property-extension'")
    if type(entry["v"]) is not int or entry["v"] != 1:
        raise SignatureError("the cx-sig entry's version 'v' must be the integer 1")
    alg = entry["alg"]
    if alg not in ALGORITHMS:
        raise SignatureError(f"the cx-sig entry's 'alg' must be one of {', '.join(ALGORITHMS)}")
    kid = entry["kid"]
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
        raise SignatureError("the cx-sig entry's 'kid' must be sha256:<43 base64url characters>")
    if entry["canon"] != CANON:
        raise SignatureError(f"the cx-sig entry's 'canon' must be {CANON!r}")
    signed_at = entry["signed_at"]
    if not isinstance(signed_at, str) or parse_timestamp(signed_at) is None:
        raise SignatureError(
            "the cx-sig entry's 'signed_at' must be a UTC timestamp such as"
            " 2025-01-31T12:00:00.000Z"
        )
    return alg, KeyId(kid), signed_at


def signature_of(obj: Mapping[str, Any]) -> SignatureEntry | None:
    """The object's cx-sig entry, shape-checked.

    Args:
        obj: A STIX object.

    Returns:
        The entry, or None when the object carries no cx-sig entry.

    Raises:
        SignatureError: The entry is present but malformed: not an object, a member
            missing or extra, a wrong constant, an unknown ``alg``, a malformed ``kid``,
            ``signed_at`` or ``sig``.
    """
    entry = _raw_entry(obj)
    if entry is None:
        return None
    alg, kid, signed_at = _check_entry(entry, with_sig=True)
    sig = entry["sig"]
    if not isinstance(sig, str):
        raise SignatureError("the cx-sig entry's 'sig' must be a string")
    return SignatureEntry(alg, kid, signed_at, b64url_decode_signature(sig))


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def sign_object(
    obj: Mapping[str, Any],
    key: SigningKey,
    *,
    signed_at: str | None = None,
    resign: bool = False,
    limits: Limits | None = None,
    attest: bool = False,
    checked: bool = False,
) -> dict[str, Any]:
    """Sign one STIX object version with cx-sig v1 (research/security.md 1.3, signing steps).

    Args:
        obj: The object; it is not modified.
        key: The signing key of the member contributing the object (the author's, or
            the relaying member's for a non-member's object or an SCO).
        signed_at: The claimed signing time, ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``; now (UTC,
            milliseconds) when omitted.
        resign: Replace an existing cx-sig entry instead of refusing.
        limits: Limits for the final strict check (default :class:`Limits`).
        attest: A node attestation (a copy the exchange derived, signed with a key of
            purpose ``node``): the object need not name a ``created_by_ref``, since a
            verifier binds a node key to the node, not to the object's author; and it is
            brought into normal form (:func:`~exchange.signing.canonical.normal_form`)
            instead of being refused when it is not, since the node writes the copy.
        checked: With ``attest``: the caller has passed the object (without the cx-sig
            entry) through :func:`~exchange.model.stix.validate_object`, so the normal
            form may skip stix2 for a shape it already re-emitted unchanged
            (:func:`~exchange.signing.canonical.normal_form`).

    Returns:
        A new dict, sharing nothing with ``obj``: the object with the cx-sig entry
        (``sig`` included) in ``extensions``.

    Raises:
        SignatureError: The object already carries a cx-sig entry and ``resign`` is false.
        InvalidObject: ``signed_at`` is malformed, ``extensions`` is not an object, the
            object is not in normal form (:func:`~exchange.signing.canonical.require_normal_form`),
            cannot be canonicalised, or fails the strict ingest check
            (:func:`~exchange.model.stix.validate_object`), or its canonical bytes would
            not parse back under the strict JSON profile (an integral float beyond 2**53,
            which RFC 8785 writes as an out-of-range integer).
        LimitExceeded: The object exceeds ``limits``.
    """
    return _sign(obj, key, signed_at=signed_at, resign=resign, limits=limits or Limits(),
                 attest=attest, checked=checked)[0]


def sign_validated(
    obj: Mapping[str, Any],
    key: SigningKey,
    *,
    signed_at: str | None = None,
    resign: bool = False,
    limits: Limits | None = None,
    attest: bool = False,
    checked: bool = False,
    verdict: StixObject | None = None,
) -> StixObject:
    """:func:`sign_object`, returning the strict check's verdict on the signed object.

    :func:`sign_object` ends with :func:`~exchange.model.stix.validate_object` on the
    object it signed; this returns that result (``data`` is the signed dict), so a caller
    that needs the :class:`~exchange.model.objects.StixObject` (canonical bytes, TLP)
    does not check the same object a second time.

    ``verdict`` (a node attestation only) is the caller's own
    :func:`~exchange.model.stix.validate_object` result for ``obj`` under the same
    ``limits``, ``verdict.data`` being ``obj`` itself, unchanged since. When the normal
    form is certainly ``obj`` itself (:func:`~exchange.signing.canonical.normal_form_same`),
    the signed object differs from it only by the cx-sig entry this function wrote, so the
    verdict is carried over (with the signed object's bytes, size-checked) instead of
    checking the object a second time; otherwise the signed object is checked as always.
    Given a verdict, the caller hands ``obj`` over: the signed object may share its values
    (``obj`` must not be changed afterwards).

    Args and Raises: as :func:`sign_object`.
    """
    if verdict is not None and (not attest or verdict.data is not obj):
        raise ValueError("verdict must be the strict check of obj itself, for an attestation")
    return _sign(obj, key, signed_at=signed_at, resign=resign, limits=limits or Limits(),
                 attest=attest, checked=checked, verdict=verdict)[1]


def _sign(
    obj: Mapping[str, Any],
    key: SigningKey,
    *,
    signed_at: str | None,
    resign: bool,
    limits: Limits,
    attest: bool,
    checked: bool = False,
    verdict: StixObject | None = None,
) -> tuple[dict[str, Any], StixObject]:
    label = _label(obj)
    if _raw_entry(obj) is not None and not resign:
        raise SignatureError(
            f"{label}: already carries a cx-sig signature; re-signing must be explicit"
            " (resign=True replaces it)"
        )
    stamp = _now() if signed_at is None else signed_at
    if parse_timestamp(stamp) is None:
        raise InvalidObject(
            f"signed_at {stamp[:40]!r} is not a UTC timestamp such as 2025-01-31T12:00:00.000Z"
        )
    # A node attestation is rebuilt by normal_form from a deep copy, so only the two
    # containers changed here need copying; a member's object is kept as it is and
    # returned, so it is copied whole.
    unsigned = dict(obj) if attest else copy.deepcopy(dict(obj))
    extensions = unsigned.get("extensions", {})
    if not isinstance(extensions, dict):
        raise InvalidObject(f"{label}: 'extensions' must be an object")
    extensions = dict(extensions) if attest else extensions
    extensions[EXTENSION_ID] = {
        "extension_type": "property-extension",
        "v": 1,
        "alg": key.alg,
        "kid": key.kid,
        "canon": CANON,
        "signed_at": stamp,
    }
    unsigned["extensions"] = extensions
    same = False
    if attest:
        # With a verdict the caller hands obj over (its check's own dict): the signed
        # object may share obj's values; only the two containers changed were copied.
        unsigned, same = normal_form_same(unsigned, checked=checked,
                                          share=verdict is not None)
        extensions = unsigned["extensions"]
    else:
        require_normal_form(unsigned)
    spliced = _payload_from(verdict, key, stamp, limits) if same else None
    payload, plain = ((spliced, True) if spliced is not None
                      else canonical_plain(unsigned, limits.max_depth))
    if len(payload) > limits.max_body_bytes or not plain:
        _require_round_trip(payload, label, limits)
    sig = b64url_encode(key.sign(pae(PAYLOAD_TYPE, payload)))
    entry = extensions[EXTENSION_ID]
    entry["sig"] = sig
    if verdict is None or not same:
        return unsigned, validate_object(unsigned, limits)
    # The verdict on obj holds for the signed object: the same values, and a cx-sig entry
    # of this function's making. Its bytes are the payload with "sig" in its sorted place
    # (before "signed_at") when the entry's bytes occur once, as they do unless another
    # dict of the object holds the very same entry; otherwise canonicalised again.
    unsigned_entry, before_sig, after_sig = _entry_forms(key.alg, key.kid, stamp)
    if payload.count(unsigned_entry) == 1:
        signed_bytes = payload.replace(unsigned_entry,
                                       before_sig + sig.encode("ascii") + after_sig)
    else:
        signed_bytes = canonical(unsigned)
    if len(signed_bytes) > limits.max_object_bytes:
        raise LimitExceeded(f"{label}: object is {len(signed_bytes)} bytes, limit is"
                            f" {limits.max_object_bytes}", http_status=413)
    return unsigned, replace(verdict, canonical=signed_bytes, data=unsigned)


#: Writes an entry of :func:`_sign`'s making in its RFC 8785 form: its members are ASCII
#: strings (the algorithm, a key id, the canonicalisation name, a timestamp, base64url) and
#: the integer 1, for which the standard encoder and RFC 8785 write the same bytes
#: (exchange.model.jcs), without first walking the value to prove it.
_ENTRY_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, sort_keys=True,
                                         separators=(",", ":"))


def _entry_bytes(entry: Mapping[str, Any], *, with_sig: bool) -> bytes:
    """The canonical bytes of ``"<cx-sig id>":<entry>`` as they sit in the object's.

    ``ensure_ascii`` makes any character beyond ASCII an escape RFC 8785 would not write,
    so such bytes could never be found in the payload: the caller then canonicalises the
    whole object again instead of trusting this form.
    """
    body = {name: value for name, value in entry.items() if with_sig or name != "sig"}
    return _ENTRY_ENCODER.encode({EXTENSION_ID: body})[1:-1].encode("ascii")


def _payload_from(verdict: StixObject | None, key: SigningKey, signed_at: str,
                  limits: Limits) -> bytes | None:
    """The payload of an attestation of ``verdict.data`` (an object with no
    ``extensions``, whose normal form is itself), made from the verdict's canonical bytes
    instead of encoding the object again; None where that does not apply.

    RFC 8785 writes an object as its members in key order, so with ASCII keys (a plain
    verdict has only those, :func:`~exchange.model.jcs.dumps_plain`) the members before
    ``"extensions"`` are the canonical bytes of those members alone, and the rest follow
    them: the ``extensions`` member goes in between. The entry holds ASCII strings and
    the integer 1, two levels below the object, so the payload is plain too when
    ``max_depth`` admits that nesting. ``tests/unit/signing/test_sign_verdict.py`` holds
    the payload equal to canonicalising the object, on every object of the real files.
    """
    if verdict is None or not verdict.plain or limits.max_depth < _ENTRY_DEPTH:
        return None
    obj = verdict.data
    if "extensions" in obj:
        return None
    whole = verdict.canonical
    head = jcs.dumps_part({name: value for name, value in obj.items()
                           if name < "extensions"})[1:-1]
    if not whole.startswith(head, 1):  # pragma: no cover - canonical order makes it so
        return None
    rest = whole[1 + len(head):-1]
    if head and rest:
        rest = rest[1:]  # the comma after the members before "extensions"
    member = b'"extensions":{' + _entry_forms(key.alg, key.kid, signed_at)[0] + b"}"
    return b"{" + b",".join(part for part in (head, member, rest) if part) + b"}"


#: The nesting the cx-sig entry adds: the object, its extensions, the entry (0, 1, 2).
_ENTRY_DEPTH: Final = 3


@functools.lru_cache(maxsize=32)
def _entry_forms(alg: str, kid: str, signed_at: str) -> tuple[bytes, bytes, bytes]:
    """The canonical bytes of the entry :func:`_sign` writes for this key and time
    (:func:`_entry_bytes`), without ``sig``, and with it as the two parts around the
    signature's own characters. An import signs every object of a run with the same key
    and ``signed_at``, so the entry's bytes are made once, not twice an object.
    ``tests/unit/signing/test_sign_verdict.py`` holds the result equal to canonicalising
    the signed object.
    """
    entry = {"extension_type": "property-extension", "v": 1, "alg": alg, "kid": kid,
             "canon": CANON, "signed_at": signed_at, "sig": ""}
    # A key id, an algorithm name and a checked timestamp hold no quote, so the empty
    # signature's member occurs once in these bytes.
    before, found, after = _entry_bytes(entry, with_sig=True).partition(b'"sig":""')
    if not found:  # pragma: no cover - guarded by the comment above
        raise ValueError("the cx-sig entry's bytes hold no sig member")
    return _entry_bytes(entry, with_sig=False), before + b'"sig":"', b'"' + after


def _require_round_trip(payload: bytes, label: str, limits: Limits) -> None:
    """Refuse content whose canonical bytes the strict parser would not read back.

    RFC 8785 writes an integral double such as ``1e17`` as ``100000000000000000``; read
    back, that is an integer beyond +-(2**53-1), which :func:`parse_json` (and RFC 8785
    itself) refuses. A verifier could then never parse the signed bytes.
    """
    try:
        again = canonical(parse_json(payload, limits))
    except (MalformedJSON, InvalidObject) as e:
        raise InvalidObject(
            f"{label}: its canonical bytes would not parse back under the strict JSON"
            f" profile ({e.reason}); use an integer within +-(2**53-1) or a string"
        ) from None
    if again != payload:  # pragma: no cover - canonical output always re-canonicalises
        raise InvalidObject(f"{label}: its canonical bytes do not survive a parse")


def verify_object(obj: Mapping[str, Any], resolve: KeyResolver) -> VerifiedSignature:
    """Verify the embedded cx-sig v1 signature of one object.

    Args:
        obj: The signed object, as parsed from JSON (strict profile).
        resolve: Maps the entry's key id to the trusted key; raises SignatureError for an
            unknown key id (e.g. :meth:`exchange.signing.registry.Registry.resolve`).

    Returns:
        The key id, algorithm, claimed signing time and signed bytes.

    Raises:
        SignatureError: The object is not signed ("object is not signed"), the entry is
            malformed, the key is unknown, the resolver returned another key, the entry's
            algorithm differs from the key's ("algorithm mismatch"), or the signature does
            not verify ("signature does not verify"). Reasons start with the object id.
        InvalidObject: The object cannot be canonicalised.
    """
    if not isinstance(obj, Mapping):
        raise SignatureError("a signed STIX object must be a JSON object")
    label = _label(obj)
    try:
        entry = signature_of(obj)
        if entry is None:
            raise SignatureError("object is not signed")
        key = resolve(entry.kid)
        if key.kid != entry.kid:
            raise SignatureError(f"the key resolver returned {key.kid} for {entry.kid}")
        if key.alg != entry.alg:
            raise SignatureError(
                f"algorithm mismatch: the signature claims {entry.alg}, key {key.kid} is {key.alg}"
            )
        signed_bytes = canonical(without_signature(obj))
        memo = (entry.kid, entry.signature, hashlib.sha256(signed_bytes).digest())
        if memo not in _VERIFIED:
            key.verify(pae(PAYLOAD_TYPE, signed_bytes), entry.signature)
            if len(_VERIFIED) >= _VERIFIED_SIZE:
                _VERIFIED.clear()
            _VERIFIED.add(memo)
    except SignatureError as e:
        raise SignatureError(f"{label}: {e.reason}") from None
    return VerifiedSignature(entry.kid, entry.alg, entry.signed_at, signed_bytes)


#: Signatures this process verified: (key id, signature, SHA-256 of the signed bytes). The
#: same object verified twice in a row (a peer's object checked against the peer's
#: registry, then by the node's own ingest) costs one signature check. Only successes are
#: kept; the key id is the digest of the key itself (the resolver's key was checked to
#: have that id, and its algorithm to be the entry's), so a hit means this very key
#: verified this very signature over these very bytes. Owner and time binding stay with
#: the caller, every time.
_VERIFIED: set[tuple[str, bytes, bytes]] = set()
_VERIFIED_SIZE = 100_000


def check_unsigned_entry(payload: Mapping[str, Any]) -> tuple[Algorithm, KeyId]:
    """The algorithm and key id of a cx-sig entry that must carry no ``sig`` (a DSSE payload).

    Raises:
        SignatureError: No cx-sig entry, a ``sig`` member, or a malformed entry.
    """
    entry = _raw_entry(payload)
    if entry is None:
        raise SignatureError("the signed payload carries no cx-sig entry")
    alg, kid, _ = _check_entry(entry, with_sig=False)
    return alg, kid
