"""A published member registry for tests: keys of two members and of the node, with
retired, revoked and not-yet-valid ones (used by the registry and verification tests)."""

from __future__ import annotations

from typing import Any

from exchange.signing.keys import SigningKey
from exchange.signing.published import PublishedKey, read_registry, registry_document
from exchange.signing.registry import KeyRecord, parse_micros
from tests.unit.signing.helpers import OTHER, OWNER, fixed_key

T = parse_micros
JAN, MAR, JUN = T("2025-01-01T00:00:00Z"), T("2025-03-01T00:00:00Z"), T("2025-06-01T00:00:00Z")
NOW = T("2025-09-01T00:00:00Z")
NODE = "identity--0c1e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
UZ, UZ_RETIRED, UZ_REVOKED = fixed_key("Ed25519", 1), fixed_key("ECDSA-P256", 1), \
    fixed_key("Ed25519", 4)
PK, NODE_KEY, FUTURE = fixed_key("Ed25519", 2), fixed_key("Ed25519", 7), fixed_key("Ed25519", 3)


def rec(key: SigningKey, owner: str, **kw: Any) -> KeyRecord:
    return KeyRecord(kid=key.kid, alg=key.alg, public_pem=key.public_pem(),
                     owner_identity=owner, valid_from=kw.pop("valid_from", JAN), **kw)


KEYS = [
    PublishedKey(rec(UZ, OWNER), "object", "UZ-CERT"),
    PublishedKey(rec(UZ_RETIRED, OWNER, status="retired", valid_until=MAR), "object", "UZ-CERT"),
    PublishedKey(rec(UZ_REVOKED, OWNER, status="revoked", compromised_since=MAR), "object",
                 "UZ-CERT"),
    PublishedKey(rec(FUTURE, OWNER, valid_from=NOW + 1), "object", "UZ-CERT"),
    PublishedKey(rec(PK, OTHER), "object", "PK-CERT"),
    PublishedKey(rec(NODE_KEY, NODE), "node", "exchange node"),
]
DOCUMENT = registry_document(KEYS, node_identity=NODE)
TRUSTED = read_registry(DOCUMENT)
