"""Signed contributions end to end on a running node (issue 4, "Done when").

An analyst generates a key, an admin registers it, the analyst publishes signed
indicators, and a SOC consumer pulls them and verifies every signature offline against
the exported registry. Then the attacks, each through TAXII and each refused per object
with its reason; and the real STIX 2.1 bundles signed, published, pulled back, verified.

The node's HTTP workers rebuild their key registry every ``cache_seconds``
(:class:`exchange.node.keyring.RegistryCache`), so the tests wait that long after changing
keys.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from exchange.cli.main import main
from exchange.model.objects import CollectionId, OrgId
from exchange.signing.canonical import EXTENSION_ID, normal_form
from exchange.signing.cxsig import sign_object
from exchange.signing.keyfiles import read_private_key
from exchange.signing.keys import SigningKey
from exchange.storage.base import Collection, Grant
from exchange.storage.envelopes import MSG_NOT_CREATOR
from tests.integration.conftest import Node
from tests.integration.stixdata import TLP2, envelope, indicator
from tests.integration.test_real_data import STIX21, _publisher_for, author_of

PASSPHRASE = "a long analyst passphrase 2026"


def cli(node: Node, *args: str, account: str | None = None, admin: bool = False
        ) -> tuple[int, str, str]:
    env: dict[str, str | None] = {"EXCHANGE_SERVER_SECRET": None, "EXCHANGE_SIGNING_KEY": None,
                                  "EXCHANGE_IDENTITY": None, "EXCHANGE_PASSPHRASE": PASSPHRASE,
                                  "EXCHANGE_API_KEY": node.keys[account] if account else None}
    prefix = ["--home", str(node.home)] if admin else []
    result = CliRunner().invoke(main, [*prefix, *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def wait_for_registry(node: Node) -> None:
    """Until every worker has rebuilt its key registry."""
    time.sleep(node.exchange.settings.cache_seconds + 0.3)


@dataclass
class World:
    """Keys, collections and files shared by the tests of this module."""

    node: Node
    workdir: Path
    keys: dict[str, SigningKey] = field(default_factory=dict)
    registry_file: Path = Path()

    def key_file(self, name: str) -> Path:
        return self.workdir / f"{name}.key"

    def export(self) -> Path:
        code, _, err = cli(self.node, "keys", "export", "--out", str(self.registry_file),
                           admin=True)
        assert code == 0, err
        return self.registry_file

    def generate_and_register(self, name: str, org: str) -> SigningKey:
        """The analyst generates (CLI), the admin registers (CLI)."""
        code, out, err = cli(self.node, "keys", "generate", "--out", str(self.key_file(name)),
                             "--public-out", str(self.workdir / f"{name}.pub"), "--json")
        assert code == 0, err
        code, _, err = cli(self.node, "keys", "register", "--org", org, "--public-key",
                           str(self.workdir / f"{name}.pub"), admin=True)
        assert code == 0, err
        self.keys[name] = read_private_key(self.key_file(name), PASSPHRASE.encode())
        assert self.keys[name].kid == json.loads(out)["kid"]
        return self.keys[name]

    def collection(self, *, required: bool, writers: list[str], readers: list[str]) -> str:
        alias = f"s-{uuid.uuid4().hex[:10]}"
        store = self.node.exchange.store
        col = Collection(id=CollectionId(str(uuid.uuid4())), api_root=self.node.api_root,
                         title=alias, alias=alias, default_tlp="green",
                         require_signatures=required)
        rights: dict[OrgId, list[bool]] = {}
        for name in readers:
            rights.setdefault(store.find_org(name).id, [False, False])[0] = True
        for name in writers:
            rights.setdefault(store.find_org(name).id, [False, False])[1] = True
        store.add_collection(col, [Grant(col.id, org_id, r, w)
                                   for org_id, (r, w) in rights.items()])
        self.node.collections[alias] = col.id
        return alias


@pytest.fixture(scope="module")
def world(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(node=node, workdir=tmp_path_factory.mktemp("signed"))
    w.registry_file = w.workdir / "registry.json"
    exchange = node.exchange
    exchange.add_org("RV-CERT")
    exchange.add_account("rv-pub", org="RV-CERT", role="publisher")
    node.keys["rv-pub"] = exchange.create_api_key("rv-pub")[1]
    node.identities["RV-CERT"] = exchange.store.find_org("RV-CERT").identity_id
    w.generate_and_register("uz", "UZ-CERT")
    w.generate_and_register("pk", "PK-CERT")
    w.generate_and_register("rv", "RV-CERT")
    for path in STIX21:  # every creator of the real bundles, and the loader
        creators = {author_of(o) for o in json.loads(path.read_text())["objects"]}
        for creator in creators:
            account = _publisher_for(node, creator)
            org = account.removesuffix("-pub")
            if org not in w.keys:
                w.generate_and_register(org, org)
    wait_for_registry(node)  # every worker's registry now knows the new keys
    return w


def post(node: Node, alias: str, objects: list[dict[str, Any]], account: str) -> dict[str, Any]:
    r = node.post(node.collection_url(alias) + "objects/", envelope(*objects), account)
    assert r.status_code == 202, r.text
    return dict(r.json())


def failures(status: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["message"] for f in status.get("failures", [])}


def signed_indicator(world: World, key: str, org: str, **extra: Any) -> dict[str, Any]:
    obj = normal_form(indicator(world.node.identities[org], **extra))
    return sign_object(obj, world.keys[key])


# -- the analyst and the SOC consumer ---------------------------------------------------
def test_analyst_publishes_signed_indicators_and_the_soc_verifies_them_offline(
    world: World,
) -> None:
    node = world.node
    alias = world.collection(required=False, writers=["UZ-CERT"],
                             readers=["UZ-CERT", "UZ-SOC"])
    iocs = world.workdir / "iocs.txt"
    iocs.write_text("198.51.100.23\nc2.bad-domain.example\nhttp://203.0.113.9/payload.bin\n")
    code, out, err = cli(node, "publish", str(iocs), "--url", node.collection_url(alias),
                         "--user", "uz-pub", "--format", "list", "--tlp", "green",
                         "--sign-key", str(world.key_file("uz")), "--json",
                         account="uz-pub")  # the CLI asks the server for UZ-CERT's identity
    assert code == 0, err
    published = json.loads(out)
    assert (published["succeeded"], published["failed"]) == (3, 0)
    assert published["signing"]["kid"] == world.keys["uz"].kid
    assert published["signing"]["signed"] == 3
    assert PASSPHRASE not in out + err

    stored = node.exchange.store.versions_signed_by(world.keys["uz"].kid)
    assert len([v for v in stored if v.collection_id == node.collections[alias]]) == 3

    # one unsigned object is accepted here, and the consumer sees that it is unsigned
    post(node, alias, [indicator(node.identities["UZ-CERT"])], "uz-pub")

    registry = world.export()
    pulled = world.workdir / f"{alias}.jsonl"
    code, out, err = cli(node, "pull", "--url", node.collection_url(alias), "--user", "uz-soc",
                         "--out", str(pulled), "--verify", "--registry", str(registry),
                         "--json", account="uz-soc")
    assert code == 0, err
    report = json.loads(out)
    assert report["objects"] == 4
    assert {k: report["verification"][k] for k in ("valid", "unsigned", "invalid")} == {
        "valid": 3, "unsigned": 1, "invalid": 0}

    code, out, _ = cli(node, "verify", str(pulled), "--registry", str(registry))
    assert code == 0
    valid = [line for line in out.splitlines() if line.startswith("valid")]
    assert len(valid) == 3
    assert all(f"signed by the author UZ-CERT ({world.keys['uz'].kid})" in line
               for line in valid)


# -- the attacks, through TAXII ----------------------------------------------------------
def _flip(text: str) -> str:
    return ("B" if text[0] == "A" else "A") + text[1:]


def test_attacks_are_refused_per_object_with_their_reason(world: World) -> None:
    node = world.node
    alias = world.collection(required=True, writers=["UZ-CERT", "PK-CERT"],
                             readers=["UZ-CERT", "PK-CERT"])
    good = signed_indicator(world, "uz", "UZ-CERT")
    stripped = copy.deepcopy(signed_indicator(world, "uz", "UZ-CERT"))
    del stripped["extensions"]
    victim = signed_indicator(world, "uz", "UZ-CERT")
    moved = copy.deepcopy(victim)
    moved["extensions"] = copy.deepcopy(good["extensions"])
    changed = copy.deepcopy(signed_indicator(world, "uz", "UZ-CERT"))
    changed["name"] = changed["name"][:-1] + "X"
    bad_sig = copy.deepcopy(signed_indicator(world, "uz", "UZ-CERT"))
    bad_sig["extensions"][EXTENSION_ID]["sig"] = _flip(bad_sig["extensions"][EXTENSION_ID]["sig"])
    forged = signed_indicator(world, "pk", "UZ-CERT")  # PK's key, published by UZ

    status = post(node, alias, [good, stripped, moved, changed, bad_sig, forged], "uz-pub")
    refused = failures(status)
    assert status["success_count"] == 1
    assert refused == {
        stripped["id"]: "this collection requires signed objects; the object is not signed",
        moved["id"]: "signature refused: signature does not verify",
        changed["id"]: "signature refused: signature does not verify",
        bad_sig["id"]: "signature refused: signature does not verify",
        forged["id"]: f"signature refused: key {world.keys['pk'].kid} belongs to"
                      f" {node.identities['PK-CERT']}, not to the publishing organisation"
                      f" ({node.identities['UZ-CERT']}); sign with your own key",
    }

    # an old signature replayed on a new version
    replay = copy.deepcopy(good)
    replay["modified"] = "2026-11-02T10:00:00.000Z"
    assert failures(post(node, alias, [replay], "uz-pub")) == {
        replay["id"]: "signature refused: signature does not verify"}

    # a new version (TLP marking changed) by someone other than the creator, properly
    # signed by its own key: the exchange keeps authorship with the creator
    hijack = {k: v for k, v in good.items() if k != "extensions"}
    hijack.update(modified="2026-11-03T10:00:00.000Z", object_marking_refs=[TLP2["clear"]],
                  created_by_ref=node.identities["PK-CERT"])
    hijack = sign_object(normal_form(hijack), world.keys["pk"])
    assert failures(post(node, alias, [hijack], "pk-pub")) == {hijack["id"]: MSG_NOT_CREATOR}

    served = node.get(node.collection_url(alias) + "objects/", "uz-pub").json()["objects"]
    assert served == [good]  # byte-for-byte what was signed; nothing refused got in


def test_a_revoked_key_is_refused_for_new_objects_and_its_old_ones_are_listed(
    world: World,
) -> None:
    node = world.node
    alias = world.collection(required=True, writers=["RV-CERT"], readers=["RV-CERT"])
    before = signed_indicator(world, "rv", "RV-CERT")
    assert failures(post(node, alias, [before], "rv-pub")) == {}
    kid = world.keys["rv"].kid
    compromised = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # after `before`
    code, out, err = cli(node, "keys", "revoke", kid, "--compromised-since", compromised,
                         "--json", admin=True)
    assert code == 0, err
    assert json.loads(out)["status"] == "revoked"
    wait_for_registry(node)

    after = signed_indicator(world, "rv", "RV-CERT")
    [(object_id, reason)] = failures(post(node, alias, [after], "rv-pub")).items()
    assert object_id == after["id"]
    assert reason.startswith(f"signature refused: key {kid} was revoked: compromised since")

    code, out, _ = cli(node, "keys", "affected", kid, "--json", admin=True)
    listed = json.loads(out)
    assert [(v["id"], v["after_compromise"]) for v in listed] == [(before["id"], False)]

    registry = world.export()
    pulled = world.workdir / f"{alias}.jsonl"
    code, out, err = cli(node, "pull", "--url", node.collection_url(alias), "--user", "rv-pub",
                         "--out", str(pulled), "--verify", "--registry", str(registry),
                         "--json", account="rv-pub")
    assert code == 0, err  # recorded before the compromise: still valid for the consumer
    assert json.loads(out)["verification"]["valid"] == 1


def test_rotation_inside_a_page_is_resolved_with_the_exact_recording_time(
    world: World,
) -> None:
    node = world.node
    node.exchange.add_org("RT-CERT")
    node.exchange.add_account("rt-pub", org="RT-CERT", role="publisher")
    node.keys["rt-pub"] = node.exchange.create_api_key("rt-pub")[1]
    node.identities["RT-CERT"] = node.exchange.store.find_org("RT-CERT").identity_id
    world.generate_and_register("rt-old", "RT-CERT")
    alias = world.collection(required=True, writers=["RT-CERT"], readers=["RT-CERT"])
    wait_for_registry(node)
    old = signed_indicator(world, "rt-old", "RT-CERT")
    assert failures(post(node, alias, [old], "rt-pub")) == {}

    code, _, err = cli(node, "keys", "generate", "--out", str(world.key_file("rt-new")),
                       "--public-out", str(world.workdir / "rt-new.pub"))
    assert code == 0, err
    code, out, err = cli(node, "keys", "rotate", "--org", "RT-CERT", "--public-key",
                         str(world.workdir / "rt-new.pub"), "--json", admin=True)
    assert code == 0, err
    assert [r["kid"] for r in json.loads(out)["retired"]] == [world.keys["rt-old"].kid]
    world.keys["rt-new"] = read_private_key(world.key_file("rt-new"), PASSPHRASE.encode())
    wait_for_registry(node)
    stale = signed_indicator(world, "rt-old", "RT-CERT")
    fresh = signed_indicator(world, "rt-new", "RT-CERT")
    refused = failures(post(node, alias, [stale, fresh], "rt-pub"))
    assert list(refused) == [stale["id"]]
    assert "is retired since" in refused[stale["id"]]

    # one page holds objects recorded before and after the rotation: its date_added
    # bounds cannot decide, the manifest's exact times do
    registry = world.export()
    pulled = world.workdir / f"{alias}.jsonl"
    code, out, err = cli(node, "pull", "--url", node.collection_url(alias), "--user", "rt-pub",
                         "--out", str(pulled), "--verify", "--registry", str(registry),
                         "--json", account="rt-pub")
    assert code == 0, err
    counts = json.loads(out)["verification"]
    assert (counts["valid"], counts["invalid"]) == (2, 0)
    code, out, _ = cli(node, "verify", str(pulled), "--registry", str(registry))
    assert code == 0  # offline, a retired key's signatures still verify
    assert out.splitlines()[-1] == "2 valid, 0 unsigned, 0 invalid"


# -- the real bundles -----------------------------------------------------------------------
@pytest.mark.parametrize("path", STIX21, ids=[p.stem for p in STIX21])
def test_real_bundles_signed_published_pulled_and_verified(world: World, path: Path) -> None:
    node = world.node
    objects = json.loads(path.read_text())["objects"]
    by_creator: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_creator.setdefault(_publisher_for(node, author_of(obj)), []).append(obj)
    orgs = [account.removesuffix("-pub") for account in by_creator]
    alias = world.collection(required=True, writers=orgs, readers=orgs)
    for account, group in by_creator.items():
        org = account.removesuffix("-pub")
        source = world.workdir / f"{alias}-{org}.json"
        source.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                      "objects": group}))
        signed = world.workdir / f"{alias}-{org}.signed.json"
        code, _, err = cli(node, "sign", str(source), "--key", str(world.key_file(org)),
                           "--normalise", "--out", str(signed))
        assert code == 0, err
        code, out, err = cli(node, "publish", str(signed), "--url", node.collection_url(alias),
                             "--user", account, "--json", account=account)
        result = json.loads(out) if out else {}
        # a predefined TLP definition is the standard's object, never signed: a collection
        # that requires signatures may refuse it; nothing else may be refused
        refused = {f["id"] for f in result.get("failures", [])}
        assert refused <= {o["id"] for o in group if _is_tlp_definition(o)}, result

    # objects under a marking the policy cannot read are served to their producer only,
    # so the admin and every producer pull (as tests/integration/test_real_data.py does)
    registry = world.export()
    served: dict[str, dict[str, Any]] = {}
    for account in ["admin", *by_creator]:
        pulled = world.workdir / f"{alias}-{account}.jsonl"
        code, out, err = cli(node, "pull", "--url", node.collection_url(alias), "--user",
                             account, "--out", str(pulled), "--verify", "--registry",
                             str(registry), "--json", account=account)
        assert code == 0, err
        counts = json.loads(out)["verification"]
        objects_pulled = [json.loads(line) for line in pulled.read_text().splitlines()]
        unsigned = [o for o in objects_pulled if _is_tlp_definition(o)]
        assert (counts["valid"], counts["unsigned"], counts["invalid"]) == (
            len(objects_pulled) - len(unsigned), len(unsigned), 0)
        served.update((o["id"], o) for o in objects_pulled)
    signable = {o["id"] for o in objects if not _is_tlp_definition(o)}
    assert signable <= set(served)
    assert all(EXTENSION_ID in served[i]["extensions"] for i in signable)


def _is_tlp_definition(obj: dict[str, Any]) -> bool:
    return obj["type"] == "marking-definition" and obj.get("definition_type") == "tlp"
