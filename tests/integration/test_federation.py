"""Federation between two real exchange nodes (issue 20 items 2 and 3).

Two ``exchange serve`` children on loopback, each with its own home: PK (PK-CERT's node,
under a policy whose agreement lets peer exchanges carry every level, so that what
decides AMBER+STRICT and RED is whom the peer serves) and UZ (UZ-CERT's node, under the
shipped policy). The operators' steps go through the CLI (``exchange peer add``,
``peer trust``, ``peer list``); the peer pulls with taxii2-client, as a peer node does.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from click.testing import CliRunner
from taxii2client.v21 import Collection, as_pages

from exchange.cli.demo_federation import (
    SHIPPED_POLICIES,
    FedNode,
    build_node,
    disclosures_to,
    federate,
    publish,
    serve,
    signed_indicators,
    verify_at,
)
from exchange.cli.main import main
from exchange.feeds.peers import PeerVerifier, verifier_for
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.node.base import now_micros
from exchange.node.derive import PROVENANCE_SOURCE
from exchange.node.keyring import list_keys, register_key, revoke_key
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey, generate
from exchange.signing.published import read_registry
from tests.integration.conftest import free_port
from tests.integration.tls_pki import TlsProxy, make_pki

LEVELS = ("clear", "green", "amber", "amber+strict")


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args],
                                env={"EXCHANGE_SERVER_SECRET": None, "EXCHANGE_API_KEY": None})
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Pair:
    pk: FedNode
    uz: FedNode
    keys: Path
    ids: dict[str, str] = field(default_factory=dict)  # label -> object id at PK

    def key(self, name: str) -> str:
        return (self.keys / name).read_text(encoding="utf-8").strip()

    def peer_pull(self, account: str) -> list[dict[str, Any]]:
        """Everything PK serves the peer account ``account`` in jwg (taxii2-client)."""
        collection = Collection(self.pk.url("jwg"), user=account, password=self.key(account))
        out: list[dict[str, Any]] = []
        for envelope in as_pages(collection.get_objects, per_request=2):
            out += envelope.get("objects", [])
        return out


def _open_peer_policy(tmp: Path) -> Path:
    """The shipped policies, with the agreement's re-share rules letting peer exchanges
    carry every level (then only whom the peer serves decides AMBER+STRICT and RED)."""
    target = tmp / "policies"
    shutil.copytree(SHIPPED_POLICIES, target)
    agreement = target / "agreements" / "uz-pk-jwg-2026.yaml"
    text = agreement.read_text(encoding="utf-8")
    shipped = "peer_exchanges: [clear, green]"
    assert shipped in text
    agreement.write_text(text.replace(
        shipped, "peer_exchanges: [clear, green, amber, amber+strict, red]"), encoding="utf-8")
    return target


def red_for(node: FedNode, recipient: str) -> dict[str, Any]:
    """A signed TLP:RED indicator of the node's CERT naming ``recipient``."""
    [obj] = signed_indicators(node, 1, seed=hash(recipient) % 1000, tlp=Tlp.GREEN)
    obj = {k: v for k, v in obj.items() if k != "extensions"}
    obj["object_marking_refs"] = [TLP2_IDS[Tlp.RED]]
    obj["extensions"] = {RED_RECIPIENTS_EXTENSION_ID: {
        "extension_type": "property-extension",
        "recipients": [node.exchange.store.find_org(recipient).identity_id]}}
    return sign_object(obj, node.signing)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("federation")
    pk = build_node(tmp / "pk", name="pk", org="PK-CERT", peer_org="UZ-CERT",
                    policy_dir=_open_peer_policy(tmp), config="cache_seconds = 1\n")
    uz = build_node(tmp / "uz", name="uz", org="UZ-CERT", peer_org="PK-CERT",
                    config="cache_seconds = 1\n")
    keys = tmp / "handed-over"
    keys.mkdir(mode=0o700)
    p = Pair(pk, uz, keys)
    try:
        for home, name, org in [(pk.home, "uz-node", "UZ-CERT"), (pk.home, "soc-node", "UZ-SOC"),
                                (uz.home, "pk-node", "PK-CERT")]:
            code, out, err = cli(home, "peer", "add", name, "--serves", org, "--key-out",
                                 str(keys / name), "--json")
            assert code == 0, err
            assert json.loads(out)["serves"] == org
            assert p.key(name) not in out  # the key goes to the file only
            assert (keys / name).stat().st_mode & 0o777 == 0o600
        serve(pk, free_port())
        serve(uz, free_port())
        published = {level: signed_indicators(pk, 1, seed=n, tlp=Tlp(level))[0]
                     for n, level in enumerate(LEVELS)}
        published["red-uz"] = red_for(pk, "UZ-CERT")
        published["red-soc"] = red_for(pk, "UZ-SOC")
        publish(pk, list(published.values()))
        p.ids = {label: obj["id"] for label, obj in published.items()}
        yield p
    finally:
        pk.close()
        uz.close()


def _trust_pk(pair: Pair) -> None:
    if pair.uz.exchange.store.peer_trust("pk") is None:
        code, _, err = cli(pair.uz.home, "peer", "trust", "pk", "--registry-url",
                           f"{pair.pk.base}/cx/cx/registry/signed/", "--fingerprint",
                           pair.pk.exchange.node_key().kid, "--api-key-file",
                           str(pair.keys / "uz-node"))
        assert code == 0, err


def test_trust_pins_only_the_fingerprint_read_out_of_band(pair: Pair, tmp_path: Path) -> None:
    url = f"{pair.pk.base}/cx/cx/registry/signed/"
    key_file = str(pair.keys / "uz-node")
    wrong = pair.uz.exchange.node_key().kid  # a real node key, but not PK's
    code, _, err = cli(pair.uz.home, "peer", "trust", "pk-wrong", "--registry-url", url,
                       "--fingerprint", wrong, "--api-key-file", key_file)
    assert code == 1
    assert "not signed by any of the fingerprints" in err
    code, out, err = cli(pair.pk.home, "peer", "fingerprint", "--json")
    assert code == 0, err
    fingerprint = json.loads(out)["fingerprint"]
    assert fingerprint == pair.pk.exchange.node_key().kid
    assert pair.uz.exchange.store.peer_trust("pk-wrong") is None  # nothing stored
    # the signed registry as PK's operator would send it as a file, then altered in transit
    body = requests.get(url, timeout=10, headers={
        "Authorization": f"Bearer {pair.key('uz-node')}",
        "Accept": "application/taxii+json;version=2.1"}).content
    envelope = json.loads(body)
    payload = base64.b64decode(envelope["payload"]).replace(b"PK-CERT", b"XK-CERT")
    envelope["payload"] = base64.b64encode(payload).decode()
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(envelope), encoding="utf-8")
    code, _, err = cli(pair.uz.home, "peer", "trust", "pk-file", "--registry-file",
                       str(altered), "--fingerprint", fingerprint)
    assert code == 1
    assert "does not verify" in err
    intact = tmp_path / "intact.json"
    intact.write_bytes(body)
    code, out, err = cli(pair.uz.home, "peer", "trust", "pk-file", "--registry-file",
                         str(intact), "--fingerprint", fingerprint, "--json")
    assert code == 0, err
    assert json.loads(out)["pins"] == [fingerprint]
    assert "PK-CERT" in json.loads(out)["owners"]

    _trust_pk(pair)
    code, out, err = cli(pair.uz.home, "peer", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert {t["name"] for t in listed["trusted"]} == {"pk", "pk-file"}
    assert listed["served"] == [{"account": "pk-node", "serves": "PK-CERT", "disabled": False}]
    code, _, err = cli(pair.uz.home, "peer", "untrust", "pk-file")
    assert code == 0, err
    assert pair.uz.exchange.store.peer_trust("pk-file") is None


def test_a_peer_serving_from_a_private_pki_is_trusted_with_its_ca_file(
        pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PK's node behind https with a certificate of its own CA: 'peer trust' refuses
    the registry URL with a TLS reason until given --ca-file, keeps that CA file with the
    pins, and the verifier fetches the registry again with it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # the CA file must hold
    pki = make_pki(tmp_path / "pki")
    proxy = TlsProxy(pair.pk.base, pki, require_client_cert=False).start()
    try:
        url = proxy.url("/cx/cx/registry/signed/")
        args = ["peer", "trust", "pk-tls", "--registry-url", url, "--fingerprint",
                pair.pk.exchange.node_key().kid, "--api-key-file", str(pair.keys / "uz-node")]
        code, _, err = cli(pair.uz.home, *args)
        assert code == 1
        assert "TLS failed (CERTIFICATE_VERIFY_FAILED)" in err, err
        assert pair.uz.exchange.store.peer_trust("pk-tls") is None
        code, out, err = cli(pair.uz.home, *args, "--ca-file", str(pki.ca), "--json")
        assert code == 0, err
        assert json.loads(out)["ca_file"] == str(pki.ca.resolve())
        fetched = proxy.forwarded
        verifier = PeerVerifier(pair.uz.exchange, pair.uz.exchange.peer("pk-tls"),
                                pair.uz.exchange.peer_registry(pair.uz.exchange.peer("pk-tls")))
        assert verifier.refresh() is True  # fetched again over https, with the kept CA
        assert proxy.forwarded == fetched + 1
    finally:
        proxy.stop()
        cli(pair.uz.home, "peer", "untrust", "pk-tls")


def test_a_peer_receives_what_its_served_organisation_may_and_each_is_a_disclosure(
        pair: Pair) -> None:
    ids = pair.ids
    to_uz = {o["id"] for o in pair.peer_pull("uz-node")}
    # UZ-CERT is a party (AMBER+STRICT) and named on one RED object, not on the other
    assert to_uz == {ids[x] for x in ("clear", "green", "amber", "amber+strict", "red-uz")}
    copies = pair.peer_pull("soc-node")
    # UZ-SOC is a constituent (never AMBER+STRICT) and named on the other RED object; it
    # receives the agreement's redacted copies (node-signed, naming their originals)
    assert {original_of(o) for o in copies} == {
        ids[x] for x in ("clear", "green", "amber", "red-soc")}

    sent = [(channel, account, d.object_id, d.rule)
            for channel, account, d in disclosures_to(pair.pk, "UZ-CERT")]
    assert {oid for _, _, oid, _ in sent} == to_uz
    assert {(channel, account) for channel, account, _, _ in sent} == {
        ("peer:get_objects", "uz-node")}
    rules = {oid: rule for _, _, oid, rule in sent}
    assert rules[ids["red-uz"]] == "tlp-red-named"
    assert rules[ids["amber+strict"]].startswith("tlp-amber-strict-party")
    # the operator's explanation agrees: channel peer, and why
    for label, allowed in [("amber+strict", True), ("red-soc", False)]:
        code, out, err = cli(pair.pk.home, "policy", "explain", ids[label], "--recipient",
                             "uz-node", "--json")
        assert code == 0, err
        [explained] = json.loads(out)
        assert (explained["channel"], explained["allowed"]) == ("peer", allowed), explained

    _trust_pk(pair)
    verifier = verifier_for(pair.uz.exchange, "pk")
    pulled = pair.peer_pull("uz-node") + copies  # signed by PK-CERT, and by PK's node
    assert [verifier.verify(o) for o in pulled] == [None] * len(pulled)


def original_of(obj: dict[str, Any]) -> str:
    """The id of the original a derived copy names, else the object's own."""
    for ref in obj.get("external_references", []):
        if ref.get("source_name") == PROVENANCE_SOURCE:
            return str(ref["external_id"])
    return str(obj["id"])


def test_tampered_or_unknown_or_revoked_signatures_are_refused_and_never_stored(
        pair: Pair) -> None:
    _trust_pk(pair)
    verifier = verifier_for(pair.uz.exchange, "pk")
    [green] = [o for o in pair.peer_pull("uz-node") if o["id"] == pair.ids["green"]]
    tampered = {**green, "pattern": "[domain-name:value = 'innocent.example']"}
    assert "does not verify" in (verifier.verify(tampered) or "")
    stranger = sign_object({k: v for k, v in green.items() if k != "extensions"},
                           generate("Ed25519"))
    before = verifier.refreshes
    assert "is not registered" in (verifier.verify(stranger) or "")
    assert verifier.refreshes == before + 1  # fetched the registry again, once
    assert "is not registered" in (verifier.verify(stranger) or "")
    assert verifier.refreshes == before + 1  # bounded: not again within the interval

    # PK-CERT signs two indicators with a second key; PK then revokes that key as
    # compromised since a moment between the two publications. What PK recorded before
    # that moment still verifies (as it does at PK), by the time PK's manifest gives;
    # what it recorded after is refused.
    second = generate("Ed25519")
    register_key(pair.pk.exchange.store, "PK-CERT", second.public_pem())
    pair.pk.signing, first = second, pair.pk.signing
    try:
        kept, doomed = signed_indicators(pair.pk, 2, seed=77, tlp=Tlp.GREEN)
        time.sleep(1.2)  # the workers' key registry (cache_seconds = 1)
        publish(pair.pk, [kept])
        compromised = now_micros()
        time.sleep(0.05)
        publish(pair.pk, [doomed])
    finally:
        pair.pk.signing = first
    revoke_key(pair.pk.exchange.store, second.kid, compromised)
    report = federate(pair.uz, pair.pk, peer_name="pk", user="uz-node",
                      key_file=pair.keys / "uz-node")
    refused = {r.id: r.reason for r in report.refusals}
    assert "revoked" in refused[doomed["id"]]
    assert "the peer recorded this object at" in refused[doomed["id"]]
    assert kept["id"] not in refused
    assert report.counts["refused"] == 1
    uz_ids = {o["id"] for o in pull_local(pair.uz)}
    assert doomed["id"] not in uz_ids
    assert kept["id"] in uz_ids
    assert pair.ids["green"] in uz_ids


def published_with_a_new_key(pk: FedNode, seed: int) -> tuple[SigningKey, dict[str, Any]]:
    """PK-CERT registers a new key at PK and publishes one TLP:GREEN indicator it
    signed; PK's own key stays the node's signer afterwards."""
    key = generate("Ed25519")
    register_key(pk.exchange.store, "PK-CERT", key.public_pem())
    pk.signing, first = key, pk.signing
    try:
        [signed] = signed_indicators(pk, 1, seed=seed, tlp=Tlp.GREEN)
        time.sleep(1.2)  # the workers' key registry (cache_seconds = 1)
        publish(pk, [signed])
    finally:
        pk.signing = first
    return key, signed


def fetch_pk_registry_again(pair: Pair) -> None:
    """UZ trusts PK again, fetching its registry now (not at the next pull's age check)."""
    code, _, err = cli(pair.uz.home, "peer", "trust", "pk", "--registry-url",
                       f"{pair.pk.base}/cx/cx/registry/signed/", "--fingerprint",
                       pair.pk.exchange.node_key().kid, "--api-key-file",
                       str(pair.keys / "uz-node"))
    assert code == 0, err


def test_the_peers_own_keys_are_mirrored_so_its_objects_verify_here_as_there(
        pair: Pair) -> None:
    """What UZ imports from PK verifies at UZ, from UZ's own server and registry, as a
    UZ consumer checks it: the pull carries the keys PK publishes for PK-CERT into UZ's
    registry, and later a revocation PK makes. Never a key PK lists for another
    organisation, never PK's node key; each change is an admin record in UZ's ledger."""
    _trust_pk(pair)
    uz, pk = pair.uz, pair.pk
    rogue = generate("Ed25519")  # a key PK registered for UZ-CERT: PK may not vouch for it
    register_key(pk.exchange.store, "UZ-CERT", rogue.public_pem())
    third, signed = published_with_a_new_key(pk, seed=91)
    report = federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    assert report.counts["created"] >= 1, report
    assert any(f"registered {third.kid} (active)" in note for note in report.notes), report
    time.sleep(1.2)  # UZ's workers rebuild their registry (cache_seconds = 1)
    assert verify_at(uz, signed["id"]).startswith("valid"), verify_at(uz, signed["id"])
    assert "signed by the author PK-CERT" in verify_at(uz, signed["id"])
    held = {k.record.kid: k for k in list_keys(uz.exchange.store)}
    assert held[third.kid].org_name == "PK-CERT"
    assert rogue.kid not in held
    assert pk.exchange.node_key().kid not in held

    # PK revokes the key; UZ's next pull mirrors it, with PK's compromise time
    compromised = now_micros()
    revoke_key(pk.exchange.store, third.kid, compromised)
    time.sleep(1.2)
    fetch_pk_registry_again(pair)
    report = federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    assert any(f"revoked {third.kid} as at the peer" in note for note in report.notes), report
    time.sleep(1.2)
    auth = (uz.analyst, uz.keys[uz.analyst])
    published = read_registry(requests.get(f"{uz.base}/cx/cx/registry/", auth=auth,
                                           timeout=30).content)
    record = published.registry.record(third.kid)
    assert (record.status, record.compromised_since) == ("revoked", compromised)
    # a third pull changes nothing: the mirror is already what PK publishes
    again = federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    assert not any("mirrored" in note for note in again.notes), again
    code, out, err = cli(uz.home, "audit", "records", "--kind", "admin")
    assert code == 0, err
    changes = [r for r in map(json.loads, out.splitlines())
               if r.get("target") == third.kid]
    assert [(r["action"], r["details"]["peer"]) for r in changes] == [
        ("key.register", "pk"), ("key.revoke", "pk")], changes


def test_history_pulled_after_the_peer_retired_its_key_verifies_here(pair: Pair) -> None:
    """PK-CERT signs with a key, then PK retires it (a routine rotation); UZ first pulls
    that object afterwards. UZ's consumers verify it against UZ's own registry: the
    retirement takes effect at UZ only after what UZ recorded under the key, which PK
    vouched for. A later pull keeps it so, and nothing UZ records later can use the key."""
    _trust_pk(pair)
    uz, pk = pair.uz, pair.pk
    old, signed = published_with_a_new_key(pk, seed=93)
    retired_at = now_micros()
    pk.exchange.store.update_member_key(old.kid, status="retired", valid_until=retired_at)
    time.sleep(1.2)
    fetch_pk_registry_again(pair)
    report = federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    assert signed["id"] not in {r.id for r in report.refusals}, report.refusals
    assert any(f"registered {old.kid} (retired)" in note for note in report.notes), report
    assert any(f"retired {old.kid} from" in note for note in report.notes), report
    time.sleep(1.2)  # UZ's workers rebuild their registry (cache_seconds = 1)
    assert verify_at(uz, signed["id"]).startswith("valid"), verify_at(uz, signed["id"])
    [held] = [k.record for k in list_keys(uz.exchange.store) if k.record.kid == old.kid]
    assert held.status == "retired"
    assert held.valid_until is not None
    assert retired_at < held.valid_until <= now_micros()
    again = federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    assert not any(old.kid in note for note in again.notes), again.notes
    time.sleep(1.2)
    assert verify_at(uz, signed["id"]).startswith("valid")
    # a PK-CERT publisher at UZ cannot publish anything new under the retired key
    account = "peer-import-pk-cert"
    token = uz.exchange.create_api_key(account, label="test")[1]
    [late] = signed_indicators(uz, 1, seed=94, tlp=Tlp.GREEN)
    late = sign_object({k: v for k, v in late.items() if k != "extensions"}
                       | {"created_by_ref": pk.exchange.store.find_org("PK-CERT").identity_id},
                       old)
    refused = requests.post(
        f"{uz.url('jwg')}objects/", auth=(account, token), timeout=30,
        headers={"Accept": "application/taxii+json;version=2.1",
                 "Content-Type": "application/taxii+json;version=2.1"},
        json={"objects": [late]})
    assert refused.status_code == 202, refused.text
    status = refused.json()
    assert status["failure_count"] == 1, status
    assert f"key {old.kid} is retired since" in json.dumps(status["failures"]), status


def pull_local(node: FedNode) -> list[dict[str, Any]]:
    """What the node's analyst reads from its own jwg (taxii2-client)."""
    collection = Collection(node.url("jwg"), user=node.analyst, password=node.keys[node.analyst])
    out: list[dict[str, Any]] = []
    for envelope in as_pages(collection.get_objects, per_request=100):
        out += envelope.get("objects", [])
    return out


def test_nothing_that_came_from_a_peer_loops_back_to_it_over_two_cycles(pair: Pair) -> None:
    _trust_pk(pair)
    uz, pk = pair.uz, pair.pk
    federate(uz, pk, peer_name="pk", user="uz-node", key_file=pair.keys / "uz-node")
    # UZ (shipped policy) imported what PK served it, contributed by PK-CERT
    assert pair.ids["green"] in {o["id"] for o in pull_local(uz)}
    if pk.exchange.store.peer_trust("uz") is None:
        code, _, err = cli(pk.home, "peer", "trust", "uz", "--registry-url",
                           f"{uz.base}/cx/cx/registry/signed/", "--fingerprint",
                           uz.exchange.node_key().kid, "--api-key-file",
                           str(pair.keys / "pk-node"))
        assert code == 0, err
    own_ids: list[str] = []
    for cycle in range(2):
        [own] = signed_indicators(uz, 1, seed=100 + cycle, tlp=Tlp.GREEN)
        publish(uz, [own])
        own_ids.append(own["id"])
        # PK publishes another indicator: UZ imports it, incrementally
        [again] = signed_indicators(pk, 1, seed=200 + cycle, tlp=Tlp.GREEN)
        publish(pk, [again])
        forth = federate(uz, pk, peer_name="pk", user="uz-node",
                         key_file=pair.keys / "uz-node")
        assert forth.counts["created"] == 1, forth
        back = federate(pk, uz, peer_name="uz", user="pk-node",
                        key_file=pair.keys / "pk-node")
        assert back.refusals == []
        assert back.counts["created"] == 1, back  # UZ-CERT's own, nothing of PK-CERT's
        # a full pull from the start: still only UZ-CERT's own
        served = [o["id"] for o in Collection(
            uz.url("jwg"), user="pk-node", password=pair.key("pk-node")).get_objects()[
                "objects"]]
        assert sorted(served) == sorted(own_ids)
    served_to_pk = disclosures_to(uz, "PK-CERT")
    assert {d.producer_org for _, _, d in served_to_pk} == {"UZ-CERT"}
    code, out, err = cli(uz.home, "policy", "explain", pair.ids["green"], "--recipient",
                         "pk-node", "--json")
    assert code == 0, err
    [explained] = json.loads(out)
    assert (explained["allowed"], explained["rule"]) == (False, "deny-peer-loop-back")


def test_exchange_sync_runs_a_peer_source_with_the_pinned_peers_verifier(pair: Pair) -> None:
    _trust_pk(pair)
    uz, pk = pair.uz, pair.pk
    collection = pk.exchange.store.get_collection(pk.api_root, "jwg").id
    entry = (f"    kind: peer\n    api_root: {pk.base}/{pk.api_root}/\n"
             f"    collection: {collection}\n    org: PK-CERT\n    into: jwg\n"
             f"    user: uz-node\n    password_file: {pair.keys / 'uz-node'}\n"
             "    schedule:\n      interval: 3600\n")
    sources = uz.home / "sources.yaml"
    sources.write_text(f"version: 1\nsources:\n  pk-cli:\n    trust: pk\n{entry}",
                       encoding="utf-8")
    config = uz.home / "exchange.toml"
    kept = config.read_text(encoding="utf-8")
    config.write_text(kept + 'taxii_sources = "sources.yaml"\n', encoding="utf-8")
    try:
        code, out, err = cli(uz.home, "sync", "run", "pk-cli", "--json")
        run = json.loads(out)
        counts = run["counts"]
        assert counts.get("created", 0) + counts.get("duplicate", 0) >= 5, out
        # only what a revoked key signed (when an earlier test made one) is refused, by the
        # pinned peer's verifier and with its reason; then the run is partial (exit 1)
        assert all(r["rule"] == "signature" and "revoked" in r["reason"]
                   for r in run["refused"]), out
        # and each of those was refused by the time PK's manifest gives for it
        assert all("the peer recorded this object at" in r["reason"]
                   for r in run["refused"]), out
        assert code == (1 if run["refused"] else 0), err + out
        code, out, err = cli(uz.home, "sync", "status", "--json")
        assert code == 0, err
        assert "pk-cli" in out
        # a peer source whose trust names no pinned peer does not run
        sources.write_text(f"version: 1\nsources:\n  pk-untrusted:\n    trust: nobody\n"
                           f"{entry}", encoding="utf-8")
        code, out, err = cli(uz.home, "sync", "run", "pk-untrusted")
        assert code == 1
        assert "no trusted peer 'nobody'" in out + err
    finally:
        config.write_text(kept, encoding="utf-8")
