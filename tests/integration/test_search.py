"""Finding things over real HTTP: ``GET /<api_root>/cx/search/``, ``exchange search``,
``exchange show`` and ``exchange objects list``, with real third-party files.

Each real file (OASIS examples, misp-stix STIX 2.1 exports, read in place from
../shared/data/real) is published over TAXII with taxii2-client into a collection of its
own, each object by the account of the organisation its ``created_by_ref`` names (objects
without one by a loader organisation), and a value taken from the file is then searched
for by a consumer of another organisation and found. A RED object's value is found by
its producer and by nobody else, and every search is a disclosure in the audit ledger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from taxii2client.v21 import Collection

from exchange.storage.base import Grant
from tests.integration.conftest import Node
from tests.integration.test_real_data import _publisher_for, author_of

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
TLP_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"

#: A file, a value taken from it, and the id of an object that names that value (and
#: that this file's publisher contributed first).
CASES = [
    ("stix21/poisonivy.json", "219.76.208.163",
     "indicator--e8094b09-7df4-4b13-b207-1e27af3c4bde"),
    ("stix21/apt1.json", "001DD76872D80801692FF942308C64E6",
     "indicator--8d12f44f-8ac0-4b12-8b4a-3699ca8c9691"),
    ("stix21/indicator-for-malicious-url.json", "http://x4z9arb.cn/4712/",
     "indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f"),
    ("misp-stix/test_attributes_collection_stix21.json", "149.13.33.14",
     "ipv4-addr--726f90e2-2ad6-44a2-b345-c05e55e850e5"),
    ("misp-stix/test_event1_stix21.json", "circl.lu",
     "domain-name--4bb235a7-7d25-4aef-802f-2c6b45c5eceb"),
    ("misp-stix/test_event2_stix21.json", "149.13.33.14",
     "ipv4-addr--726f90e2-2ad6-44a2-b345-c05e55e850e5"),
    ("misp-stix/test_events_collection_stix21.json", "circl.lu",
     "domain-name--4bb235a7-7d25-4aef-802f-2c6b45c5eceb"),
]


def _publish_file(node: Node, relative: str) -> str:
    """Publish a real file into a new green collection the members read; its alias."""
    objects = json.loads((REAL / relative).read_text())["objects"]
    alias = node.new_collection(readers=["UZ-CERT", "PK-CERT", "UZ-SOC"], writers=[],
                                default_tlp="green")
    collection_id = node.collections[alias]
    by_account: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:  # published by the same organisations as in test_real_data
        by_account.setdefault(_publisher_for(node, author_of(obj)), []).append(obj)
    for account, objs in by_account.items():
        org = node.exchange.store.find_org(
            node.exchange.store.find_account(account).org_id)
        node.exchange.store.set_grant(Grant(collection_id, org.id, True, True))
        user, key = node.auth(account)
        status = Collection(node.collection_url(alias), user=user,
                            password=key).add_objects({"objects": objs})
        # Each file goes to a collection of its own, and ids are owned per collection
        # (docs/adr/0002): nothing another file or module published is in the way.
        assert status.failures in (None, []), status.failures
    return alias


def _search(node: Node, account: str, **params: str) -> dict[str, Any]:
    response = node.get(f"{node.root}cx/search/", account, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def published(node: Node) -> dict[str, str]:
    """Every case's file published; file -> collection alias."""
    return {relative: _publish_file(node, relative) for relative, _, _ in CASES}


@pytest.mark.parametrize(("relative", "value", "object_id"), CASES,
                         ids=[Path(c[0]).stem for c in CASES])
def test_a_value_from_each_real_file_is_found(node: Node, published: dict[str, str],
                                              relative: str, value: str,
                                              object_id: str) -> None:
    answer = _search(node, "pk-pub", value=value)
    hits = [h for h in answer["hits"] if h["collection"] == published[relative]]
    assert object_id in [h["id"] for h in hits]
    hit = next(h for h in hits if h["id"] == object_id)
    assert hit["tlp"] == "green"
    assert hit["contributor"] is not None
    assert answer["query"] in hit["matched"]
    if hit["type"] == "indicator":
        assert hit["valid_from"]


def test_an_address_inside_a_network_an_indicator_names_is_found(
        node: Node, published: dict[str, str]) -> None:
    # APT1's indicator names 223.166.0.0/15; an address inside it finds it.
    answer = _search(node, "uz-reader", value="223.167.44.5")
    hits = [h for h in answer["hits"] if h["collection"] == published["stix21/apt1.json"]]
    assert [(h["id"], h["matched"]) for h in hits] == [
        ("indicator--031778a4-057f-48e6-9db9-c8d72b81ccd5", ["223.166.0.0/15"])]
    assert hits[0]["created_by_ref"] is None  # Mandiant's report names no creator


def test_subdomains_only_when_asked(node: Node, published: dict[str, str]) -> None:
    alias = published["stix21/poisonivy.json"]
    exact = [h for h in _search(node, "uz-reader", value="dynssl.com")["hits"]
             if h["collection"] == alias]
    assert exact == []
    wide = [h for h in _search(node, "uz-reader", value="dynssl.com",
                               subdomains="true")["hits"] if h["collection"] == alias]
    assert "www.webserver.dynssl.com" in {m for h in wide for m in h["matched"]}


def test_red_is_found_only_by_its_producer_and_searches_are_in_the_ledger(
        node: Node) -> None:
    alias = node.new_collection(readers=["UZ-CERT", "PK-CERT"], writers=["UZ-CERT"])
    value = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    red = {
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}", "created": "2024-05-01T00:00:00.000Z",
        "modified": "2024-05-01T00:00:00.000Z", "valid_from": "2024-05-01T00:00:00Z",
        "pattern": f"[ipv4-addr:value = '{value}']", "pattern_type": "stix",
        "created_by_ref": node.identities["UZ-CERT"], "object_marking_refs": [TLP_RED],
    }
    user, key = node.auth("uz-pub")
    status = Collection(node.collection_url(alias), user=user,
                        password=key).add_objects({"objects": [red]})
    assert status.failure_count == 0, status.failures
    assert _search(node, "pk-pub", value=value)["hits"] == []
    mine = _search(node, "uz-pub", value=value)["hits"]
    assert [(h["id"], h["tlp"], h["contributor"]) for h in mine] == [
        (red["id"], "red", "UZ-CERT")]
    records = node.get(f"{node.root}cx/audit/records/", "auditor",
                       params={"object": red["id"], "kind": "disclosure"}).json()["records"]
    channels = {(r["record"]["channel"], r["record"]["recipient_org"]) for r in records}
    assert ("taxii:search", "UZ-CERT") in channels
    assert all(org != "PK-CERT" for _, org in channels)


def test_bad_searches_are_clear_taxii_errors(node: Node) -> None:
    for params, says in [({"value": "example[.]com"}, "defanged"),
                         ({"value": "hxxp://evil.example/"}, "defanged"),
                         ({}, "give value="),
                         ({"value": "1.2.3.4", "limit": "0"}, "limit"),
                         ({"value": "1.2.3.4", "subdomain": "true"}, "unknown query"),
                         ({"id": "not-an-id"}, "STIX id")]:
        response = node.get(f"{node.root}cx/search/", "uz-reader", params=params)
        assert response.status_code == 400, params
        assert says in response.json()["description"], params


def _cli(node: Node, *args: str, account: str = "uz-reader") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_API_KEY"] = node.keys[account]
    return subprocess.run([sys.executable, "-m", "exchange", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_exchange_search_and_show_answer_who_said_so(node: Node,
                                                     published: dict[str, str]) -> None:
    found = _cli(node, "search", "http://x4z9arb.cn/4712/", "--url", node.root,
                 "--user", "uz-reader")
    assert found.returncode == 0, found.stderr
    assert "indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f" in found.stdout
    assert "contributed by" in found.stdout
    assert "valid from 2014-06-29T13:49:37.079Z" in found.stdout
    missing = _cli(node, "search", "198.51.100.254", "--url", node.root,
                   "--user", "uz-reader")
    assert missing.returncode == 1
    assert "not found" in missing.stdout
    as_json = _cli(node, "search", "circl.lu", "--url", node.root, "--user", "uz-reader",
                   "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert {h["collection"] for h in json.loads(as_json.stdout)["hits"]} >= {
        published["misp-stix/test_event1_stix21.json"]}

    shown = _cli(node, "show", "indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f",
                 "--url", node.root, "--user", "uz-reader")
    assert shown.returncode == 0, shown.stderr
    assert "signature: not signed" in shown.stdout
    assert "\"pattern\": \"[url:value = 'http://x4z9arb.cn/4712/']\"" in shown.stdout
    unknown = _cli(node, "show", f"indicator--{uuid.uuid4()}", "--url", node.root,
                   "--user", "uz-reader")
    assert unknown.returncode == 1
    assert "is not in anything uz-reader may receive" in unknown.stderr


def test_exchange_objects_list_on_the_node(node: Node, published: dict[str, str]) -> None:
    alias = published["stix21/indicator-for-malicious-url.json"]
    listed = _cli(node, "--home", str(node.home), "objects", "list", "--collection", alias,
                  "--type", "indicator", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["collection"], r["tlp"]) for r in rows] == [
        ("indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f", alias, "green")]
    none = _cli(node, "--home", str(node.home), "objects", "list", "--collection", alias,
                "--tlp", "red")
    assert none.returncode == 0
    assert "no stored objects match" in none.stdout
