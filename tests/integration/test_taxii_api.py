"""TAXII 2.1 behaviour of a running node, through taxii2-client and raw HTTP."""

from __future__ import annotations

import copy
import json
import uuid

import pytest
import rfc8785
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.integration.conftest import TAXII, Node
from tests.integration.stixdata import envelope, indicator


def client_collection(node: Node, alias: str, account: str = "uz-pub") -> Collection:
    user, key = node.auth(account)
    return Collection(node.collection_url(alias), user=user, password=key)


def publish(node: Node, alias: str, *objects: dict, account: str = "uz-pub") -> dict:
    r = node.post(node.collection_url(alias) + "objects/", envelope(*objects), account)
    assert r.status_code == 202, r.text
    return r.json()


# -- discovery, API root, collections -----------------------------------------------------
def test_discovery_and_api_root_through_taxii2_client(node: Node) -> None:
    user, key = node.auth("uz-soc")
    server = Server(f"{node.base}/taxii2/", user=user, password=key)
    assert server.title == "cert-exchange"
    assert [r.url for r in server.api_roots] == [node.root]
    root = ApiRoot(node.root, user=user, password=key)
    assert root.versions == [TAXII]
    assert root.max_content_length == 10 * 1024 * 1024


def test_discovery_advertises_relative_api_roots_the_client_follows(node: Node) -> None:
    # TAXII 2.1 section 4.1.1: absolute https:// or relative; never absolute http://
    body = node.get(f"{node.base}/taxii2/", "uz-soc").json()
    assert body["api_roots"] == [f"/{node.api_root}/"]
    assert body["default"] == f"/{node.api_root}/"
    user, key = node.auth("uz-soc")
    server = Server(f"{node.base}/taxii2/", user=user, password=key)
    assert server.default is not None
    assert server.default.url == node.root
    assert "jwg" in {c.alias for c in server.default.collections}


def test_collections_list_shows_only_what_the_account_may_read_or_write(node: Node) -> None:
    def titles(account: str) -> set[str]:
        body = node.get(node.root + "collections/", account).json()
        return {c["alias"] for c in body.get("collections", [])} & {"jwg", "uz"}

    assert titles("uz-pub") == {"jwg", "uz"}
    assert titles("uz-soc") == {"jwg"}
    assert titles("pk-pub") == {"jwg"}
    assert titles("admin") == {"jwg", "uz"}
    info = {c["alias"]: c for c in node.get(node.root + "collections/", "uz-soc")
            .json()["collections"]}
    assert info["jwg"]["can_read"] is True
    assert info["jwg"]["can_write"] is False
    assert info["jwg"]["media_types"] == ["application/stix+json;version=2.1"]


def test_a_collection_of_others_is_not_found_not_forbidden(node: Node) -> None:
    r = node.get(node.collection_url("uz"), "pk-pub")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/taxii+json")
    assert r.json()["http_status"] == "404"
    assert node.get(node.collection_url("uz") + "objects/", "pk-pub").status_code == 404


# -- publish and read back ----------------------------------------------------------------
def test_published_objects_come_back_byte_for_byte(node: Node) -> None:
    uz = node.identities["UZ-CERT"]
    objs = [indicator(uz) for _ in range(3)]
    col = client_collection(node, "jwg")
    status = col.add_objects({"objects": objs})
    assert status.success_count == 3
    assert status.failure_count == 0
    ids = ",".join(o["id"] for o in objs)
    r = node.get(node.collection_url("jwg") + f"objects/?match[id]={ids}", "uz-soc")
    assert r.status_code == 200
    wanted = {o["id"]: rfc8785.dumps(o) for o in objs}
    body = r.content
    for oid, canonical in wanted.items():
        assert canonical in body, f"{oid} was not served as its canonical bytes"
    assert len(r.json()["objects"]) == 3


def test_reposting_an_identical_object_succeeds_and_stores_nothing_new(node: Node) -> None:
    obj = indicator(node.identities["UZ-CERT"])
    publish(node, "jwg", obj)
    again = publish(node, "jwg", obj)
    assert again["success_count"] == 1
    assert again["failure_count"] == 0
    versions = node.get(node.collection_url("jwg") + f"objects/{obj['id']}/versions/").json()
    assert versions["versions"] == ["2026-11-01T10:00:00.000Z"]


def test_same_id_and_modified_with_different_content_fails(node: Node) -> None:
    obj = indicator(node.identities["UZ-CERT"])
    publish(node, "jwg", obj)
    changed = {**obj, "name": "something else"}
    status = publish(node, "jwg", changed)
    assert status["failure_count"] == 1
    assert "different object with this id and version" in status["failures"][0]["message"]
    served = node.get(node.collection_url("jwg") + f"objects/{obj['id']}/").json()
    assert served["objects"][0]["name"] == obj["name"]


def test_only_the_creator_may_add_versions(node: Node) -> None:
    obj = indicator(node.identities["UZ-CERT"], tlp="green")
    publish(node, "jwg", obj)
    hijack = {**obj, "modified": "2026-11-02T10:00:00.000Z",
              "created_by_ref": node.identities["PK-CERT"]}
    status = publish(node, "jwg", hijack, account="pk-pub")
    assert status["failure_count"] == 1
    assert "only the organisation that created this object" in status["failures"][0]["message"]


def test_another_members_identity_as_author_is_refused_per_object(node: Node) -> None:
    good = indicator(node.identities["UZ-CERT"])
    forged = indicator(node.identities["PK-CERT"])
    vendor = indicator(f"identity--{uuid.uuid4()}")  # a non-member author
    status = publish(node, "jwg", good, forged, vendor)
    assert status["total_count"] == 3
    assert status["success_count"] == 2
    assert [f["id"] for f in status["failures"]] == [forged["id"]]
    assert "is the registered identity of PK-CERT" in status["failures"][0]["message"]
    missing = node.get(node.collection_url("jwg") + f"objects/{forged['id']}/")
    assert missing.status_code == 404


def test_invalid_object_fails_alone_and_good_ones_are_stored(node: Node) -> None:
    uz = node.identities["UZ-CERT"]
    good = indicator(uz)
    bad = indicator(uz)
    del bad["valid_from"]
    status = publish(node, "jwg", good, bad)
    assert (status["success_count"], status["failure_count"]) == (1, 1)
    assert "valid_from" in status["failures"][0]["message"]
    assert node.get(node.collection_url("jwg") + f"objects/{good['id']}/").status_code == 200
    assert node.get(node.collection_url("jwg") + f"objects/{bad['id']}/").status_code == 404


def test_status_is_visible_to_the_submitting_organisation_only(node: Node) -> None:
    status = publish(node, "jwg", indicator(node.identities["UZ-CERT"]))
    url = f"{node.root}status/{status['id']}/"
    mine = node.get(url, "uz-reader")
    assert mine.status_code == 200
    assert mine.json()["success_count"] == 1
    assert node.get(url, "pk-pub").status_code == 404


def test_consumer_may_not_write(node: Node) -> None:
    r = node.post(node.collection_url("jwg") + "objects/",
                  envelope(indicator(node.identities["UZ-SOC"])), "uz-soc")
    assert r.status_code == 403
    assert r.json()["title"]


# -- filters and paging ---------------------------------------------------------------------
@pytest.fixture
def filled(node: Node) -> tuple[str, list[dict]]:
    alias = node.new_collection(readers=["UZ-CERT", "UZ-SOC"], writers=["UZ-CERT"])
    uz = node.identities["UZ-CERT"]
    objs = [indicator(uz) for _ in range(25)]
    for i in range(0, 25, 10):
        publish(node, alias, *objs[i:i + 10])
    return alias, objs


def test_paging_with_limit_and_next_returns_everything_once_in_order(
        node: Node, filled: tuple[str, list[dict]]) -> None:
    alias, objs = filled
    url = node.collection_url(alias) + "objects/"
    seen: list[str] = []
    params: dict[str, str] = {"limit": "7"}
    pages = 0
    while True:
        r = node.get(url, params=params)
        assert r.status_code == 200
        body = r.json()
        page_ids = [o["id"] for o in body.get("objects", [])]
        seen += page_ids
        pages += 1
        assert r.headers["X-TAXII-Date-Added-First"] <= r.headers["X-TAXII-Date-Added-Last"]
        if not body["more"]:
            assert "next" not in body
            break
        params = {"limit": "7", "next": body["next"]}
    assert pages == 4
    assert seen == [o["id"] for o in objs]


def test_taxii2_client_as_pages_reads_the_whole_collection(
        node: Node, filled: tuple[str, list[dict]]) -> None:
    alias, objs = filled
    col = client_collection(node, alias, "uz-soc")
    got = [o["id"] for env in as_pages(col.get_objects, per_request=10)
           for o in env.get("objects", [])]
    assert got == [o["id"] for o in objs]


def test_added_after_returns_only_newer_objects(node: Node,
                                                filled: tuple[str, list[dict]]) -> None:
    alias, objs = filled
    url = node.collection_url(alias) + "objects/"
    first = node.get(url, params={"limit": "10"})
    cursor = first.headers["X-TAXII-Date-Added-Last"]
    rest = node.get(url, params={"added_after": cursor}).json()
    assert [o["id"] for o in rest["objects"]] == [o["id"] for o in objs[10:]]
    assert node.get(url, params={"added_after": "yesterday"}).status_code == 400


def test_next_token_of_another_account_is_refused(node: Node,
                                                  filled: tuple[str, list[dict]]) -> None:
    alias, _ = filled
    url = node.collection_url(alias) + "objects/"
    token = node.get(url, params={"limit": "5"}).json()["next"]
    r = node.get(url, "uz-soc", params={"limit": "5", "next": token})
    assert r.status_code == 400
    assert "next" in r.json()["description"]


def test_match_filters(node: Node) -> None:
    alias = node.new_collection(readers=["UZ-CERT"], writers=["UZ-CERT"])
    uz = node.identities["UZ-CERT"]
    v1 = indicator(uz)
    v2 = {**v1, "modified": "2026-11-05T00:00:00.000Z", "name": "v2"}
    v3 = {**v1, "modified": "2026-11-09T00:00:00.000Z", "name": "v3"}
    other = indicator(uz)
    ident = {"type": "identity", "spec_version": "2.1", "id": uz, "name": "UZ-CERT",
             "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
             "identity_class": "organization"}
    publish(node, alias, v3, v1, other, ident)
    publish(node, alias, v2)
    url = node.collection_url(alias) + "objects/"

    def names(**params: str) -> list[str]:
        body = node.get(url, params=params).json()
        return sorted(o.get("name", o["id"]) for o in body.get("objects", []))

    assert names(**{"match[id]": v1["id"]}) == ["v3"]
    assert names(**{"match[id]": v1["id"], "match[version]": "first"}) == [v1["name"]]
    assert names(**{"match[id]": v1["id"], "match[version]": "all"}) == sorted(
        [v1["name"], "v2", "v3"])
    assert names(**{"match[id]": v1["id"],
                    "match[version]": "2026-11-05T00:00:00.000Z"}) == ["v2"]
    assert names(**{"match[id]": v1["id"], "match[version]": "first,last"}) == sorted(
        [v1["name"], "v3"])
    assert names(**{"match[type]": "identity"}) == ["UZ-CERT"]
    assert len(names(**{"match[type]": "indicator,identity"})) == 3
    assert names(**{"match[spec_version]": "2.0"}) == []
    # TAXII 2.1 orders every list by date_added (so added_after paging works), not by
    # version: v3 and v1 arrived in one envelope, v2 later.
    versions = node.get(node.collection_url(alias) + f"objects/{v1['id']}/versions/").json()
    assert versions["versions"] == ["2026-11-09T00:00:00.000Z", "2026-11-01T10:00:00.000Z",
                                    "2026-11-05T00:00:00.000Z"]
    manifest = node.get(node.collection_url(alias) + "manifest/",
                        params={"match[id]": v1["id"], "match[version]": "all"}).json()
    assert [m["version"] for m in manifest["objects"]] == [
        "2026-11-09T00:00:00.000Z", "2026-11-01T10:00:00.000Z", "2026-11-05T00:00:00.000Z"]
    assert {m["media_type"] for m in manifest["objects"]} == {
        "application/stix+json;version=2.1"}
    assert node.get(url, params={"match[version]": "soon"}).status_code == 400


def test_get_unknown_object_is_404(node: Node) -> None:
    r = node.get(node.collection_url("jwg") + "objects/indicator--00000000-0000-4000-8000-"
                 "000000000000/")
    assert r.status_code == 404
    assert r.json()["http_status"] == "404"


def test_delete_by_admins_only_as_a_revocation(node: Node) -> None:
    obj = indicator(node.identities["UZ-CERT"])
    publish(node, "jwg", obj)
    url = node.collection_url("jwg") + f"objects/{obj['id']}/"
    for publisher in ("pk-pub", "uz-pub"):
        assert requests_delete(node, url, publisher).status_code == 403
    assert requests_delete(node, url, "admin").status_code == 200
    served = node.get(url).json()["objects"]
    assert [(o["id"], o["revoked"]) for o in served] == [(obj["id"], True)]


def requests_delete(node: Node, url: str, account: str):  # type: ignore[no-untyped-def]
    import requests  # noqa: PLC0415

    return requests.delete(url, auth=node.auth(account), headers={"Accept": TAXII},
                           timeout=30)


# -- TLP baseline ------------------------------------------------------------------------------
def test_unmarked_objects_are_held_at_the_collection_default_not_clear(node: Node) -> None:
    alias = node.new_collection(readers=["UZ-CERT", "UZ-SOC", "PK-CERT"],
                                writers=["UZ-CERT"], default_tlp="red")
    obj = indicator(node.identities["UZ-CERT"], tlp=None)
    publish(node, alias, obj)
    url = node.collection_url(alias) + f"objects/{obj['id']}/"
    mine = node.get(url, "uz-reader")
    assert mine.status_code == 200
    assert "object_marking_refs" not in mine.json()["objects"][0]  # bytes unchanged
    assert node.get(url, "pk-pub").status_code == 404
    assert node.get(url, "uz-soc").status_code == 404


def test_amber_strict_never_reaches_constituents(node: Node) -> None:
    strict = indicator(node.identities["UZ-CERT"], tlp="amber+strict")
    amber = indicator(node.identities["UZ-CERT"], tlp="amber")
    publish(node, "jwg", strict, amber)
    url = node.collection_url("jwg") + "objects/"
    ids = f"{strict['id']},{amber['id']}"
    soc = {o["id"] for o in node.get(url, "uz-soc", params={"match[id]": ids})
           .json().get("objects", [])}
    pk = {o["id"] for o in node.get(url, "pk-pub", params={"match[id]": ids})
          .json().get("objects", [])}
    assert soc == {amber["id"]}
    assert pk == {amber["id"], strict["id"]}


def test_conflicting_tlp_markings_are_refused(node: Node) -> None:
    obj = indicator(node.identities["UZ-CERT"], tlp="green")
    obj["object_marking_refs"] = [
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"]
    status = publish(node, "jwg", obj)
    assert status["failure_count"] == 1
    assert "conflicting TLP" in status["failures"][0]["message"]


def test_objects_survive_copy_semantics(node: Node) -> None:
    """The served object equals what was sent, key for key, after a JSON round trip."""
    obj = indicator(node.identities["UZ-CERT"], labels=["phishing", "Ünïcode ✓"])
    publish(node, "jwg", copy.deepcopy(obj))
    served = node.get(node.collection_url("jwg") + f"objects/{obj['id']}/").json()
    assert served["objects"] == [json.loads(json.dumps(obj))]


def test_required_signatures_exempt_only_the_standard_tlp_definitions(node: Node) -> None:
    from pathlib import Path  # noqa: PLC0415

    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "markings"
    green = json.loads((real / "tlp2-green.json").read_text())["objects"][0]
    col, _ = node.exchange.add_collection("signed only", readers=["UZ-CERT"],
                                          writers=["UZ-CERT"], require_signatures=True)
    node.collections["signed-only"] = col.id
    unsigned = indicator(node.identities["UZ-CERT"])
    status = publish(node, "signed-only", green, unsigned)
    assert [s["id"] for s in status.get("successes", [])] == [green["id"]]
    assert [f["id"] for f in status["failures"]] == [unsigned["id"]]
    assert "requires signed objects" in status["failures"][0]["message"]


def test_registry_and_signature_extension_are_published(node: Node) -> None:
    registry = node.get(node.root + "cx/registry/", "uz-soc")
    assert registry.status_code == 200
    document = registry.json()
    assert document["node_identity"] == node.exchange.node_identity
    node_keys = [k for k in document["keys"] if k["purpose"] == "node"]
    assert len(node_keys) == 1  # made by `exchange init`, published for derived objects
    assert node_keys[0]["owner_identity"] == node.exchange.node_identity
    definition = node.get(node.root + "cx/extension-definitions/cx-sig-v1/", "uz-soc").json()
    assert definition["type"] == "extension-definition"
    assert definition["extension_types"] == ["property-extension"]
    assert node.get(node.root + "cx/registry/", None).status_code == 401
