"""cx-sig v1, detached form: the DSSE envelope of a signed STIX object.

The envelope (secure-systems-lab/dsse, envelope.md) carries the exact signed bytes, so it
survives systems that rewrite STIX, such as a MISP round trip (research/security.md 1.6)::

    {"payloadType": "application/vnd.cti-exchange.stix-object+json; v=1",
     "payload": base64(JCS(obj')),
     "signatures": [{"keyid": "sha256:...", "sig": base64(64-byte signature)}]}

``obj'`` is the object with only ``sig`` removed from its cx-sig entry, so the envelope's
signature is the embedded one, byte for byte: :func:`envelope_for` needs no private key,
and :func:`object_from_envelope` rebuilds the embedded form.

Verification follows DSSE protocol.md: the signature is checked over ``PAE(payloadType,
payload)`` *before* the payload is parsed; only then is it parsed with the strict JSON
profile (:func:`exchange.model.jsonparse.parse_json`). On top of DSSE, cx-sig v1 requires
exactly one signature, a ``keyid`` naming the key (DSSE's keyid is only a hint; here it
must equal the verified key's id), a payload that is already RFC 8785 canonical, and a
cx-sig entry in the payload (without ``sig``) naming the same key and algorithm. DSSE
lets verifiers accept standard and URL-safe base64; both are accepted, in canonical
spelling only.

Pure code, no I/O. Owner and time binding stay with the caller
(:class:`exchange.signing.registry.Registry`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, Final

from exchange.errors import SignatureError
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.signing.canonical import EXTENSION_ID, PAYLOAD_TYPE, canonical, pae, without_signature
from exchange.signing.cxsig import (
    KeyResolver,
    b64url_encode,
    check_unsigned_entry,
    signature_of,
)
from exchange.signing.definition import KID_PATTERN
from exchange.signing.keys import KeyId

__all__ = ["envelope_for", "object_from_envelope", "object_matches_envelope", "verify_envelope"]

_ENVELOPE_MEMBERS: Final = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_MEMBERS: Final = frozenset({"keyid", "sig"})
_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_KID = re.compile(KID_PATTERN)


def _b64decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"envelope {what} must be a base64 string")
    if _STANDARD.fullmatch(value):
        altchars = b"+/"
    elif _URL_SAFE.fullmatch(value):
        altchars = b"-_"
    else:
        raise SignatureError(f"envelope {what} is not base64")
    bare = value.rstrip("=")
    try:
        data = base64.b64decode(bare + "=" * (-len(bare) % 4), altchars, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"envelope {what} is not valid base64") from None
    padded = base64.b64encode(data, altchars).decode("ascii")
    if value not in (padded, padded.rstrip("=")):
        raise SignatureError(f"envelope {what} is not canonical base64")
    return data


def _payload_of(envelope: Any) -> bytes:
    if not isinstance(envelope, Mapping):
        raise SignatureError("a DSSE envelope must be a JSON object")
    extra = sorted(envelope.keys() - _ENVELOPE_MEMBERS)
    if extra:
        names = ", ".join(repr(str(name)[:40]) for name in extra[:3])
        raise SignatureError(f"the envelope has unexpected member(s) {names}")
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        shown = repr(payload_type)[:80]
        raise SignatureError(f"envelope payloadType is {shown}, expected {PAYLOAD_TYPE!r}")
    return _b64decode(envelope.get("payload"), "payload")


def envelope_for(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The DSSE envelope of an object signed with :func:`~exchange.signing.cxsig.sign_object`.

    Args:
        obj: A signed object (its signature is copied, not checked).

    Returns:
        ``{"payloadType", "payload", "signatures": [{"keyid", "sig"}]}`` with standard
        padded base64 (DSSE's examples).

    Raises:
        SignatureError: The object is not signed, or its entry is malformed.
        InvalidObject: The object cannot be canonicalised.
    """
    entry = signature_of(obj)
    if entry is None:
        raise SignatureError("object is not signed")
    payload = canonical(without_signature(obj))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": entry.kid, "sig": base64.b64encode(entry.signature).decode("ascii")}
        ],
    }


def _verify(
    envelope: Any, resolve: KeyResolver, limits: Limits | None
) -> tuple[dict[str, Any], bytes]:
    payload = _payload_of(envelope)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise SignatureError("a cx-sig envelope carries exactly one signature")
    item = signatures[0]
    if not isinstance(item, Mapping) or item.keys() != _SIGNATURE_MEMBERS:
        raise SignatureError("an envelope signature must have exactly 'keyid' and 'sig'")
    keyid = item["keyid"]
    if not isinstance(keyid, str) or _KID.fullmatch(keyid) is None:
        raise SignatureError("envelope keyid must be sha256:<43 base64url characters>")
    signature = _b64decode(item["sig"], "sig")
    key = resolve(KeyId(keyid))
    if key.kid != keyid:
        raise SignatureError(f"the key resolver returned {key.kid} for {keyid}")
    key.verify(pae(PAYLOAD_TYPE, payload), signature)  # before anything parses the payload
    obj = parse_json(payload, limits or Limits())
    if not isinstance(obj, dict):
        raise SignatureError("the envelope payload is not a JSON object")
    if canonical(obj) != payload:
        raise SignatureError("the envelope payload is not RFC 8785 canonical JSON")
    alg, kid = check_unsigned_entry(obj)
    if kid != keyid:
        raise SignatureError(f"envelope keyid {keyid} differs from the payload's cx-sig kid {kid}")
    if alg != key.alg:
        raise SignatureError(
            f"algorithm mismatch: the payload claims {alg}, key {key.kid} is {key.alg}"
        )
    return obj, signature


def verify_envelope(
    envelope: Mapping[str, Any], resolve: KeyResolver, *, limits: Limits | None = None
) -> dict[str, Any]:
    """Verify a cx-sig DSSE envelope, then parse its payload.

    Args:
        envelope: The envelope, as parsed from JSON.
        resolve: Maps the key id to the trusted key; raises SignatureError when unknown.
        limits: Limits for parsing the payload (default :class:`Limits`).

    Returns:
        The signed object without ``sig`` (the payload, parsed).

    Raises:
        SignatureError: Wrong shape or payload type, not exactly one signature, bad
            base64, unknown key, a signature that does not verify, a payload that is not
            a canonical JSON object, or a payload whose cx-sig entry names another key or
            algorithm.
        MalformedJSON: The (verified) payload breaks the strict JSON profile.
        LimitExceeded: The (verified) payload exceeds ``limits``.
    """
    obj, _ = _verify(envelope, resolve, limits)
    return obj


def object_from_envelope(
    envelope: Mapping[str, Any], resolve: KeyResolver, *, limits: Limits | None = None
) -> dict[str, Any]:
    """Verify an envelope and rebuild the embedded form (the payload with ``sig`` put back).

    The result verifies with :func:`~exchange.signing.cxsig.verify_object` under the same
    key, and its canonical bytes are those of the object the signer published.

    Raises:
        SignatureError: As for :func:`verify_envelope`.
        MalformedJSON: As for :func:`verify_envelope`.
        LimitExceeded: As for :func:`verify_envelope`.
    """
    obj, signature = _verify(envelope, resolve, limits)
    obj["extensions"][EXTENSION_ID]["sig"] = b64url_encode(signature)
    return obj


def object_matches_envelope(obj: Mapping[str, Any], envelope: Mapping[str, Any]) -> bool:
    """Whether the envelope's payload is exactly this object's signed content.

    Compares ``JCS(obj')`` with the payload bytes; signatures are not compared (verify the
    envelope with :func:`verify_envelope` for that).

    Args:
        obj: A signed STIX object.
        envelope: A cx-sig DSSE envelope.

    Returns:
        True when the payload equals the canonical object without ``sig``.

    Raises:
        SignatureError: The envelope is malformed or of another payload type.
        InvalidObject: The object cannot be canonicalised.
    """
    return _payload_of(envelope) == canonical(without_signature(obj))
