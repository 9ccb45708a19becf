"""Offline verification by a consumer: the published registry and the verdict per object."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from exchange.errors import SignatureError
from exchange.member.verification import check_object, describe, summarise
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey
from exchange.signing.published import PublishedKey, read_registry, registry_document
from exchange.signing.registry import KeyRecord, Registry, parse_micros
from tests.unit.signing.helpers import OTHER, OWNER, SIGNED_AT, fixed_key, indicator

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


def signed(key: SigningKey, **changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), key, signed_at=SIGNED_AT)


def test_the_document_round_trips_deterministically() -> None:
    assert registry_document(reversed(KEYS), node_identity=NODE) == DOCUMENT
    assert list(TRUSTED.registry) == list(Registry(k.record for k in KEYS))
    assert TRUSTED.node_kids == {NODE_KEY.kid}
    assert TRUSTED.node_identity == NODE
    assert TRUSTED.owner_of(PK.kid) == "PK-CERT"
    document = json.loads(DOCUMENT)
    assert document["extension_definition"] == EXTENSION_ID
    assert [k["kid"] for k in document["keys"]] == sorted(k.record.kid for k in KEYS)


def test_a_plain_key_registry_is_read_too() -> None:
    plain = Registry(k.record for k in KEYS).to_json()
    trusted = read_registry(plain)
    assert list(trusted.registry) == list(TRUSTED.registry)
    assert trusted.owner_names == {}
    assert check_object(trusted, signed(UZ), now=NOW).owner == OWNER


def _edit(change: Any) -> str:
    document = json.loads(DOCUMENT)
    change(document)
    return json.dumps(document)


@pytest.mark.parametrize(("text", "phrase"), [
    pytest.param(_edit(lambda d: d.update(extra=1)), "exactly the members", id="extra-member"),
    pytest.param(_edit(lambda d: d.update(v=2)), "version 1", id="other-version"),
    pytest.param(_edit(lambda d: d.update(
        extension_definition="extension-definition--00000000-0000-4000-8000-000000000000")),
                 "another signature format", id="other-extension"),
    pytest.param(_edit(lambda d: d["keys"][0].pop("purpose")), "purpose and owner_name",
                 id="key-without-purpose"),
    pytest.param(_edit(lambda d: d["keys"][0].update(purpose="receipts")), "purpose must be",
                 id="unknown-purpose"),
    pytest.param(_edit(lambda d: d.update(node_identity=OWNER)),
                 "must be owned by the node identity", id="node-key-of-another-owner"),
    pytest.param(_edit(lambda d: d["keys"][0].update(kid=d["keys"][1]["kid"])),
                 r"public key's id|listed twice", id="wrong-kid"),
])
def test_malformed_documents_are_refused(text: str, phrase: str) -> None:
    with pytest.raises(SignatureError, match=phrase):
        read_registry(text)


def tampered(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    copied.update(changes)
    return copied


# (object, recorded between, expected status, expected reason fragment)
CASES: list[Any] = [
    pytest.param(signed(UZ), None, "valid", "", id="valid-unknown-time"),
    pytest.param(indicator(), None, "unsigned", "", id="unsigned"),
    pytest.param(tampered(signed(UZ), confidence=1), None, "invalid",
                 "signature does not verify", id="changed-content"),
    pytest.param(signed(PK), None, "invalid",
                 f"belongs to PK-CERT, not to the object's created_by_ref {OWNER}",
                 id="forged-created-by-ref"),
    pytest.param(signed(fixed_key("Ed25519", 9)), None, "invalid", "is not registered",
                 id="unknown-key"),
    pytest.param(signed(FUTURE), None, "invalid", "not yet valid", id="key-not-yet-valid"),
    pytest.param(signed(UZ_RETIRED), None, "valid", "", id="retired-key-unknown-time"),
    pytest.param(signed(UZ_RETIRED), (MAR, MAR), "invalid", "retired since",
                 id="retired-key-recorded-after"),
    pytest.param(signed(UZ_REVOKED), None, "invalid", "not known here",
                 id="revoked-key-unknown-time"),
    pytest.param(signed(UZ_REVOKED), (JAN, MAR - 1), "valid", "",
                 id="revoked-key-page-before-compromise"),
    pytest.param(signed(UZ_REVOKED), (MAR, JUN), "invalid", "compromised since",
                 id="revoked-key-page-after-compromise"),
    pytest.param(signed(UZ_REVOKED), (JAN, JUN), "invalid", "valid only from",
                 id="revoked-key-page-straddles-compromise"),
    pytest.param(signed(UZ), (JAN - 10, JAN + 10), "invalid", "valid only from",
                 id="page-straddles-valid-from"),
    pytest.param(signed(UZ), (JAN - 10, JAN - 1), "invalid", "not yet valid",
                 id="page-before-valid-from"),
    pytest.param(tampered(signed(UZ), extensions={EXTENSION_ID: {"v": 1}}), None, "invalid",
                 "lacks", id="malformed-entry"),
]


@pytest.mark.parametrize(("obj", "between", "status", "reason"), CASES)
def test_verdicts(obj: dict[str, Any], between: tuple[int, int] | None, status: str,
                  reason: str) -> None:
    verdict = check_object(TRUSTED, obj, recorded_between=between, now=NOW)
    assert verdict.status == status
    assert reason in verdict.reason
    assert verdict.object_id == obj["id"]
    assert not verdict.reason.startswith(obj["id"])
    assert verdict.needs_recording_time == ("valid only from" in reason)
    if status == "valid":
        assert verdict.owner == "UZ-CERT"


def test_summary_and_lines() -> None:
    verdicts = [check_object(TRUSTED, obj, now=NOW)
                for obj in (signed(UZ), indicator(), signed(PK))]
    counts = summarise(verdicts)
    assert (counts["valid"], counts["unsigned"], counts["invalid"]) == (1, 1, 1)
    assert counts["invalid_objects"][0]["reason"].startswith(f"key {PK.kid} belongs to")
    lines = [describe(v) for v in verdicts]
    assert lines[0] == f"valid    {indicator()['id']}  ({UZ.kid}, UZ-CERT)"
    assert lines[1] == f"unsigned {indicator()['id']}"
    assert lines[2].startswith(f"invalid  {indicator()['id']}: key {PK.kid}")
