"""MISP event -> STIX 2.1 (exchange.misp.convert) on the real MISP data, read in place.

Every event in ../shared/data/real/misp-events and the misp-stix restSearch collections
is converted; what misp-stix leaves out is measured and compared, file by file, with the
golden file tests/integration/golden/misp-expected-loss.json (section ``misp-to-stix``):
a new loss, or a loss that disappears, fails. The compensations (TLP 2.0 ids, RED for
distribution 0/1, revocations, simple IP patterns, stable times, sightings) are checked
on the same events.
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from exchange.misp.convert import (
    ConversionFailed,
    convert_event,
    measure_losses,
    normal_pattern,
)
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS, TLP_MARKING_IDS
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID

REPO = Path(__file__).resolve().parents[3]
REAL = REPO.parent / "shared" / "data" / "real"
GOLDEN = REPO / "tests" / "integration" / "golden" / "misp-expected-loss.json"
OWNER = "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb"
#: A MISP instance always serves uuid and timestamp; PyMISP's fixtures sometimes lack them.
FILLED_TIMESTAMP = "1700000000"
FILES = sorted(str(p.relative_to(REAL)) for pattern in ("misp-events/*.json",
                                                        "misp-stix/test_*_collection_1.json",
                                                        "misp-stix/test_*_collection_2.json")
               for p in REAL.glob(pattern))
TLP1_IDS = {k for k, v in TLP_MARKING_IDS.items() if k not in TLP2_IDS.values()}


def events_of(relative: str) -> list[dict[str, Any]]:
    """The events of a real file, with a uuid and timestamp where the fixture has none."""
    data = json.loads((REAL / relative).read_text())
    response = data.get("response") if isinstance(data, dict) else None
    if isinstance(response, list) and response and "Event" in response[0]:
        events = [item["Event"] for item in response]
    elif isinstance(response, list):  # objects collection
        events = [{"info": relative, "Object": [item["Object"] for item in response]}]
    elif isinstance(response, dict):  # attributes collection
        events = [{"info": relative, "Attribute": response["Attribute"]}]
    else:
        events = [data.get("Event", data)]
    for index, event in enumerate(events):
        event.setdefault("uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{relative}#{index}")))
        event.setdefault("timestamp", FILLED_TIMESTAMP)
        for number, attribute in enumerate(event.get("Attribute", [])):
            attribute.setdefault("uuid", str(uuid.uuid5(uuid.UUID(event["uuid"]),
                                                        str(number))))
    return events


def golden() -> dict[str, Any]:
    section: dict[str, Any] = json.loads(GOLDEN.read_text())["misp-to-stix"]
    return section


def measured(relative: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events_of(relative):
        try:
            conversion = convert_event(event, owner_identity=OWNER)
        except ConversionFailed as e:
            out.append({"error": str(e).split(": ")[1]})
            continue
        out.append({"objects": len(conversion.objects),
                    "lost": measure_losses(event, conversion.objects)})
    return out


@pytest.mark.parametrize("relative", FILES)
def test_losses_are_exactly_the_golden_ones(relative: str) -> None:
    assert measured(relative) == golden()[relative]


def test_golden_file_covers_every_real_file() -> None:
    assert sorted(golden()) == FILES


@pytest.mark.parametrize("relative", FILES)
def test_no_tlp1_marking_and_every_object_marked_by_level(relative: str) -> None:
    for event in events_of(relative):
        try:
            conversion = convert_event(event, owner_identity=OWNER)
        except ConversionFailed:
            continue
        text = json.dumps(conversion.objects)
        assert not any(tlp1 in text for tlp1 in TLP1_IDS)
        tagged = any(t["name"].lower().startswith("tlp:") for t in event.get("Tag", []))
        for obj in conversion.objects:
            assert all(m in TLP2_IDS.values() for m in obj.get("object_marking_refs", []))
            if tagged:
                assert obj.get("object_marking_refs"), obj["id"]
        assert "marking-definition" not in {o["type"] for o in conversion.objects}


@pytest.mark.parametrize("relative", FILES)
def test_the_event_converted_is_left_as_it_was(relative: str) -> None:
    """The pull reads the event again after converting it (echoes, cursor): conversion,
    direct or through misp-stix, with or without dropped attributes, must not change it."""
    for event in events_of(relative):
        for drop in ((), [a["uuid"] for a in event.get("Attribute", [])[:1]]):
            given = copy.deepcopy(event)
            with contextlib.suppress(ConversionFailed):
                convert_event(given, owner_identity=OWNER, drop=drop)
            assert given == event


@pytest.mark.parametrize("relative", FILES)
def test_converting_twice_gives_the_same_objects(relative: str) -> None:
    for event in events_of(relative):
        try:
            first = convert_event(copy.deepcopy(event), owner_identity=OWNER)
        except ConversionFailed:
            continue
        assert convert_event(copy.deepcopy(event), owner_identity=OWNER) == first
        ceiling = "2023-11-14T22:13:20.000Z" if event["timestamp"] == FILLED_TIMESTAMP \
            else None
        if ceiling:
            assert all(o.get("modified", "") <= ceiling for o in first.objects)


def test_soft_deleted_attribute_is_a_revoked_indicator() -> None:
    (event,) = events_of("misp-events/event-with-deleted-attribute.json")
    (deleted,) = [a for a in event["Attribute"] if a.get("deleted")]
    conversion = convert_event(event, owner_identity=OWNER)
    indicator = next(o for o in conversion.objects if o["id"] == f"indicator--{deleted['uuid']}")
    assert indicator["revoked"] is True
    assert indicator["id"] in conversion.revoked


def test_distribution_0_or_1_is_red_for_the_owner_only() -> None:
    (event,) = events_of("misp-events/event-with-deleted-attribute.json")
    assert event["distribution"] == "1"
    conversion = convert_event(event, owner_identity=OWNER)
    for obj in conversion.objects:
        assert obj["object_marking_refs"] == [TLP2_IDS[Tlp.RED]], obj["id"]
        assert obj["extensions"][RED_RECIPIENTS_EXTENSION_ID]["recipients"] == [OWNER]
    # Whatever the tag says: a tlp:white event at distribution 0 is still RED.
    (sednit,) = events_of("misp-events/circl-osint-sednit-full-export.json")
    sednit["distribution"] = "0"
    restricted = convert_event(sednit, owner_identity=OWNER)
    assert {tuple(o["object_marking_refs"]) for o in restricted.objects} == \
        {(TLP2_IDS[Tlp.RED],)}
    sednit["distribution"] = "3"
    open_one = convert_event(sednit, owner_identity=OWNER)
    assert {tuple(o["object_marking_refs"]) for o in open_one.objects} == \
        {(TLP2_IDS[Tlp.CLEAR],)}
    assert not open_one.restricted


def test_attribute_tag_and_distribution_are_its_own() -> None:
    (event,) = events_of("misp-events/circl-feed-event-57c4445b-xorist.json")
    first, second = [a for a in event["Attribute"] if a["to_ids"]][:2]
    first.setdefault("Tag", []).append({"name": "tlp:amber"})
    second["distribution"] = "0"
    by_id = {o["id"]: o for o in convert_event(event, owner_identity=OWNER).objects}
    assert by_id[f"indicator--{first['uuid']}"]["object_marking_refs"] == [TLP2_IDS[Tlp.AMBER]]
    assert by_id[f"indicator--{second['uuid']}"]["object_marking_refs"] == [TLP2_IDS[Tlp.RED]]
    report = next(o for o in by_id.values() if o["type"] == "report")
    assert report["object_marking_refs"] == [TLP2_IDS[Tlp.CLEAR]]


def test_ip_dst_pattern_is_the_simple_form() -> None:
    (event,) = events_of("misp-events/circl-feed-event-57c4445b-xorist.json")
    event["Attribute"] = [{"uuid": "5f1c0a55-0c1e-4a57-9d3a-7e0a8b1c2d3e", "type": "ip-dst",
                           "category": "Network activity", "value": "198.51.100.7",
                           "to_ids": True, "timestamp": "1472480394"},
                          {"uuid": "6f1c0a55-0c1e-4a57-9d3a-7e0a8b1c2d3e", "type": "ip-src",
                           "category": "Network activity", "value": "2001:db8::1",
                           "to_ids": True, "timestamp": "1472480394"}]
    patterns = {o["pattern"] for o in convert_event(event, owner_identity=OWNER).objects
                if o["type"] == "indicator"}
    assert patterns == {"[ipv4-addr:value = '198.51.100.7']",
                        "[ipv6-addr:value = '2001:db8::1']"}


@pytest.mark.parametrize(("given", "expected"), [
    ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = "
     "'192.0.2.1']", "[ipv4-addr:value = '192.0.2.1']"),
    ("[domain-name:value = 'example.org']", "[domain-name:value = 'example.org']"),
    ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:src_ref.value = "
     "'192.0.2.1']", "[network-traffic:dst_ref.type = 'ipv4-addr' AND "
     "network-traffic:src_ref.value = '192.0.2.1']"),
], ids=["ip-dst", "untouched", "mixed-sides-untouched"])
def test_normal_pattern(given: str, expected: str) -> None:
    assert normal_pattern(given) == expected


def test_misp_stix_failure_is_a_clear_conversion_error() -> None:
    (event,) = events_of("misp-events/event-with-sightings.json")
    with pytest.raises(ConversionFailed, match=rf"event {event['uuid']}: InvalidValueError"):
        convert_event(event, owner_identity=OWNER)


def test_sightings_are_carried() -> None:
    (event,) = events_of("misp-events/event-with-sightings.json")
    event.pop("Galaxy", None)  # the cluster without a uuid misp-stix fails on
    sightings = {s["uuid"]: s for a in event["Attribute"] for s in a.get("Sighting", [])}
    assert sightings
    objects = convert_event(event, owner_identity=OWNER).objects
    carried = {o["id"].split("--", 1)[1]: o for o in objects
               if o["type"] in ("sighting", "opinion")}
    # misp-stix carries sightings (type 0) and false positives (type 1, as opinions);
    # expirations (type 2) are lost, and measured as such.
    expirations = {k for k, s in sightings.items() if s["type"] == "2"}
    assert expirations
    assert set(carried) == set(sightings) - expirations
    assert measure_losses(event, objects).get("Sighting") == len(expirations)
    sightings = {k: s for k, s in sightings.items() if k not in expirations}
    for key, sighting in sightings.items():
        kind = "sighting" if sighting["type"] == "0" else "opinion"
        assert carried[key]["type"] == kind
        target = (carried[key].get("sighting_of_ref")
                  or next(r for r in carried[key]["object_refs"] if r.startswith("indicator")))
        assert target == f"indicator--{sighting['attribute_uuid']}"


def test_dropped_attributes_are_left_out() -> None:
    (event,) = events_of("misp-events/circl-feed-event-57c4445b-xorist.json")
    victim = next(a for a in event["Attribute"] if a["to_ids"])["uuid"]
    objects = convert_event(event, owner_identity=OWNER, drop={victim}).objects
    assert not any(victim in o["id"] for o in objects)


def test_event_without_timestamp_is_refused() -> None:
    with pytest.raises(ConversionFailed, match="no uuid or no timestamp"):
        convert_event({"Event": {"uuid": str(uuid.uuid4()), "info": "x"}},
                      owner_identity=OWNER)


def test_times_after_the_events_clock_are_clamped_as_instants_not_as_text() -> None:
    """A first seen one microsecond after the event's timestamp sorts *before*
    ``...:00.000Z`` as text ('0' < 'Z'); as a time it is later and must be clamped."""
    clock = 1_700_000_000  # 2023-11-14T22:13:20Z
    attribute = {"uuid": str(uuid.uuid4()), "type": "ip-dst", "category": "Network activity",
                 "value": "198.51.100.7", "to_ids": True, "timestamp": str(clock),
                 "distribution": "5", "comment": "",
                 "first_seen": "2023-11-14T22:13:20.000001+00:00"}
    event = {"Event": {"uuid": str(uuid.uuid4()), "info": "clock", "date": "2023-11-14",
                       "timestamp": str(clock), "publish_timestamp": str(clock),
                       "published": True, "threat_level_id": "2", "analysis": "2",
                       "distribution": "1", "Orgc": {"name": "X", "uuid": str(uuid.uuid4())},
                       "Org": {"name": "X", "uuid": str(uuid.uuid4())},
                       "Attribute": [attribute]}}
    objects = convert_event(event, owner_identity=OWNER).objects
    indicator = next(o for o in objects if o["id"] == f"indicator--{attribute['uuid']}")
    assert indicator["valid_from"] == "2023-11-14T22:13:20.000Z"
    assert all(o.get("modified", "") <= "2023-11-14T22:13:20.000Z" for o in objects)
