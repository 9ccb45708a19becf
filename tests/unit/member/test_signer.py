"""Signing what a member publishes: normal form, authorship kept, and what is left alone."""

from __future__ import annotations

from typing import Any

from exchange.member.signer import sign_all
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.signing.canonical import EXTENSION_ID, canonical
from exchange.signing.cxsig import sign_object, verify_object
from tests.unit.signing.helpers import OWNER, SIGNED_AT, fixed_key, indicator, resolver

KEY = fixed_key("Ed25519")
TLP1_AMBER = {
    "type": "marking-definition", "spec_version": "2.1",
    "id": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp", "name": "TLP:AMBER",
    "definition": {"tlp": "amber"},
}


def not_normal() -> dict[str, Any]:
    obj = indicator(id="indicator--11111111-2222-4333-8444-555555555555")
    del obj["pattern_version"]  # stix2 adds it back
    return obj


def test_objects_in_normal_form_are_signed_in_order() -> None:
    objects = [indicator(), indicator(id="indicator--0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d")]
    report = sign_all(objects, KEY, normalise=False, signed_at=SIGNED_AT)
    assert report.signed == [o["id"] for o in objects]
    assert report.refused == report.kept == report.normalised == []
    for before, after in zip(objects, report.objects, strict=True):
        verify_object(after, resolver(KEY))
        assert after["id"] == before["id"]
    assert "extensions" not in objects[0]  # the input is not modified


def test_without_normalise_an_object_not_in_normal_form_is_refused_with_a_hint() -> None:
    report = sign_all([indicator(), not_normal()], KEY, normalise=False)
    assert report.signed == [indicator()["id"]]
    [(label, reason)] = report.refused
    assert label == not_normal()["id"]
    assert "pattern_version" in reason
    assert reason.endswith("run with --normalise to sign the normal form instead")
    assert report.objects[1] == not_normal()


def test_normalise_signs_the_normal_form_and_reports_it() -> None:
    report = sign_all([indicator(), not_normal()], KEY, normalise=True, signed_at=SIGNED_AT)
    assert report.normalised == [not_normal()["id"]]
    assert report.signed == [indicator()["id"], not_normal()["id"]]
    assert report.objects[1]["pattern_version"] == "2.1"
    verify_object(report.objects[1], resolver(KEY))


def test_authorship_is_kept_as_it_is_and_scos_are_signed() -> None:
    orphan = indicator()
    del orphan["created_by_ref"]  # a report whose author is not named
    vendor = indicator(id="indicator--0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d",
                       created_by_ref="identity--7e1d2c3b-4a59-4687-9f0e-1d2c3b4a5968")
    sco = {"type": "ipv4-addr", "spec_version": "2.1",
           "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3"}
    report = sign_all([orphan, vendor, sco, indicator()], KEY, normalise=True,
                      signed_at=SIGNED_AT)
    assert report.refused == []
    assert [o.get("created_by_ref") for o in report.objects] == [
        None, vendor["created_by_ref"], None, OWNER]
    for signed in report.objects:
        assert verify_object(signed, resolver(KEY)).kid == KEY.kid


def test_tlp_definitions_and_signed_objects_are_kept_as_they_are() -> None:
    already = sign_object(indicator(), fixed_key("ECDSA-P256"), signed_at=SIGNED_AT)
    tlp2 = {"type": "marking-definition", "id": TLP2_IDS[Tlp.GREEN]}
    report = sign_all([TLP1_AMBER, already, tlp2], KEY, normalise=True)
    assert report.kept == [(TLP1_AMBER["id"], "predefined TLP marking definition"),
                           (already["id"], "already signed"),
                           (tlp2["id"], "predefined TLP marking definition")]
    assert [canonical(o) for o in report.objects] == [canonical(TLP1_AMBER), canonical(already),
                                                      canonical(tlp2)]
    assert EXTENSION_ID not in report.objects[0].get("extensions", {})
    assert report.signed == []
