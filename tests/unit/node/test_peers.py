"""Peer trust on one node: pins, kept registries, refusals; what a peer account reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.errors import InvalidInput, NotFound, SignatureError
from exchange.feeds.peers import PeerVerifier, check_registry_url, verifier_for
from exchange.model.objects import AccountId, OrgId, Principal, Role, StixId
from exchange.node import peers as peers_module
from exchange.node.base import channel_of
from exchange.node.keyring import list_keys, register_key
from exchange.node.service import Exchange, init_home
from exchange.signing.cxsig import sign_object
from exchange.signing.published import PublishedKey, read_registry, registry_document
from exchange.signing.signed_registry import sign_registry
from exchange.storage import open_store
from exchange.storage.base import ObjectQuery
from tests.unit.signing.helpers import OWNER, fixed_key, indicator
from tests.unit.signing.published_keys import (
    DOCUMENT,
    FUTURE,
    JAN,
    JUN,
    KEYS,
    MAR,
    NODE,
    NODE_KEY,
    PK,
    TRUSTED,
    UZ,
    UZ_RETIRED,
    UZ_REVOKED,
    rec,
)

NEXT_NODE_KEY = fixed_key("Ed25519", 9)
SIGNED = sign_registry(DOCUMENT, NODE_KEY).encode()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Exchange]:
    init_home(load_settings(tmp_path, env={}))
    settings = load_settings(tmp_path, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    yield ex
    ex.audit.drain()
    store.close()


def test_trust_keeps_the_pin_and_the_registry_and_refuses_other_signers(node: Exchange) -> None:
    with pytest.raises(SignatureError, match="not signed by any of the fingerprints"):
        node.trust_peer("pk", SIGNED, [UZ.kid])
    assert node.store.peer_trust("pk") is None
    trust, keys = node.trust_peer("pk", SIGNED, [NODE_KEY.kid], registry_url=None)
    assert trust.pins == ((NODE_KEY.kid, NODE_KEY.public_pem()),)
    assert UZ.kid in {r.kid for r in node.peer_registry(node.peer("pk")).registry}
    assert len(keys.registry) == len(KEYS)
    # a registry signed by another key never replaces the kept one
    with pytest.raises(SignatureError, match="not a pinned node key"):
        node.refresh_peer_registry(trust, sign_registry(DOCUMENT, UZ).encode())
    assert node.peer("pk").registry == SIGNED
    node.untrust_peer("pk")
    with pytest.raises(NotFound):
        node.peer("pk")
    with pytest.raises(NotFound):
        node.refresh_peer_registry(trust, SIGNED)  # untrusted meanwhile: nothing kept
    assert node.store.peer_trust("pk") is None


def test_the_next_node_key_can_be_pinned_in_advance(node: Exchange) -> None:
    document = registry_document([*KEYS, PublishedKey(rec(NEXT_NODE_KEY, NODE), "node",
                                                      "exchange node")], node_identity=NODE)
    trust, _ = node.trust_peer("pk", sign_registry(document, NODE_KEY).encode(),
                               [NODE_KEY.kid, NEXT_NODE_KEY.kid])
    assert {kid for kid, _ in trust.pins} == {NODE_KEY.kid, NEXT_NODE_KEY.kid}
    rotated = sign_registry(document, NEXT_NODE_KEY).encode()
    node.refresh_peer_registry(trust, rotated)
    assert node.peer("pk").registry == rotated
    with pytest.raises(SignatureError, match="publishes no node key"):
        node.trust_peer("pk2", SIGNED, [NODE_KEY.kid, UZ.kid])  # UZ's is a member key


def test_the_verifier_accepts_registered_signers_and_refuses_the_rest(node: Exchange) -> None:
    node.trust_peer("pk", SIGNED, [NODE_KEY.kid])
    verifier = verifier_for(node, "pk")
    assert isinstance(verifier, PeerVerifier)
    good = sign_object(indicator(), UZ)
    assert verifier.verify(good) is None
    assert verifier.verify({**good, "name": "changed"}) is not None
    assert "not signed" in (verifier.verify(indicator()) or "")
    stranger = sign_object(indicator(), fixed_key("Ed25519", 42))
    assert "is not registered" in (verifier.verify(stranger) or "")
    assert verifier.refreshes == 0  # no URL to fetch from: nothing fetched
    tlp = {"type": "marking-definition", "spec_version": "2.1",
           "id": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
           "created": "2022-10-01T00:00:00.000Z", "name": "TLP:GREEN",
           "extensions": {}}
    assert verifier.verify(tlp) is None  # the standard TLP definitions are never signed


def test_a_peer_account_reads_on_channel_peer_and_never_its_own_organisations_rows(
        node: Exchange) -> None:
    peer = Principal(AccountId("a"), "uz-node", OrgId("org-uz"), "UZ-CERT",
                     StixId("identity--05f58713-053b-5b2c-b92a-050f448178b8"), Role.PEER)
    reader = Principal(AccountId("b"), "uz-reader", OrgId("org-uz"), "UZ-CERT",
                       StixId("identity--05f58713-053b-5b2c-b92a-050f448178b8"), Role.CONSUMER)
    assert channel_of(peer, "taxii") == "peer"
    assert channel_of(peer, "feed") == "feed"
    assert channel_of(reader, "taxii") == "taxii"
    base = ObjectQuery(collection_id="c")  # type: ignore[arg-type]
    as_peer = node.visibility(peer, base)
    assert as_peer.own_org is None
    assert as_peer.exclude_producer == "org-uz"
    assert "amber+strict" not in (as_peer.visible_tlps or ())
    as_reader = node.visibility(reader, base)
    assert (as_reader.own_org, as_reader.exclude_producer) == ("org-uz", None)


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://pk.example/cx/cx/registry/signed/", True),
    ("http://127.0.0.1:8422/cx/cx/registry/signed/", True),
    ("http://[::1]:8422/cx/cx/registry/signed/", True),
    ("http://pk.example/cx/cx/registry/signed/", False),  # the API key in clear
    ("https://user:pw@pk.example/cx/", False),
    ("ftp://pk.example/", False),
    ("https://pk.example/cx/?x=1", False),
])
def test_the_api_key_goes_only_over_https_or_to_loopback(url: str, allowed: bool) -> None:
    if allowed:
        assert check_registry_url(url) == url
    else:
        with pytest.raises(InvalidInput):
            check_registry_url(url)


def _held(node: Exchange, org: str) -> dict[str, tuple[str, int | None, int | None]]:
    return {k.record.kid: (k.record.status, k.record.valid_until, k.record.compromised_since)
            for k in list_keys(node.store, org)}


def test_a_peers_keys_are_mirrored_for_its_organisation_only_and_only_ever_narrowed(
        node: Exchange) -> None:
    for org in ("UZ-CERT", "PK-CERT"):
        node.add_org(org)
    register_key(node.store, "PK-CERT", FUTURE.public_pem())  # held here for another org
    changes = node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT")
    assert len(changes) == 3, changes
    # as published: validity, retirement, revocation; never PK-CERT's key nor the node's
    assert _held(node, "UZ-CERT") == {UZ.kid: ("active", None, None),
                                      UZ_RETIRED.kid: ("retired", MAR, None),
                                      UZ_REVOKED.kid: ("revoked", None, MAR)}
    assert set(_held(node, "PK-CERT")) == {FUTURE.kid}  # left with its owner here
    assert {k.record.kid for k in list_keys(node.store)}.isdisjoint({PK.kid, NODE_KEY.kid})
    assert node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT") == []  # nothing new

    # a later registry that would widen keys (un-revoke, retire later) changes nothing
    widening = read_registry(registry_document([
        PublishedKey(rec(UZ_REVOKED, OWNER), "object", "UZ-CERT"),
        PublishedKey(rec(UZ_RETIRED, OWNER, status="retired", valid_until=JUN), "object",
                     "UZ-CERT"),
        PublishedKey(rec(NODE_KEY, NODE), "node", "exchange node")], node_identity=NODE))
    assert node.mirror_peer_keys("uz-node", widening, "UZ-CERT") == []
    # one that narrows them (a rotation, an earlier compromise) is followed
    narrowing = read_registry(registry_document([
        PublishedKey(rec(UZ, OWNER, status="retired", valid_until=JUN), "object", "UZ-CERT"),
        PublishedKey(rec(UZ_REVOKED, OWNER, status="revoked", compromised_since=JAN + 1),
                     "object", "UZ-CERT"),
        PublishedKey(rec(NODE_KEY, NODE), "node", "exchange node")], node_identity=NODE))
    assert len(node.mirror_peer_keys("uz-node", narrowing, "UZ-CERT")) == 2
    held = _held(node, "UZ-CERT")
    assert held[UZ.kid] == ("retired", JUN, None)
    assert held[UZ_REVOKED.kid] == ("revoked", None, JAN + 1)
    with pytest.raises(NotFound):
        node.mirror_peer_keys("uz-node", TRUSTED, "XK-CERT")


def test_a_pull_mirrors_a_bounded_number_of_key_changes(
        node: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    node.add_org("UZ-CERT")
    monkeypatch.setattr(peers_module, "MAX_MIRRORED_KEYS", 2)
    changes = node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT")
    assert len(changes) == 3
    assert changes[-1] == "more keys than 2 changed; the rest at the next pull"
    assert len(_held(node, "UZ-CERT")) == 2
    assert len(node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT")) == 2  # the rest
    assert len(_held(node, "UZ-CERT")) == 4


def test_a_retired_key_is_kept_valid_for_what_was_imported_under_it_and_no_more(
        node: Exchange) -> None:
    for org in ("UZ-CERT", "PK-CERT"):
        node.add_org(org)
    register_key(node.store, "PK-CERT", FUTURE.public_pem())
    node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT")  # UZ_RETIRED until MAR
    changes = node.cover_peer_imports("uz-node", "UZ-CERT", {
        UZ_RETIRED.kid: JUN,  # imported after the retirement: covered
        UZ_REVOKED.kid: JUN,  # a compromise: never moved
        UZ.kid: JUN,  # active: nothing to do
        FUTURE.kid: JUN,  # another organisation's here
        "sha256:unknown": JUN})
    assert len(changes) == 1, changes
    held = _held(node, "UZ-CERT")
    assert held[UZ_RETIRED.kid] == ("retired", JUN + 1, None)
    assert held[UZ_REVOKED.kid] == ("revoked", None, MAR)
    assert held[UZ.kid] == ("active", None, None)
    assert node.cover_peer_imports("uz-node", "UZ-CERT", {UZ_RETIRED.kid: JAN}) == []
    # the cover stands only on objects this node holds under the key: none are stored
    # here, so the next pull narrows it back to the peer's MAR
    assert node.mirror_peer_keys("uz-node", TRUSTED, "UZ-CERT") == [
        f"retired {UZ_RETIRED.kid} as at the peer"]
    assert _held(node, "UZ-CERT")[UZ_RETIRED.kid] == ("retired", MAR, None)
