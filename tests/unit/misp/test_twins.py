"""The observed-data twin of a ``to_ids`` attribute's indicator is left out (ADR 0005).

misp-stix writes, for an attribute with ``to_ids``, an indicator and an observed-data of
the same UUID with its cyber-observables and a ``based-on`` relationship. The conversion
keeps the indicator alone when the twin says nothing more; these tests check what a
reader of the pulled event sees: which objects there are, that the container names only
objects that exist, that MISP's first/last seen reach the indicator, and that what only
the twin can say (a reference from another object, a value the pattern lacks) keeps it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from exchange.misp.convert import _Parser, convert_event
from exchange.misp.simple import simple_objects
from exchange.misp.twins import without_twins
from tests.unit.misp.test_convert import FILES, OWNER, events_of

STAMP = "1764892800"  # 2025-12-05T00:00:00Z


def event(*attributes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "info": "twins", "timestamp": STAMP,
            "publish_timestamp": STAMP, "published": True, "distribution": "3",
            "Orgc": {"name": "CIRCL", "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"},
            "Tag": [{"name": "tlp:green"}], "Attribute": list(attributes), **extra}


def attribute(kind: str, value: str, *, to_ids: bool, **extra: Any) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "type": kind, "category": "Network activity",
            "value": value, "to_ids": to_ids, "timestamp": STAMP, "comment": "",
            "distribution": "5", **extra}


def by_id(objects: Any) -> dict[str, dict[str, Any]]:
    return {str(o["id"]): o for o in objects}


def test_to_ids_attribute_is_its_indicator_alone() -> None:
    ip = attribute("ip-dst", "198.51.100.7", to_ids=True)
    domain = attribute("domain", "evil.example", to_ids=True)
    objects = by_id(convert_event(event(ip, domain), owner_identity=OWNER).objects)
    assert sorted(o["type"] for o in objects.values()) == [
        "identity", "indicator", "indicator", "report"]
    assert objects[f"indicator--{ip['uuid']}"]["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert objects[f"indicator--{domain['uuid']}"]["pattern"] == \
        "[domain-name:value = 'evil.example']"
    (report,) = [o for o in objects.values() if o["type"] == "report"]
    assert sorted(report["object_refs"]) == sorted(
        [f"indicator--{ip['uuid']}", f"indicator--{domain['uuid']}"])


def test_attribute_without_to_ids_stays_observed_data() -> None:
    ip = attribute("ip-src", "203.0.113.9", to_ids=False)
    objects = by_id(convert_event(event(ip), owner_identity=OWNER).objects)
    key = ip["uuid"]
    assert {f"observed-data--{key}", f"network-traffic--{key}", f"ipv4-addr--{key}"} <= set(
        objects)
    assert f"indicator--{key}" not in objects
    assert objects[f"ipv4-addr--{key}"]["value"] == "203.0.113.9"


def test_first_and_last_seen_go_to_the_indicator() -> None:
    """MISP's first/last seen, which only the twin carried, become the indicator's
    valid_from/valid_until (the push's mapping, inverted)."""
    seen = attribute("domain", "seen.example", to_ids=True,
                     first_seen="2025-11-01T10:00:00.250000+00:00",
                     last_seen="2025-11-20T10:00:00.000000+00:00")
    first_only = attribute("domain", "first.example", to_ids=True,
                           first_seen="2025-10-01T08:00:00.000000+00:00")
    objects = by_id(convert_event(event(seen, first_only), owner_identity=OWNER).objects)
    indicator = objects[f"indicator--{seen['uuid']}"]
    assert indicator["valid_from"] == "2025-11-01T10:00:00.25Z"
    assert indicator["valid_until"] == "2025-11-20T10:00:00Z"
    other = objects[f"indicator--{first_only['uuid']}"]
    assert other["valid_from"] == "2025-10-01T08:00:00Z"
    assert "valid_until" not in other
    assert sorted(o["type"] for o in objects.values()) == [
        "identity", "indicator", "indicator", "report"]


def test_last_seen_not_after_first_seen_keeps_the_twin() -> None:
    """valid_until must be later than valid_from: a last seen equal to the first seen
    cannot go to the indicator, so the twin stays with its observation times."""
    same = attribute("domain", "same.example", to_ids=True,
                     first_seen="2025-11-01T10:00:00.000000+00:00",
                     last_seen="2025-11-01T10:00:00.000000+00:00")
    objects = by_id(convert_event(event(same), owner_identity=OWNER).objects)
    twin = objects[f"observed-data--{same['uuid']}"]
    assert twin["first_observed"] == twin["last_observed"] == "2025-11-01T10:00:00Z"
    assert objects[f"domain-name--{same['uuid']}"]["value"] == "same.example"
    based_on = [o for o in objects.values() if o["type"] == "relationship"]
    assert [(r["source_ref"], r["target_ref"]) for r in based_on] == [
        (f"indicator--{same['uuid']}", f"observed-data--{same['uuid']}")]
    assert "valid_until" not in objects[f"indicator--{same['uuid']}"]


def test_a_twin_another_object_names_is_kept() -> None:
    """An object naming the twin (as misp-stix's relationship for a MISP object
    reference does) keeps it, its observables and its relationship."""
    named = attribute("domain", "named.example", to_ids=True)
    other = attribute("domain", "other.example", to_ids=True)
    misp_event = event(named, other)
    objects = simple_objects(misp_event, _Parser)
    assert objects is not None
    objects.append({"type": "relationship", "spec_version": "2.1",
                    "id": f"relationship--{uuid.uuid4()}", "relationship_type": "related-to",
                    "created": "2025-12-05T00:00:00.000Z",
                    "modified": "2025-12-05T00:00:00.000Z",
                    "source_ref": f"indicator--{other['uuid']}",
                    "target_ref": f"observed-data--{named['uuid']}"})
    kept = by_id(without_twins(misp_event, objects))
    assert f"observed-data--{named['uuid']}" in kept
    assert kept[f"domain-name--{named['uuid']}"]["value"] == "named.example"
    assert f"observed-data--{other['uuid']}" not in kept
    (report,) = [o for o in kept.values() if o["type"] == "report"]
    assert f"observed-data--{named['uuid']}" in report["object_refs"]
    assert all(ref in kept for ref in report["object_refs"])


def test_a_value_the_pattern_lacks_keeps_the_twin() -> None:
    """A cyber-observable holding a value the indicator's pattern does not: kept."""
    named = attribute("domain", "kept.example", to_ids=True)
    misp_event = event(named)
    objects = simple_objects(misp_event, _Parser)
    assert objects is not None
    sco = next(o for o in objects if o["id"] == f"domain-name--{named['uuid']}")
    sco["resolves_to_refs"] = []
    sco["x_extra"] = "only-in-the-observable"
    kept = by_id(without_twins(misp_event, objects))
    assert kept[f"domain-name--{named['uuid']}"]["x_extra"] == "only-in-the-observable"
    assert f"observed-data--{named['uuid']}" in kept


@pytest.mark.parametrize("relative", FILES)
def test_real_events_name_only_objects_they_hold(relative: str) -> None:
    """On every real event: every reference resolves to a converted object (or the
    owner/marking/identity ids outside the event), and every to_ids event-level
    attribute still has its indicator."""
    for misp_event in events_of(relative):
        try:
            objects = by_id(convert_event(misp_event, owner_identity=OWNER).objects)
        except Exception:  # noqa: BLE001 - failures are the golden file's business
            continue
        for obj in objects.values():
            for ref in obj.get("object_refs", []):
                assert ref in objects, (relative, obj["id"], ref)
            for name in ("source_ref", "target_ref", "sighting_of_ref"):
                if name in obj:
                    assert obj[name] in objects, (relative, obj["id"], name)
        for item in misp_event.get("Attribute", []):
            if item.get("to_ids") in (True, 1, "1") and not item.get("deleted"):
                assert any(k.endswith(item["uuid"]) and k.startswith(("indicator--", "note--"))
                           for k in objects), (relative, item["uuid"])
