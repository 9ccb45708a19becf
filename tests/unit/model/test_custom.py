"""Custom content as STIX 2.1 section 11 (and 7.3) allows it: accepted, checked, never dropped.

Both validation paths (the property tables and stix2 itself) must give the same verdict,
so each case runs through :func:`validate_object` and :func:`validate_with_stix2`.
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange.errors import InvalidObject
from exchange.model.limits import Limits
from exchange.model.stix import (
    CustomContent,
    custom_content_of,
    validate_object,
    validate_with_stix2,
)

LIMITS = Limits()
IDENTITY = "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff"
EXT = "extension-definition--d83fce45-ef58-4c6c-a3f4-1fbc32e98c6e"
GREEN_1 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"

INDICATOR: dict[str, Any] = {
    "type": "indicator", "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "created_by_ref": IDENTITY,
    "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
    "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
    "valid_from": "2024-03-01T10:00:00Z",
}  # fmt: skip
ATTACK_PATTERN: dict[str, Any] = {  # as MITRE ATT&CK writes them, custom properties included
    "type": "attack-pattern", "spec_version": "2.1",
    "id": "attack-pattern--20fb2507-d71c-455d-9b6d-6104461cf26b",
    "created": "2019-03-29T19:00:55.901Z", "modified": "2021-03-12T14:31:54.295Z",
    "name": "Data Encrypted for Impact", "x_mitre_platforms": ["Linux", "Windows"],
    "x_mitre_is_subtechnique": False, "x_mitre_version": "1.2",
    "x_panw_parent_technique": {"name": "x", "refs": 2},
}  # fmt: skip
LEGACY_OBJECT: dict[str, Any] = {
    "type": "x-acme-campaign-note", "spec_version": "2.1",
    "id": "x-acme-campaign-note--0c0eaf8c-f6a1-4fa2-a2a3-9bcdf1b5a6c7",
    "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
    "created_by_ref": IDENTITY, "x_text": "seen in three constituents", "severity": 4,
}  # fmt: skip
NEW_SCO: dict[str, Any] = {
    "type": "acme-beacon", "id": "acme-beacon--5a27d487-c542-5f97-a131-a8866b477b46",
    "jitter": 0.2, "interval_seconds": 60,
    "extensions": {EXT: {"extension_type": "new-sco"}},
}  # fmt: skip
EXTENSION_DEFINITION: dict[str, Any] = {
    "type": "extension-definition", "spec_version": "2.1", "id": EXT,
    "created_by_ref": IDENTITY, "created": "2024-03-01T10:00:00.000Z",
    "modified": "2024-03-01T10:00:00.000Z", "name": "ACME beacon",
    "schema": "https://acme.example/schemas/beacon.json", "version": "1.0.0",
    "extension_types": ["new-sco"],
}  # fmt: skip
FILE_WITH_NTFS: dict[str, Any] = {
    "type": "file", "spec_version": "2.1",
    "id": "file--5a27d487-c542-5f97-a131-a8866b477b46", "name": "a.exe",
    "extensions": {"ntfs-ext": {"sid": "S-1-5-21", "x_acme_owner": "svc"}},
}  # fmt: skip


def _with(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(obj)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _both_accept(obj: dict[str, Any]) -> None:
    for check in (validate_object, validate_with_stix2):
        stored = check(obj, LIMITS)
        assert stored.data == obj  # nothing dropped, nothing added


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(_with(INDICATOR, x_score=7), id="legacy-x-property"),
        pytest.param(_with(INDICATOR, acme_score=7), id="unprefixed-custom-property"),
        pytest.param(ATTACK_PATTERN, id="mitre-attack-pattern"),
        pytest.param(
            _with(INDICATOR, x_score=7,
                  granular_markings=[{"marking_ref": GREEN_1, "selectors": ["name"]}],
                  name="n"),
            id="custom-property-with-granular-markings-stix2-path",
        ),
        pytest.param(
            _with(INDICATOR, x_score=7,
                  extensions={EXT: {"extension_type": "toplevel-property-extension"}}),
            id="toplevel-property-extension",
        ),
        pytest.param(FILE_WITH_NTFS, id="custom-property-in-predefined-sco-extension"),
        pytest.param(LEGACY_OBJECT, id="legacy-x-custom-object"),
        pytest.param(
            _with(LEGACY_OBJECT, type="acme-thing",
                  id="acme-thing--0c0eaf8c-f6a1-4fa2-a2a3-9bcdf1b5a6c7",
                  extensions={EXT: {"extension_type": "new-sdo"}}),
            id="new-sdo",
        ),
        pytest.param(NEW_SCO, id="new-sco-without-spec-version-or-timestamps"),
        pytest.param(EXTENSION_DEFINITION, id="extension-definition"),
    ],
)
def test_custom_content_is_accepted_unchanged(obj: dict[str, Any]) -> None:
    _both_accept(obj)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param(_with(INDICATOR, x_score=None), "'x_score' is null", id="null-custom"),
        pytest.param(_with(INDICATOR, x_tags=[]), "'x_tags' is an empty list", id="empty-list"),
        pytest.param(_with(INDICATOR, x_source_ref="not-an-id"), "must be an identifier",
                     id="custom-ref-not-an-identifier"),
        pytest.param(_with(INDICATOR, xy=1), "at least 3 characters", id="short-name"),
        pytest.param(_with(ATTACK_PATTERN, created_by_ref=None), "'created_by_ref' is null",
                     id="null-common-property"),
        pytest.param(
            {**FILE_WITH_NTFS, "extensions": {"ntfs-ext": {"sid": "S-1", "x_a": None}}},
            "is null", id="null-custom-in-sco-extension",
        ),
        pytest.param(_with(LEGACY_OBJECT, spec_version=...), "spec_version is missing",
                     id="legacy-custom-object-without-spec-version"),
        pytest.param(_with(LEGACY_OBJECT, created_by_ref="malware--31b940d4-6f7f-459a-80ea-"
                                                         "9c1f17b5891b"),
                     "'created_by_ref' must refer to identity", id="custom-object-bad-author"),
        pytest.param(_with(LEGACY_OBJECT, modified="2020-01-01T00:00:00.000Z"),
                     "'modified' is earlier than 'created'", id="custom-object-modified-early"),
        pytest.param(_with(LEGACY_OBJECT, labels="x"), "'labels' must be a non-empty list",
                     id="custom-object-common-property-kind"),
        pytest.param(_with(LEGACY_OBJECT, granular_markings=[{"selectors": ["x_text"]}]),
                     "exactly one of marking_ref and lang", id="custom-object-granular"),
        pytest.param(_with(NEW_SCO, created="2024-03-01T10:00:00.000Z"),
                     "'created' is not a property of acme-beacon", id="new-sco-with-created"),
        pytest.param(_with(EXTENSION_DEFINITION, extension_types=["new-thing"]),
                     "extension_types", id="extension-definition-unknown-type"),
    ],
)
def test_custom_content_is_checked(obj: dict[str, Any], reason: str) -> None:
    for check in (validate_object, validate_with_stix2):
        with pytest.raises(InvalidObject, match=None) as caught:
            check(obj, LIMITS)
        assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(INDICATOR, CustomContent(False, ()), id="none"),
        pytest.param(ATTACK_PATTERN, CustomContent(False, (
            "x_mitre_is_subtechnique", "x_mitre_platforms", "x_mitre_version",
            "x_panw_parent_technique")), id="legacy-properties"),
        pytest.param(FILE_WITH_NTFS, CustomContent(False, ("extensions.ntfs-ext.x_acme_owner",)),
                     id="in-sco-extension"),
        pytest.param(LEGACY_OBJECT, CustomContent(True, ()), id="legacy-object"),
        pytest.param(NEW_SCO, CustomContent(True, ()), id="new-sco"),
        pytest.param(EXTENSION_DEFINITION, CustomContent(False, ()), id="extension-definition"),
        pytest.param(_with(INDICATOR, extensions={EXT: {"extension_type": "property-extension",
                                                        "rank": 1}}),
                     CustomContent(False, ()), id="property-extension-is-not-custom"),
    ],
)
def test_custom_content_of(obj: dict[str, Any], expected: CustomContent) -> None:
    assert custom_content_of(obj) == expected
    assert custom_content_of(obj).empty is (expected == CustomContent(False, ()))
