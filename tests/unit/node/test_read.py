"""Which cyber-observables a reader under a redaction profile may receive as stored."""

from __future__ import annotations

import json

import pytest

from exchange.model.objects import CollectionId, OrgId, StixId
from exchange.node.base import ReadResult
from exchange.node.read import _redacted_observable, copied
from exchange.policy import AnonymiseProducer, Redact
from exchange.storage.base import Collection, Page, StoredVersion

PRODUCER, READER = OrgId("org-uz"), OrgId("org-soc")
NAMES = {"jwg-constituents": frozenset({"description", "x_source_note"})}


def row(obj: dict[str, object], producer: OrgId = PRODUCER) -> StoredVersion:
    return StoredVersion(
        collection_id=CollectionId("c"), id=StixId(str(obj["id"])), type=str(obj["type"]),
        spec_version="2.1", version=1, date_added=1, producer_org=producer, tlp=None,
        effective_tlp="green", revoked=False, is_latest=True,
        body=json.dumps(obj).encode())


def read(*transforms: Redact | AnonymiseProducer) -> ReadResult:
    return ReadResult(Collection(CollectionId("c"), "cx", "Joint"), Page([], more=False),
                      transforms, READER)


IP = {"type": "ipv4-addr", "spec_version": "2.1",
      "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3"}


@pytest.mark.parametrize(("obj", "producer", "names", "withheld"), [
    pytest.param(IP, PRODUCER, NAMES, "", id="nothing-the-profile-names"),
    pytest.param({**IP, "x_source_note": "from a takedown"}, PRODUCER, NAMES,
                 "redaction profile jwg-constituents names its x_source_note",
                 id="a-named-custom-property"),
    pytest.param({**IP, "x_source_note": "n"}, READER, NAMES, "", id="the-readers-own"),
    pytest.param({**IP, "x_source_note": "n"}, PRODUCER, {}, "", id="no-redaction"),
])
def test_an_observable_is_served_as_stored_or_withheld(
        obj: dict[str, object], producer: OrgId, names: dict[str, frozenset[str]],
        withheld: str) -> None:
    stored = row(obj, producer)
    result = read(Redact("jwg-constituents"))
    assert not copied(result, stored)  # never a copy under a new id
    assert _redacted_observable(result, stored, names).startswith(withheld)
    assert bool(_redacted_observable(result, stored, names)) == bool(withheld)


def test_an_sdo_is_copied_and_a_marking_definition_is_not() -> None:
    result = read(AnonymiseProducer())
    indicator = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}
    marking = {"type": "marking-definition",
               "id": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"}
    assert copied(result, row(indicator))
    assert not copied(result, row(marking))
    assert not copied(result, row(indicator, READER))
