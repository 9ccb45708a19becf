"""sign_validated(..., verdict=...): a node attestation that carries the caller's strict
check over to the signed object must return exactly what checking it again returns.

Every object of the real MISP events (converted) and STIX 2.1 files is attested twice, once
with the verdict of its own check and once without, through one shape cache (so most take
the path that skips the second check); the results must be equal field for field, and the
bytes must be the canonical bytes of the signed object. Objects whose normal form changes
something (a timestamp stix2 writes differently) must be checked again, and refused where
the check refuses them.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.errors import ExchangeError, LimitExceeded
from exchange.model.limits import Limits
from exchange.model.objects import StixObject
from exchange.model.stix import validate_object
from exchange.signing.canonical import EXTENSION_ID, canonical
from exchange.signing.cxsig import sign_validated, verify_object
from exchange.signing.keys import generate
from tests.unit.signing.test_normal_shape import checked_objects

canonical_module = importlib.import_module("exchange.signing.canonical")
KEY = generate("Ed25519")  # deterministic signatures: both paths sign the same bytes
SIGNED_AT = "2026-12-06T02:00:00.000Z"


@pytest.fixture(autouse=True)
def fresh_plans() -> Iterator[None]:
    canonical_module._PLANS.clear()
    yield
    canonical_module._PLANS.clear()


def _without_entry(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    del out["extensions"][EXTENSION_ID]
    if not out["extensions"]:
        del out["extensions"]
    return out


def _attest(obj: dict[str, Any], *, with_verdict: bool,
            limits: Limits | None = None) -> StixObject | str:
    limits = limits or Limits()
    try:
        verdict = validate_object(obj, limits)
        return sign_validated(obj, KEY, signed_at=SIGNED_AT, attest=True, resign=True,
                              checked=True, limits=limits,
                              verdict=verdict if with_verdict else None)
    except ExchangeError as e:
        return f"{type(e).__name__}: {e.reason}"


def _fields(result: StixObject | str) -> Any:
    if isinstance(result, str):
        return result
    return (result.id, result.type, result.spec_version, result.created, result.modified,
            result.created_by_ref, result.marking_refs, result.revoked, result.tlp,
            result.canonical, result.data)


def test_real_objects_the_same_with_or_without_the_verdict(
        monkeypatch: pytest.MonkeyPatch) -> None:
    objects = [_without_entry(o) for o in checked_objects()]
    assert len(objects) > 1000
    checks = _count_checks(monkeypatch)
    skipped = 0
    for obj in objects + objects:  # the second round finds every shape learned
        before = len(checks)
        fast = _attest(copy.deepcopy(obj), with_verdict=True)
        skipped += len(checks) == before and isinstance(fast, StixObject)
        slow = _attest(copy.deepcopy(obj), with_verdict=False)
        assert _fields(fast) == _fields(slow), obj["id"]
        if isinstance(fast, StixObject):
            assert fast.canonical == canonical(fast.data)
            assert verify_object(fast.data, lambda _kid: KEY.public_key).kid == KEY.kid
    assert skipped > len(objects) / 2, "the second check was hardly ever skipped"


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the objects the signer checks (its own validate_object calls)."""
    cxsig = importlib.import_module("exchange.signing.cxsig")
    calls: list[str] = []

    def counted(obj: Any, limits: Limits) -> StixObject:
        calls.append(str(obj["id"]))
        return validate_object(obj, limits)

    monkeypatch.setattr(cxsig, "validate_object", counted)
    return calls


def _indicator(**changes: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1",
           "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
           "created": "2026-12-01T10:00:00.000Z", "modified": "2026-12-01T10:00:00.000Z",
           "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
           "pattern_version": "2.1", "valid_from": "2026-12-01T10:00:00Z"}
    obj.update(changes)
    return obj


def test_only_a_normal_form_that_changes_nothing_skips_the_second_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_checks(monkeypatch)
    # No fraction: stix2 writes ``created`` and ``modified`` with milliseconds, so the
    # object signed is not the object checked, and is checked again.
    micro = _indicator(created="2026-12-01T10:00:00Z", modified="2026-12-01T10:00:00Z")
    plain = _indicator()
    for learned in (False, True):  # the first time through stix2, then the learned shape
        for obj, again in ((micro, 1), (plain, 0 if learned else 1)):
            calls.clear()
            fast = _attest(copy.deepcopy(obj), with_verdict=True)
            assert isinstance(fast, StixObject)
            assert len(calls) == again
            assert fast.data["created"] == "2026-12-01T10:00:00.000Z"
            calls.clear()
            assert _fields(fast) == _fields(_attest(copy.deepcopy(obj), with_verdict=False))


def test_the_size_limit_applies_to_the_signed_bytes() -> None:
    obj = _indicator()
    size = len(canonical(obj))
    limits = Limits(max_object_bytes=size + 20)  # the object fits, signed it does not
    for _ in range(2):
        got = _attest(copy.deepcopy(obj), with_verdict=True, limits=limits)
        assert isinstance(got, str)
        assert got.startswith(LimitExceeded.__name__)
        assert "limit is" in got


def test_the_entry_twice_in_the_object_is_canonicalised_again() -> None:
    """A nested copy of the very entry the signer writes (same kid, same time) makes the
    byte splice ambiguous; the signed bytes must still be those of the signed object."""
    entry = {"extension_type": "property-extension", "v": 1, "alg": KEY.alg,
             "kid": KEY.kid, "canon": "jcs-rfc8785", "signed_at": SIGNED_AT}
    ext = "extension-definition--0f7cd7b8-5f23-4d0e-a4a1-0a1d3c7c8a11"
    obj = _indicator(extensions={ext: {"extension_type": "property-extension",
                                       "copy": {EXTENSION_ID: entry}}})
    for _ in range(2):
        fast = _attest(copy.deepcopy(obj), with_verdict=True)
        assert isinstance(fast, StixObject)
        assert fast.canonical == canonical(fast.data)
        assert _fields(fast) == _fields(_attest(copy.deepcopy(obj), with_verdict=False))


def test_a_verdict_on_another_object_is_refused() -> None:
    obj, other = _indicator(), _indicator()
    with pytest.raises(ValueError, match="verdict"):
        sign_validated(obj, KEY, attest=True, verdict=validate_object(other, Limits()))
    with pytest.raises(ValueError, match="verdict"):
        sign_validated(obj, KEY, verdict=validate_object(obj, Limits()))  # not an attestation


def test_the_payload_is_made_from_the_verdicts_bytes_for_most_real_objects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality test above compares signatures, so it holds the spliced payload equal
    to the object's canonical bytes; this one makes sure the splice is what it compared
    (SCOs, whose members all sort after "extensions", among them)."""
    cxsig = importlib.import_module("exchange.signing.cxsig")
    made: list[str] = []
    real = cxsig._payload_from

    def spied(verdict: StixObject | None, *args: Any) -> bytes | None:
        payload = real(verdict, *args)
        if payload is not None and verdict is not None:
            made.append(str(verdict.data["type"]))
        return payload

    monkeypatch.setattr(cxsig, "_payload_from", spied)
    objects = [_without_entry(o) for o in checked_objects()]
    for obj in objects + objects:
        fast = _attest(copy.deepcopy(obj), with_verdict=True)
        if isinstance(fast, StixObject):
            assert fast.canonical == canonical(fast.data)
    assert len(made) > len(objects) / 2
    assert "indicator" in made
    assert {"ipv4-addr", "domain-name", "url", "file"} & set(made)


def test_an_object_that_is_not_plain_is_encoded_again_not_spliced() -> None:
    """Bytes that may not parse back as the object (a NUL in a string, which the strict
    parser refuses; a float, which RFC 8785 may write as an out-of-range integer) are
    never spliced: the payload is canonicalised and read back, and refused exactly as
    without a verdict."""
    cases = (({"x_cx_score": 1.5}, None), ({"x_cx_score": 1e17}, "would not parse back"),
             ({"description": "a\x00b"}, "NUL characters are refused"))
    for changes, refusal in cases:
        obj = _indicator(**changes)
        assert not validate_object(copy.deepcopy(obj), Limits()).plain
        for _ in range(2):
            fast = _attest(copy.deepcopy(obj), with_verdict=True)
            assert _fields(fast) == _fields(_attest(copy.deepcopy(obj), with_verdict=False))
            if refusal is not None:
                assert isinstance(fast, str)
                assert refusal in fast
            else:
                assert isinstance(fast, StixObject)
                assert fast.canonical == canonical(fast.data)
