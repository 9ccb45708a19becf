"""The MISP feed of a collection over real HTTP (``<api_root>/feeds/<collection>/misp/``):
read with PyMISP's own event loading, and subscribed to by a real MISP 2.5.1 as a feed of
source format "MISP Feed" with an Authorization header.

The node and its data are the flat feeds' (:mod:`tests.integration.test_flat_feeds`): the
OASIS Poison Ivy and APT1 examples and UZ-CERT's extra indicators (AMBER+STRICT, TLP:RED
naming PK-CERT...) under the shipped policies.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pymisp import MISPEvent, PyMISP

from tests.integration.conftest import Misp
from tests.integration.test_flat_feeds import (
    World,
    _feed_disclosures,
    _indicator,
    _publish,
    build_world,
)

IVY_IP = "219.76.208.163"
HIDDEN_FROM_PK = ("203.0.113.66", "203.0.113.77")  # AMBER+STRICT, RED (never by feed)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from build_world(tmp_path_factory)


def _get(world: World, alias: str, name: str, account: str, **headers: str
         ) -> requests.Response:
    return world.get(alias, f"misp/{name}", account, **headers)


def _feed(world: World, alias: str, account: str
          ) -> tuple[dict[str, Any], list[list[str]], dict[str, MISPEvent], dict[str, bytes]]:
    manifest_answer = _get(world, alias, "manifest.json", account)
    assert manifest_answer.status_code == 200, manifest_answer.text
    assert manifest_answer.headers["Content-Type"].startswith("application/json")
    manifest = manifest_answer.json()
    hashes_answer = _get(world, alias, "hashes.csv", account)
    assert hashes_answer.status_code == 200, hashes_answer.text
    hashes = list(csv.reader(io.StringIO(hashes_answer.text)))
    events: dict[str, MISPEvent] = {}
    raw: dict[str, bytes] = {}
    for event_uuid in manifest:
        answer = _get(world, alias, f"{event_uuid}.json", account)
        assert answer.status_code == 200, answer.text
        event = MISPEvent()
        event.load(answer.content)
        events[event_uuid] = event
        raw[event_uuid] = answer.content
    return manifest, hashes, events, raw


def test_pymisp_reads_the_feed_and_it_holds_only_what_the_account_may_receive(
        world: World) -> None:
    manifest, hashes, events, raw = _feed(world, "jwg", "pk-pub")
    assert manifest, "an empty MISP feed"
    values = {a.value for e in events.values() for a in e.attributes}
    assert IVY_IP in values  # Poison Ivy, a FireEye indicator PK-CERT may receive
    everything = b"".join(raw.values()) + json.dumps(manifest).encode()
    for hidden in HIDDEN_FROM_PK:
        assert hidden.encode() not in everything
    for event_uuid, event in events.items():
        summary = manifest[event_uuid]
        assert event.uuid == event_uuid == summary["uuid"]
        assert int(summary["timestamp"]) == int(event.timestamp.timestamp()) > 0
        assert summary["info"] == event.info
        assert summary["Orgc"]["name"] == event.Orgc.name
        levels = [t.name for t in event.tags if t.name.startswith("tlp:")]
        assert len(levels) == 1, levels  # one level per event, its tag true of it all
        level = levels[0]
        assert level not in ("tlp:red", "tlp:amber+strict")
        # DESIGN.md decision 7, with no sharing group: CLEAR 3, GREEN 1, AMBER 0.
        assert int(event.distribution) == {"tlp:clear": 3, "tlp:green": 1,
                                           "tlp:amber": 0}[level]
    # hashes.csv: every value of every event, as MD5, naming its event; nothing else.
    expected = set()
    for event_uuid, event in events.items():
        for attribute in event.attributes:
            parts = attribute.value.split("|") if "|" in attribute.type else [attribute.value]
            expected.update((hashlib.md5(p.encode()).hexdigest(), event_uuid) for p in parts)
    assert {(h, e) for h, e in hashes} == expected
    # An unknown file is a 404 naming what the feed has.
    missing = _get(world, "jwg", f"{uuid.uuid4()}.json", "pk-pub")
    assert missing.status_code == 404
    assert "manifest.json" in missing.json()["description"]


def test_the_producer_sees_its_own_strict_and_red_in_its_feed_but_not_others(
        world: World) -> None:
    _, _, own_events, _ = _feed(world, "jwg", "uz-pub")
    own_values = {a.value for e in own_events.values() for a in e.attributes}
    # A feed is channel "feed": strict and RED leave only to their producer.
    assert set(HIDDEN_FROM_PK) <= own_values
    _, _, pk_events, _ = _feed(world, "jwg", "pk-pub")
    assert not set(HIDDEN_FROM_PK) & {a.value for e in pk_events.values()
                                      for a in e.attributes}


def test_conditional_get_and_disclosure(world: World) -> None:
    request_id = f"mispfeed-{uuid.uuid4().hex}"
    first = _get(world, "jwg", "manifest.json", "uz-soc", **{"X-Request-ID": request_id})
    assert first.status_code == 200
    records = _feed_disclosures(world, "UZ-SOC", request_id)
    assert records
    assert {(r["channel"], r["recipient_account"]) for r in records} == {("feed", "uz-soc")}
    quiet = f"mispfeed-{uuid.uuid4().hex}"
    again = _get(world, "jwg", "manifest.json", "uz-soc",
                 **{"If-None-Match": first.headers["ETag"], "X-Request-ID": quiet})
    assert again.status_code == 304
    assert again.content == b""
    # An event file discloses what is in that event.
    event_uuid = next(iter(first.json()))
    marker = f"mispfeed-{uuid.uuid4().hex}"
    served = _get(world, "jwg", f"{event_uuid}.json", "uz-soc", **{"X-Request-ID": marker})
    assert served.status_code == 200
    disclosed = {entry[0] for r in _feed_disclosures(world, "UZ-SOC", marker)
                 for entry in r["objects"]}
    event = MISPEvent()
    event.load(served.content)
    named = {a.comment for a in event.attributes}
    assert disclosed
    assert all(any(i in c for c in named) for i in disclosed if i.startswith("indicator--"))
    assert _feed_disclosures(world, "UZ-SOC", quiet, wait=0) == []


def test_a_new_indicator_changes_the_manifest_and_reaches_an_event(world: World) -> None:
    before = _get(world, "jwg", "manifest.json", "pk-pub")
    assert before.status_code == 200
    value = "198.51.100.23"
    # MISP compares event timestamps in whole seconds: a change in the second of the
    # fixture's last publish would not be newer (the module docstring of mispfeed).
    time.sleep(1.1)
    uz = world.extra["to-revoke"]["created_by_ref"]
    _publish(world, "jwg", [_indicator(f"[ipv4-addr:value = '{value}']", uz)])
    after = _get(world, "jwg", "manifest.json", "pk-pub",
                 **{"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    _, _, events, _ = _feed(world, "jwg", "pk-pub")
    holding = [e for e in events.values() if value in {a.value for a in e.attributes}]
    assert len(holding) == 1
    newest = max(int(s["timestamp"]) for s in after.json().values())
    assert int(holding[0].timestamp.timestamp()) == newest


def _wait_for_event(misp: PyMISP, event_uuid: str, deadline: float) -> dict[str, Any]:
    for _ in range(200):
        found = misp.search(controller="events", uuid=event_uuid, pythonify=False)
        if isinstance(found, list) and found:
            return dict(found[0]["Event"])
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise AssertionError(f"event {event_uuid} never arrived in MISP")


def test_a_real_misp_subscribes_and_fetches_the_feed(world: World, misp_uz: Misp) -> None:
    # UZ-SOC's MISP subscribes with UZ-SOC's key (in a header MISP stores, not the URL).
    misp = PyMISP(misp_uz.url, misp_uz.key, ssl=False, timeout=120)
    token = base64.b64encode(f"uz-soc:{world.keys['uz-soc']}".encode()).decode()
    added = misp.add_feed({
        "name": f"cert-exchange jwg {uuid.uuid4().hex[:8]}", "provider": "cert-exchange",
        "url": world.url("jwg", "misp").rstrip("/"), "source_format": "misp",
        "input_source": "network", "enabled": True, "distribution": 5,
        "headers": f"Authorization: Basic {token}",
    }, pythonify=False)
    assert "Feed" in added, added
    feed_id = added["Feed"]["id"]
    try:
        fetched = misp.fetch_feed(feed_id)
        assert "errors" not in fetched, fetched
        manifest = _get(world, "jwg", "manifest.json", "uz-soc").json()
        assert manifest
        deadline = time.monotonic() + 120
        for event_uuid, summary in manifest.items():
            event = _wait_for_event(misp, event_uuid, deadline)
            assert event["info"] == summary["info"]
            served = _get(world, "jwg", f"{event_uuid}.json", "uz-soc").json()["Event"]
            # By value: the instance keeps its data between sessions, and a value an
            # earlier run's copy (another derived id) put in the same deterministic event
            # stays under that attribute (MISP keeps one attribute per type and value).
            assert {(a["type"], a["value"]) for a in served["Attribute"]
                    if not a.get("deleted")} <= {(a["type"], a["value"])
                                                 for a in event["Attribute"]}
            tags = {t["name"] for t in event.get("Tag", [])}
            assert {t["name"] for t in summary["Tag"]} <= tags
            # "Inherit from feed" keeps the levels' distributions (decision 7).
            assert int(event["distribution"]) == int(_get(
                world, "jwg", f"{event_uuid}.json", "uz-soc").json()["Event"]["distribution"])
        values = {a["value"] for a in misp.search(controller="attributes", value=IVY_IP,
                                                   pythonify=False)["Attribute"]}
        assert IVY_IP in values
        for hidden in HIDDEN_FROM_PK:  # nor does UZ-SOC receive them
            assert not misp.search(controller="attributes", value=hidden,
                                   pythonify=False)["Attribute"]
    finally:
        misp.delete_feed(feed_id)


def test_a_revocation_soft_deletes_the_attribute_for_a_reader_who_had_it(
        world: World) -> None:
    target = world.extra["to-revoke"]
    value = "203.0.113.99"
    earlier, hashes, events, _ = _feed(world, "jwg", "pk-pub")  # PK-CERT receives it
    holding = [u for u, e in events.items() if value in {a.value for a in e.attributes}]
    assert len(holding) == 1
    digest = hashlib.md5(value.encode()).hexdigest()
    assert [digest, holding[0]] in hashes
    time.sleep(1.1)  # a new second, for MISP's timestamp comparison (above)
    _publish(world, "jwg", [{**target, "modified": "2026-06-02T00:00:00.000Z",
                             "revoked": True}])
    manifest, hashes, events, _ = _feed(world, "jwg", "pk-pub")
    attributes = [a for a in events[holding[0]].attributes if a.value == value]
    assert len(attributes) == 1
    assert attributes[0].deleted is True  # MISP soft-deletes it on the next fetch
    assert [digest, holding[0]] not in hashes
    # A newer timestamp, so a subscribed MISP re-reads the event.
    assert int(manifest[holding[0]]["timestamp"]) > int(earlier[holding[0]]["timestamp"])


def test_sync_status_counts_the_misp_feed_files_each_account_fetched(world: World) -> None:
    """A member's MISP fetching the feed shows in ``exchange sync status``: per file kind
    and account, the full downloads (a 304 is not one), the last ETag and how many
    indicator versions the file held."""
    from click.testing import CliRunner  # noqa: PLC0415

    from exchange.cli.main import main  # noqa: PLC0415

    def status() -> dict[str, dict[str, Any]]:
        result = CliRunner().invoke(main, ["--home", str(world.home), "sync", "status",
                                           "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        feed = {f["feed"]: f for f in json.loads(result.output)["feeds"]}.get("jwg/misp")
        return {(d["format"], d["account"]): d for d in (feed or {}).get("downloads", [])}

    before = status()
    manifest = _get(world, "jwg", "manifest.json", "pk-pub")
    assert manifest.status_code == 200
    cached = _get(world, "jwg", "manifest.json", "pk-pub",
                  **{"If-None-Match": manifest.headers["ETag"]})
    assert cached.status_code == 304
    event_uuid = next(iter(manifest.json()))
    marker = f"mispfeed-{uuid.uuid4().hex}"
    event = _get(world, "jwg", f"{event_uuid}.json", "pk-pub", **{"X-Request-ID": marker})
    assert event.status_code == 200
    disclosed = [entry for r in _feed_disclosures(world, "PK-CERT", marker)
                 for entry in r["objects"]]
    after = status()
    counted = after[("manifest.json", "pk-pub")]
    previous = before.get(("manifest.json", "pk-pub"), {}).get("downloads", 0)
    assert counted["downloads"] == previous + 1  # the 304 is not a download
    assert (counted["org"], counted["etag"]) == ("PK-CERT", manifest.headers["ETag"])
    fetched = after[("event", "pk-pub")]
    assert fetched["etag"] == event.headers["ETag"]
    assert fetched["values"] == len(disclosed) > 0  # the versions the file disclosed
    text = CliRunner().invoke(main, ["--home", str(world.home), "sync", "status"]).output
    assert "jwg/misp (the MISP feed of collection jwg)" in text
    assert f"manifest.json by pk-pub (PK-CERT): {counted['downloads']} download" in text
