"""RFC 8785 canonical bytes, DSSE PAE and the normal-form rule (exchange.signing.canonical).

The RFC 8785 vectors are written out from the RFC text: section 3.2.2 (the sample object),
section 3.2.3 (property sorting by UTF-16 code units), section 3.2.4 (UTF-8 output) and
Appendix B (IEEE 754 binary64 values and their ECMAScript serialisation). The PAE vector
is the one in DSSE protocol.md ("Test Vectors").
"""

from __future__ import annotations

import json
import struct
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
import stix2
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidObject
from exchange.signing.canonical import (
    EXTENSION_ID,
    PAYLOAD_TYPE,
    _copy_json,
    canonical,
    normal_form,
    pae,
    require_normal_form,
    signing_input,
    without_signature,
)
from exchange.signing.cxsig import sign_object
from tests.unit.signing.helpers import OWNER, SIGNED_AT, fixed_key, indicator

# --- RFC 8785 -----------------------------------------------------------------------------

# Section 3.2.2, the sample input as JSON text (escapes and number spellings verbatim).
RFC8785_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
# Section 3.2.2/3.2.3, the canonical output (UTF-8; the euro sign is E2 82 AC).
RFC8785_SAMPLE_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()

# Section 3.2.3, sorting of object properties.
RFC8785_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC8785_SORTED_VALUES = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]

# Appendix B: IEEE 754 binary64 (hex) -> ECMAScript serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def test_rfc8785_sample_object() -> None:
    assert canonical(json.loads(RFC8785_SAMPLE_INPUT)) == RFC8785_SAMPLE_OUTPUT


def test_rfc8785_sorts_properties_by_utf16_code_units() -> None:
    data = canonical(json.loads(RFC8785_SORTING_INPUT))
    assert list(json.loads(data).values()) == RFC8785_SORTED_VALUES
    # The emoji (surrogates D83D DE00) sorts before U+FB33: code-point order would not.
    assert data.index("\U0001f600".encode()) < data.index("\ufb33".encode())
    assert data.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')


def test_rfc8785_utf8_output_without_normalisation() -> None:
    # Section 3.2.4: "A\u030a" stays two code points (no NFC), emitted as UTF-8.
    data = canonical({"Unnormalized Unicode": "A\u030a"})
    assert data.hex() == ("7b22556e6e6f726d616c697a656420556e69636f6465223a2241cc8a227d")


@pytest.mark.parametrize(
    ("bits", "expected"), [pytest.param(b, e, id=b) for b, e in RFC8785_NUMBERS]
)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical(value) == expected.encode()
    assert canonical([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1e+30", b"1e+30", id="1e+30"),
        pytest.param("4.50", b"4.5", id="trailing-zero"),
        pytest.param("2e-3", b"0.002", id="small-exponent"),
        pytest.param("1e21", b"1e+21", id="1e21-exponent-form"),
        pytest.param("1e20", b"100000000000000000000", id="1e20-integer-form"),
        pytest.param("0.000001", b"0.000001", id="1e-6-decimal-form"),
        pytest.param("0.0000001", b"1e-7", id="1e-7-exponent-form"),
        pytest.param("-0", b"0", id="minus-zero-integer"),
        pytest.param("-0.0", b"0", id="minus-zero-float"),
        pytest.param("1.0", b"1", id="integral-float"),
        pytest.param("9007199254740991", b"9007199254740991", id="max-safe-integer"),
    ],
)
def test_number_spellings(text: str, expected: bytes) -> None:
    assert canonical(json.loads(text)) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(float("nan"), "NaN or Infinity", id="nan"),
        pytest.param(float("inf"), "NaN or Infinity", id="infinity"),
        pytest.param(2**53, "outside +-(2**53-1)", id="integer-2**53"),
        pytest.param({"a": "\ud800"}, "lone UTF-16 surrogate", id="lone-surrogate"),
        pytest.param({1: "a"}, "keys must be strings", id="non-string-key"),
        pytest.param({"a": {1, 2}}, "not of a JSON type", id="set-value"),
        pytest.param({"a": b"bytes"}, "not of a JSON type", id="bytes-value"),
    ],
)
def test_canonical_refuses_what_rfc8785_cannot_represent(value: Any, reason: str) -> None:
    with pytest.raises(InvalidObject, match="cannot canonicalise") as caught:
        canonical(value)
    assert reason in caught.value.reason


def test_canonical_accepts_a_read_only_mapping() -> None:
    assert canonical(MappingProxyType({"b": 1, "a": [True]})) == b'{"a":[true],"b":1}'


def _reparsable(value: float) -> bool:
    # RFC 8785 writes an integral double of magnitude >= 2**53 (below 1e21) as integer
    # digits, which read back as an integer outside the I-JSON range; sign_object refuses
    # such content (test_cxsig.py::test_sign_refuses_content_that_cannot_be_read_back).
    return not (value.is_integer() and 2**53 <= abs(value) < 1e21)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.floats(allow_nan=False, allow_infinity=False).filter(_reparsable)
        | st.text(st.characters(exclude_categories=["Cs"])),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.text(st.characters(exclude_categories=["Cs"]), max_size=5), inner, max_size=4
            )
        ),
        max_leaves=20,
    )
)
def test_canonical_is_a_fixed_point_of_parsing(value: Any) -> None:
    data = canonical(value)
    assert canonical(json.loads(data)) == data
    if isinstance(value, dict):  # member order of the input never matters
        assert canonical(dict(reversed(list(value.items())))) == data


_ANY_CHAR = st.characters(exclude_categories=["Cs"])
_CONTROLS_AND_QUOTES = st.sampled_from(
    [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "\u2028", "\u2029", "\ufeff",
                                     "\U0001f600", "\ue000", "\uffff", "é"])


@settings(max_examples=500)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.text(_ANY_CHAR)
        | st.text(_CONTROLS_AND_QUOTES),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(_ANY_CHAR, max_size=5) | st.text(_CONTROLS_AND_QUOTES,
                                                                      max_size=3),
                              inner, max_size=5)
        ),
        max_leaves=25,
    )
)
def test_the_fast_encoder_writes_exactly_what_rfc8785_writes(value: Any) -> None:
    """Plain values (no floats) go through the standard library's C encoder, every other
    key or value through rfc8785: the bytes must be the same either way."""
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [
    {"a": 1.0}, {"\U0001f600": 1, "\ue000": 2}, {"k": (1, 2)}, [1.5e300], {"é": [True]},
])
def test_values_the_fast_encoder_does_not_take_still_match_rfc8785(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


# --- DSSE PAE -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload_type", "payload", "expected"),
    [
        pytest.param(
            "http://example.com/HelloWorld",
            b"hello world",
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world",
            id="dsse-protocol-md",
        ),
        pytest.param("", b"", b"DSSEv1 0  0 ", id="empty"),
        pytest.param(
            "t\u00e9", b"\x00\xff", b"DSSEv1 3 t\xc3\xa9 2 \x00\xff", id="utf8-type-binary-body"
        ),
        pytest.param(
            PAYLOAD_TYPE,
            b"{}",
            b"DSSEv1 50 application/vnd.cti-exchange.stix-object+json; v=1 2 {}",
            id="cx-sig-type",
        ),
    ],
)
def test_pae_vectors(payload_type: str, payload: bytes, expected: bytes) -> None:
    assert pae(payload_type, payload) == expected


def test_pae_lengths_separate_type_from_body() -> None:
    # Moving bytes between type and body changes the encoding (no ambiguity).
    assert pae("ab", b"c") != pae("a", b"bc")


# --- signing input ------------------------------------------------------------------------


def test_signing_input_removes_only_sig() -> None:
    signed = sign_object(indicator(), fixed_key("Ed25519"), signed_at=SIGNED_AT)
    stripped = without_signature(signed)
    assert "sig" not in stripped["extensions"][EXTENSION_ID]
    assert stripped["extensions"][EXTENSION_ID]["kid"] == fixed_key("Ed25519").kid
    assert "sig" in signed["extensions"][EXTENSION_ID]  # the input is not modified
    assert signing_input(signed) == pae(PAYLOAD_TYPE, canonical(stripped))
    assert signing_input(signed).startswith(b"DSSEv1 50 " + PAYLOAD_TYPE.encode() + b" ")


def test_without_signature_of_an_unsigned_object_is_a_copy() -> None:
    obj = indicator()
    assert without_signature(obj) == obj
    assert without_signature(obj) is not obj


# --- normal form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param(
            {"created": "2025-02-27T11:04:05.1Z"}, "'created'", id="created-one-digit-fraction"
        ),
        pytest.param(
            {"modified": "2025-02-28T08:15:00Z"}, "'modified'", id="modified-without-fraction"
        ),
        pytest.param(
            {"pattern_version": None}, "'pattern_version'", id="indicator-without-pattern-version"
        ),
        pytest.param({"revoked": False}, "'revoked'", id="revoked-false-is-dropped"),
        pytest.param({"labels": []}, "'labels'", id="empty-list-is-dropped"),
    ],
)
def test_require_normal_form_names_the_property(changes: dict[str, Any], named: str) -> None:
    obj = indicator(**changes)
    if changes.get("pattern_version", "") is None:
        del obj["pattern_version"]
    with pytest.raises(InvalidObject, match="not in normal form") as caught:
        require_normal_form(obj)
    assert named in caught.value.reason
    assert obj["id"] in caught.value.reason
    fixed = normal_form(obj)
    require_normal_form(fixed)  # the fixed point passes
    assert normal_form(fixed) == fixed


def test_the_stix2_timestamp_rewrite_is_reported() -> None:
    with pytest.raises(InvalidObject) as caught:
        require_normal_form(indicator(created="2025-02-27T11:04:05.1Z"))
    assert (
        '"2025-02-27T11:04:05.1Z"; stix2 writes "2025-02-27T11:04:05.100Z"' in caught.value.reason
    )


def test_the_cx_sig_entry_survives_the_normal_form_check() -> None:
    signed = sign_object(indicator(), fixed_key("ECDSA-P256"), signed_at=SIGNED_AT)
    require_normal_form(signed)
    reemitted = json.loads(stix2.parse(signed, allow_custom=False, version="2.1").serialize())
    assert canonical(reemitted) == canonical(signed)


def test_stix2_refusal_becomes_invalid_object() -> None:
    with pytest.raises(InvalidObject, match=r"STIX 2\.1 library refuses it"):
        require_normal_form({"type": "indicator", "id": "indicator--nope", "created_by_ref": OWNER})


# --- indicators: the library's class, the fast grammar check --------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"pattern": "[ipv4-addr:value = '10.0.0.1'] OR [domain-name:value = 'a.example']"},
        {"pattern_version": "2.1", "valid_until": "2031-01-01T00:00:00Z", "revoked": False},
        {"modified": "2025-01-31T12:00:00.1Z", "labels": ["x"], "x_custom": [1, 2]},
    ],
)
def test_normal_form_of_an_indicator_is_the_librarys(changes: dict[str, Any]) -> None:
    obj = {**indicator(), **changes}
    expected = json.loads(stix2.parse(dict(obj), allow_custom=True, version="2.1").serialize())
    assert normal_form(obj) == expected


@pytest.mark.parametrize(
    "pattern", ["[ipv4-addr:value = '10.0.0.1'", "ipv4-addr:value = '1'", "[x:y LIKE 3]"]
)
def test_normal_form_still_refuses_a_pattern_the_library_refuses(pattern: str) -> None:
    obj = {**indicator(), "pattern": pattern}
    with pytest.raises(Exception):  # whatever stix2 raises
        stix2.parse(dict(obj), allow_custom=True, version="2.1")
    with pytest.raises(InvalidObject, match="refuses it"):
        normal_form(obj)


# --- the copy normal_form hands to stix2 -------------------------------------------------------


def test_the_json_copy_is_equal_and_shares_no_container() -> None:
    value = {"a": [1, 2.5, "x", True, None, {"b": [[]]}], "c": {"d": {}}}
    copied = _copy_json(value)
    assert copied == value
    assert copied is not value
    assert copied["a"] is not value["a"]
    assert copied["a"][5] is not value["a"][5]
    assert copied["a"][5]["b"][0] is not value["a"][5]["b"][0]
    assert copied["c"]["d"] is not value["c"]["d"]


def test_the_json_copy_deep_copies_anything_else() -> None:
    inner = [1]
    value = {"t": (inner,), "s": {2}}
    copied = _copy_json(value)
    assert copied == value
    assert copied["t"][0] is not inner
    assert copied["s"] is not value["s"]


def test_normal_form_leaves_its_input_alone() -> None:
    obj = {**indicator(), "labels": ["x"], "x_custom": {"k": [1, {"v": "w"}]},
           "valid_until": "2031-01-01T00:00:00Z"}
    before = json.loads(json.dumps(obj))
    out = normal_form(obj)
    assert obj == before
    out["labels"].append("y")
    out["x_custom"]["k"][1]["v"] = "changed"
    assert obj == before
