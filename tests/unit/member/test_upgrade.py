"""STIX 2.0 -> 2.1 upgrade on the member's side (exchange.member.upgrade), property by property."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchange.member.upgrade import PROVENANCE_SOURCE, is_stix20, upgrade_objects
from exchange.model.limits import Limits
from exchange.model.stix import validate_object

REAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "real"
STIX20_FILES = sorted((REAL / "stix20").glob("*.json"))
ID = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
BASE: dict[str, dict[str, Any]] = {
    "indicator": {"type": "indicator", "id": ID, "created": "2024-03-01T10:00:00.000Z",
                  "modified": "2024-03-01T10:00:00.000Z", "labels": ["malicious-activity"],
                  "pattern": "[ipv4-addr:value = '198.51.100.7']",
                  "valid_from": "2024-03-01T10:00:00Z"},
    "malware": {"type": "malware", "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
                "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
                "name": "DearCry", "labels": ["ransomware"]},
    "report": {"type": "report", "id": "report--44db0986-9e10-4d15-a3b1-9260ab52d613",
               "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
               "name": "r", "published": "2024-03-01T10:00:00Z", "labels": ["threat-report"],
               "object_refs": [ID]},
    "threat-actor": {"type": "threat-actor",
                     "id": "threat-actor--8b6297fe-cae7-47c6-9256-5584b417849c",
                     "created": "2024-03-01T10:00:00.000Z",
                     "modified": "2024-03-01T10:00:00.000Z", "name": "t",
                     "labels": ["nation-state"]},
    "tool": {"type": "tool", "id": "tool--ce45f721-af14-4fc0-938c-000c16186418",
             "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
             "name": "cachedump", "labels": ["credential-exploitation"]},
}  # fmt: skip


def _upgraded(obj: dict[str, Any]) -> dict[str, Any]:
    report = upgrade_objects([obj])
    assert report.upgraded == [report.objects[0]["id"]]
    return report.objects[0]


@pytest.mark.parametrize(
    ("obj_type", "changes", "expected"),
    [
        pytest.param("indicator", {}, {"spec_version": "2.1", "pattern_type": "stix",
                                       "indicator_types": ["malicious-activity"]},
                     id="indicator"),
        pytest.param("indicator", {"labels": ["Malicious Activity", "benign", "acme-tag"]},
                     {"indicator_types": ["malicious-activity", "benign", "acme-tag"]},
                     id="indicator-labels-to-vocabulary-spelling"),
        pytest.param("indicator", {"pattern_type": "snort"}, {"pattern_type": "snort"},
                     id="indicator-pattern-type-kept"),
        pytest.param("malware", {}, {"malware_types": ["ransomware"], "is_family": True},
                     id="malware"),
        pytest.param("malware", {"is_family": False}, {"is_family": False},
                     id="malware-is-family-kept"),
        pytest.param("malware", {"labels": ["Remote_Access_Trojan"]},
                     {"malware_types": ["remote-access-trojan"]}, id="malware-underscores"),
        pytest.param("report", {}, {"report_types": ["threat-report"]}, id="report"),
        pytest.param("report", {"labels": ["atom-playbook", "campaign"]},
                     {"report_types": ["atom-playbook", "campaign"]}, id="report-open-vocab"),
        pytest.param("threat-actor", {}, {"threat_actor_types": ["nation-state"]},
                     id="threat-actor"),
        pytest.param("tool", {}, {"tool_types": ["credential-exploitation"]}, id="tool"),
        pytest.param("indicator", {"created": "2024-03-01T10:00:00Z",
                                   "modified": "2024-03-01T10:00:00.5Z"},
                     {"created": "2024-03-01T10:00:00.000Z",
                      "modified": "2024-03-01T10:00:00.500Z"},
                     id="created-modified-to-milliseconds"),
        pytest.param("indicator", {"valid_from": "2024-03-01t12:00:00+02:00"},
                     {"valid_from": "2024-03-01T10:00:00Z"}, id="offset-to-utc"),
        pytest.param("indicator", {"valid_from": "2024-03-01T10:00:00.1234567Z"},
                     {"valid_from": "2024-03-01T10:00:00.123456Z"},
                     id="fraction-beyond-microseconds"),
        pytest.param("indicator", {"created_by_ref": "identity--c78cb6e5-0c4b-4611-8297-"
                                                     "d1b8b55e40b5"},
                     {"created_by_ref": "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"},
                     id="author-kept"),
        pytest.param("indicator", {"name": ["one name"]}, {"name": "one name"},
                     id="one-element-list-for-a-string"),
        pytest.param("indicator", {"x_acme_score": 7}, {"x_acme_score": 7},
                     id="custom-property-kept"),
        pytest.param("indicator", {"external_references": [
                         {"source_name": "s", "url": "https://x", "hashes": {"ssdeep": "3:a:b"}}]},
                     {"external_references": [
                         {"source_name": "s", "url": "https://x", "hashes": {"SSDEEP": "3:a:b"}}]},
                     id="hash-names"),
    ],
)
def test_upgrade_property(obj_type: str, changes: dict[str, Any],
                          expected: dict[str, Any]) -> None:
    obj = {**BASE[obj_type], **changes}
    upgraded = _upgraded(obj)
    for key, value in expected.items():
        if key == "external_references":
            assert upgraded[key][:-1] == value
        else:
            assert upgraded[key] == value, key
    assert "labels" not in upgraded
    assert "created_by_ref" not in upgraded or "created_by_ref" in obj  # never invented
    validate_object(upgraded, Limits())


def test_a_list_of_several_values_for_a_string_is_left_for_validation_to_refuse() -> None:
    upgraded = _upgraded({**BASE["indicator"], "description": ["a", "b"]})
    assert upgraded["description"] == ["a", "b"]


def test_provenance_is_recorded_and_deterministic() -> None:
    first = _upgraded(BASE["indicator"])
    provenance = first["external_references"][-1]
    assert provenance["source_name"] == PROVENANCE_SOURCE
    assert provenance["external_id"] == "stix-2.0"
    assert "labels -> indicator_types" in provenance["description"]
    assert "pattern_type stix" in provenance["description"]
    assert _upgraded(BASE["indicator"]) == first  # no clock: re-publishing stores nothing new


def test_invalid_id_is_replaced_and_references_follow() -> None:
    bad = {**BASE["indicator"], "id": "indicator--not-a-uuid"}
    report_obj = {**BASE["report"], "object_refs": ["indicator--not-a-uuid"]}
    report = upgrade_objects([bad, report_obj])
    new_id = report.renamed["indicator--not-a-uuid"]
    assert report.objects[0]["id"] == new_id
    assert report.objects[1]["object_refs"] == [new_id]
    assert upgrade_objects([bad, report_obj]).renamed == report.renamed  # deterministic
    for obj in report.objects:
        validate_object(obj, Limits())


def test_tlp1_marking_becomes_its_2_1_form_without_provenance() -> None:
    marking = {"type": "marking-definition", "created": "2017-01-20T00:00:00.000Z",
               "id": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
               "definition_type": "tlp", "definition": {"tlp": "amber"}}
    upgraded = _upgraded(marking)
    assert upgraded["spec_version"] == "2.1"
    assert "external_references" not in upgraded
    validate_object(upgraded, Limits())


def test_stix_2_1_objects_pass_unchanged() -> None:
    obj = {**BASE["indicator"], "spec_version": "2.1", "indicator_types": ["benign"],
           "pattern_type": "stix"}
    del obj["labels"]
    sco = {"type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
           "value": "198.51.100.7"}
    report = upgrade_objects([obj, sco])
    assert report.objects == [obj, sco]
    assert report.upgraded == []
    assert not is_stix20({"objects": [obj, sco]}, [obj, sco])


@pytest.mark.parametrize("path", STIX20_FILES, ids=lambda p: p.stem)
def test_every_real_stix_2_0_object_validates_after_the_upgrade(path: Path) -> None:
    document = json.loads(path.read_bytes())
    objects = document["objects"]
    assert is_stix20(document, objects)
    report = upgrade_objects(objects)
    assert len(report.upgraded) == len(objects)
    for before, after in zip(objects, report.objects, strict=True):
        validate_object(after, Limits())
        assert after["id"] == before["id"]
        assert after.get("created_by_ref") == before.get("created_by_ref")
        assert after["external_references"][-1]["source_name"] == PROVENANCE_SOURCE
        for key, value in before.items():  # custom properties survive unchanged
            if key.startswith("x_"):
                assert after[key] == value
