"""The published registry, signed by the node: what a peer node pins and checks.

A node serves its member registry (:mod:`exchange.signing.published`) also as a DSSE
envelope (secure-systems-lab/dsse, envelope.md) signed with one of its own node keys
(research/security.md 1.5: distribute the registry signed)::

    {"payloadType": "application/vnd.cti-exchange.member-registry+json; v=1",
     "payload": base64(<the registry document, as published>),
     "signatures": [{"keyid": "sha256:...", "sig": base64(signature over PAE)}]}

A peer node trusts it through a **pin**: the key id (``sha256:`` + base64url of the
SHA-256 of the DER SubjectPublicKeyInfo) of the signing node key, which its operator
reads out of band and confirms. The key id is a digest of the public key, so the pin
binds the key itself:

* :func:`pin_key` (first contact): the envelope's payload is parsed (strictly, with
  limits) only to find the node key the pinned id names; its public key must hash to
  the pin, and the envelope's signature must verify with it. The pinned public key is
  kept from then on.
* :func:`open_signed_registry` (every later fetch): the signature is checked with a
  pinned public key *before* the payload is parsed (DSSE protocol.md); only then is the
  registry read. An envelope signed by any other key is refused.

A node that rotates its node key signs with the new one: its peers pin the new key id
(``exchange peer trust`` again) before they accept the registry. Pure code, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from exchange.errors import ExchangeError, SignatureError
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.signing.canonical import pae
from exchange.signing.keys import KeyId, PublicKey, SigningKey, load_public_pem
from exchange.signing.published import TrustedKeys, read_registry

__all__ = [
    "REGISTRY_PAYLOAD_TYPE",
    "open_signed_registry",
    "pin_key",
    "sign_registry",
]

REGISTRY_PAYLOAD_TYPE: Final = "application/vnd.cti-exchange.member-registry+json; v=1"
_MEMBERS: Final = frozenset({"payloadType", "payload", "signatures"})
#: A signed registry is small (a few keys per member); refuse anything much larger.
_MAX_ENVELOPE_BYTES: Final = 4 * 1024 * 1024


def sign_registry(document: str, key: SigningKey) -> str:
    """The registry document as a DSSE envelope signed with a node key.

    Args:
        document: The published registry text (:func:`registry_document`).
        key: One of the node's own keys.

    Returns:
        The envelope as JSON text (one line, then a newline).
    """
    payload = document.encode("utf-8")
    signature = key.sign(pae(REGISTRY_PAYLOAD_TYPE, payload))
    envelope = {
        "payloadType": REGISTRY_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": key.kid,
                        "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return json.dumps(envelope, sort_keys=True) + "\n"


def _parts(data: bytes, limits: Limits) -> tuple[bytes, KeyId, bytes]:
    """The payload, the signing key id and the signature of an envelope (unverified).

    Raises:
        SignatureError: Not a signed registry envelope with exactly one signature.
    """
    if len(data) > _MAX_ENVELOPE_BYTES:
        raise SignatureError(f"the signed registry is larger than {_MAX_ENVELOPE_BYTES} bytes")
    try:
        envelope: Any = parse_json(data, limits)
    except ExchangeError as e:
        raise SignatureError(f"the signed registry is not valid JSON: {e.reason}") from e
    if not isinstance(envelope, dict) or envelope.keys() != _MEMBERS:
        raise SignatureError("a signed registry is a DSSE envelope with exactly the members"
                             " payload, payloadType, signatures")
    if envelope["payloadType"] != REGISTRY_PAYLOAD_TYPE:
        raise SignatureError(f"the envelope's payloadType is not {REGISTRY_PAYLOAD_TYPE}")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1 \
            or not isinstance(signatures[0], dict) or signatures[0].keys() != {"keyid", "sig"}:
        raise SignatureError("a signed registry carries exactly one signature"
                             " {keyid, sig}")
    kid, sig = signatures[0]["keyid"], signatures[0]["sig"]
    if not isinstance(kid, str) or not isinstance(sig, str) \
            or not isinstance(envelope["payload"], str):
        raise SignatureError("the envelope's payload, keyid and sig must be strings")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError("the envelope's payload or sig is not base64") from e
    return payload, KeyId(kid[:200]), signature


def _verify(payload: bytes, signature: bytes, key: PublicKey) -> None:
    key.verify(pae(REGISTRY_PAYLOAD_TYPE, payload), signature)


def pin_key(data: bytes, fingerprint: str, *, limits: Limits | None = None
            ) -> tuple[KeyId, str, TrustedKeys]:
    """First contact: the pinned node key, found in a signed registry and checked.

    Args:
        data: The signed registry (the envelope's bytes).
        fingerprint: The node key id the operator confirmed out of band.
        limits: Parsing limits.

    Returns:
        The key id, its public key (PEM) and the registry it signed.

    Raises:
        SignatureError: The envelope is malformed, is not signed by that key, the
            registry does not publish that key as a node key, or the signature fails.
    """
    limits = limits or Limits()
    payload, kid, signature = _parts(data, limits)
    if kid != fingerprint:
        raise SignatureError(f"the registry is signed by {kid}, not by the pinned node key"
                             f" {fingerprint[:80]}")
    trusted = read_registry(payload, limits=limits)
    if KeyId(fingerprint) not in trusted.node_kids:
        raise SignatureError(f"the registry publishes no node key {fingerprint[:80]}")
    record = trusted.registry.record(KeyId(fingerprint))
    key = load_public_pem(record.public_pem)
    if key.kid != fingerprint:  # the key id is the digest of the key: this is the key
        raise SignatureError(f"the published key does not hash to {fingerprint[:80]}")
    _verify(payload, signature, key)
    return key.kid, key.pem, trusted


def open_signed_registry(data: bytes, pins: Mapping[str, str], *,
                         limits: Limits | None = None) -> TrustedKeys:
    """A signed registry checked against the pinned node keys, then read.

    Args:
        data: The signed registry (the envelope's bytes).
        pins: Pinned key id -> public key PEM.
        limits: Parsing limits.

    Returns:
        The registry's keys.

    Raises:
        SignatureError: The envelope is malformed, signed by a key that is not pinned, or
            its signature fails; or the registry inside is malformed.
    """
    limits = limits or Limits()
    payload, kid, signature = _parts(data, limits)
    pem = pins.get(kid)
    if pem is None:
        raise SignatureError(f"the registry is signed by {kid}, which is not a pinned node"
                             " key of this peer (pin it with 'exchange peer trust' after"
                             " confirming its fingerprint)")
    key = load_public_pem(pem)
    if key.kid != kid:
        raise SignatureError(f"the pinned public key does not hash to {kid}")
    _verify(payload, signature, key)
    return read_registry(payload, limits=limits)
