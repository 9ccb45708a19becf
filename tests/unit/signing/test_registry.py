"""Owner and time binding through the key registry (exchange.signing.registry)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from exchange.errors import MalformedJSON, SignatureError
from exchange.signing.canonical import EXTENSION_ID, signing_input
from exchange.signing.cxsig import sign_object, verify_object
from exchange.signing.keys import ALGORITHMS, SigningKey
from exchange.signing.registry import KeyRecord, Registry, format_micros, parse_micros
from tests.unit.signing.helpers import OTHER, OWNER, SIGNED_AT, b64url, fixed_key, indicator

T = parse_micros


def record(key: SigningKey, **changes: Any) -> KeyRecord:
    base = KeyRecord(
        kid=key.kid,
        alg=key.alg,
        public_pem=key.public_pem(),
        owner_identity=OWNER,
        valid_from=T("2025-01-01T00:00:00Z"),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture(params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    return fixed_key(request.param)


def test_time_formatting_round_trip() -> None:
    for text in ("1970-01-01T00:00:00Z", "2025-03-01T09:30:00.000001Z", "2038-01-19T03:14:08.5Z"):
        assert T(format_micros(T(text))) == T(text)
    assert format_micros(T("2025-03-01T09:30:00.250Z")) == "2025-03-01T09:30:00.250000Z"
    assert format_micros(0) == "1970-01-01T00:00:00Z"
    for bad in ("2025-02-30T00:00:00Z", "2025-03-01 09:30:00Z", "2025-03-01T09:30:00+00:00"):
        with pytest.raises(SignatureError):
            T(bad)


# (record changes, recorded at, expected reason or None when accepted)
CHECKS: list[Any] = [
    pytest.param({}, "2025-06-01T00:00:00Z", None, id="active-key-in-window"),
    pytest.param(
        {},
        "2024-12-31T23:59:59.999999Z",
        "was not yet valid at 2024-12-31T23:59:59.999999Z",
        id="not-yet-valid",
    ),
    pytest.param(
        {"valid_until": T("2025-07-01T00:00:00Z")}, "2025-06-30T23:59:59Z", None, id="before-expiry"
    ),
    pytest.param(
        {"valid_until": T("2025-07-01T00:00:00Z")},
        "2025-07-01T00:00:00Z",
        "expired at 2025-07-01T00:00:00Z",
        id="expired",
    ),
    pytest.param(
        {"status": "retired", "valid_until": T("2025-07-01T00:00:00Z")},
        "2025-06-30T00:00:00Z",
        None,
        id="retired-key-object-recorded-before",
    ),
    pytest.param(
        {"status": "retired", "valid_until": T("2025-07-01T00:00:00Z")},
        "2025-07-02T00:00:00Z",
        "is retired since 2025-07-01T00:00:00Z",
        id="retired-key-object-recorded-after",
    ),
    pytest.param(
        {"status": "revoked", "compromised_since": T("2025-05-01T12:00:00Z")},
        "2025-05-01T11:59:59Z",
        None,
        id="revoked-key-object-recorded-before-compromise",
    ),
    pytest.param(
        {"status": "revoked", "compromised_since": T("2025-05-01T12:00:00Z")},
        "2025-05-01T12:00:00Z",
        "was revoked: compromised since 2025-05-01T12:00:00Z",
        id="revoked-key-at-compromise",
    ),
    pytest.param(
        {"status": "revoked", "compromised_since": T("2025-05-01T12:00:00Z")},
        "2025-09-01T00:00:00Z",
        "was revoked: compromised since",
        id="revoked-key-after-compromise",
    ),
    pytest.param(
        {"owner_identity": OTHER},
        "2025-06-01T00:00:00Z",
        f"belongs to {OTHER}, not created_by_ref {OWNER}",
        id="owner-mismatch",
    ),
]


@pytest.mark.parametrize(("changes", "at", "reason"), CHECKS)
def test_check(key: SigningKey, changes: dict[str, Any], at: str, reason: str | None) -> None:
    registry = Registry([record(key, **changes)])
    signed = sign_object(indicator(), key, signed_at=SIGNED_AT)
    if reason is None:
        assert registry.check(key.kid, owner_identity=OWNER, at=T(at)).kid == key.kid
        assert registry.verify_object(signed, recorded_at=T(at)).kid == key.kid
        return
    with pytest.raises(SignatureError) as caught:
        registry.check(key.kid, owner_identity=OWNER, at=T(at))
    assert reason in caught.value.reason
    assert key.kid in caught.value.reason
    with pytest.raises(SignatureError, match="key sha256:"):
        registry.verify_object(signed, recorded_at=T(at))


def test_signer_claimed_time_does_not_matter(key: SigningKey) -> None:
    # signed_at inside the window does not rescue an object recorded after the compromise.
    registry = Registry(
        [record(key, status="revoked", compromised_since=T("2025-05-01T00:00:00Z"))]
    )
    signed = sign_object(indicator(), key, signed_at="2025-02-01T00:00:00.000Z")
    with pytest.raises(SignatureError, match="was revoked"):
        registry.verify_object(signed, recorded_at=T("2025-06-01T00:00:00Z"))


def test_unregistered_key(key: SigningKey) -> None:
    registry = Registry([record(fixed_key(key.alg, 2))])
    with pytest.raises(SignatureError, match=f"key {key.kid} is not registered"):
        registry.resolve(key.kid)
    with pytest.raises(SignatureError, match="is not registered"):
        registry.check(key.kid, owner_identity=OWNER, at=T("2025-06-01T00:00:00Z"))
    signed = sign_object(indicator(), key, signed_at=SIGNED_AT)
    with pytest.raises(SignatureError, match="is not registered"):
        registry.verify_object(signed, recorded_at=T("2025-06-01T00:00:00Z"))


def test_forged_created_by_ref_signed_by_the_wrong_member() -> None:
    # PK-CERT's key signs an object claiming to be UZ-CERT's: the signature verifies, the
    # owner binding does not.
    uz, pk = fixed_key("Ed25519", 1), fixed_key("ECDSA-P256", 1)
    registry = Registry([record(uz), record(pk, owner_identity=OTHER)])
    forged = sign_object(indicator(created_by_ref=OWNER), pk, signed_at=SIGNED_AT)
    with pytest.raises(SignatureError, match=f"belongs to {OTHER}, not created_by_ref {OWNER}"):
        registry.verify_object(forged, recorded_at=T("2025-06-01T00:00:00Z"))


def test_resolve_returns_revoked_keys_too(key: SigningKey) -> None:
    registry = Registry(
        [record(key, status="revoked", compromised_since=T("2025-02-01T00:00:00Z"))]
    )
    assert registry.resolve(key.kid) == key.public_key


INCONSISTENT: list[Any] = [
    pytest.param({"kid": "sha256:" + "A" * 43}, "the public key's id is", id="kid-not-of-key"),
    pytest.param({"alg": "ECDSA-P256"}, "recorded as", id="alg-not-of-key"),
    pytest.param({"public_pem": "garbage"}, "not a PEM public key", id="bad-pem"),
    pytest.param(
        {"owner_identity": "UZ-CERT"}, "owner_identity must be identity--", id="owner-not-identity"
    ),
    pytest.param({"status": "lost"}, "status must be one of", id="unknown-status"),
    pytest.param(
        {"valid_until": T("2024-12-31T00:00:00Z")},
        "valid_until is not after valid_from",
        id="empty-window",
    ),
    pytest.param(
        {"status": "retired"}, "a retired key needs valid_until", id="retired-without-end"
    ),
    pytest.param(
        {"status": "revoked"},
        "compromised_since is set exactly when",
        id="revoked-without-compromise",
    ),
    pytest.param(
        {"compromised_since": T("2025-02-01T00:00:00Z")},
        "compromised_since is set exactly when",
        id="compromise-on-active-key",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), INCONSISTENT)
def test_inconsistent_records_are_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        Registry([record(fixed_key("Ed25519"), **changes)])


def test_duplicate_key_is_refused() -> None:
    with pytest.raises(SignatureError, match="listed twice"):
        Registry([record(fixed_key("Ed25519")), record(fixed_key("Ed25519"), owner_identity=OTHER)])


def _full_registry() -> Registry:
    return Registry(
        [
            record(fixed_key("Ed25519", 1)),
            record(
                fixed_key("Ed25519", 2), status="retired", valid_until=T("2025-07-01T00:00:00.5Z")
            ),
            record(fixed_key("ECDSA-P256", 1), owner_identity=OTHER),
            record(
                fixed_key("ECDSA-P256", 2),
                owner_identity=OTHER,
                status="revoked",
                compromised_since=T("2025-05-01T12:00:00Z"),
            ),
        ]
    )


def test_registry_document_round_trip_is_deterministic() -> None:
    registry = _full_registry()
    text = registry.to_json()
    again = Registry.from_json(text)
    assert list(again) == list(registry)
    assert again.to_json() == text
    assert Registry(reversed(list(registry))).to_json() == text  # input order is irrelevant
    document = json.loads(text)
    assert [item["kid"] for item in document["keys"]] == sorted(r.kid for r in registry)
    assert document["keys"][0].keys() >= {"valid_until", "compromised_since"}
    assert '"valid_until": "2025-07-01T00:00:00.500000Z"' in text
    assert text.endswith("}\n")


def _document_with(change: Any) -> str:
    document = json.loads(_full_registry().to_json())
    change(document)
    return json.dumps(document)


BAD_DOCUMENTS: list[Any] = [
    pytest.param(
        lambda d: d.__setitem__("extra", 1),
        "exactly the members type, v and keys",
        id="extra-member",
    ),
    pytest.param(lambda d: d.__setitem__("v", 2), "version 1", id="wrong-version"),
    pytest.param(lambda d: d.__setitem__("v", True), "version 1", id="version-true"),
    pytest.param(
        lambda d: d.__setitem__("type", "member-registry"), "not a cx-key-registry", id="wrong-type"
    ),
    pytest.param(lambda d: d.__setitem__("keys", {}), "'keys' must be a list", id="keys-not-list"),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("note", "x"),
        "exactly the members",
        id="key-extra-member",
    ),
    pytest.param(
        lambda d: d["keys"][0].pop("status"), "exactly the members", id="key-missing-member"
    ),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("valid_from", 0), "must be a string", id="time-as-number"
    ),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("valid_until", 5), "string or null", id="until-as-number"
    ),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("valid_from", "soon"),
        "not a UTC timestamp",
        id="time-malformed",
    ),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("alg", "RS256"),
        "algorithm must be one of",
        id="alg-unknown",
    ),
    pytest.param(
        lambda d: d["keys"][0].__setitem__("status", "ok"),
        "status must be one of",
        id="status-unknown",
    ),
]


@pytest.mark.parametrize(("change", "reason"), BAD_DOCUMENTS)
def test_bad_registry_documents_are_refused(change: Any, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        Registry.from_json(_document_with(change))


def test_registry_document_must_be_strict_json() -> None:
    with pytest.raises(MalformedJSON, match="duplicate key"):
        Registry.from_json('{"type": "cx-key-registry", "v": 1, "v": 1, "keys": []}')


def test_verify_object_without_created_by_ref(key: SigningKey) -> None:
    registry = Registry([record(key)])
    signed = sign_object(indicator(), key, signed_at=SIGNED_AT)
    del signed["created_by_ref"]  # the signature breaks first
    with pytest.raises(SignatureError, match="signature does not verify"):
        registry.verify_object(signed, recorded_at=T("2025-06-01T00:00:00Z"))
    # Signed by hand without created_by_ref (sign_object refuses to): no owner to bind.
    entry = signed["extensions"][EXTENSION_ID]
    entry["sig"] = b64url(key.sign(signing_input(signed)))
    verify_object(signed, registry.resolve)
    with pytest.raises(SignatureError, match="no created_by_ref"):
        registry.verify_object(signed, recorded_at=T("2025-06-01T00:00:00Z"))
