"""Revoked versions (STIX 2.1 section 3.6): strictly later, the reason kept, the old
signature gone, still a valid object that can be signed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exchange.errors import InvalidObject
from exchange.model.limits import Limits
from exchange.model.stix import validate_object
from exchange.model.stixkinds import parse_timestamp
from exchange.signing.canonical import EXTENSION_ID, normal_form
from exchange.signing.cxsig import sign_object, signature_of, verify_object
from exchange.signing.revocation import REVOCATION_SOURCE, revocation_reason, revoked_version
from tests.unit.signing.helpers import SIGNED_AT, fixed_key, indicator, resolver

KEY = fixed_key("Ed25519", 1)
LATER = datetime(2025, 6, 1, 12, 0, 0, 987654, tzinfo=UTC)


def signed(**changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), KEY, signed_at=SIGNED_AT)


def test_revoked_version_is_a_new_valid_version_with_the_reason() -> None:
    original = signed()
    new = revoked_version(original, "false positive: sinkholed", now=LATER)
    assert new["revoked"] is True
    assert new["modified"] == "2025-06-01T12:00:00.987Z"  # milliseconds, truncated
    assert new["id"] == original["id"]
    assert new["created"] == original["created"]
    assert new["pattern"] == original["pattern"]
    assert signature_of(new) is None  # the old signature does not cover it
    assert new["external_references"][:-1] == original["external_references"]
    assert new["external_references"][-1] == {"source_name": REVOCATION_SOURCE,
                                              "description": "false positive: sinkholed"}
    assert revocation_reason(new) == "false positive: sinkholed"
    assert original.get("revoked") is None  # not modified in place
    assert validate_object(new, Limits()).revoked is True
    resigned = sign_object(normal_form(new), KEY, signed_at=SIGNED_AT)
    assert verify_object(resigned, resolver(KEY)).kid == KEY.kid


@pytest.mark.parametrize(("modified", "expected"), [
    pytest.param("2025-06-01T12:00:00.987Z", "2025-06-01T12:00:00.988Z", id="same-ms"),
    pytest.param("2025-06-01T12:00:00.987999Z", "2025-06-01T12:00:00.988Z", id="same-ms-us"),
    pytest.param("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.001Z", id="clock-behind"),
])
def test_modified_is_strictly_later_even_when_the_clock_is_not(modified: str,
                                                              expected: str) -> None:
    new = revoked_version(indicator(modified=modified), "withdrawn", now=LATER)
    assert new["modified"] == expected
    assert parse_timestamp(new["modified"]) > parse_timestamp(modified)  # type: ignore[operator]


def test_other_extensions_are_kept() -> None:
    other = "extension-definition--6859b3dc-d65f-409b-a17a-fb127c6b16eb"
    obj = signed(extensions={other: {"extension_type": "property-extension",
                                     "recipients": ["identity--5c0bb7c1-9a4e-4b83-8f67-"
                                                    "0c4f1e2d3a11"]}})
    new = revoked_version(obj, "withdrawn", now=LATER)
    assert list(new["extensions"]) == [other]
    assert EXTENSION_ID not in new["extensions"]


@pytest.mark.parametrize(("obj", "reason", "message"), [
    pytest.param(indicator(revoked=True), "again", "is already revoked", id="already"),
    pytest.param({"type": "ipv4-addr", "spec_version": "2.1", "value": "203.0.113.7",
                  "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"}, "gone",
                 "has no versions in STIX 2.1", id="sco"),
    pytest.param(indicator(), "  ", "needs a reason", id="empty-reason"),
    pytest.param(indicator(), "x" * 1001, "at most 1000", id="long-reason"),
    pytest.param(indicator(), "bad\x00reason", "control characters", id="control-chars"),
    pytest.param(indicator(modified="yesterday"), "why", "not a STIX timestamp",
                 id="bad-modified"),
])
def test_refusals(obj: dict[str, Any], reason: str, message: str) -> None:
    with pytest.raises(InvalidObject, match=message):
        revoked_version(obj, reason, now=LATER)
