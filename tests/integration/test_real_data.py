"""Real STIX 2.1 and TAXII data (../shared/data/real, read in place) in and out unchanged.

Each object is published by the account of the organisation its ``created_by_ref`` names
(an identity object by the organisation it describes; objects without an author by a
loader organisation), over TAXII with taxii2-client, and read
back with every version: the served bytes are the RFC 8785 form of what was sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from taxii2client.v21 import Collection, as_pages

from tests.integration.conftest import Node

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
STIX21 = sorted((REAL / "stix21").glob("*.json"))


def _medallion_objects() -> list[dict[str, Any]]:
    data = json.loads((REAL / "taxii" / "medallion-default_data.json").read_text())
    return [o for c in data["trustgroup1"]["collections"] for o in c.get("objects", [])]


def author_of(obj: dict[str, Any]) -> str | None:
    """Whose organisation publishes ``obj`` here: its ``created_by_ref``, or for an
    identity object the organisation it describes (a registered organisation's identity
    object may be published by that organisation only)."""
    return str(obj["id"]) if obj.get("type") == "identity" else obj.get("created_by_ref")


def _publisher_for(node: Node, identity: str | None) -> str:
    """The account that may publish objects created by ``identity``."""
    name = "loader" if identity is None else f"org-{identity[10:18]}"
    account = f"{name}-pub"
    if account not in node.keys:
        node.exchange.add_org(name, identity_id=identity)
        node.exchange.add_account(account, org=name, role="publisher")
        node.keys[account] = node.exchange.create_api_key(account)[1]
    return account


def _publish_all(node: Node, alias: str, objects: list[dict[str, Any]]) -> dict[str, str]:
    """Publish each object by its creator; return failure messages by object id."""
    by_account: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_account.setdefault(_publisher_for(node, author_of(obj)), []).append(obj)
    failures: dict[str, str] = {}
    for account, objs in by_account.items():
        user, key = node.auth(account)
        col = Collection(node.collection_url(alias), user=user, password=key)
        status = col.add_objects({"objects": objs}, wait_for_completion=False)
        assert status.total_count == len(objs)
        failures.update({f["id"]: f["message"] for f in status.failures or []})
    return failures


def _all_versions(node: Node, alias: str, accounts: list[str]) -> list[bytes]:
    """Every version served to any of ``accounts`` (RED objects reach only their producer)."""
    served: set[bytes] = set()
    for account in accounts:
        user, key = node.auth(account)
        col = Collection(node.collection_url(alias), user=user, password=key)
        served.update(rfc8785.dumps(o) for env in as_pages(col.get_objects, per_request=50,
                                                           version="all")
                      for o in env.get("objects", []))
    return list(served)


@pytest.fixture(scope="module")
def reader(node: Node) -> None:
    node.exchange.add_org("Readers")
    node.exchange.add_account("reader", org="Readers", role="admin")
    node.keys["reader"] = node.exchange.create_api_key("reader")[1]


@pytest.mark.parametrize("path", STIX21, ids=[p.stem for p in STIX21])
def test_real_stix21_bundles_round_trip_unchanged(node: Node, reader: None, path: Path) -> None:
    objects = json.loads(path.read_text())["objects"]
    alias = node.new_collection(readers=[], writers=[], default_tlp="green")
    for obj in objects:
        account = _publisher_for(node, author_of(obj))
        org = account.removesuffix("-pub")
        node.exchange.store.set_grant(_grant(node, alias, org))
    failures = _publish_all(node, alias, objects)
    assert failures == {}
    publishers = sorted({_publisher_for(node, author_of(o)) for o in objects})
    served = _all_versions(node, alias, ["reader", *publishers])
    assert sorted(served) == sorted(rfc8785.dumps(o) for o in objects)


def test_medallion_sample_data_round_trips_and_stix20_is_refused(node: Node,
                                                                  reader: None) -> None:
    objects = _medallion_objects()
    alias = node.new_collection(readers=[], writers=[])
    _publisher_for(node, None)
    node.exchange.store.set_grant(_grant(node, alias, "loader"))
    failures = _publish_all(node, alias, objects)
    stix20 = [o for o in objects if "spec_version" not in o]
    assert len(stix20) == 1
    assert list(failures) == [stix20[0]["id"]]
    assert "2.1" in failures[stix20[0]["id"]]
    served = _all_versions(node, alias, ["reader"])
    expected = [rfc8785.dumps(o) for o in objects if "spec_version" in o]
    assert sorted(served) == sorted(expected)
    versions = node.get(node.collection_url(alias) +
                        "objects/indicator--6770298f-0fd8-471a-ab8c-1c658a46574e/versions/",
                        "reader").json()["versions"]
    assert sorted(versions) == ["2016-11-03T12:30:59.000Z", "2016-12-25T12:30:59.444Z",
                                "2017-01-27T13:49:53.935Z"]


def _grant(node: Node, alias: str, org_name: str):  # type: ignore[no-untyped-def]
    from exchange.storage.base import Grant  # noqa: PLC0415

    org = node.exchange.store.find_org(org_name)
    return Grant(collection_id=node.exchange.store.get_collection(
        node.api_root, alias).id, org_id=org.id, can_read=True, can_write=True)
