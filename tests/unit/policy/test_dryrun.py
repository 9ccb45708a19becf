"""dry-run: who would receive each object of an unpublished bundle, and why."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_EXTENSION_ID
from exchange.policy.dryrun import dry_run, format_dry_run
from exchange.policy.engine import Recipient
from exchange.policy.load import load_policies
from exchange.policy.model import frozen_map
from exchange.policy.redact import redact_properties
from exchange.policy.schema import parse_timestamp
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID

POLICY = load_policies(Path(__file__).resolve().parents[3] / "policies")
NOW = parse_timestamp("2026-06-01T00:00:00Z")
PK_ID = "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb"
SOC_ID = "identity--cccd6599-f5aa-5f67-a3d1-712fc4a09685"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
STRICT = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
ELASTIC_CLEAR = "marking-definition--11111111-1111-4111-8111-111111111111"
UNKNOWN = "marking-definition--00000000-0000-4000-8000-000000000000"

RECIPIENTS = [
    Recipient("UZ-CERT", "identity--05f58713-053b-5b2c-b92a-050f448178b8", None, "uz-analyst",
              "publisher", "taxii"),
    Recipient("UZ-SOC", SOC_ID, "UZ-CERT", "uz-soc", "consumer", "taxii"),
    Recipient("UZ-CERT", "identity--05f58713-053b-5b2c-b92a-050f448178b8", None, None,
              "misp", "misp"),
    Recipient("JWG-Operator", None, None, "auditor", "auditor", "taxii"),
]


def indicator(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{n:08x}-0000-4000-8000-000000000000",
            "created_by_ref": PK_ID, **extra}


BUNDLE = [
    {"type": "marking-definition", "spec_version": "2.1", "id": ELASTIC_CLEAR,
     "created": "2022-10-01T00:00:00.000Z", "definition_type": "tlp",
     "definition": {"tlp": "clear"}},
    indicator(1, object_marking_refs=[GREEN]),
    indicator(2, object_marking_refs=[STRICT]),
    indicator(3, object_marking_refs=[RED], extensions={RED_RECIPIENTS_EXTENSION_ID: {
        "extension_type": "property-extension", "recipients": [SOC_ID]}}),
    indicator(4),  # unmarked: the collection's default (AMBER)
    indicator(5, object_marking_refs=[UNKNOWN]),
    indicator(6, object_marking_refs=[ELASTIC_CLEAR]),
]


def receivers(entry: Any) -> list[tuple[str, str]]:
    return [(r.org_name, r.channel) for r in entry.receivers]


def test_dry_run_per_object() -> None:
    entries = dry_run(POLICY, BUNDLE, RECIPIENTS, now=NOW, collection_alias="jwg",
                      producer_org_name="PK-CERT")
    by_id = {e.object_id: e for e in entries}
    assert len(entries) == len(BUNDLE)
    assert by_id[ELASTIC_CLEAR].outcomes == ()
    assert "travels with the objects" in by_id[ELASTIC_CLEAR].note
    green = by_id[indicator(1)["id"]]
    assert (green.tlp, green.tlp_explicit) == (Tlp.GREEN, True)
    assert receivers(green) == [("UZ-CERT", "taxii"), ("UZ-SOC", "taxii"), ("UZ-CERT", "misp")]
    strict = by_id[indicator(2)["id"]]
    assert receivers(strict) == [("UZ-CERT", "taxii")]
    assert [d.rule for _, d in strict.outcomes] == [
        "tlp-amber-strict-party:uz-pk-jwg-2026",
        "deny-tlp-amber-strict-constituent:uz-pk-jwg-2026",
        "deny-reshare-misp:uz-pk-jwg-2026",
        "deny-tlp-amber-strict-not-party:uz-pk-jwg-2026",
    ]
    assert receivers(by_id[indicator(3)["id"]]) == [("UZ-SOC", "taxii")]
    unmarked = by_id[indicator(4)["id"]]
    assert (unmarked.tlp, unmarked.tlp_explicit) == (Tlp.AMBER, False)
    assert receivers(unmarked) == [("UZ-CERT", "taxii"), ("UZ-SOC", "taxii"),
                                   ("UZ-CERT", "misp")]
    refused = by_id[indicator(5)["id"]]
    assert refused.error is not None
    assert "unknown marking-definition" in refused.error
    assert refused.outcomes == ()
    assert by_id[indicator(6)["id"]].tlp is Tlp.CLEAR
    assert len(by_id[indicator(6)["id"]].receivers) == 4


def test_dry_run_resolves_the_producer_from_pinned_identities() -> None:
    orgs = dict(POLICY.community.orgs)
    orgs["PK-CERT"] = dataclasses.replace(orgs["PK-CERT"], identity=PK_ID)
    pinned = dataclasses.replace(POLICY, community=dataclasses.replace(
        POLICY.community, orgs=frozen_map(orgs)))
    pk = Recipient("PK-CERT", PK_ID, None, "pk-analyst", "publisher", "taxii")
    [entry] = dry_run(pinned, [indicator(2, object_marking_refs=[STRICT])], [pk], now=NOW,
                      collection_alias="jwg")
    assert entry.outcomes[0][1].rule == "producer"
    [unresolved] = dry_run(POLICY, [indicator(2, object_marking_refs=[STRICT])], [pk],
                           now=NOW, collection_alias="jwg")
    assert "producer not resolved" in unresolved.note
    assert unresolved.outcomes[0][1].rule == "tlp-amber-strict-party:uz-pk-jwg-2026"
    [registered] = dry_run(POLICY, [indicator(2, object_marking_refs=[STRICT])], [pk],
                           now=NOW, collection_alias="jwg", org_by_identity={PK_ID: "PK-CERT"})
    assert registered.outcomes[0][1].rule == "producer"


def test_dry_run_refuses_an_envelope_redefining_tlp() -> None:
    redefined = {"type": "marking-definition", "id": GREEN, "extensions": {
        TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "clear"}}}
    entries = dry_run(POLICY, [redefined, indicator(1, object_marking_refs=[GREEN])],
                      RECIPIENTS, now=NOW, collection_alias="jwg")
    assert all(e.error and "redefines TLP:GREEN" in e.error for e in entries)


def test_format_dry_run_is_readable() -> None:
    entries = dry_run(POLICY, BUNDLE, RECIPIENTS, now=NOW, collection_alias="jwg",
                      producer_org_name="PK-CERT")
    text = format_dry_run(entries, POLICY.digest)
    assert text.splitlines()[0] == f"policy {POLICY.digest}"
    assert (f"{indicator(4)['id']} (indicator, TLP:AMBER, collection default)"
            in text.splitlines())
    assert ("  + UZ-SOC (account uz-soc, consumer) via taxii "
            "[tlp-amber-constituent:uz-pk-jwg-2026] transforms: redact(jwg-constituents)"
            in text.splitlines())
    assert "  ! ingest would refuse it: unknown marking-definition" in text


def test_redaction_profile_drops_and_replaces_without_touching_the_original() -> None:
    original = indicator(1, name="C2", description="seen by analysts",
                         external_references=[{"source_name": "x"}])
    redacted = redact_properties(original, POLICY.redaction_profiles["jwg-constituents"])
    assert "description" not in redacted
    assert "external_references" not in redacted
    assert redacted["id"] == original["id"]
    assert redacted["name"] == "C2"
    assert original["description"] == "seen by analysts"
    profile = dataclasses.replace(POLICY.redaction_profiles["jwg-constituents"],
                                  replace=frozen_map({"name": "JWG indicator",
                                                      "labels": "x"}))
    assert redact_properties(original, profile)["name"] == "JWG indicator"
    assert "labels" not in redact_properties(original, profile)
