"""normal_form(checked=True): the timestamp rewrites learned per shape give stix2's bytes.

The pull signs every converted MISP object as a node attestation; ``checked`` lets the
normal form skip stix2 for a shape stix2 has already normalised (changing nothing but
timestamp digits). Here every object of the real MISP events and STIX files, and
Hypothesis-made objects, goes through both paths, and the bytes must be equal.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import ExchangeError, InvalidObject
from exchange.misp.convert import ConversionFailed, convert_event
from exchange.model.limits import Limits
from exchange.model.stix import validate_object
from exchange.signing.canonical import EXTENSION_ID, canonical, normal_form
from tests.unit.misp.test_convert import FILES, OWNER, events_of

#: The module (the package exports its function of the same name).
canonical_module = importlib.import_module("exchange.signing.canonical")
REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
ENTRY = {"extension_type": "property-extension", "v": 1, "alg": "Ed25519",
         "kid": "sha256:" + "A" * 43, "canon": "jcs-rfc8785",
         "signed_at": "2026-12-05T10:00:00.000Z"}


@pytest.fixture(autouse=True)
def fresh_plans() -> Iterator[None]:
    canonical_module._PLANS.clear()
    yield
    canonical_module._PLANS.clear()


def with_entry(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "extensions": {**obj.get("extensions", {}), EXTENSION_ID: dict(ENTRY)}}


def checked_objects() -> list[dict[str, Any]]:
    """Every object of the real MISP events (converted) and STIX 2.1 files that passes the
    strict ingest check, with a node's cx-sig entry (as the pull signs them)."""
    out: list[dict[str, Any]] = []
    for relative in FILES:
        for event in events_of(relative):
            try:
                out += convert_event(event, owner_identity=OWNER).objects
            except ConversionFailed:
                continue
    for path in sorted((REAL / "stix21").glob("*.json")):
        out += json.loads(path.read_text()).get("objects", [])
    kept = []
    for obj in out:
        try:
            validate_object(obj, Limits())
        except ExchangeError:
            continue
        kept.append(with_entry(obj))
    return kept


def reference(obj: dict[str, Any]) -> bytes | type[Exception]:
    try:
        return canonical(normal_form(obj))
    except InvalidObject as e:
        return type(e)


def fast(obj: dict[str, Any]) -> bytes | type[Exception]:
    try:
        return canonical(normal_form(obj, checked=True))
    except InvalidObject as e:
        return type(e)


def test_real_objects_same_bytes_as_stix2_and_most_take_the_fast_path() -> None:
    objects = checked_objects()
    assert len(objects) > 1000
    for obj in objects + objects:  # the second round finds every shape learned
        assert fast(obj) == reference(obj), obj["id"]
    assert canonical_module._PLANS, "no shape was learned"
    shapes = {canonical_module._shape(obj) for obj in objects}
    assert len(shapes) < len(objects) / 3


def test_the_learned_rewrite_is_the_one_stix2_makes() -> None:
    indicator = with_entry({
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--e614704c-d912-4213-bf6a-290ddb807166",
        "created": "2026-12-05T23:09:15.000Z", "modified": "2026-12-05T23:09:15.000Z",
        "pattern": "[ipv4-addr:value = '10.3.116.11']", "pattern_type": "stix",
        "pattern_version": "2.1", "valid_from": "2026-12-05T23:09:15.000Z"})
    first = normal_form(indicator, checked=True)
    assert first["valid_from"] == "2026-12-05T23:09:15Z"  # stix2 drops zero digits
    other = {**indicator, "id": "indicator--75b760dc-906c-4cba-b135-59d9109a69c3",
             "valid_from": "2027-01-02T03:04:05.000Z"}
    second = normal_form(other, checked=True)
    assert second["valid_from"] == "2027-01-02T03:04:05Z"
    assert canonical(second) == canonical(normal_form(other))
    assert second is not other
    assert second["extensions"] is not other["extensions"]


def test_a_shape_stix2_changes_otherwise_is_never_cached() -> None:
    revoked_false = with_entry({
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--e614704c-d912-4213-bf6a-290ddb807166",
        "created": "2026-12-05T23:09:15.000Z", "modified": "2026-12-05T23:09:15.000Z",
        "pattern": "[ipv4-addr:value = '10.3.116.11']", "pattern_type": "stix",
        "valid_from": "2026-12-05T23:09:15Z", "revoked": False})
    assert "revoked" not in normal_form(revoked_false, checked=True)
    assert "pattern_version" in normal_form(revoked_false, checked=True)
    assert not canonical_module._PLANS


_timestamps = st.builds(
    lambda day, seconds, fraction: f"2026-{day // 28 + 1:02d}-{day % 28 + 1:02d}T"
    f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    f"{'.' + fraction if fraction else ''}Z",
    st.integers(0, 300), st.integers(0, 86399),
    st.text("0123456789", max_size=6) | st.sampled_from(["", "000", "100", "120", "000000"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_timestamps, _timestamps, _timestamps,
                          st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)),
                min_size=1, max_size=6))
def test_generated_objects_same_bytes_as_stix2(rows: list[tuple[str, str, str, str]]) -> None:
    canonical_module._PLANS.clear()
    for number, (first, later, valid_from, name) in enumerate(rows):
        created, modified = sorted((first, later))
        obj = with_entry({
            "type": "indicator", "spec_version": "2.1",
            "id": f"indicator--e614704c-d912-4213-bf6a-{number:012d}",
            "created": created, "modified": modified, "name": name,
            "pattern": "[domain-name:value = 'a.example']", "pattern_type": "stix",
            "valid_from": valid_from, "labels": ["x"]})
        try:
            validate_object({k: v for k, v in obj.items() if k != "extensions"}, Limits())
        except ExchangeError:
            continue
        assert fast(obj) == reference(obj)


FRACTIONS = ["", "0", "1", "00", "10", "12", "000", "100", "120", "123", "0000", "1230",
             "12345", "123400", "123456", "000000"]


def test_every_fraction_form_through_one_cache() -> None:
    """Every pairing of fraction forms in created/modified (millisecond precision) and
    valid_from (any precision), one after another through the same learned plans."""
    seen = 0
    for created in FRACTIONS:
        for valid_from in FRACTIONS:
            for second in ("05", "06"):
                stamp = f"2026-12-05T23:09:{second}"
                obj = with_entry({
                    "type": "indicator", "spec_version": "2.1",
                    "id": "indicator--e614704c-d912-4213-bf6a-290ddb807166",
                    "created": f"{stamp}{'.' + created if created else ''}Z",
                    "modified": f"{stamp}{'.' + created if created else ''}Z",
                    "pattern": "[ipv4-addr:value = '10.3.116.11']", "pattern_type": "stix",
                    "pattern_version": "2.1",
                    "valid_from": f"{stamp}{'.' + valid_from if valid_from else ''}Z"})
                assert fast(obj) == reference(obj), (created, valid_from)
                seen += 1
    assert seen == 2 * len(FRACTIONS) ** 2
    assert canonical_module._PLANS
