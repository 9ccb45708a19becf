"""Derived copies of real reports reach their recipients as closed, verifiable graphs.

The OASIS Poison Ivy (FireEye) and APT1 (Mandiant) examples (../shared/data/real/stix21,
read in place) are published over TAXII with taxii2-client into two collections of a
node running the shipped policies: ``jwg`` (the shipped agreement: UZ-SOC, a constituent,
receives redacted copies) and ``jwg-anon`` (the same agreement with
``provider_attribution: must-not``: PK-CERT, a party, receives anonymised copies). The
shipped files are used as they are, except that signatures are not required at ingest
(APT1 names no author, so it cannot be signed) and the second agreement is added. UZ-CERT
also publishes an AMBER+STRICT indicator, a relationship to it and a report naming it:
constituents never receive AMBER+STRICT, so their copies must drop or withhold those
references.

Each recipient pulls with ``exchange pull --verify`` and taxii2-client over real HTTP;
the feed must be a closed graph, every copy node-attested, fetchable and explainable by
its own id; a recipient without a transform gets the original bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import rfc8785
from taxii2client.v21 import Collection, as_pages

from exchange.config import load_settings
from exchange.model.tlp import TLP_MARKING_IDS
from exchange.node.derive import DROPPED_SOURCE, PROVENANCE_SOURCE, references
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from tests.integration.conftest import FIREEYE, TAXII, serving, working_group
from tests.integration.test_cli import exchange_cmd

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "stix21"
SHIPPED = Path(__file__).resolve().parents[2] / "policies"
AMBER_STRICT = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"

# (collection, reader) pairs that receive copies.
COPY_READERS = [("jwg", "uz-soc"), ("jwg-anon", "uz-soc"), ("jwg-anon", "pk-pub")]


def _policies(tmp: Path) -> Path:
    target = tmp / "policies"
    shutil.copytree(SHIPPED, target)
    collections = target / "collections.yaml"
    text = collections.read_text().replace("require_signatures: true",
                                           "require_signatures: false")
    collections.write_text(text + "\n  jwg-anon:\n    description: anonymised JWG\n"
                                  "    agreement: uz-pk-jwg-anon\n"
                                  "    require_signatures: false\n")
    agreement = (target / "agreements" / "uz-pk-jwg-2026.yaml").read_text()
    agreement = re.sub(r"(?m)^id: .*$", "id: uz-pk-jwg-anon", agreement)
    agreement = re.sub(r"(?m)^provider_attribution: .*$", "provider_attribution: must-not",
                       agreement)
    (target / "agreements" / "uz-pk-jwg-anon.yaml").write_text(agreement)
    return target


class World:
    def __init__(self, home: Path, ex: Exchange) -> None:
        self.home = home
        self.ex = ex
        self.base = ""
        self.keys: dict[str, str] = {}
        self.collections: dict[str, str] = {}
        self.sent: dict[str, dict[str, Any]] = {}  # by collection alias + id
        self.extra: dict[str, str] = {}

    def url(self, alias: str) -> str:
        return f"{self.base}/cx/collections/{self.collections[alias]}/"

    def collection(self, alias: str, account: str) -> Collection:
        return Collection(self.url(alias), user=account, password=self.keys[account])

    def feed(self, alias: str, account: str) -> list[dict[str, Any]]:
        col = self.collection(alias, account)
        return [o for env in as_pages(col.get_objects, per_request=200)
                for o in env.get("objects", [])]


def _extra(uz: str) -> dict[str, dict[str, Any]]:
    """UZ-CERT's AMBER+STRICT indicator, and an AMBER relationship and report naming it."""
    stamp = "2026-06-01T00:00:00.000Z"
    strict = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
              "created": stamp, "modified": stamp, "name": "strict",
              "pattern": "[ipv4-addr:value = '203.0.113.66']", "pattern_type": "stix",
              "valid_from": stamp, "created_by_ref": uz, "object_marking_refs": [AMBER_STRICT]}
    relationship = {"type": "relationship", "spec_version": "2.1",
                    "id": f"relationship--{uuid.uuid4()}", "created": stamp, "modified": stamp,
                    "relationship_type": "related-to", "source_ref": strict["id"],
                    "target_ref": FIREEYE, "created_by_ref": uz,
                    "object_marking_refs": [AMBER]}
    report = {"type": "report", "spec_version": "2.1", "id": f"report--{uuid.uuid4()}",
              "created": stamp, "modified": stamp, "name": "JWG summary",
              "description": "analyst narrative", "published": stamp,
              "report_types": ["threat-report"], "created_by_ref": uz,
              "object_refs": [strict["id"], FIREEYE], "object_marking_refs": [AMBER]}
    return {"strict": strict, "relationship": relationship, "report": report}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("derived")
    home = tmp / "home"
    home.mkdir()
    (home / "exchange.toml").write_text(f'policy_dir = "{_policies(tmp)}"\n')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    w = World(home, ex)
    w.keys, w.collections = working_group(ex, ("jwg", "jwg-anon"))
    uz = ex.store.find_org("UZ-CERT").identity_id
    extra = _extra(uz)
    w.extra = {name: obj["id"] for name, obj in extra.items()}
    try:
        with serving(home, ("uz-pub", w.keys["uz-pub"])) as base:
            w.base = base
            for alias in ("jwg", "jwg-anon"):
                for account, objects in [
                    ("fireeye-pub", json.loads((REAL / "poisonivy.json").read_text())["objects"]),
                    ("uz-pub", json.loads((REAL / "apt1.json").read_text())["objects"]),
                    ("uz-pub", list(extra.values())),
                ]:
                    status = w.collection(alias, account).add_objects(
                        {"objects": objects}, wait_for_completion=False)
                    assert status.failure_count == 0, status.failures
                    w.sent.update({f"{alias} {o['id']}": o for o in objects})
            yield w
    finally:
        store.close()


def _copies(feed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The feed's derived copies, by the id of their original."""
    out = {}
    for obj in feed:
        for ref in obj.get("external_references", []):
            if ref.get("source_name") == PROVENANCE_SOURCE:
                out[ref["external_id"]] = obj
    return out


@pytest.mark.parametrize(("alias", "account"), COPY_READERS)
def test_every_reference_in_a_recipients_feed_resolves(world: World, alias: str,
                                                       account: str) -> None:
    feed = world.feed(alias, account)
    ids = {o["id"] for o in feed}
    copies = _copies(feed)
    assert len(copies) > 200  # the reports, relationships and everything they name
    dangling = sorted((o["id"], ref) for o in feed for ref in references(o)
                      if ref not in ids and ref not in TLP_MARKING_IDS)
    assert dangling == []
    relationships = [o for o in feed if o["type"] == "relationship"]
    assert len(relationships) >= 120
    reports = [o for o in feed if o["type"] == "report"]
    apt1 = next(r for r in reports if len(r["object_refs"]) == 75)
    assert all(ref in ids for ref in apt1["object_refs"])


def test_a_constituent_loses_what_it_may_not_see_and_is_told(world: World) -> None:
    copies = _copies(world.feed("jwg", "uz-soc"))
    assert world.extra["strict"] not in copies  # AMBER+STRICT never reaches constituents
    assert world.extra["relationship"] not in copies  # its source would dangle: withheld
    report = copies[world.extra["report"]]
    assert len(report["object_refs"]) == 1  # FireEye's identity, as the SOC's copy of it
    drops = [r for r in report["external_references"] if r["source_name"] == DROPPED_SOURCE]
    assert {d["external_id"] for d in drops} == {"object_refs", "created_by_ref"}
    assert world.extra["strict"] not in json.dumps(report)
    assert "description" not in report


def test_a_party_under_must_not_gets_copies_that_name_no_producer(world: World) -> None:
    copies = _copies(world.feed("jwg-anon", "pk-pub"))
    report = copies[world.extra["report"]]
    assert "created_by_ref" not in report
    assert report["description"] == "analyst narrative"  # parties are not redacted
    # AMBER+STRICT reaches parties: the report keeps that reference, as a copy; the one
    # to FireEye's identity, the provider of the Poison Ivy objects, is dropped and said
    assert report["object_refs"] == [copies[world.extra["strict"]]["id"]]
    assert {"source_name": DROPPED_SOURCE, "external_id": "object_refs"}.items() <= next(
        r for r in report["external_references"]
        if r.get("source_name") == DROPPED_SOURCE).items()
    # a relationship whose target is the provider cannot be served without naming it
    assert world.extra["relationship"] not in copies
    assert all("created_by_ref" not in c for c in copies.values())
    # no providing organisation's identity object reaches this recipient, copied or not
    feed = world.feed("jwg-anon", "pk-pub")
    assert FIREEYE not in copies
    registered = {org.name for org in world.ex.store.list_orgs()}
    assert [o["name"] for o in feed if o["type"] == "identity"
            and o["name"] in registered] == []


@pytest.mark.parametrize(("alias", "account"), COPY_READERS)
def test_pull_verify_reports_every_copy_valid_and_node_attested(
        world: World, tmp_path: Path, alias: str, account: str) -> None:
    registry = tmp_path / "registry.json"
    exported = exchange_cmd("--home", str(world.home), "keys", "export", "--out", str(registry))
    assert exported.returncode == 0, exported.stderr
    out = tmp_path / "feed.jsonl"
    pulled = exchange_cmd("pull", "--url", world.url(alias), "--user", account,
                          "--out", str(out), "--verify", "--registry", str(registry),
                          "--json", env={"EXCHANGE_API_KEY": world.keys[account]})
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    counts = json.loads(pulled.stdout)["verification"]
    feed = [json.loads(line) for line in out.read_text().splitlines()]
    copies = _copies(feed)
    assert counts["invalid"] == 0
    assert counts["node_attested"] == counts["valid"] == len(copies) > 200
    human = exchange_cmd("pull", "--url", world.url(alias), "--user", account,
                         "--out", str(tmp_path / "again.jsonl"), "--verify",
                         "--registry", str(registry),
                         env={"EXCHANGE_API_KEY": world.keys[account]})
    assert (f"{len(copies)} valid (0 signed by the author, 0 attested by a contributor,"
            f" {len(copies)} attested by the node)") in human.stdout


@pytest.mark.parametrize(("alias", "account"), COPY_READERS)
def test_a_copy_is_fetched_by_its_own_id(world: World, alias: str, account: str) -> None:
    feed = world.feed(alias, account)
    copies = _copies(feed)
    col = world.collection(alias, account)
    # Under must-not the provider's identity (and what needs it) is withheld: fetch
    # whichever of the two reached this recipient, and at least one copy.
    originals = [o for o in (world.extra["report"], FIREEYE) if o in copies] or [
        next(iter(copies))]
    for original in originals:
        copy = copies[original]
        [got] = col.get_object(copy["id"])["objects"]
        assert got == copy
        versions = col.object_versions(copy["id"])["versions"]
        assert versions == [copy["modified"]]
        [entry] = col.get_manifest(id=copy["id"])["objects"]
        assert entry["id"] == copy["id"]
    # another recipient's copy id is not this recipient's to fetch
    other = "pk-pub" if account == "uz-soc" else "uz-soc"
    theirs = _copies(world.feed(alias, other)).get(world.extra["report"])
    mine = copies.get(world.extra["report"])
    if theirs is not None and mine is not None and theirs["id"] != mine["id"]:
        r = requests.get(f"{world.url(alias)}objects/{theirs['id']}/", timeout=30,
                         auth=(account, world.keys[account]), headers={"Accept": TAXII})
        assert r.status_code == 404


def test_a_copy_is_explained_by_its_own_id(world: World) -> None:
    copy = _copies(world.feed("jwg", "uz-soc"))[world.extra["report"]]
    r = requests.get(f"{world.base}/cx/cx/explain/", timeout=30,
                     auth=("auditor", world.keys["auditor"]), headers={"Accept": TAXII},
                     params={"object": copy["id"], "recipient": "uz-soc",
                             "collection": "jwg"})
    assert r.status_code == 200, r.text
    [answer] = r.json()["explanations"]
    assert answer["object_id"] == world.extra["report"]
    assert answer["derived_id"] == copy["id"]
    assert answer["allowed"] is True
    assert answer["copy_served"] is True
    assert answer["transforms"] == ["redact(jwg-constituents)"]
    cli = exchange_cmd("--home", str(world.home), "policy", "explain", copy["id"],
                       "--recipient", "uz-soc", "--collection", "jwg")
    assert cli.returncode == 0, cli.stderr
    assert f"{copy['id']} is the exchange's copy of {world.extra['report']}" in cli.stdout
    assert "ALLOWED" in cli.stdout


def test_recipients_without_a_transform_receive_the_original_bytes(world: World) -> None:
    r = requests.get(f"{world.url('jwg')}objects/", timeout=60, params={"limit": "1000"},
                     auth=("pk-pub", world.keys["pk-pub"]), headers={"Accept": TAXII})
    assert r.status_code == 200
    served = r.json()["objects"]
    assert not _copies(served)
    for obj in served:
        sent = world.sent[f"jwg {obj['id']}"]
        assert rfc8785.dumps(sent).decode() in r.text  # the stored bytes, spliced as such
        assert obj == json.loads(rfc8785.dumps(sent))
