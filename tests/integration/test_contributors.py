"""Contributor and author, end to end on a running node (issue 17 findings 1-2, issue 18
items 2-3; DESIGN.md decision 8; docs/adr/0001-sco-contributions.md).

The member that publishes is the contributor; ``created_by_ref`` is the author, kept as
the data says: FireEye's Poison Ivy report relayed by UZ-CERT keeps FireEye as author,
Mandiant's APT1 report keeps no author, MISP's exports (mostly SCOs and observed-data)
go into a collection that requires signatures, signed by the relaying member. The same
SCO contributed by two members is served to each reader as policy allows, each
contribution with its own contributor and signature. Then what no member may do.

This module runs a node of its own: other modules register the real bundles' authors
(FireEye's identity among them) as members of the shared node, and here they must stay
non-members.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import rfc8785
from taxii2client.v21 import Collection as TaxiiCollection
from taxii2client.v21 import as_pages

from exchange.config import load_settings
from exchange.member.signer import sign_all
from exchange.model.objects import CollectionId
from exchange.node.service import Exchange, init_home
from exchange.signing.canonical import EXTENSION_ID, normal_form
from exchange.signing.cxsig import sign_object
from exchange.storage import open_store
from exchange.storage.base import Grant, ObjectQuery
from exchange.storage.envelopes import MSG_NOT_CREATOR
from tests.integration.conftest import TAXII, Node, serving
from tests.integration.stixdata import TLP2, indicator
from tests.integration.test_signed_exchange import (
    World,
    cli,
    failures,
    post,
    wait_for_registry,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
POISON_IVY = REAL / "stix21" / "poisonivy.json"
APT1 = REAL / "stix21" / "apt1.json"
MISP_STIX = sorted((REAL / "misp-stix").glob("*stix21.json"))
FIREEYE = "identity--81cade27-7df8-4730-836b-62d880e6d9d3"
#: The namespace STIX 2.1 section 2.9 gives for deterministic SCO ids.
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")


@pytest.fixture(scope="module")
def own_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node of this module's own: UZ-CERT, PK-CERT, UZ-SOC (UZ-CERT's constituent)."""
    home = tmp_path_factory.mktemp("contributors-home")
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    n = Node(base="", home=home, exchange=ex, api_root=settings.api_root)
    for name in ("UZ-CERT", "PK-CERT", "Operator"):
        n.identities[name] = ex.add_org(name).identity_id
    n.identities["UZ-SOC"] = ex.add_org("UZ-SOC", parent="UZ-CERT").identity_id
    for account, org, role in [("uz-pub", "UZ-CERT", "publisher"),
                               ("pk-pub", "PK-CERT", "publisher"),
                               ("uz-reader", "UZ-CERT", "consumer"),
                               ("uz-soc", "UZ-SOC", "consumer"),
                               ("admin", "Operator", "admin")]:
        ex.add_account(account, org=org, role=role)
        n.keys[account] = ex.create_api_key(account)[1]
    try:
        with serving(home, n.auth("uz-pub")) as base:
            n.base = base
            yield n
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(own_node: Node, tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(node=own_node, workdir=tmp_path_factory.mktemp("contributors"))
    w.registry_file = w.workdir / "registry.json"
    w.generate_and_register("uz", "UZ-CERT")
    w.generate_and_register("pk", "PK-CERT")
    wait_for_registry(own_node)
    w.export()
    return w


def signed_collection(world: World) -> str:
    return world.collection(required=True, writers=["UZ-CERT", "PK-CERT"],
                            readers=["UZ-CERT", "PK-CERT", "UZ-SOC"])


def served(node: Node, alias: str, account: str, **filters: Any) -> list[dict[str, Any]]:
    user, key = node.auth(account)
    col = TaxiiCollection(node.collection_url(alias), user=user, password=key)
    return [o for page in as_pages(col.get_objects, per_request=100, **filters)
            for o in page.get("objects", [])]


def pull_verified(world: World, alias: str, account: str) -> tuple[dict[str, Any], list[str]]:
    """``exchange pull --verify`` (JSON report), then ``exchange verify`` on the feed
    (its per-object lines)."""
    node = world.node
    feed = world.workdir / f"{alias}-{account}.jsonl"
    code, out, err = cli(node, "pull", "--url", node.collection_url(alias), "--user", account,
                         "--out", str(feed), "--verify", "--registry",
                         str(world.registry_file), "--json", account=account)
    assert code == 0, err + out
    code, text, err = cli(node, "verify", str(feed), "--registry", str(world.registry_file))
    assert code == 0, err
    return json.loads(out), text.splitlines()[:-1]


# -- relaying third-party reports ---------------------------------------------------------
def test_a_relayed_vendor_report_keeps_its_author_and_is_attested_by_the_contributor(
    world: World,
) -> None:
    node = world.node
    alias = signed_collection(world)
    code, out, err = cli(node, "publish", str(POISON_IVY), "--url", node.collection_url(alias),
                         "--user", "uz-pub", "--sign-key", str(world.key_file("uz")),
                         "--json", account="uz-pub")
    assert code == 0, err + out
    source = json.loads(POISON_IVY.read_text())["objects"]
    result = json.loads(out)
    assert (result["succeeded"], result["failed"]) == (len(source), 0)

    stored = {o["id"]: o for o in served(node, alias, "uz-reader")}
    assert set(stored) == {o["id"] for o in source}
    for original in source:  # authorship as the data says: FireEye's, or none
        assert stored[original["id"]].get("created_by_ref") == original.get("created_by_ref")
    assert stored[FIREEYE]["name"] == "FireEye, Inc."
    assert sum(o.get("created_by_ref") == FIREEYE for o in stored.values()) == 2
    assert all(EXTENSION_ID in o["extensions"] for o in stored.values())
    rows = node.exchange.store.get_objects(_query(node, alias)).rows
    uz_org = node.exchange.store.find_org("UZ-CERT").id
    assert {r.producer_org for r in rows} == {uz_org}  # UZ-CERT contributed every one

    report, lines = pull_verified(world, alias, "uz-soc")
    counts = report["verification"]
    assert (counts["valid"], counts["unsigned"], counts["invalid"]) == (len(source), 0, 0)
    assert (counts["signed_by_author"], counts["attested_by_contributor"]) == (0, len(source))
    kid = world.keys["uz"].kid
    assert f"valid    {FIREEYE}  attested by contributor UZ-CERT ({kid})" in lines


def test_a_report_without_author_stays_without_one_through_taxii(world: World) -> None:
    node = world.node
    alias = signed_collection(world)
    source = json.loads(APT1.read_text())["objects"]
    signing = sign_all(source, world.keys["pk"], normalise=True)
    assert signing.refused == []
    status = post(node, alias, signing.objects, "pk-pub")
    assert (status["success_count"], status["failure_count"]) == (len(source), 0)

    stored = served(node, alias, "uz-soc")
    assert {o["id"] for o in stored} == {o["id"] for o in source}
    assert not any("created_by_ref" in o for o in stored)  # not stamped with PK-CERT
    assert sorted(rfc8785.dumps(o) for o in stored) == sorted(
        rfc8785.dumps(o) for o in signing.objects)

    report, lines = pull_verified(world, alias, "uz-soc")
    assert report["verification"]["attested_by_contributor"] == len(source)
    assert all(line.startswith("valid") and "attested by contributor PK-CERT" in line
               for line in lines)


def test_an_ioc_list_is_authored_by_the_cert_without_pasting_its_identity(
    world: World,
) -> None:
    node = world.node
    alias = signed_collection(world)
    iocs = world.workdir / "own-iocs.txt"
    iocs.write_text("198.51.100.23\nc2.bad-domain.example\n")
    code, out, err = cli(node, "publish", str(iocs), "--url", node.collection_url(alias),
                         "--user", "uz-pub", "--format", "list", "--tlp", "green",
                         "--sign-key", str(world.key_file("uz")), "--json", account="uz-pub")
    assert code == 0, err + out
    assert json.loads(out)["succeeded"] == 2
    stored = served(node, alias, "uz-soc")
    assert {o["created_by_ref"] for o in stored} == {node.identities["UZ-CERT"]}
    report, lines = pull_verified(world, alias, "uz-soc")
    assert report["verification"]["signed_by_author"] == 2
    assert all("signed by the author UZ-CERT" in line for line in lines)


@pytest.mark.parametrize("path", MISP_STIX, ids=[p.stem for p in MISP_STIX])
def test_misp_exports_mostly_scos_enter_a_signed_collection(world: World, path: Path) -> None:
    node = world.node
    alias = signed_collection(world)
    code, out, err = cli(node, "publish", str(path), "--url", node.collection_url(alias),
                         "--user", "uz-pub", "--sign-key", str(world.key_file("uz")),
                         "--json", account="uz-pub")
    assert code == 0, err + out
    source = json.loads(path.read_text())["objects"]
    assert json.loads(out)["failed"] == 0
    stored = {o["id"]: o for o in served(node, alias, "uz-soc", version="all")}
    assert set(stored) == {o["id"] for o in source}
    scos = [o for o in source if "created" not in o]
    assert scos  # domain-name, ipv4-addr, autonomous-system, file
    for sco in scos:
        assert EXTENSION_ID in stored[sco["id"]]["extensions"]
        assert "created_by_ref" not in stored[sco["id"]]
    report, _ = pull_verified(world, alias, "uz-soc")
    counts = report["verification"]
    assert (counts["valid"], counts["invalid"], counts["unsigned"]) == (len(stored), 0, 0)


# -- one SCO, two contributors ------------------------------------------------------------
def _sco(value: str, tlp: str) -> dict[str, Any]:
    identifier = uuid.uuid5(SCO_NAMESPACE, rfc8785.dumps({"value": value}).decode())
    return {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{identifier}",
            "value": value, "object_marking_refs": [TLP2[tlp]]}


def test_the_same_sco_from_two_members_reaches_each_reader_as_policy_allows(
    world: World,
) -> None:
    node = world.node
    alias = signed_collection(world)
    # PK-CERT reports it as CLEAR first; UZ-CERT then reports it as RED (baseline: RED
    # reaches its producer only). Neither is refused, neither replaces the other.
    pk_sco = sign_object(_sco("203.0.113.7", "clear"), world.keys["pk"])
    uz_sco = sign_object(_sco("203.0.113.7", "red"), world.keys["uz"])
    assert pk_sco["id"] == uz_sco["id"]
    assert failures(post(node, alias, [pk_sco], "pk-pub")) == {}
    assert failures(post(node, alias, [uz_sco], "uz-pub")) == {}
    # re-posting one's own contribution stores nothing new
    assert post(node, alias, [uz_sco], "uz-pub")["successes"][0]["message"] == (
        "this version of the object is already stored")

    def received(account: str) -> list[dict[str, Any]]:  # match[version]=last, the default
        r = node.get(node.collection_url(alias) + f"objects/{uz_sco['id']}/", account)
        assert r.status_code == 200, r.text
        return list(r.json().get("objects", []))

    assert received("uz-reader") == [pk_sco, uz_sco]  # UZ-CERT's own, and PK's CLEAR
    assert received("pk-pub") == [pk_sco]
    assert received("uz-soc") == [pk_sco]  # UZ-CERT's later RED one does not hide PK's
    versions = node.get(node.collection_url(alias) + f"objects/{uz_sco['id']}/versions/",
                        "uz-reader").json()["versions"]
    assert len(versions) == 2

    _, lines = pull_verified(world, alias, "uz-soc")
    assert lines == [f"valid    {pk_sco['id']}  attested by contributor PK-CERT"
                     f" ({world.keys['pk'].kid})"]
    _, lines = pull_verified(world, alias, "uz-reader")
    assert lines == [
        f"valid    {pk_sco['id']}  attested by contributor PK-CERT ({world.keys['pk'].kid})",
        f"valid    {uz_sco['id']}  attested by contributor UZ-CERT ({world.keys['uz'].kid})",
    ]

    # PK-CERT withdrawing its contribution leaves UZ-CERT's alone
    user, key = node.auth("pk-pub")
    r = requests.delete(node.collection_url(alias) + f"objects/{pk_sco['id']}/",
                        auth=(user, key), headers={"Accept": TAXII}, timeout=30)
    assert r.status_code == 200, r.text
    assert received("uz-reader") == [uz_sco]


# -- what no member may do ----------------------------------------------------------------
def _identity(identity_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "identity", "spec_version": "2.1", "id": identity_id,
            "created": "2026-11-01T10:00:00.000Z", "modified": "2026-11-01T10:00:00.000Z",
            "name": name, "identity_class": "organization", **extra}


def _upper(identifier: str) -> str:
    kind, _, uid = identifier.partition("--")
    return f"{kind}--{uid.upper()}"


def _negative_cases(node: Node, world: World) -> list[tuple[str, dict[str, Any], str]]:
    uz, pk = node.identities["UZ-CERT"], node.identities["PK-CERT"]
    node_identity = node.exchange.node_identity
    upper_id = indicator(uz)
    upper_id["id"] = _upper(upper_id["id"])
    upper_ref = _upper(f"indicator--{uuid.uuid4()}")
    report = {"type": "report", "spec_version": "2.1", "id": f"report--{uuid.uuid4()}",
              "created": "2026-11-01T10:00:00.000Z", "modified": "2026-11-01T10:00:00.000Z",
              "name": "r", "published": "2026-11-01T10:00:00.000Z", "object_refs": [upper_ref]}
    return [
        ("another member as author", indicator(pk),
         f"created_by_ref {pk} is the registered identity of PK-CERT"),
        ("the node as author", indicator(node_identity),
         "is the registered identity of this exchange node"),
        ("another member's identity object", _identity(pk, "PK-CERT", created_by_ref=uz),
         f"{pk} is the registered identity of PK-CERT; only PK-CERT may publish"),
        ("another member's identity object, no author", _identity(pk, "Not PK"),
         "only PK-CERT may publish an identity object under it"),
        ("upper-case id", upper_id, f"'id' is {upper_id['id']} in upper case"),
        ("upper-case author", indicator(_upper(uz)),
         f"'created_by_ref' is {_upper(uz)} in upper case: STIX identifiers are lower-case"
         f" (use {uz})"),
        ("upper-case reference", report,
         f"'object_refs' is {upper_ref} in upper case: STIX identifiers are lower-case"),
        ("another member's key", sign_object(normal_form(indicator(FIREEYE)),
                                             world.keys["pk"]),
         f"signature refused: key {world.keys['pk'].kid} belongs to {pk}, not to the"
         f" publishing organisation ({uz}); sign with your own key"),
    ]


def test_no_member_may_claim_another_members_identity_or_spell_ids_in_upper_case(
    world: World,
) -> None:
    node = world.node
    alias = world.collection(required=False, writers=["UZ-CERT", "PK-CERT"],
                             readers=["UZ-CERT", "PK-CERT"])
    cases = _negative_cases(node, world)
    refused = failures(post(node, alias, [obj for _, obj, _ in cases], "uz-pub"))
    for name, obj, reason in cases:
        assert obj["id"] in refused, name
        assert reason in refused[obj["id"]], (name, refused[obj["id"]])
    assert served(node, alias, "uz-reader") == []  # nothing refused got in

    # PK-CERT's identity was not taken by the attempts: PK-CERT publishes it itself
    own = _identity(node.identities["PK-CERT"], "PK-CERT")
    assert failures(post(node, alias, [own], "pk-pub")) == {}
    assert served(node, alias, "pk-pub") == [own]

    # an upper-case id names nothing: reads say which spelling to use, whether or not
    # the object exists, and the lower-case object is found
    for path in (f"objects/{_upper(own['id'])}/", f"objects/{_upper(own['id'])}/versions/",
                 f"objects/?match[id]={_upper(own['id'])}",
                 f"objects/?match[id]={_upper(f'indicator--{uuid.uuid4()}')}"):
        r = node.get(node.collection_url(alias) + path, "pk-pub")
        assert r.status_code == 400, (path, r.text)
        assert "in upper case: STIX identifiers are lower-case (use " in r.json()["description"]
    r = node.get(node.collection_url(alias) + f"objects/?match[id]={own['id']}", "pk-pub")
    assert r.json()["objects"] == [own]


def test_an_identity_taken_before_its_organisation_joined_is_given_back(world: World) -> None:
    node = world.node
    alias = world.collection(required=False, writers=["UZ-CERT", "PK-CERT"],
                             readers=["UZ-CERT", "PK-CERT"])
    future = f"identity--{uuid.uuid4()}"
    squat = _identity(future, "KZ-CERT (not really)")
    assert failures(post(node, alias, [squat], "uz-pub")) == {}  # not registered yet
    node.exchange.add_org("KZ-CERT", identity_id=future)
    node.exchange.add_account("kz-pub", org="KZ-CERT", role="publisher")
    node.keys["kz-pub"] = node.exchange.create_api_key("kz-pub")[1]
    node.exchange.store.set_grant(_grant(node, alias, "KZ-CERT"))
    again = {**squat, "modified": "2026-11-02T10:00:00.000Z"}
    assert failures(post(node, alias, [again], "uz-pub")) == {
        future: f"{future} is the registered identity of KZ-CERT; only KZ-CERT may publish"
                " an identity object under it"}
    mine = _identity(future, "KZ-CERT", modified="2026-11-03T10:00:00.000Z")
    assert failures(post(node, alias, [mine], "kz-pub")) == {}
    # every other id stays with its first contributor
    first = indicator(node.identities["UZ-CERT"])
    assert failures(post(node, alias, [first], "uz-pub")) == {}
    hijack = {**first, "modified": "2026-11-05T10:00:00.000Z", "created_by_ref": future}
    assert failures(post(node, alias, [hijack], "kz-pub")) == {first["id"]: MSG_NOT_CREATOR}


def _query(node: Node, alias: str) -> ObjectQuery:
    return ObjectQuery(collection_id=CollectionId(node.collections[alias]), limit=1000)


def _grant(node: Node, alias: str, org_name: str) -> Grant:
    org = node.exchange.store.find_org(org_name)
    return Grant(collection_id=node.exchange.store.get_collection(node.api_root, alias).id,
                 org_id=org.id, can_read=True, can_write=True)
