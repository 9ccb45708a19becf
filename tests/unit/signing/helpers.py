"""Shared test data for the signing tests: fixed TEST-ONLY keys, objects, resolvers.

The keys are derived from public labels (SHA-256 of ``"cx-sig v1 TEST-ONLY key: <alg> #<n>"``),
so they are reproducible and obviously not secret. Never use them for anything real.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from typing import Any

from exchange.errors import SignatureError
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.keys import (
    ALGORITHMS,
    Algorithm,
    KeyId,
    PublicKey,
    SigningKey,
    load_raw_private_key,
)

OWNER = "identity--5c0bb7c1-9a4e-4b83-8f67-0c4f1e2d3a11"  # "UZ-CERT" in these tests
OTHER = "identity--7e1d2c3b-4a59-4687-9f0e-1d2c3b4a5968"  # "PK-CERT" in these tests
SIGNED_AT = "2025-03-01T09:30:00.000Z"
ALGS: tuple[Algorithm, ...] = ALGORITHMS


def fixed_key(alg: Algorithm, number: int = 1) -> SigningKey:
    """A reproducible TEST-ONLY key."""
    raw = hashlib.sha256(f"cx-sig v1 TEST-ONLY key: {alg} #{number}".encode()).digest()
    return load_raw_private_key(alg, raw)


def resolver(*keys: SigningKey | PublicKey) -> Callable[[KeyId], PublicKey]:
    """A key resolver knowing exactly ``keys``; unknown ids raise SignatureError."""
    known = {key.kid: key if isinstance(key, PublicKey) else key.public_key for key in keys}

    def resolve(kid: KeyId) -> PublicKey:
        try:
            return known[kid]
        except KeyError:
            raise SignatureError(f"key {kid} is not registered") from None

    return resolve


def indicator(**changes: Any) -> dict[str, Any]:
    """A typical (~1 KB) TLP:GREEN indicator in normal form, by OWNER."""
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--3f6c1d2e-8b7a-4c59-9e10-2a3b4c5d6e7f",
        "created": "2025-02-27T11:04:05.123Z",
        "modified": "2025-02-28T08:15:00.000Z",
        "created_by_ref": OWNER,
        "name": "Phishing landing page for a Tashkent bank (Ташкент)",
        "description": (
            "Credential-harvesting page imitating an online banking login; observed in a"
            " spear-phishing wave against finance staff. Contact the SOC before blocking:"
            ' the host also serves a legitimate CDN path. \u00abQuoted\u00bb and "escaped".'
        ),
        "indicator_types": ["malicious-activity", "attribution"],
        "pattern": "[url:value = 'https://login-secure.example-bank.test/auth?session=1']",
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": "2025-02-27T11:04:05.123Z",
        "valid_until": "2025-05-27T11:04:05.123Z",
        "confidence": 80,
        "labels": ["phishing", "credential-theft"],
        "kill_chain_phases": [
            {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "delivery"}
        ],
        "external_references": [
            {"source_name": "uz-cert", "external_id": "UZ-2025-0142"},
        ],
        "object_marking_refs": [TLP2_IDS[Tlp.GREEN]],
    }
    obj.update(changes)
    return obj


def entry(obj: dict[str, Any]) -> dict[str, Any]:
    """The cx-sig entry of a signed object (mutable, for tampering)."""
    result: dict[str, Any] = obj["extensions"][EXTENSION_ID]
    return result


def tampered(obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``change`` applied to it."""
    copied = copy.deepcopy(obj)
    change(copied)
    return copied


def b64url(data: bytes) -> str:
    """Unpadded base64url, written independently of the code under test."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def spki_kid(pem: str) -> str:
    """The key id computed from the PEM text alone (no cryptography library)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return "sha256:" + b64url(hashlib.sha256(base64.b64decode(body)).digest())
