"""Member and node keys over a real (SQLite) store, and the signature check at ingest."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.config import load_settings
from exchange.errors import Conflict, InvalidInput, NotFound, SignatureError
from exchange.model.objects import AccountId, CollectionId, OrgId, Role, StixId
from exchange.node import keyring, nodekey
from exchange.signing.canonical import EXTENSION_ID, PAYLOAD_TYPE, canonical, pae
from exchange.signing.cxsig import b64url_encode, sign_object
from exchange.signing.keys import SigningKey
from exchange.signing.published import read_registry
from exchange.signing.registry import Registry, parse_micros
from exchange.storage.base import (
    Account,
    Collection,
    MemberKey,
    NewVersion,
    Organisation,
    Status,
)
from exchange.storage.sql import SqlStore
from tests.unit.signing.helpers import OTHER, OWNER, SIGNED_AT, fixed_key, indicator

T = parse_micros
JAN = T("2025-01-01T00:00:00Z")
MAR = T("2025-03-01T00:00:00Z")
JUN = T("2025-06-01T00:00:00Z")
UZ, PK = OrgId("org-uz"), OrgId("org-pk")
COLL = CollectionId("4b0c7c53-2b79-4d56-9a0e-6a1c5cdb7a10")
ACCOUNT = AccountId("acct-uz")


def _org(org_id: OrgId, name: str, identity: str) -> Organisation:
    return Organisation(id=org_id, name=name, identity_id=StixId(identity),
                        identity_json=b"{}", created_at=JAN)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'exchange.db'}")
    s.open()
    s.upgrade()
    s.add_org(_org(UZ, "UZ-CERT", OWNER))
    s.add_org(_org(PK, "PK-CERT", OTHER))
    yield s
    s.close()


UZ_KEY = fixed_key("Ed25519", 1)
UZ_EC_KEY = fixed_key("ECDSA-P256", 1)
PK_KEY = fixed_key("Ed25519", 2)


def pem(key: SigningKey) -> str:
    return key.public_pem()


# -- registration, rotation, revocation -------------------------------------------------
def test_registration_computes_the_key_id_and_binds_the_organisation(store: SqlStore) -> None:
    record = keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), now=MAR)
    assert record.kid == UZ_KEY.kid
    assert (record.owner_identity, record.valid_from, record.status) == (OWNER, MAR, "active")
    stored = store.get_member_key(UZ_KEY.kid)
    assert (stored.org_id, stored.purpose, stored.alg) == (UZ, "object", "Ed25519")
    [listed] = keyring.list_keys(store, "UZ-CERT")
    assert (listed.record, listed.org_name, listed.purpose) == (record, "UZ-CERT", "object")
    assert keyring.list_keys(store, "PK-CERT") == []


@pytest.mark.parametrize(("setup", "call", "error", "phrase"), [
    pytest.param(None, lambda s: keyring.register_key(s, "NOPE", pem(UZ_KEY)), NotFound,
                 "NOPE", id="unknown-org"),
    pytest.param("UZ-CERT", lambda s: keyring.register_key(s, "PK-CERT", pem(UZ_KEY)),
                 Conflict, "already registered", id="key-of-another-member"),
    pytest.param("UZ-CERT", lambda s: keyring.register_key(s, "UZ-CERT", pem(UZ_KEY)),
                 Conflict, "already registered", id="registered-twice"),
    pytest.param(None, lambda s: keyring.register_key(s, "UZ-CERT", "not a key"),
                 SignatureError, "not a PEM public key", id="not-pem"),
    pytest.param(None, lambda s: keyring.register_key(
        s, "UZ-CERT", "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"),
                 SignatureError, "this is a private key", id="private-key-given"),
    pytest.param(None, lambda s: keyring.register_key(s, "UZ-CERT", pem(UZ_KEY),
                                                      valid_from=MAR, valid_until=MAR),
                 InvalidInput, "not after valid_from", id="empty-window"),
])
def test_registration_refusals(store: SqlStore, setup: str | None,
                               call: Callable[[SqlStore], Any], error: type[Exception],
                               phrase: str) -> None:
    if setup:
        keyring.register_key(store, setup, pem(UZ_KEY))
    with pytest.raises(error, match=phrase) as caught:
        call(store)
    assert "secret" not in str(caught.value)


def test_rotation_retires_old_keys_at_the_same_instant(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    keyring.register_key(store, "PK-CERT", pem(PK_KEY), valid_from=JAN)
    new, retired = keyring.rotate_key(store, "UZ-CERT", pem(UZ_EC_KEY), now=MAR)
    assert (new.kid, new.valid_from, new.status) == (UZ_EC_KEY.kid, MAR, "active")
    assert [(r.kid, r.status, r.valid_until) for r in retired] == [
        (UZ_KEY.kid, "retired", MAR)]
    assert store.get_member_key(PK_KEY.kid).status == "active"  # other members untouched

    registry = keyring.registry(store)
    old = sign_object(indicator(), UZ_KEY, signed_at=SIGNED_AT)
    assert registry.verify_object(old, recorded_at=MAR - 1).kid == UZ_KEY.kid
    with pytest.raises(SignatureError, match="retired since 2025-03-01"):
        registry.verify_object(old, recorded_at=MAR)
    fresh = sign_object(indicator(), UZ_EC_KEY, signed_at=SIGNED_AT)
    assert registry.verify_object(fresh, recorded_at=MAR).kid == UZ_EC_KEY.kid


def test_rotation_run_again_finishes_and_refuses_foreign_keys(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    keyring.register_key(store, "UZ-CERT", pem(UZ_EC_KEY), valid_from=MAR - 10, now=JAN)
    # interrupted after registering the new key: the old one is still active
    new, retired = keyring.rotate_key(store, "UZ-CERT", pem(UZ_EC_KEY), now=MAR)
    assert new.kid == UZ_EC_KEY.kid
    assert [r.kid for r in retired] == [UZ_KEY.kid]
    keyring.register_key(store, "PK-CERT", pem(PK_KEY))
    with pytest.raises(Conflict, match="already registered"):
        keyring.rotate_key(store, "UZ-CERT", pem(PK_KEY), now=JUN)


def test_rotation_leaves_keys_that_are_not_valid_yet(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JUN, now=JAN)
    _, retired = keyring.rotate_key(store, "UZ-CERT", pem(UZ_EC_KEY), now=MAR)
    assert retired == []
    assert store.get_member_key(UZ_KEY.kid).status == "active"


def test_revocation_keeps_signatures_recorded_before_the_compromise(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    record = keyring.revoke_key(store, UZ_KEY.kid, MAR, now=JUN)
    assert (record.status, record.compromised_since) == ("revoked", MAR)
    registry = keyring.registry(store)
    signed = sign_object(indicator(), UZ_KEY, signed_at=SIGNED_AT)
    assert registry.verify_object(signed, recorded_at=MAR - 1).kid == UZ_KEY.kid
    with pytest.raises(SignatureError, match="revoked: compromised since 2025-03-01"):
        registry.verify_object(signed, recorded_at=MAR)
    # a later compromise time never widens the trusted window; an earlier one narrows it
    assert keyring.revoke_key(store, UZ_KEY.kid, MAR + 5, now=JUN).compromised_since == MAR
    assert keyring.revoke_key(store, UZ_KEY.kid, MAR - 5, now=JUN).compromised_since == MAR - 5


def test_revocation_refusals(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    with pytest.raises(InvalidInput, match="in the future"):
        keyring.revoke_key(store, UZ_KEY.kid, JUN + 1, now=JUN)
    with pytest.raises(NotFound, match="not registered"):
        keyring.revoke_key(store, PK_KEY.kid, MAR, now=JUN)
    assert store.get_member_key(UZ_KEY.kid).status == "active"


def _version(object_id: str, at: int, kid: str | None) -> NewVersion:
    return NewVersion(
        id=StixId(object_id), type="indicator", spec_version="2.1", version=at, created=at,
        modified=at, producer_org=UZ, tlp="green", effective_tlp="green", revoked=False,
        body=json.dumps({"id": object_id, "at": at}).encode(), signed_kid=kid,
    )


def _add(store: SqlStore, versions: list[NewVersion], now: int) -> None:
    status = Status(id=str(uuid.uuid4()), api_root="cx", collection_id=COLL,
                    account_id=ACCOUNT, org_id=UZ, request_timestamp=now, status="complete",
                    total_count=len(versions), success_count=0, failure_count=0,
                    pending_count=0)
    store.add_objects(COLL, versions, status)


def test_affected_lists_every_version_and_flags_those_after_the_compromise(
    tmp_path: Path,
) -> None:
    clock = iter([JAN + 10, MAR + 10, JUN + 10])
    s = SqlStore(f"sqlite:///{tmp_path / 'clocked.db'}", now=lambda: next(clock))
    s.open()
    s.upgrade()
    try:
        s.add_org(_org(UZ, "UZ-CERT", OWNER))
        s.add_account(Account(ACCOUNT, "uz-pub", UZ, Role.PUBLISHER, JAN))
        s.add_collection(Collection(COLL, "cx", "Shared"), [])
        keyring.register_key(s, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
        one, two = "indicator--00000000-0000-4000-8000-000000000001", \
            "indicator--00000000-0000-4000-8000-000000000002"
        _add(s, [_version(one, JAN, UZ_KEY.kid)], JAN)
        _add(s, [_version(two, MAR, None)], MAR)  # unsigned: never listed
        _add(s, [_version(one, JUN, UZ_KEY.kid)], JUN)
        assert [(v.object_id, v.after_compromise) for v in
                keyring.affected_versions(s, UZ_KEY.kid)] == [(one, False), (one, False)]
        keyring.revoke_key(s, UZ_KEY.kid, MAR, now=JUN + 20)
        found = keyring.affected_versions(s, UZ_KEY.kid)
        assert [(v.object_id, v.version, v.after_compromise) for v in found] == [
            (one, JAN, False), (one, JUN, True)]
        assert [v.date_added for v in found] == [JAN + 10, JUN + 10]
        with pytest.raises(NotFound):
            keyring.affected_versions(s, PK_KEY.kid)
    finally:
        s.close()


# -- node keys, the registry and its export ------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return load_settings(home, env={})


def test_registry_export_round_trips_and_is_deterministic(settings: Any,
                                                          store: SqlStore) -> None:
    node = nodekey.ensure_node_key(settings, store, env={})
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    keyring.register_key(store, "PK-CERT", pem(PK_KEY), valid_from=JAN)
    keyring.rotate_key(store, "UZ-CERT", pem(UZ_EC_KEY), now=MAR)
    keyring.revoke_key(store, PK_KEY.kid, MAR, now=JUN)

    identity = nodekey.node_identity(settings)
    text = keyring.export_registry(store, node_identity=identity)
    assert text == keyring.export_registry(store, node_identity=identity)
    document = json.loads(text)
    assert document["extension_definition"] == EXTENSION_ID
    assert document["node_identity"] == identity
    purposes = {k["kid"]: (k["purpose"], k["owner_name"]) for k in document["keys"]}
    assert purposes == {node.kid: ("node", keyring.NODE_OWNER_NAME),
                        UZ_KEY.kid: ("object", "UZ-CERT"), UZ_EC_KEY.kid: ("object", "UZ-CERT"),
                        PK_KEY.kid: ("object", "PK-CERT")}
    assert [k["kid"] for k in document["keys"]] == sorted(purposes)

    trusted = read_registry(text)
    assert list(trusted.registry) == list(keyring.registry(store, node_identity=identity))
    assert trusted.node_kids == {node.kid}
    assert trusted.owner_of(UZ_KEY.kid) == "UZ-CERT"
    assert "PRIVATE" not in text


def test_an_inconsistent_stored_key_is_left_out_not_fatal(store: SqlStore) -> None:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    store.add_member_key(MemberKey(
        kid=PK_KEY.kid, org_id=PK, purpose="object", alg="Ed25519",
        public_pem=pem(UZ_EC_KEY), valid_from=JAN, valid_until=None, status="active",
        compromised_since=None, created_at=JAN))  # the PEM is another key's
    assert [r.kid for r in keyring.registry(store)] == [UZ_KEY.kid]


def test_registry_cache_rebuilds_after_its_time_to_live(store: SqlStore) -> None:
    now = [100.0]
    cache = keyring.RegistryCache(store, ttl_seconds=5, clock=lambda: now[0])
    first = cache.get()
    assert len(first) == 0
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY))
    now[0] += 4.9
    assert cache.get() is first
    now[0] += 0.1
    assert [r.kid for r in cache.get()] == [UZ_KEY.kid]
    keyring.register_key(store, "PK-CERT", pem(PK_KEY))
    cache.invalidate()
    assert len(cache.get()) == 2
    assert "store" not in repr(cache).lower()


# -- verify_for_ingest ---------------------------------------------------------------------
@pytest.fixture
def ingest_registry(store: SqlStore) -> Registry:
    keyring.register_key(store, "UZ-CERT", pem(UZ_KEY), valid_from=JAN)
    keyring.register_key(store, "UZ-CERT", pem(UZ_EC_KEY), valid_from=JAN)
    keyring.register_key(store, "PK-CERT", pem(PK_KEY), valid_from=JAN)
    keyring.register_key(store, "UZ-CERT", pem(fixed_key("Ed25519", 3)), valid_from=JUN,
                         now=JAN)
    keyring.register_key(store, "UZ-CERT", pem(fixed_key("Ed25519", 4)), valid_from=JAN)
    keyring.revoke_key(store, fixed_key("Ed25519", 4).kid, MAR, now=JUN)
    keyring.register_key(store, "UZ-CERT", pem(fixed_key("Ed25519", 5)), valid_from=JAN)
    keyring.rotate_key(store, "PK-CERT", pem(fixed_key("ECDSA-P256", 6)), now=MAR)
    return keyring.registry(store)


def signed(key: SigningKey, **changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), key, signed_at=SIGNED_AT)


def tamper(obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    change(copied)
    return copied


def _flip_sig(obj: dict[str, Any]) -> None:
    entry = obj["extensions"][EXTENSION_ID]
    entry["sig"] = ("B" if entry["sig"][0] == "A" else "A") + entry["sig"][1:]


def _move_signature(obj: dict[str, Any]) -> None:
    other = signed(UZ_KEY, name="Another indicator")
    obj["extensions"][EXTENSION_ID] = other["extensions"][EXTENSION_ID]


def _strip(obj: dict[str, Any]) -> None:
    del obj["extensions"]


#: A non-member author (a vendor whose report a member relays).
VENDOR = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"


def _manually_signed_without_creator(key: SigningKey) -> dict[str, Any]:
    """A signed SCO with no created_by_ref, signed by hand (not with sign_object)."""
    obj: dict[str, Any] = {
        "type": "ipv4-addr", "spec_version": "2.1",
        "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3",
        "extensions": {EXTENSION_ID: {"extension_type": "property-extension", "v": 1,
                                      "alg": key.alg, "kid": key.kid, "canon": "jcs-rfc8785",
                                      "signed_at": SIGNED_AT}},
    }
    signature = key.sign(pae(PAYLOAD_TYPE, canonical(obj)))
    obj["extensions"][EXTENSION_ID]["sig"] = b64url_encode(signature)
    return obj


# (object, contributor identity, recorded at, required, expected key id or refusal reason)
INGEST: list[Any] = [
    pytest.param(lambda: signed(UZ_KEY), OWNER, MAR, True, UZ_KEY.kid, id="valid-ed25519"),
    pytest.param(lambda: signed(UZ_EC_KEY), OWNER, MAR, True, UZ_EC_KEY.kid,
                 id="valid-ecdsa-p256"),
    pytest.param(indicator, OWNER, MAR, False, None, id="unsigned-accepted"),
    pytest.param(indicator, OWNER, MAR, True,
                 "this collection requires signed objects; the object is not signed",
                 id="unsigned-in-required-collection"),
    pytest.param(lambda: tamper(signed(UZ_KEY), _strip), OWNER, MAR, True,
                 "this collection requires signed objects", id="signature-stripped"),
    pytest.param(lambda: signed(fixed_key("Ed25519", 9)), OWNER, MAR, False,
                 "signature refused: key sha256:", id="unknown-key"),
    pytest.param(lambda: tamper(signed(UZ_KEY), lambda o: o["extensions"][EXTENSION_ID]
                                .update(alg="ECDSA-P256")), OWNER, MAR, False,
                 "signature refused: algorithm mismatch", id="wrong-algorithm"),
    pytest.param(lambda: tamper(signed(UZ_KEY), _flip_sig), OWNER, MAR, False,
                 "signature refused: signature does not verify", id="bad-signature"),
    pytest.param(lambda: tamper(signed(UZ_KEY), lambda o: o.update(confidence=81)), OWNER,
                 MAR, False, "signature refused: signature does not verify",
                 id="one-changed-byte"),
    pytest.param(lambda: tamper(signed(UZ_KEY), _move_signature), OWNER, MAR, False,
                 "signature refused: signature does not verify", id="signature-moved"),
    pytest.param(lambda: tamper(signed(UZ_KEY), lambda o: o.update(
        modified="2025-04-01T00:00:00.000Z")), OWNER, MAR, False,
                 "signature refused: signature does not verify",
                 id="old-signature-replayed-on-new-version"),
    pytest.param(lambda: tamper(signed(UZ_KEY), lambda o: o["extensions"][EXTENSION_ID]
                                .update(extra=1)), OWNER, MAR, False,
                 "signature refused: the cx-sig entry has unexpected member", id="malformed-entry"),
    pytest.param(lambda: signed(PK_KEY), OWNER, MAR, False,
                 f"signature refused: key {PK_KEY.kid} belongs to {OTHER}, not to the"
                 f" publishing organisation ({OWNER}); sign with your own key",
                 id="key-of-another-member"),
    pytest.param(lambda: signed(UZ_KEY, created_by_ref=VENDOR), OWNER, MAR, True, UZ_KEY.kid,
                 id="third-party-author-signed-by-contributor"),
    pytest.param(lambda: signed(PK_KEY, created_by_ref=VENDOR), OWNER, MAR, True,
                 "belongs to", id="third-party-author-signed-by-another-member"),
    pytest.param(lambda: signed(UZ_KEY), OTHER, MAR - 1, True,
                 f"key {UZ_KEY.kid} belongs to {OWNER}, not to the publishing organisation",
                 id="author-key-but-another-contributor"),
    pytest.param(lambda: signed(fixed_key("Ed25519", 3)), OWNER, MAR, False,
                 "was not yet valid at 2025-03-01", id="key-not-yet-valid"),
    pytest.param(lambda: signed(fixed_key("Ed25519", 4)), OWNER, MAR - 1, False,
                 fixed_key("Ed25519", 4).kid, id="revoked-key-recorded-before-compromise"),
    pytest.param(lambda: signed(fixed_key("Ed25519", 4)), OWNER, MAR, False,
                 "was revoked: compromised since 2025-03-01T00:00:00Z",
                 id="revoked-key-recorded-at-compromise"),
    pytest.param(lambda: signed(PK_KEY, created_by_ref=OTHER), OTHER, MAR - 1, False,
                 PK_KEY.kid, id="rotated-key-recorded-before-rotation"),
    pytest.param(lambda: signed(PK_KEY, created_by_ref=OTHER), OTHER, MAR, False,
                 "is retired since 2025-03-01", id="rotated-key-recorded-after-rotation"),
    pytest.param(lambda: _manually_signed_without_creator(fixed_key("Ed25519", 5)), OWNER,
                 MAR, True, fixed_key("Ed25519", 5).kid, id="no-creator-bound-to-contributor"),
    pytest.param(lambda: _manually_signed_without_creator(fixed_key("Ed25519", 5)), OTHER,
                 MAR, True, "belongs to", id="no-creator-other-contributor"),
]


@pytest.mark.parametrize(("make", "producer", "recorded_at", "required", "expected"), INGEST)
def test_verify_for_ingest(ingest_registry: Registry, make: Callable[[], dict[str, Any]],
                           producer: str, recorded_at: int, required: bool,
                           expected: str | None) -> None:
    obj = make()
    if expected is None or expected.startswith("sha256:"):
        assert keyring.verify_for_ingest(ingest_registry, obj, contributor_identity=producer,
                                         recorded_at=recorded_at, required=required) == expected
        return
    with pytest.raises(SignatureError) as caught:
        keyring.verify_for_ingest(ingest_registry, obj, contributor_identity=producer,
                                  recorded_at=recorded_at, required=required)
    assert expected in caught.value.reason
    assert "\n" not in caught.value.reason


def test_ingest_reason_for_an_unknown_key_names_it(ingest_registry: Registry) -> None:
    stranger = fixed_key("Ed25519", 9)
    with pytest.raises(SignatureError) as caught:
        keyring.verify_for_ingest(ingest_registry, signed(stranger), contributor_identity=OWNER,
                                  recorded_at=MAR, required=False)
    assert caught.value.reason == f"signature refused: key {stranger.kid} is not registered"
