"""Flat feeds for SOC tools over real HTTP: ``GET <api_root>/feeds/<collection>/<kind>.txt``
and ``.csv``, under the shipped policies.

The OASIS Poison Ivy (FireEye) and APT1 (Mandiant) examples (../shared/data/real/stix21,
read in place) are published with taxii2-client into two collections of a node running
the shipped policies (signatures not required at ingest: APT1 names no author):
``jwg`` (the shipped agreement: UZ-SOC, a constituent, receives copies redacted by
``jwg-constituents``) and ``jwg-nopat`` (the same agreement, but the constituents'
redaction profile drops ``pattern``). UZ-CERT adds indicators a feed must leave out for
some or all readers: AMBER+STRICT, TLP:RED naming PK-CERT, expired, not yet valid, and
one it later revokes; and e-mail addresses that look like spreadsheet formulas.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import Collection

from exchange.audit.query import MAX_PAGE
from exchange.config import load_settings
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.taxii.app import create_app
from tests.integration.conftest import TAXII, serving, working_group

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "stix21"
SHIPPED = Path(__file__).resolve().parents[2] / "policies"
AMBER_STRICT = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
RED_RECIPIENTS = "extension-definition--6859b3dc-d65f-409b-a17a-fb127c6b16eb"
STAMP = "2026-06-01T00:00:00.000Z"
FORMULAS = ['=1+2@example.com', '+cmd@example.com', '-2+3@example.com',
            '=hyperlink("http://evil.example/",x),y@example.com']


GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
#: The node's named feeds (feeds/flat-feeds.yaml's format).
NAMED_FEEDS = """\
version: 1
feeds:
  jwg-c2:
    description: c2 infrastructure, confident enough to block
    collection: jwg
    kinds: [ipv4, domain]
    filters:
      labels: {include: [c2], exclude: [test]}
      min_confidence: 50
  jwg-c2-green-recent:
    collection: jwg
    kinds: [ipv4]
    formats: [csv]
    filters:
      tlp_ceiling: green
      labels: {include: [c2]}
      max_age_days: 365
"""


def _policies(tmp: Path) -> Path:
    target = tmp / "policies"
    shutil.copytree(SHIPPED, target)
    collections = target / "collections.yaml"
    text = collections.read_text().replace("require_signatures: true",
                                           "require_signatures: false")
    collections.write_text(text + "\n  jwg-nopat:\n    description: JWG, no patterns to SOCs\n"
                                  "    agreement: uz-pk-jwg-nopat\n"
                                  "    require_signatures: false\n")
    agreement = (target / "agreements" / "uz-pk-jwg-2026.yaml").read_text()
    agreement = re.sub(r"(?m)^id: .*$", "id: uz-pk-jwg-nopat", agreement)
    agreement = re.sub(r"(?m)^  constituents: .*$", "  constituents: no-patterns", agreement)
    (target / "agreements" / "uz-pk-jwg-nopat.yaml").write_text(agreement)
    (target / "redaction" / "no-patterns.yaml").write_text(
        "name: no-patterns\ndescription: constituents get no detection content\n"
        "replace:\n  pattern: \"[ipv4-addr:value = '192.0.2.1']\"\n")
    return target


def _indicator(pattern: str, uz: str, marking: str = AMBER, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": STAMP, "modified": STAMP, "pattern": pattern, "pattern_type": "stix",
            "valid_from": STAMP, "created_by_ref": uz, "object_marking_refs": [marking],
            **extra}


class World:
    def __init__(self, home: Path, ex: Exchange) -> None:
        self.home = home
        self.ex = ex
        self.base = ""
        self.keys: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.extra: dict[str, dict[str, Any]] = {}

    def url(self, alias: str, name: str = "") -> str:
        return f"{self.base}/cx/feeds/{alias}/{name}"

    def collection(self, alias: str, account: str) -> Collection:
        return Collection(f"{self.base}/cx/collections/{self.ids[alias]}/", user=account,
                          password=self.keys[account])

    def get(self, alias: str, name: str, account: str | None, **headers: str
            ) -> requests.Response:
        auth = (account, self.keys[account]) if account else None
        return requests.get(self.url(alias, name), auth=auth, headers=headers, timeout=60)

    def lines(self, alias: str, name: str, account: str) -> list[str]:
        response = self.get(alias, name, account)
        assert response.status_code == 200, response.text
        return response.text.splitlines()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from build_world(tmp_path_factory)


def build_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The node with the real files and the extra indicators, serving on loopback
    (the MISP feed's tests use it too)."""
    tmp = tmp_path_factory.mktemp("feeds")
    home = tmp / "home"
    home.mkdir()
    (home / "flat-feeds.yaml").write_text(NAMED_FEEDS)
    (home / "exchange.toml").write_text(f'policy_dir = "{_policies(tmp)}"\n'
                                        'flat_feeds = "flat-feeds.yaml"\n')
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    w = World(home, ex)
    w.keys, w.ids = working_group(ex, ("jwg", "jwg-nopat"))
    uz = ex.store.find_org("UZ-CERT").identity_id
    pk = ex.store.find_org("PK-CERT").identity_id
    w.extra = {
        "strict": _indicator("[ipv4-addr:value = '203.0.113.66']", uz, AMBER_STRICT),
        "red": _indicator("[ipv4-addr:value = '203.0.113.77']", uz, RED, extensions={
            RED_RECIPIENTS: {"extension_type": "property-extension", "recipients": [pk]}}),
        "expired": _indicator("[ipv4-addr:value = '203.0.113.88']", uz,
                              valid_until="2026-06-02T00:00:00Z"),
        "future": _indicator("[ipv4-addr:value = '203.0.113.89']", uz,
                             valid_from="2099-01-01T00:00:00Z"),
        "to-revoke": _indicator("[ipv4-addr:value = '203.0.113.99']", uz),
        "formulas": _indicator(
            "[" + " OR ".join(f"email-addr:value = '{v}'" for v in FORMULAS) + "]", uz),
    }
    try:
        with serving(home, ("uz-pub", w.keys["uz-pub"])) as base:
            w.base = base
            for alias in ("jwg", "jwg-nopat"):
                for account, objects in [
                    ("fireeye-pub", json.loads((REAL / "poisonivy.json").read_text())["objects"]),
                    ("uz-pub", json.loads((REAL / "apt1.json").read_text())["objects"]),
                    ("uz-pub", list(w.extra.values())),
                ]:
                    status = w.collection(alias, account).add_objects({"objects": objects})
                    assert status.failure_count == 0, status.failures
            yield w
    finally:
        store.close()


def _publish(world: World, alias: str, objects: list[dict[str, Any]]) -> None:
    status = world.collection(alias, "uz-pub").add_objects({"objects": objects})
    assert status.failure_count == 0, status.failures


def test_a_party_gets_the_real_files_values_and_nothing_it_may_not_receive(
        world: World) -> None:
    ipv4 = world.lines("jwg", "ipv4.txt", "pk-pub")
    assert "219.76.208.163" in ipv4  # Poison Ivy
    assert "223.166.0.0/15" in ipv4  # APT1
    assert ipv4 == sorted(set(ipv4))
    domains = world.lines("jwg", "domain.txt", "pk-pub")
    assert "www.webserver.dynssl.com" in domains
    # PK-CERT receives the strict and the RED indicator over TAXII, never over a feed.
    over_taxii = {o["id"] for o in world.collection("jwg", "pk-pub").get_objects(
        match={"type": "indicator"}, limit=500).get("objects", [])}
    assert {world.extra["strict"]["id"], world.extra["red"]["id"]} <= over_taxii
    for value in ("203.0.113.66", "203.0.113.77", "203.0.113.88", "203.0.113.89"):
        assert value not in ipv4
    # The producer's own feed has its own RED and strict values, but not the invalid ones.
    own = world.lines("jwg", "ipv4.txt", "uz-pub")
    assert {"203.0.113.66", "203.0.113.77"} <= set(own)
    assert not {"203.0.113.88", "203.0.113.89"} & set(own)


def test_a_constituent_under_a_redaction_profile_gets_only_what_its_copies_hold(
        world: World) -> None:
    soc = world.lines("jwg", "ipv4.txt", "uz-soc")
    assert "219.76.208.163" in soc  # the shipped profile keeps patterns
    assert "203.0.113.66" not in soc
    assert "203.0.113.77" not in soc
    rows = list(csv.DictReader(io.StringIO(world.get("jwg", "ipv4.csv", "uz-soc").text)))
    poison = next(r for r in rows if r["value"] == "219.76.208.163")
    assert poison["indicator_id"] != "indicator--e8094b09-7df4-4b13-b207-1e27af3c4bde"
    assert poison["indicator_id"].startswith("indicator--")  # the SOC's copy's id
    # Under a profile that replaces patterns, the same objects give the SOC only the
    # replacement's value.
    assert world.lines("jwg-nopat", "ipv4.txt", "uz-soc") == ["192.0.2.1"]
    for name in ("domain.txt", "md5.txt", "email.txt"):
        assert world.lines("jwg-nopat", name, "uz-soc") == []
    assert "219.76.208.163" in world.lines("jwg-nopat", "ipv4.txt", "pk-pub")


def test_csv_parses_and_neutralises_formulas(world: World) -> None:
    response = world.get("jwg", "email.csv", "pk-pub", Accept="text/csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["value", "type", "tlp", "contributor", "author", "valid_from",
                       "valid_until", "indicator_id"]
    by_value = {row[0]: row for row in rows[1:]}
    assert set(by_value) == {"'" + v for v in FORMULAS}
    row = by_value["'=1+2@example.com"]
    assert row[1:6] == ["email", "amber", "UZ-CERT", world.ex.store.find_org(
        "UZ-CERT").identity_id, "2026-06-01T00:00:00.000Z"]
    assert row[7] == world.extra["formulas"]["id"]
    # The text feed is for machines: values as they are.
    assert world.lines("jwg", "email.txt", "pk-pub") == sorted(FORMULAS)
    ipv4 = list(csv.DictReader(io.StringIO(world.get("jwg", "ipv4.csv", "pk-pub").text)))
    assert {r["value"] for r in ipv4} == set(world.lines("jwg", "ipv4.txt", "pk-pub"))
    assert all(r["type"] == "ipv4" for r in ipv4)


def test_conditional_get_and_changes(world: World) -> None:
    first = world.get("jwg", "ipv4.txt", "pk-pub")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert first.headers["Cache-Control"].startswith("private")
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag)
    again = world.get("jwg", "ipv4.txt", "pk-pub", **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    # Last-Modified is when a server process first built the body: another worker may
    # have built it a second later, and answers one full download (the same body) first.
    statuses = []
    for _ in range(6):
        since = world.get("jwg", "ipv4.txt", "pk-pub", **{"If-Modified-Since": modified})
        statuses.append(since.status_code)
        if since.status_code == 304:
            assert since.content == b""
            break
        assert since.headers["ETag"] == etag
        modified = max(modified, since.headers["Last-Modified"],
                       key=parsedate_to_datetime)
    assert statuses[-1] == 304, statuses
    # A publish changes the feed: a new tag, the new value.
    fresh = _indicator("[ipv4-addr:value = '198.51.100.23']",
                       world.ex.store.find_org("UZ-CERT").identity_id)
    _publish(world, "jwg", [fresh])
    after = world.get("jwg", "ipv4.txt", "pk-pub", **{"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["ETag"] != etag
    assert "198.51.100.23" in after.text.splitlines()
    # Another kind's feed did not change.
    md5 = world.get("jwg", "md5.txt", "pk-pub")
    assert world.get("jwg", "md5.txt", "pk-pub",
                     **{"If-None-Match": md5.headers["ETag"]}).status_code == 304


def test_a_revocation_removes_the_value(world: World) -> None:
    target = world.extra["to-revoke"]
    before = world.get("jwg", "ipv4.txt", "pk-pub")
    assert "203.0.113.99" in before.text.splitlines()
    revoked = {**target, "modified": "2026-06-02T00:00:00.000Z", "revoked": True}
    _publish(world, "jwg", [revoked])
    after = world.get("jwg", "ipv4.txt", "pk-pub",
                      **{"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert "203.0.113.99" not in after.text.splitlines()
    assert after.headers["ETag"] != before.headers["ETag"]
    assert "203.0.113.99" not in world.lines("jwg", "ipv4.txt", "uz-pub")


def test_refusals_are_clear(world: World) -> None:
    anonymous = world.get("jwg", "ipv4.txt", None)
    assert anonymous.status_code == 401
    assert "ipv4" not in anonymous.text
    assert "219.76" not in anonymous.text
    wrong_key = requests.get(world.url("jwg", "ipv4.txt"), auth=("pk-pub", "nope"),
                             timeout=30)
    assert wrong_key.status_code == 401
    kind = world.get("jwg", "asn.txt", "pk-pub")
    assert kind.status_code == 404
    description = kind.json()["description"]
    assert "ipv4" in description
    assert "sha256" in description
    assert "csv" in description
    unknown = world.get("no-such", "ipv4.txt", "pk-pub")
    assert unknown.status_code == 404
    assert "jwg" in unknown.json()["description"]
    refused = world.get("jwg", "ipv4.txt", "pk-pub", Accept="application/json")
    assert refused.status_code == 406
    index = requests.get(f"{world.base}/cx/feeds/", auth=("uz-soc", world.keys["uz-soc"]),
                         headers={"Accept": TAXII}, timeout=30)
    assert index.status_code == 200
    assert {c["alias"] for c in index.json()["collections"]} == {"jwg", "jwg-nopat"}


def _feed_disclosures(world: World, org: str, request_id: str, *, wait: float = 20
                      ) -> list[dict[str, Any]]:
    """The ledger's disclosures answering one request (waiting, bounded, for the
    sequencer to file them)."""
    deadline = time.monotonic() + wait
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found, after = [], None
        for _ in range(200):
            params = {"recipient": org, "kind": "disclosure", "limit": str(MAX_PAGE)}
            if after is not None:
                params["after"] = after
            page = requests.get(f"{world.base}/cx/cx/audit/records/", params=params,
                                auth=("auditor", world.keys["auditor"]),
                                headers={"Accept": TAXII}, timeout=30)
            assert page.status_code == 200, page.text
            page = page.json()
            found += [r["record"] for r in page["records"]
                      if r["record"]["request_id"] == request_id]
            if not page.get("more"):
                break
            after = page["next"]
        if found or time.monotonic() + 0.2 >= deadline:
            return found
        time.sleep(0.2)
    return found


def test_every_download_is_a_disclosure_to_that_account(world: World) -> None:
    request_id = f"feedtest-{uuid.uuid4().hex}"
    served = world.get("jwg", "ipv4.csv", "uz-soc", **{"X-Request-ID": request_id})
    assert served.status_code == 200
    records = _feed_disclosures(world, "UZ-SOC", request_id)
    assert records, "no disclosure recorded for a feed download"
    assert {(r["channel"], r["recipient_account"]) for r in records} == {("feed", "uz-soc")}
    disclosed = {entry[0] for r in records for entry in r["objects"]}  # [id, version, ...]
    served_ids = {row["indicator_id"] for row in csv.DictReader(io.StringIO(served.text))}
    assert served_ids == disclosed
    # A 304 tells nothing new and is not recorded.
    quiet = f"feedtest-{uuid.uuid4().hex}"
    unchanged = world.get("jwg", "ipv4.csv", "uz-soc", **{
        "X-Request-ID": quiet, "If-None-Match": served.headers["ETag"]})
    assert unchanged.status_code == 304
    marker = f"feedtest-{uuid.uuid4().hex}"
    world.get("jwg", "ipv4.txt", "uz-soc", **{"X-Request-ID": marker})
    # Filed in order: once a later download is in the ledger, the 304 would be too.
    assert _feed_disclosures(world, "UZ-SOC", marker)
    assert _feed_disclosures(world, "UZ-SOC", quiet, wait=0) == []


def test_expiry_alone_changes_the_feed(world: World) -> None:
    # An indicator valid for a few seconds: in the feed, then gone without any write.
    now = time.time()
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 4))
    short = _indicator("[domain-name:value = 'short-lived.example']",
                       world.ex.store.find_org("UZ-CERT").identity_id, valid_until=until)
    _publish(world, "jwg", [short])
    first = world.get("jwg", "domain.txt", "pk-pub")
    assert "short-lived.example" in first.text.splitlines()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and time.time() < now + 5:
        time.sleep(0.25)
    later = world.get("jwg", "domain.txt", "pk-pub",
                      **{"If-None-Match": first.headers["ETag"]})
    assert later.status_code == 200
    assert "short-lived.example" not in later.text.splitlines()


def test_no_feed_leaves_when_the_ledger_cannot_be_written(world: World,
                                                          tmp_path: Path) -> None:
    app = create_app(world.ex.settings)  # with the policy in force, as served
    ex: Exchange = app.extensions["cert_exchange"]
    client = app.test_client()
    token = base64.b64encode(f"pk-pub:{world.keys['pk-pub']}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    ex.audit.writer.directory = blocker / "spool"
    try:
        refused = client.get("/cx/feeds/jwg/ipv4.txt", headers=headers)
    finally:
        ex.audit.writer.directory = ex.audit.spool_dir
    assert refused.status_code == 503
    assert refused.get_json()["title"] == "Storage unavailable"
    assert "219.76.208.163" not in refused.get_data(as_text=True)
    assert refused.headers.get("ETag") is None
    served = client.get("/cx/feeds/jwg/ipv4.txt", headers=headers)
    assert served.status_code == 200
    assert "219.76.208.163" in served.get_data(as_text=True)


def test_a_new_version_the_reader_may_not_receive_takes_the_value_away(world: World) -> None:
    uz = world.ex.store.find_org("UZ-CERT").identity_id
    amber = _indicator("[ipv4-addr:value = '198.51.100.44']", uz)
    _publish(world, "jwg", [amber])
    for _ in range(4):  # each server worker builds (and caches) the feed with the value
        assert "198.51.100.44" in world.lines("jwg", "ipv4.txt", "pk-pub")
    # The producer raises it to RED, naming nobody: PK-CERT may not receive the new
    # version, and the feed must not go on serving the old one.
    red = {**amber, "modified": "2026-06-03T00:00:00.000Z", "object_marking_refs": [RED]}
    _publish(world, "jwg", [red])
    for _ in range(4):
        assert "198.51.100.44" not in world.lines("jwg", "ipv4.txt", "pk-pub")
    assert "198.51.100.44" in world.lines("jwg", "ipv4.txt", "uz-pub")


def _labelled(world: World) -> dict[str, dict[str, Any]]:
    """Indicators for the named feeds' filters, published once into jwg."""
    uz = world.ex.store.find_org("UZ-CERT").identity_id
    old = "2020-01-01T00:00:00.000Z"
    made = {
        "kept": _indicator("[ipv4-addr:value = '198.51.100.10'] OR"
                           " [domain-name:value = 'c2-a.example']", uz, labels=["c2"],
                           confidence=90),
        "unsure": _indicator("[ipv4-addr:value = '198.51.100.11']", uz, labels=["c2"],
                             confidence=10),
        "test": _indicator("[ipv4-addr:value = '198.51.100.12']", uz, labels=["c2", "test"],
                           confidence=90),
        "unlabelled": _indicator("[ipv4-addr:value = '198.51.100.13']", uz, confidence=90),
        "green": _indicator("[ipv4-addr:value = '198.51.100.14']", uz, GREEN,
                            labels=["c2"], confidence=95),
        "old-green": _indicator("[ipv4-addr:value = '198.51.100.15']", uz, GREEN,
                                labels=["c2"], confidence=95, created=old, modified=old,
                                valid_from=old),
    }
    if not getattr(world, "labelled", None):
        _publish(world, "jwg", list(made.values()))
        world.labelled = made  # type: ignore[attr-defined]
    return world.labelled  # type: ignore[attr-defined,no-any-return]


def _named(world: World, file: str, account: str, **headers: str) -> requests.Response:
    return requests.get(f"{world.base}/cx/feeds/{file}", auth=(account, world.keys[account]),
                        headers=headers, timeout=60)


def test_a_named_feed_lists_its_kinds_less_what_its_filters_leave_out(world: World) -> None:
    _labelled(world)
    expected = ["198.51.100.10", "198.51.100.14", "198.51.100.15", "c2-a.example"]
    # A party (values as stored: the observable index) and a constituent (its redacted
    # copies, parsed): the same filters give the same values.
    for account in ("pk-pub", "uz-soc"):
        response = _named(world, "jwg-c2.txt", account)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text.splitlines() == expected, account
        rows = list(csv.DictReader(io.StringIO(_named(world, "jwg-c2.csv", account).text)))
        assert sorted((r["value"], r["type"]) for r in rows) == [
            ("198.51.100.10", "ipv4"), ("198.51.100.14", "ipv4"), ("198.51.100.15", "ipv4"),
            ("c2-a.example", "domain")]
    # The per-collection feed is not narrowed by any of it.
    everything = world.lines("jwg", "ipv4.txt", "pk-pub")
    assert {"198.51.100.11", "198.51.100.12", "198.51.100.13"} <= set(everything)
    # A ceiling of green and an age of a year: only the recent green indicator.
    green = _named(world, "jwg-c2-green-recent.csv", "pk-pub")
    assert green.status_code == 200, green.text
    rows = list(csv.DictReader(io.StringIO(green.text)))
    assert [(r["value"], r["tlp"]) for r in rows] == [("198.51.100.14", "green")]
    assert rows[0]["indicator_id"] == world.labelled["green"]["id"]  # type: ignore[attr-defined]


def test_a_named_feed_answers_304_and_refuses_clearly(world: World) -> None:
    _labelled(world)
    first = _named(world, "jwg-c2.txt", "pk-pub")
    again = _named(world, "jwg-c2.txt", "pk-pub", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""
    wrong = _named(world, "jwg-c2-green-recent.txt", "pk-pub")
    assert wrong.status_code == 404
    assert "served as csv, not txt" in wrong.json()["description"]
    unknown = _named(world, "nope.txt", "pk-pub")
    assert unknown.status_code == 404
    assert "jwg-c2.txt" in unknown.json()["description"]
    assert _named(world, "jwg-c2.txt", "pk-pub", Accept="application/json").status_code == 406


def test_the_feed_index_lists_the_named_feeds(world: World) -> None:
    response = requests.get(f"{world.base}/cx/feeds/", auth=("pk-pub", world.keys["pk-pub"]),
                            headers={"Accept": TAXII}, timeout=60)
    assert response.status_code == 200, response.text
    named = {f["name"]: f for f in response.json()["named"]}
    assert set(named) == {"jwg-c2", "jwg-c2-green-recent"}
    assert named["jwg-c2"]["urls"] == {"txt": f"{world.base}/cx/feeds/jwg-c2.txt",
                                       "csv": f"{world.base}/cx/feeds/jwg-c2.csv"}
    assert named["jwg-c2"]["kinds"] == ["ipv4", "domain"]
    assert named["jwg-c2-green-recent"]["filters"]["tlp_ceiling"] == "green"
    assert named["jwg-c2"]["filters"]["min_confidence"] == 50


def test_sync_status_lists_each_feed_with_its_downloads(world: World) -> None:
    """What a SOC engineer checks: which feeds exist, who fetched them, when last, and
    what the last download held (its ETag, to compare with what a tool holds)."""
    from click.testing import CliRunner  # noqa: PLC0415

    from exchange.cli.main import main  # noqa: PLC0415

    _labelled(world)

    def status() -> dict[str, Any]:
        result = CliRunner().invoke(main, ["--home", str(world.home), "sync", "status",
                                           "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        feeds: dict[str, Any] = {f["feed"]: f for f in json.loads(result.output)["feeds"]}
        return feeds

    before = status()
    assert before["jwg-c2-green-recent"]["formats"] == ["csv"]
    assert before["jwg-c2-green-recent"]["filters"]["max_age_days"] == 365
    counted = {(d["format"], d["account"]): d["downloads"]
               for d in before.get("jwg/ipv4", {}).get("downloads", [])}
    first = _named(world, "jwg-c2-green-recent.csv", "pk-pub")
    second = _named(world, "jwg-c2-green-recent.csv", "pk-pub")
    cached = _named(world, "jwg-c2-green-recent.csv", "pk-pub",
                    **{"If-None-Match": second.headers["ETag"]})
    assert cached.status_code == 304
    plain = world.get("jwg", "ipv4.txt", "uz-soc")
    after = status()
    [green] = [d for d in after["jwg-c2-green-recent"]["downloads"]
               if d["account"] == "pk-pub"]
    previous = next((d["downloads"] for d in before["jwg-c2-green-recent"]["downloads"]
                     if d["account"] == "pk-pub"), 0)
    assert green["downloads"] == previous + 2  # two 200s; the 304 is not counted
    assert (green["org"], green["format"], green["etag"], green["values"]) == (
        "PK-CERT", "csv", first.headers["ETag"], 1)
    assert green["last"] is not None
    soc = [d for d in after["jwg/ipv4"]["downloads"]
           if d["account"] == "uz-soc" and d["format"] == "txt"]
    assert [(d["org"], d["etag"]) for d in soc] == [("UZ-SOC", plain.headers["ETag"])]
    assert soc[0]["downloads"] == counted.get(("txt", "uz-soc"), 0) + 1
    assert soc[0]["values"] == len(plain.text.splitlines())
    text = CliRunner().invoke(main, ["--home", str(world.home), "sync", "status"]).output
    assert "jwg-c2-green-recent (named: jwg, ipv4; csv; tlp <= green; label c2;" \
           " modified within 365 days)" in text
    assert f"csv by pk-pub (PK-CERT): {green['downloads']} downloads" in text


def test_a_value_too_long_for_the_index_is_still_listed(world: World) -> None:
    """The observable index keeps a digest of a value over 512 characters: the feed
    reads that indicator's body for it (and the other values as indexed)."""
    long_url = "https://long.example/" + "a" * 600
    uz = world.ex.store.find_org("UZ-CERT").identity_id
    _publish(world, "jwg", [_indicator(f"[url:value = '{long_url}'] OR"
                                       " [url:value = 'https://short.example/x']", uz)])
    for account in ("pk-pub", "uz-soc"):
        urls = world.lines("jwg", "url.txt", account)
        assert long_url in urls, account
        assert "https://short.example/x" in urls


def test_a_feed_of_copies_from_the_index_equals_one_from_the_delivered_copies(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constituent under the shipped profile (which keeps patterns and validity) gets
    its feed from the observable index, naming its copies' ids and its view of their
    authors: byte for byte what building it from the copies a TAXII read delivers gives."""
    from exchange.node.feeds import Feeds  # noqa: PLC0415
    from exchange.node.policy_source import PolicySource  # noqa: PLC0415

    _labelled(world)
    settings = world.ex.settings
    assert settings.policy_path is not None
    policy = PolicySource(settings.policy_path)
    policy.load()
    ex = Exchange(settings, world.ex.store, policy=policy)  # the server's view, in-process
    soc = ex.authenticate("uz-soc", world.keys["uz-soc"])
    names = [("ipv4", "txt"), ("ipv4", "csv"), ("domain", "csv"), ("email", "csv"),
             ("url", "csv"), ("md5", "csv")]
    from_index = {n: ex.feed(soc, "cx", "jwg", *n).body for n in names}
    ex._feed_cache.clear()
    monkeypatch.setattr(Feeds, "_copies_keep_feed_facts", lambda self, transforms: False)
    from_copies = {n: ex.feed(soc, "cx", "jwg", *n).body for n in names}
    assert from_index == from_copies
    rows = list(csv.DictReader(io.StringIO(from_index[("ipv4", "csv")].decode())))
    originals = {o["id"] for o in world.extra.values()} | {
        "indicator--e8094b09-7df4-4b13-b207-1e27af3c4bde"}
    assert "219.76.208.163" in {r["value"] for r in rows}  # Poison Ivy, as a copy
    assert not originals & {r["indicator_id"] for r in rows}
    # A copy is found again by its own id (recorded as a read records it).
    assert all(ex.store.original_of(r["indicator_id"]) is not None for r in rows)


def test_a_feed_from_the_index_equals_one_from_the_bodies_and_discloses_the_same(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mixed collection (two contributors, AMBER, AMBER+STRICT, RED, GREEN, expired,
    not yet valid, revoked, several values per indicator, formula-like e-mail addresses,
    a value too long for the index, labels and confidence): for a party, the producer and
    a constituent (copies), every kind and format and the named feeds are byte for byte
    what reading and parsing every body gives; each lists the same versions, and its
    disclosure is the ledger batch a page of those stored versions is disclosed as."""
    from exchange.audit.records import DisclosureBatch  # noqa: PLC0415
    from exchange.node.base import ReadResult  # noqa: PLC0415
    from exchange.node.feeddefs import parse_flat_feeds  # noqa: PLC0415
    from exchange.node.feeds import FEED_CHANNEL, Feeds  # noqa: PLC0415
    from exchange.node.policy_source import PolicySource  # noqa: PLC0415
    from exchange.storage.base import ObjectQuery, Page, VersionMatch  # noqa: PLC0415

    _labelled(world)
    settings = world.ex.settings
    assert settings.policy_path is not None
    policy = PolicySource(settings.policy_path)
    policy.load()
    ex = Exchange(settings, world.ex.store, policy=policy)  # the server's view, in-process
    named = parse_flat_feeds("flat-feeds.yaml", NAMED_FEEDS.encode())
    readers = [ex.authenticate(a, world.keys[a]) for a in ("pk-pub", "uz-pub", "uz-soc")]
    kinds = ["ipv4", "domain", "url", "email", "md5", "sha256"]

    def build() -> dict[tuple[str, ...], Any]:
        ex._feed_cache.clear()
        out: dict[tuple[str, ...], Any] = {}
        for reader in readers:
            for kind in kinds:
                for fmt in ("txt", "csv"):
                    out[reader.account_name, kind, fmt] = ex.feed(reader, "cx", "jwg", kind,
                                                                  fmt)
            for definition in named:
                for fmt in definition.formats:
                    out[reader.account_name, definition.name, fmt] = ex.named_feed(
                        reader, "cx", definition, fmt)
        return out

    from_index = build()
    monkeypatch.setattr(Feeds, "_collect_indexed", Feeds._collect)
    from_bodies = build()
    assert {k: f.body for k, f in from_index.items()} == {
        k: f.body for k, f in from_bodies.items()}
    assert sum(len(f.result) for f in from_index.values()) > 100  # not vacuous
    assert len({f.result.collection.id for f in from_index.values()}) == 1
    for key, feed in from_index.items():
        other = from_bodies[key].result
        assert [list(c) for c in (feed.result.shown, feed.result.versions,
                                  feed.result.dates_added, feed.result.group_of)] == [
            list(c) for c in (other.shown, other.versions, other.dates_added,
                              other.group_of)], key
        assert feed.result.groups == other.groups, key

    # The disclosure of a feed is the batch of the same versions read as a page.
    batches: list[DisclosureBatch] = []
    monkeypatch.setattr(ex.audit, "record", lambda batch, wait=True: batches.append(batch))
    collection = from_index["pk-pub", "ipv4", "csv"].result.collection
    stored = {r.date_added: r for r in ex.store.get_objects(ObjectQuery(
        collection_id=collection.id, types=("indicator",), versions=VersionMatch(all=True),
        include_body=False, limit=10_000)).rows}
    for reader in readers:
        for kind in ("ipv4", "email", "url"):
            listing = from_index[reader.account_name, kind, "csv"].result
            if not len(listing):
                continue
            rule = ex.rule_for(reader, collection, FEED_CHANNEL)
            page = Page([stored[d] for d in listing.dates_added], more=False)
            ex.disclose(reader, listing, FEED_CHANNEL)
            ex.disclose(reader, ReadResult(collection, page,
                                           rule.transforms if rule is not None else (),
                                           reader.org_id), FEED_CHANNEL)
            ours, reference = batches[-2:]
            for batch in (ours, reference):
                batch.time, batch.request_id = 0, "same"
            assert len(ours) == len(listing)
            assert ours.encode() == reference.encode(), (reader.account_name, kind)
    assert len(batches) >= 12  # six feeds or more compared
