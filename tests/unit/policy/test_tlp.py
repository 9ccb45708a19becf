"""TLP level under a policy (fail closed), inline markings, and RED recipients."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from exchange.errors import InvalidObject
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_EXTENSION_ID
from exchange.policy.load import load_policies
from exchange.policy.model import frozen_map
from exchange.policy.tlp import (
    RED_RECIPIENTS_EXTENSION_ID,
    inline_markings,
    inline_tlp_of,
    level_of,
    marking_refs_of,
    red_recipients_of,
)

POLICY = load_policies(Path(__file__).resolve().parents[3] / "policies")

TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP2_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP2_STRICT = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
OPENCTI_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"
TLP2_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
PAP_GREEN = "marking-definition--c43594d1-4b11-4c59-93ab-1c9b14d53ce9"
JWG_STATEMENT = "marking-definition--ad4604ef-83fd-406e-8d48-1e691c156526"
UNKNOWN = "marking-definition--00000000-0000-4000-8000-000000000000"
# The id a third-party "skills" file circulates for AMBER+STRICT; it does not exist.
BOGUS_STRICT = "marking-definition--826578e1-40a3-4b46-a8d8-b9931fdd750e"
UZ = "identity--05f58713-053b-5b2c-b92a-050f448178b8"
PK = "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb"


@pytest.mark.parametrize(("refs", "level"), [
    ([], None),
    ([TLP1_WHITE], Tlp.CLEAR),
    ([TLP1_GREEN], Tlp.GREEN),
    ([TLP2_AMBER], Tlp.AMBER),
    ([TLP2_STRICT], Tlp.AMBER_STRICT),
    ([OPENCTI_STRICT, TLP2_STRICT], Tlp.AMBER_STRICT),
    ([TLP2_RED], Tlp.RED),
    ([PAP_GREEN], None),
    ([PAP_GREEN, JWG_STATEMENT, TLP2_AMBER], Tlp.AMBER),
], ids=["none", "white", "green", "amber", "strict", "opencti-strict", "red", "pap-only",
        "pap-statement-amber"])
def test_level_of_known_markings(refs: list[str], level: Tlp | None) -> None:
    assert level_of(refs, POLICY) is level


@pytest.mark.parametrize("ref", [UNKNOWN, BOGUS_STRICT])
def test_unknown_marking_is_refused_fail_closed(ref: str) -> None:
    with pytest.raises(InvalidObject, match="unknown marking-definition") as info:
        level_of([TLP1_GREEN, ref], POLICY)
    assert "refused (fail closed) unless a policy names it" in info.value.reason


def test_policy_names_an_extra_marking_and_its_level() -> None:
    policy = dataclasses.replace(POLICY, markings=frozen_map({UNKNOWN: Tlp.AMBER_STRICT}))
    assert level_of([UNKNOWN], policy) is Tlp.AMBER_STRICT
    assert level_of([UNKNOWN, OPENCTI_STRICT], policy) is Tlp.AMBER_STRICT
    with pytest.raises(InvalidObject, match=r"conflicting TLP markings on one object: GREEN,"
                                            r" AMBER\+STRICT"):
        level_of([UNKNOWN, TLP1_GREEN], policy)


def test_conflicting_tlp_levels_are_refused() -> None:
    with pytest.raises(InvalidObject, match="conflicting TLP markings on one object: CLEAR, RED"):
        level_of([TLP2_RED, TLP1_WHITE], POLICY)


def _tlp1(ident: str, colour: str) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": ident,
            "created": "2022-10-01T00:00:00.000Z", "definition_type": "tlp",
            "name": f"TLP:{colour.upper()}", "definition": {"tlp": colour}}


def _tlp2(ident: str, level: str) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": ident,
            "created": "2022-10-01T00:00:00.000Z", "name": f"TLP:{level.upper()}",
            "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension",
                                               "tlp_2_0": level}}}


def test_inline_tlp_markings_are_known_for_the_envelope() -> None:
    elastic_clear = "marking-definition--11111111-1111-4111-8111-111111111111"
    envelope = [
        _tlp1(elastic_clear, "clear"),  # TLP 1.0 form with a TLP 2.0 colour (Elastic)
        _tlp2(TLP2_AMBER, "amber"),  # the OASIS object itself, sent inline
        {"type": "marking-definition", "id": UNKNOWN, "definition_type": "statement",
         "definition": {"statement": "Copyright"}},
        {"type": "indicator", "id": "indicator--22222222-2222-4222-8222-222222222222"},
    ]
    inline = inline_markings(envelope)
    assert inline == {elastic_clear: Tlp.CLEAR, TLP2_AMBER: Tlp.AMBER, UNKNOWN: None}
    assert level_of([elastic_clear], POLICY, inline) is Tlp.CLEAR
    # An inline statement says what it is and carries no level: known, and the object
    # gets its TLP from its TLP marking (or its collection's default without one).
    assert level_of([UNKNOWN], POLICY, inline) is None
    assert level_of([UNKNOWN, TLP2_AMBER], POLICY, inline) is Tlp.AMBER
    # Without the statement in the envelope, the policy does not name it: refused.
    with pytest.raises(InvalidObject, match="unknown marking-definition"):
        level_of([UNKNOWN], POLICY, {})


def test_an_inline_marking_whose_meaning_is_not_written_in_it_stays_unknown() -> None:
    pap_like = {"type": "marking-definition", "id": UNKNOWN, "extensions": {
        "extension-definition--f8d78575-edfd-406e-8e84-6162a8450f5b":
            {"extension_type": "property-extension", "pap": "amber"}}}
    assert inline_markings([pap_like]) == {}
    with pytest.raises(InvalidObject, match="unknown marking-definition"):
        level_of([UNKNOWN], POLICY, inline_markings([pap_like]))


def test_one_id_as_tlp_and_as_statement_is_refused() -> None:
    statement = {"type": "marking-definition", "id": UNKNOWN, "definition_type": "statement",
                 "definition": {"statement": "Copyright"}}
    for envelope in ([_tlp1(UNKNOWN, "green"), statement], [statement, _tlp1(UNKNOWN, "green")]):
        with pytest.raises(InvalidObject, match="defined twice"):
            inline_markings(envelope)


@pytest.mark.parametrize(("envelope", "phrase"), [
    ([_tlp2(TLP1_GREEN, "red")], "redefines TLP:GREEN as TLP:RED"),
    ([_tlp1(UNKNOWN, "green"), _tlp1(UNKNOWN, "amber")], "defined twice"),
    ([_tlp1(UNKNOWN, "purple")], "unknown TLP level 'purple'"),
    ([{**_tlp1(UNKNOWN, "green"), **_tlp2(UNKNOWN, "red")}], "two different TLP levels"),
], ids=["redefine-known", "twice", "bad-colour", "both-forms-disagree"])
def test_bad_inline_markings_are_refused(envelope: list[dict[str, Any]], phrase: str) -> None:
    with pytest.raises(InvalidObject, match=phrase):
        inline_markings(envelope)


def test_inline_tlp_of_non_tlp_marking() -> None:
    assert inline_tlp_of({"definition_type": "statement", "definition": {}}) is None


def test_marking_refs_include_granular_markings() -> None:
    obj = {"object_marking_refs": [TLP1_GREEN],
           "granular_markings": [{"marking_ref": TLP2_RED, "selectors": ["description"]},
                                 {"lang": "uz", "selectors": ["name"]}]}
    assert marking_refs_of(obj) == (TLP1_GREEN, TLP2_RED)
    with pytest.raises(InvalidObject, match="conflicting"):
        level_of(marking_refs_of(obj), POLICY)


def _red(content: Any) -> dict[str, Any]:
    return {"type": "indicator", "extensions": {RED_RECIPIENTS_EXTENSION_ID: content}}


def test_red_recipients_of() -> None:
    assert red_recipients_of({"type": "indicator"}) == ()
    ext = {"extension_type": "property-extension", "recipients": [UZ, PK, UZ]}
    assert red_recipients_of(_red(ext)) == (UZ, PK)


@pytest.mark.parametrize(("content", "phrase"), [
    ([UZ], "must be an object"),
    ({"extension_type": "toplevel-property-extension", "recipients": [UZ]}, "extension_type"),
    ({"extension_type": "property-extension", "recipients": []}, "non-empty"),
    ({"extension_type": "property-extension", "recipients": UZ}, "non-empty"),
    ({"extension_type": "property-extension", "recipients": ["UZ-CERT"]},
     "'UZ-CERT' is not an identity id"),
    ({"extension_type": "property-extension", "recipients": [UZ], "cc": [PK]},
     "unknown properties: cc"),
    ({"extension_type": "property-extension",
      "recipients": [f"identity--{i:08x}-0000-4000-8000-000000000000" for i in range(65)]},
     "at most 64"),
], ids=["not-object", "wrong-type", "empty", "not-list", "name-not-id", "extra", "too-many"])
def test_malformed_red_recipients_are_refused(content: Any, phrase: str) -> None:
    with pytest.raises(InvalidObject, match=phrase):
        red_recipients_of(_red(content))
