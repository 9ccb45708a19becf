"""The C encoder's bytes for plain values are RFC 8785's, and nothing else is taken."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.model.jcs import plain_canonical

_TEXT = st.text(st.characters(exclude_categories=["Cs"])) | st.text(st.sampled_from(
    [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "\u2028", "\ufeff",
                                     "\U0001f600", "\ue000", "é"]))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | _TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=25)


@settings(max_examples=500)
@given(_JSON)
def test_plain_values_get_exactly_rfc8785_bytes_and_others_none(value: Any) -> None:
    got = plain_canonical(value)
    try:
        expected: bytes | None = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        expected = None
    if got is not None:
        assert got == expected


@pytest.mark.parametrize("value", [
    {"a": 1.0}, {"é": 1}, {"k": 2**53}, {"k": (1, 2)}, "\ud800", [1.5],
])
def test_what_the_c_encoder_could_get_wrong_is_left_to_rfc8785(value: Any) -> None:
    assert plain_canonical(value) is None


def test_a_typical_object_is_taken() -> None:
    obj = {"type": "indicator", "name": "C2 \u00e9\n\"x\"", "confidence": 80, "x": [None, True]}
    assert plain_canonical(obj) == rfc8785.dumps(obj)
