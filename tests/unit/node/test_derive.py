"""Derived copies: references resolved for the recipient, drops recorded, node-signed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exchange.member.verification import check_object
from exchange.node.derive import (
    DROPPED_SOURCE,
    PROVENANCE_SOURCE,
    derive,
    derived_id,
    references,
    rewrite_references,
)
from exchange.policy import AnonymiseProducer, Redact, parse_policies
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.keys import generate
from exchange.signing.published import PublishedKey, read_registry, registry_document
from exchange.signing.registry import KeyRecord

A = "indicator--11111111-1111-4111-8111-111111111111"
B = "malware--22222222-2222-4222-8222-222222222222"
HIDDEN = "indicator--33333333-3333-4333-8333-333333333333"
MARK = "marking-definition--44444444-4444-4444-8444-444444444444"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
AUTHOR = "identity--55555555-5555-4555-8555-555555555555"
EXT = "extension-definition--66666666-6666-4666-8666-666666666666"
NODE = "identity--77777777-7777-4777-8777-777777777777"

# What the recipient knows each id by: A and B as copies, MARK and TLP as themselves;
# HIDDEN and AUTHOR are not shared with it.
VIEW: dict[str, str | None] = {
    A: "indicator--aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
    B: "malware--bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
    MARK: MARK,
    TLP_AMBER: TLP_AMBER,
}


def resolve(ref: str) -> str | None:
    return VIEW.get(ref)


CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, int], tuple[str, ...]]] = [
    ("relationship-both-ends-rewritten",
     {"type": "relationship", "source_ref": A, "target_ref": B},
     {"type": "relationship", "source_ref": VIEW[A], "target_ref": VIEW[B]}, {}, ()),
    ("relationship-hidden-target-is-incoherent",
     {"type": "relationship", "source_ref": A, "target_ref": HIDDEN},
     {"type": "relationship", "source_ref": VIEW[A]}, {"target_ref": 1}, ("target_ref",)),
    ("report-loses-one-of-its-refs",
     {"type": "report", "object_refs": [A, HIDDEN, B]},
     {"type": "report", "object_refs": [VIEW[A], VIEW[B]]}, {"object_refs": 1}, ()),
    ("report-loses-every-ref",
     {"type": "report", "object_refs": [HIDDEN]},
     {"type": "report"}, {"object_refs": 1}, ("object_refs",)),
    ("sighting-keeps-its-required-ref-drops-where",
     {"type": "sighting", "sighting_of_ref": A, "where_sighted_refs": [AUTHOR],
      "observed_data_refs": [HIDDEN]},
     {"type": "sighting", "sighting_of_ref": VIEW[A]},
     {"where_sighted_refs": 1, "observed_data_refs": 1}, ()),
    ("created-by-and-markings",
     {"type": "indicator", "created_by_ref": AUTHOR, "object_marking_refs": [TLP_AMBER, MARK]},
     {"type": "indicator", "object_marking_refs": [TLP_AMBER, MARK]},
     {"created_by_ref": 1}, ()),
    ("granular-marking-to-hidden-definition-goes",
     {"type": "indicator", "granular_markings": [
         {"marking_ref": MARK, "selectors": ["name"]},
         {"marking_ref": HIDDEN, "selectors": ["description"]},
         {"lang": "en", "selectors": ["name"]}]},
     {"type": "indicator", "granular_markings": [
         {"marking_ref": MARK, "selectors": ["name"]},
         {"lang": "en", "selectors": ["name"]}]},
     {"granular_markings[1].marking_ref": 1}, ()),
    ("granular-marking-with-lang-keeps-lang",
     {"type": "indicator", "granular_markings": [
         {"marking_ref": HIDDEN, "lang": "fr", "selectors": ["name"]}]},
     {"type": "indicator", "granular_markings": [{"lang": "fr", "selectors": ["name"]}]},
     {"granular_markings[0].marking_ref": 1}, ()),
    ("nested-refs-in-extensions",
     {"type": "malware", "extensions": {EXT: {"extension_type": "property-extension",
                                              "x_origin_ref": A,
                                              "inner": {"sample_refs": [B, HIDDEN]}}}},
     {"type": "malware", "extensions": {EXT: {"extension_type": "property-extension",
                                              "x_origin_ref": VIEW[A],
                                              "inner": {"sample_refs": [VIEW[B]]}}}},
     {f"extensions.{EXT}.inner.sample_refs": 1}, ()),
    ("custom-property-refs-in-a-list-of-objects",
     {"type": "x-custom", "x_links": [{"x_target_ref": HIDDEN}, {"x_target_ref": B}]},
     {"type": "x-custom", "x_links": [{}, {"x_target_ref": VIEW[B]}]},
     {"x_links[0].x_target_ref": 1}, ()),
    ("a-ref-property-that-is-not-an-id-is-left-alone",
     {"type": "x-custom", "x_note_ref": "see page 4", "x_refs": ["chapter 2"]},
     {"type": "x-custom", "x_note_ref": "see page 4", "x_refs": ["chapter 2"]}, {}, ()),
    ("network-traffic-needs-one-end",
     {"type": "network-traffic", "src_ref": HIDDEN, "dst_ref": A},
     {"type": "network-traffic", "dst_ref": VIEW[A]}, {"src_ref": 1}, ()),
    ("network-traffic-without-either-end",
     {"type": "network-traffic", "src_ref": HIDDEN},
     {"type": "network-traffic"}, {"src_ref": 1}, ("src_ref/dst_ref",)),
    ("observed-data-with-embedded-objects-survives",
     {"type": "observed-data", "object_refs": [HIDDEN], "objects": {"0": {"type": "file"}}},
     {"type": "observed-data", "objects": {"0": {"type": "file"}}}, {"object_refs": 1}, ()),
]


@pytest.mark.parametrize(("obj", "expected", "dropped", "missing"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_references(obj: dict[str, Any], expected: dict[str, Any],
                            dropped: dict[str, int], missing: tuple[str, ...]) -> None:
    before = json.dumps(obj, sort_keys=True)
    out = rewrite_references(obj, resolve)
    assert out.obj == expected
    assert out.dropped == dropped
    assert out.missing == missing
    assert json.dumps(obj, sort_keys=True) == before  # the input is not modified


def test_references_finds_every_depth_but_not_the_signature() -> None:
    obj = {"type": "report", "created_by_ref": AUTHOR, "object_refs": [A, B],
           "granular_markings": [{"marking_ref": MARK, "selectors": ["name"]}],
           "extensions": {EXT: {"extension_type": "property-extension", "x_ref": HIDDEN},
                          EXTENSION_ID: {"kid": "x", "x_ref": NODE}}}
    assert references(obj) == {AUTHOR, A, B, MARK, HIDDEN}


POLICY_FILES = {
    "community.yaml": b"name: c\nmembers:\n  - name: UZ-CERT\n    constituents:\n"
                      b"      - name: UZ-SOC\n  - name: PK-CERT\n",
    "redaction/soc.yaml": b"name: soc\ndescription: d\ndrop: [description, external_references]\n",
    "agreements/a.yaml": b"id: a\ntitle: t\nparties: [UZ-CERT, PK-CERT]\n"
                         b"valid_from: 2026-01-01T00:00:00Z\nvalid_until: 2028-01-01T00:00:00Z\n"
                         b"redaction:\n  parties: {}\n  constituents: soc\n",
    "collections.yaml": b"collections:\n  jwg:\n    agreement: a\n",
}


def _report() -> dict[str, Any]:
    return {
        "type": "report", "spec_version": "2.1",
        "id": "report--88888888-8888-4888-8888-888888888888",
        "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
        "name": "APT report", "description": "analyst narrative", "report_types": ["threat-report"],
        "published": "2026-06-01T00:00:00.000Z", "created_by_ref": AUTHOR,
        "object_refs": [A, HIDDEN, B], "object_marking_refs": [TLP_AMBER],
        "external_references": [{"source_name": "vendor", "url": "https://example.org/r"}],
    }


def _registry(key: Any) -> Any:
    record = KeyRecord(kid=key.kid, alg=key.alg, public_pem=key.public_pem(),
                       owner_identity=NODE, valid_from=0, valid_until=None, status="active",
                       compromised_since=None)
    return read_registry(registry_document([PublishedKey(record, "node", "exchange node")],
                                           node_identity=NODE))


def test_a_copy_is_graph_true_records_its_drops_and_verifies_as_node_attested() -> None:
    policy = parse_policies(POLICY_FILES)
    key = generate("Ed25519")
    transforms = (Redact("soc"), AnonymiseProducer())
    original = _report()
    copy = derive(original, transforms, policy, resolve, key=key,
                  signed_at="2026-06-01T00:00:00.000Z")
    assert copy.body is not None
    assert copy.id == derived_id(original["id"], transforms)
    obj = json.loads(copy.body)
    assert obj["id"] == copy.id
    assert obj["object_refs"] == [VIEW[A], VIEW[B]]
    assert "description" not in obj
    assert "created_by_ref" not in obj
    provenance, drop = obj["external_references"]
    assert provenance["source_name"] == PROVENANCE_SOURCE
    assert provenance["external_id"] == original["id"]
    assert (drop["source_name"], drop["external_id"]) == (DROPPED_SOURCE, "object_refs")
    assert HIDDEN not in copy.body.decode()  # a drop never names what it dropped
    verdict = check_object(_registry(key), obj, now=2**62)
    assert (verdict.status, verdict.node_attested) == ("valid", True)
    # the same inputs give the same bytes
    again = derive(original, transforms, policy, resolve, key=key,
                   signed_at="2026-06-01T00:00:00.000Z")
    assert again.body == copy.body


def test_a_copy_that_loses_a_required_reference_is_withheld() -> None:
    policy = parse_policies(POLICY_FILES)
    relationship = {
        "type": "relationship", "spec_version": "2.1",
        "id": "relationship--99999999-9999-4999-8999-999999999999",
        "created": "2026-06-01T00:00:00.000Z", "modified": "2026-06-01T00:00:00.000Z",
        "relationship_type": "indicates", "source_ref": HIDDEN, "target_ref": B,
    }
    copy = derive(relationship, (Redact("soc"),), policy, resolve, key=generate("Ed25519"))
    assert copy.body is None
    assert "source_ref" in copy.withheld


def test_a_tampered_copy_does_not_verify() -> None:
    policy = parse_policies(POLICY_FILES)
    key = generate("Ed25519")
    copy = derive(_report(), (Redact("soc"),), policy, resolve, key=key)
    assert copy.body is not None
    obj = json.loads(copy.body)
    obj["object_refs"].append(HIDDEN)
    verdict = check_object(_registry(key), obj, now=2**62)
    assert verdict.status == "invalid"
