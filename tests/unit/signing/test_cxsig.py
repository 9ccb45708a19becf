"""The embedded cx-sig v1 signature (exchange.signing.cxsig): signing, verifying, attacks.

Every attack runs for Ed25519 and ECDSA P-256. A test here fails when an attack that
should be refused verifies, or when it is refused for another reason than the one named.
"""

from __future__ import annotations

import copy
import glob
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stix2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.errors import ExchangeError, InvalidObject, LimitExceeded, SignatureError
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.objects import Tlp
from exchange.model.stix import validate_object
from exchange.model.tlp import TLP2_IDS
from exchange.signing.canonical import (
    EXTENSION_ID,
    PAYLOAD_TYPE,
    canonical,
    normal_form,
    pae,
    require_normal_form,
    without_signature,
)
from exchange.signing.cxsig import (
    ENTRY_MEMBERS,
    ENTRY_SCHEMA,
    extension_definition,
    extension_definition_json,
    sign_object,
    sign_validated,
    signature_of,
    verify_object,
)
from exchange.signing.keys import ALGORITHMS, Algorithm, KeyId, PublicKey, SigningKey
from tests.unit.signing.helpers import (
    OTHER,
    SIGNED_AT,
    b64url,
    entry,
    fixed_key,
    indicator,
    resolver,
    tampered,
    unb64url,
)

REAL = sorted(glob.glob("/work/shared/data/real/stix21/*.json"))
DEFINITION_FILE = (
    Path(__file__).resolve().parents[3] / "exchange/signing/cx-sig-v1.extension-definition.json"
)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
LIMITS = Limits()


@pytest.fixture(params=ALGORITHMS)
def key(request: pytest.FixtureRequest) -> SigningKey:
    return fixed_key(request.param)


def _signed(key: SigningKey, **changes: Any) -> dict[str, Any]:
    return sign_object(indicator(**changes), key, signed_at=SIGNED_AT)


def _all_keys() -> list[SigningKey]:
    return [fixed_key(alg, n) for alg in ALGORITHMS for n in (1, 2)]


def _trust_all() -> Callable[[KeyId], PublicKey]:
    return resolver(*_all_keys())


# --- signing ------------------------------------------------------------------------------


def test_sign_then_verify(key: SigningKey) -> None:
    original = indicator()
    signed = sign_object(original, key, signed_at=SIGNED_AT)
    assert original == indicator()  # the input is not modified
    assert entry(signed).keys() == ENTRY_MEMBERS
    assert entry(signed) | {"sig": "-"} == {
        "extension_type": "property-extension",
        "v": 1,
        "alg": key.alg,
        "kid": key.kid,
        "canon": "jcs-rfc8785",
        "signed_at": SIGNED_AT,
        "sig": "-",
    }
    verified = verify_object(signed, resolver(key))
    assert (verified.kid, verified.alg, verified.signed_at) == (key.kid, key.alg, SIGNED_AT)
    assert verified.signed_bytes == canonical(without_signature(signed))
    validate_object(signed, LIMITS)  # still a valid object for the strict ingest profile


def test_signature_covers_pae_of_canonical_object_without_sig(key: SigningKey) -> None:
    signed = _signed(key)
    message = pae(PAYLOAD_TYPE, canonical(without_signature(signed)))
    key.public_key.verify(message, unb64url(entry(signed)["sig"]))


def test_signed_at_defaults_to_now_in_millisecond_form(key: SigningKey) -> None:
    stamp = entry(sign_object(indicator(), key))["signed_at"]
    assert len(stamp) == len("2025-01-01T00:00:00.000Z")
    assert stamp.endswith("Z")
    assert stamp > "2025-01-01"


def test_sign_keeps_other_extensions(key: SigningKey) -> None:
    other = {
        "extension-definition--0b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d": {
            "extension_type": "property-extension",
            "rank": 3,
        }
    }
    signed = _signed(key, extensions=copy.deepcopy(other))
    assert signed["extensions"].keys() == {EXTENSION_ID, *other}
    verify_object(signed, resolver(key))
    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_object(
            tampered(signed, lambda o: o["extensions"].pop(next(iter(other)))), resolver(key)
        )


def test_sign_refuses_an_already_signed_object(key: SigningKey) -> None:
    signed = _signed(key)
    with pytest.raises(SignatureError, match="already carries a cx-sig signature"):
        sign_object(signed, key)


def test_resign_replaces_the_old_signature(key: SigningKey) -> None:
    signed = _signed(key)
    other = fixed_key(key.alg, 2)
    resigned = sign_object(signed, other, signed_at="2025-03-02T00:00:00.000Z", resign=True)
    assert entry(resigned)["kid"] == other.kid
    verify_object(resigned, resolver(other))
    with pytest.raises(SignatureError, match="is not registered"):
        verify_object(resigned, resolver(key))


def test_objects_without_created_by_ref_are_signed_too(key: SigningKey) -> None:
    """An SCO has no author and a relayed report may name none: the contributor signs."""
    obj = indicator()
    del obj["created_by_ref"]
    verify_object(sign_object(obj, key), resolver(key))
    sco = {"type": "ipv4-addr", "spec_version": "2.1",
           "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3"}
    signed = sign_object(sco, key)
    assert signed["extensions"][EXTENSION_ID]["kid"] == key.kid
    assert verify_object(signed, resolver(key)).kid == key.kid


def test_sign_refuses_objects_not_in_normal_form(key: SigningKey) -> None:
    with pytest.raises(InvalidObject, match="not in normal form") as caught:
        sign_object(indicator(created="2025-02-27T11:04:05.1Z"), key)
    assert "'created'" in caught.value.reason
    # The fix the reason suggests works.
    fixed = normal_form(indicator(created="2025-02-27T11:04:05.1Z"))
    verify_object(sign_object(fixed, key), resolver(key))


def test_sign_refuses_malformed_signed_at(key: SigningKey) -> None:
    with pytest.raises(InvalidObject, match="signed_at"):
        sign_object(indicator(), key, signed_at="2025-03-01 09:30:00")


def test_sign_refuses_invalid_stix(key: SigningKey) -> None:
    with pytest.raises(InvalidObject, match="confidence"):
        sign_object(indicator(confidence=101), key)


def test_sign_refuses_content_that_cannot_be_read_back(key: SigningKey) -> None:
    # RFC 8785 writes the double 1e17 as 100000000000000000: an integer the strict parser
    # (and RFC 8785) refuse, so no verifier could read the signed bytes back.
    ext = {
        "extension-definition--0b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d": {
            "extension_type": "property-extension",
            "size": 1e17,
        }
    }
    with pytest.raises(InvalidObject, match="would not parse back"):
        sign_object(indicator(extensions=ext), key)


# --- the round trip is skipped only where it cannot fail -----------------------------------
# The signer reads its canonical bytes back only when the object holds something that might
# not survive (a float, a NUL, other types, deep nesting, a payload over the body limit);
# these tests fail if any of those escapes the check.

_EXT = "extension-definition--0b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _with(value: Any) -> dict[str, Any]:
    return indicator(extensions={_EXT: {"extension_type": "property-extension", "v": value}})


@pytest.mark.parametrize("attest", [False, True])
@pytest.mark.parametrize("value", [1e17, [1, {"deep": -1e16}], {"a": [2.0**60]}])
def test_floats_are_still_read_back_in_every_mode(key: SigningKey, attest: bool,
                                                  value: Any) -> None:
    for sign in (sign_object, sign_validated):
        with pytest.raises(InvalidObject, match="would not parse back"):
            sign(_with(value), key, signed_at=SIGNED_AT, attest=attest)


def test_a_float_that_reads_back_is_signed_and_verifies(key: SigningKey) -> None:
    signed = sign_object(_with(0.5), key, signed_at=SIGNED_AT)
    assert signed["extensions"][_EXT]["v"] == 0.5
    verify_object(parse_json(canonical(signed), Limits()), resolver(key))


def test_a_nul_character_is_still_refused_by_the_round_trip(key: SigningKey) -> None:
    # RFC 8785 writes NUL as \u0000, which the strict parser refuses.
    with pytest.raises(InvalidObject, match=r"would not parse back.*NUL"):
        sign_object(_with("a\x00b"), key, signed_at=SIGNED_AT)
    obj = indicator(extensions={_EXT: {"extension_type": "property-extension",
                                       "a\x00b": 1}})
    with pytest.raises(InvalidObject, match=r"would not parse back.*NUL"):
        sign_object(obj, key, signed_at=SIGNED_AT)


def test_nesting_and_size_limits_still_apply_to_the_signed_bytes(key: SigningKey) -> None:
    # object > extensions > entry > list > list: five levels
    with pytest.raises(LimitExceeded, match="nests 5 levels deep, limit is 4"):
        sign_object(_with([["x"]]), key, signed_at=SIGNED_AT, limits=Limits(max_depth=4))
    sign_object(_with([["x"]]), key, signed_at=SIGNED_AT, limits=Limits(max_depth=5))
    with pytest.raises(LimitExceeded, match=r"body is .* bytes, limit is 500"):
        sign_object(indicator(), key, signed_at=SIGNED_AT, limits=Limits(max_body_bytes=500))


def test_an_attestation_leaves_the_input_alone_and_shares_nothing(key: SigningKey) -> None:
    obj = indicator(extensions={_EXT: {"extension_type": "property-extension", "v": [1]}},
                    labels=["malicious-activity"])
    before = copy.deepcopy(obj)
    signed = sign_object(obj, key, signed_at=SIGNED_AT, attest=True)
    assert obj == before
    signed["labels"].append("changed")
    signed["extensions"][_EXT]["v"].append(2)
    signed["extensions"]["x"] = 1
    assert obj == before


def test_sign_validated_is_the_strict_check_of_what_sign_object_returns(
        key: SigningKey) -> None:
    for attest in (False, True):
        checked = sign_validated(indicator(), key, signed_at=SIGNED_AT, attest=attest)
        signed = sign_object(indicator(), key, signed_at=SIGNED_AT, attest=attest)
        again = validate_object(signed, Limits())
        if key.alg == "Ed25519":  # deterministic signatures: the very same bytes
            assert checked.data == signed
            assert checked.canonical == again.canonical
        assert checked.canonical == canonical(checked.data)
        assert (checked.id, checked.tlp, checked.version) == (again.id, again.tlp,
                                                              again.version)
        verify_object(checked.data, resolver(key))
    with pytest.raises(InvalidObject, match="confidence"):
        sign_validated(indicator(confidence=101), key)


# --- attacks on the embedded form ---------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        target: Any = obj
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


ENTRY = ("extensions", EXTENSION_ID)
NOT_VERIFY = "signature does not verify"

# (change to the signed object, expected reason)
ATTACKS: list[Any] = [
    pytest.param(_set(("name",), "Harmless page"), NOT_VERIFY, id="changed-name"),
    pytest.param(
        _set(("pattern",), "[url:value = 'https://example.org/']"), NOT_VERIFY, id="changed-pattern"
    ),
    pytest.param(
        _set(("object_marking_refs",), [TLP2_IDS[Tlp.CLEAR]]), NOT_VERIFY, id="changed-tlp-marking"
    ),
    pytest.param(_delete(("object_marking_refs",)), NOT_VERIFY, id="removed-tlp-marking"),
    pytest.param(_set(("created_by_ref",), OTHER), NOT_VERIFY, id="forged-created-by-ref"),
    pytest.param(
        _set(("modified",), "2025-03-05T00:00:00.000Z"), NOT_VERIFY, id="replayed-on-new-version"
    ),
    pytest.param(_set(("revoked",), True), NOT_VERIFY, id="added-revoked"),
    pytest.param(_set(("confidence",), 81), NOT_VERIFY, id="changed-number"),
    pytest.param(_set(("labels", 1), "Credential-theft"), NOT_VERIFY, id="changed-list-item"),
    pytest.param(
        _set(("labels",), ["credential-theft", "phishing"]), NOT_VERIFY, id="reordered-list"
    ),
    pytest.param(
        _set(("description",), indicator()["description"] + " "), NOT_VERIFY, id="trailing-space"
    ),
    pytest.param(
        _set(("name",), indicator()["name"].replace("\u0430", "a", 1)), NOT_VERIFY, id="homoglyph"
    ),
    pytest.param(_set(("x_note",), "hello"), NOT_VERIFY, id="added-property"),
    pytest.param(
        _set((*ENTRY, "signed_at"), "2025-03-01T09:30:01.000Z"), NOT_VERIFY, id="changed-signed-at"
    ),
    pytest.param(_set((*ENTRY, "sig"), b64url(b"\x00" * 64)), NOT_VERIFY, id="zero-signature"),
    pytest.param(_delete(ENTRY), "object is not signed", id="signature-stripped"),
    pytest.param(_delete(("extensions",)), "object is not signed", id="extensions-stripped"),
    pytest.param(
        _set((*ENTRY, "kid"), "sha256:" + "A" * 43), "is not registered", id="unknown-kid"
    ),
    pytest.param(_set((*ENTRY, "sig"), "A" * 85), "unpadded base64url", id="truncated-sig"),
    pytest.param(_set((*ENTRY, "sig"), "!" * 86), "unpadded base64url", id="non-base64-sig"),
    pytest.param(_set((*ENTRY, "sig"), "A" * 86 + "=="), "unpadded base64url", id="padded-sig"),
    pytest.param(
        _set((*ENTRY, "sig"), "A" * 85 + "B"),
        "not canonical base64url",
        id="non-canonical-sig-bits",
    ),
    pytest.param(_set((*ENTRY, "sig"), 12), "'sig' must be a string", id="sig-not-string"),
    pytest.param(
        _set((*ENTRY, "x_extra"), 1), "unexpected member(s) 'x_extra'", id="entry-extra-member"
    ),
    pytest.param(_set((*ENTRY, "v"), 2), "must be the integer 1", id="entry-v-2"),
    pytest.param(_set((*ENTRY, "v"), True), "must be the integer 1", id="entry-v-true"),
    pytest.param(_set((*ENTRY, "v"), 1.5), "must be the integer 1", id="entry-v-float"),
    pytest.param(_set((*ENTRY, "alg"), "RS256"), "'alg' must be one of", id="entry-alg-unknown"),
    pytest.param(_set((*ENTRY, "alg"), "none"), "'alg' must be one of", id="entry-alg-none"),
    pytest.param(_set((*ENTRY, "kid"), "key-1"), "'kid' must be sha256:", id="entry-kid-malformed"),
    pytest.param(_set((*ENTRY, "canon"), "json-sorted"), "'canon' must be", id="entry-canon-other"),
    pytest.param(
        _set((*ENTRY, "extension_type"), "toplevel-property-extension"),
        "extension_type",
        id="entry-extension-type",
    ),
    pytest.param(
        _set((*ENTRY, "signed_at"), "yesterday"),
        "'signed_at' must be a UTC timestamp",
        id="entry-signed-at-malformed",
    ),
    pytest.param(_set(ENTRY, "signed"), "must be a JSON object", id="entry-not-object"),
    *(
        pytest.param(_delete((*ENTRY, member)), f"lacks '{member}'", id=f"entry-missing-{member}")
        for member in sorted(ENTRY_MEMBERS)
    ),
]


@pytest.mark.parametrize(("change", "reason"), ATTACKS)
def test_attack_is_refused(
    key: SigningKey, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    signed = _signed(key)
    verify_object(signed, _trust_all())  # the untouched object verifies
    attacked = tampered(signed, change)
    with pytest.raises(SignatureError) as caught:
        verify_object(attacked, _trust_all())
    assert reason in caught.value.reason
    assert caught.value.reason.startswith(signed["id"])


def test_signature_moved_to_another_object(key: SigningKey) -> None:
    first = _signed(key)
    second = indicator(id="indicator--0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a", name="Other")
    second["extensions"] = copy.deepcopy(first["extensions"])
    with pytest.raises(SignatureError, match=NOT_VERIFY):
        verify_object(second, resolver(key))


def test_signature_of_another_object_by_the_same_key(key: SigningKey) -> None:
    first, second = _signed(key), _signed(key, name="Other name")
    swapped = tampered(first, _set((*ENTRY, "sig"), entry(second)["sig"]))
    with pytest.raises(SignatureError, match=NOT_VERIFY):
        verify_object(swapped, resolver(key))


def test_kid_of_another_registered_key(key: SigningKey) -> None:
    other = fixed_key(key.alg, 2)
    attacked = tampered(_signed(key), _set((*ENTRY, "kid"), other.kid))
    with pytest.raises(SignatureError, match=NOT_VERIFY):
        verify_object(attacked, resolver(key, other))


def test_algorithm_mismatch_is_refused(key: SigningKey) -> None:
    # The entry names the key correctly but claims the other algorithm: the key decides.
    other_alg = next(alg for alg in ALGORITHMS if alg != key.alg)
    attacked = tampered(_signed(key), _set((*ENTRY, "alg"), other_alg))
    with pytest.raises(SignatureError, match="algorithm mismatch") as caught:
        verify_object(attacked, resolver(key))
    assert f"claims {other_alg}, key {key.kid} is {key.alg}" in caught.value.reason


def test_ed25519_entry_with_an_ecdsa_key_is_refused() -> None:
    ecdsa = fixed_key("ECDSA-P256")
    signed = sign_object(indicator(), ecdsa, signed_at=SIGNED_AT)
    attacked = tampered(signed, _set((*ENTRY, "alg"), "Ed25519"))
    with pytest.raises(SignatureError, match="algorithm mismatch"):
        verify_object(attacked, resolver(ecdsa))


def test_resolver_returning_a_different_key_is_refused(key: SigningKey) -> None:
    other = fixed_key(key.alg, 2).public_key
    with pytest.raises(SignatureError, match="the key resolver returned"):
        verify_object(_signed(key), lambda kid: other)


def test_high_s_twin_of_an_ecdsa_signature_is_refused() -> None:
    key = fixed_key("ECDSA-P256")
    signed = sign_object(indicator(), key, signed_at=SIGNED_AT)
    raw = unb64url(entry(signed)["sig"])
    s = int.from_bytes(raw[32:], "big")
    twin = raw[:32] + (P256_ORDER - s).to_bytes(32, "big")
    with pytest.raises(SignatureError, match="low-S"):
        verify_object(tampered(signed, _set((*ENTRY, "sig"), b64url(twin))), resolver(key))


def test_unsigned_object() -> None:
    assert signature_of(indicator()) is None
    with pytest.raises(SignatureError, match="object is not signed"):
        verify_object(indicator(), _trust_all())


# --- any change breaks the signature (properties) -----------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for name, item in value.items():
            found += _paths(item, (*prefix, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


SIGNED = {alg: sign_object(indicator(), fixed_key(alg), signed_at=SIGNED_AT) for alg in ALGORITHMS}
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT


@st.composite
def _mutations(draw: st.DrawFn, alg: Algorithm) -> dict[str, Any]:
    obj = copy.deepcopy(SIGNED[alg])
    path = draw(st.sampled_from(_paths(obj)))
    parent: Any = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "delete", "add-sibling"]))
    if action == "replace":
        parent[last] = draw(JSON_SCALARS | st.lists(TEXT, max_size=2))
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(TEXT.filter(lambda name: name not in parent))] = draw(JSON_SCALARS)
    else:
        parent.insert(draw(st.integers(0, len(parent))), draw(JSON_SCALARS))
    return obj


@pytest.mark.parametrize("alg", ALGORITHMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_change_to_any_field_breaks_the_signature(alg: Algorithm, data: st.DataObject) -> None:
    mutated = data.draw(_mutations(alg))
    if canonical(mutated) == canonical(SIGNED[alg]):
        return  # e.g. replaced a value by an equal one: nothing changed
    with pytest.raises(SignatureError):
        verify_object(mutated, _trust_all())


def _verdict(data: bytes) -> bytes | None:
    """The canonical bytes of what verifies, or None when refused."""
    try:
        obj = parse_json(data, LIMITS)
        verify_object(obj, _trust_all())
    except ExchangeError:
        return None
    return canonical(obj)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_single_byte_change_is_refused_or_means_the_same(alg: Algorithm) -> None:
    # Flip one bit in each byte of the canonical signed object: either the result is
    # refused, or it parses to the very same object (e.g. a \u escape spelled in capitals).
    original = canonical(SIGNED[alg])
    accepted = 0
    for index in range(len(original)):
        for flip in (0x01, 0x20):
            changed = bytearray(original)
            changed[index] ^= flip
            outcome = _verdict(bytes(changed))
            if outcome is not None:
                assert outcome == original, f"byte {index} ^ {flip:#x} verified as new content"
                accepted += 1
    assert accepted < 5


@pytest.mark.parametrize("alg", ALGORITHMS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_changed_byte_is_refused_or_means_the_same(alg: Algorithm, data: st.DataObject) -> None:
    original = canonical(SIGNED[alg])
    index = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]))
    outcome = _verdict(original[:index] + bytes([value]) + original[index + 1 :])
    assert outcome in (None, original)


# --- transport ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(json.dumps, id="json-dumps"),
        pytest.param(lambda o: json.dumps(o, indent=4, ensure_ascii=False), id="indented-utf8"),
        pytest.param(
            lambda o: json.dumps(dict(reversed(o.items())), ensure_ascii=True),
            id="reordered-ascii-escapes",
        ),
        pytest.param(
            lambda o: stix2.parse(o, allow_custom=True).serialize(pretty=True),
            id="stix2-reserialised",
        ),
        pytest.param(
            lambda o: json.dumps(
                {
                    "type": "bundle",
                    "id": "bundle--6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "objects": [o],
                }
            ),
            id="inside-a-bundle",
        ),
    ],
)
def test_signature_survives_transport(key: SigningKey, dump: Callable[[Any], str]) -> None:
    signed = _signed(key)
    received = parse_json(dump(signed).encode(), LIMITS)
    if received.get("type") == "bundle":
        received = received["objects"][0]
    assert verify_object(received, resolver(key)).signed_bytes == canonical(
        without_signature(signed)
    )


@pytest.mark.parametrize("path", REAL, ids=[Path(p).stem for p in REAL])
def test_real_objects_sign_and_verify_after_transport(path: str) -> None:
    key = fixed_key("Ed25519") if "apt1" not in path else fixed_key("ECDSA-P256")
    bundle = json.loads(Path(path).read_text(encoding="utf-8"))
    test_identity = "identity--0a4d6a54-d5c7-4d0c-8c38-0b2c0e5b1f11"
    normalised = 0
    for original in bundle["objects"]:
        obj = dict(original)
        obj.setdefault("created_by_ref", test_identity)
        try:
            require_normal_form(obj)
        except InvalidObject:
            normalised += 1  # e.g. indicators without pattern_version, 6-digit fractions
            obj = normal_form(obj)
        signed = sign_object(obj, key)
        received = parse_json(json.dumps(signed, indent=2).encode(), LIMITS)
        verified = verify_object(received, resolver(key))
        assert verified.signed_bytes == canonical(without_signature(signed))
        assert received["created_by_ref"] == original.get("created_by_ref", test_identity)
    assert normalised < len(bundle["objects"])


# --- the extension definition -------------------------------------------------------------


def test_extension_definition_file_is_the_published_object() -> None:
    assert DEFINITION_FILE.read_text(encoding="utf-8") == extension_definition_json()
    assert json.loads(DEFINITION_FILE.read_text(encoding="utf-8")) == extension_definition()


def test_extension_definition_is_a_valid_stix_object_in_normal_form() -> None:
    definition = extension_definition()
    validate_object(definition, LIMITS)
    require_normal_form(definition)
    assert definition["id"] == EXTENSION_ID
    assert definition["extension_types"] == ["property-extension"]
    assert PAYLOAD_TYPE in definition["schema"]


def test_entry_schema_matches_the_checks() -> None:
    assert set(ENTRY_SCHEMA["required"]) == ENTRY_MEMBERS
    assert set(ENTRY_SCHEMA["properties"]) == ENTRY_MEMBERS
    assert ENTRY_SCHEMA["additionalProperties"] is False
    assert ENTRY_SCHEMA["properties"]["alg"]["enum"] == list(ALGORITHMS)
    import re  # noqa: PLC0415

    signed = SIGNED["Ed25519"]
    for name in ("kid", "signed_at", "sig"):
        assert re.fullmatch(
            ENTRY_SCHEMA["properties"][name]["pattern"].strip("^$"), entry(signed)[name]
        )
    assert re.fullmatch(ENTRY_SCHEMA["properties"]["sig"]["pattern"].strip("^$"), "A" * 85) is None
