"""exchange.model.jcs.dumps: the same bytes and the same errors as rfc8785.dumps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.model import jcs
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from tests.unit.model.test_jsonparse import _depth

REAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "real"

# Every code point, lone surrogates included, and keys that are ASCII or not.
_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
_keys = st.one_of(st.text(st.characters(max_codepoint=0x7F), max_size=6), _text)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**60), max_value=2**60),
    st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2),
    st.floats(allow_nan=True, allow_infinity=True), _text)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=30)


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "bytes", fn(value)
    except Exception as e:  # noqa: BLE001 - the error's type is what is compared
        return "error", type(e)


@settings(max_examples=3000, deadline=None)
@given(_values)
def test_same_bytes_or_same_error_as_rfc8785(value: Any) -> None:
    assert outcome(jcs.dumps, value) == outcome(rfc8785.dumps, value)


@pytest.mark.parametrize("value", [
    {"b": 1, "a": "\u2028\x7f\x1f\"\\/\b\f\n\r\t\x00"},
    {"\ue000": 1, "\U0001f600": 2},  # code point order and UTF-16 order differ here
    {"x": [True, False, None, 2**53 - 1, -(2**53 - 1)]},
    {"ok": "\ud800"},  # a lone surrogate
    {"n": 2**53},
    {"f": 1.0, "g": 1e21, "h": -0.0},
    {1: "non-string key"},
    ("tuple", "value"),
    {"deep": json.loads("[" * 200 + "]" * 200)},
])
def test_edge_cases(value: Any) -> None:
    assert outcome(jcs.dumps, value) == outcome(rfc8785.dumps, value)


def test_the_real_stix_files() -> None:
    files = sorted((REAL / "stix21").glob("*.json")) if (REAL / "stix21").is_dir() else []
    files += sorted((REAL / "stix20").glob("*.json")) if (REAL / "stix20").is_dir() else []
    if not files:
        pytest.skip("no real STIX files in ../shared/data/real")
    seen = 0
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        for obj in data.get("objects", []) if isinstance(data, dict) else []:
            assert jcs.dumps(obj) == rfc8785.dumps(obj), (path.name, obj.get("id"))
            seen += 1
    assert seen > 100


@settings(max_examples=2000, deadline=None)
@given(_values, st.integers(min_value=1, max_value=8))
def test_dumps_plain_is_dumps_and_plain_values_parse_back_as_themselves(
        value: Any, max_depth: int) -> None:
    """The flag is only ever true for bytes the strict parser reads back unchanged, at
    that depth; the bytes are always those of dumps (or its error)."""
    got = outcome(lambda v: jcs.dumps_plain(v, max_depth), value)
    expected = outcome(jcs.dumps, value)
    if expected[0] == "error":
        assert got == expected
        return
    assert got[0] == "bytes"
    data, plain = got[1]
    assert data == expected[1]
    if plain:
        assert _depth(value) <= max_depth
        parsed = parse_json(data, Limits(max_depth=max_depth))
        assert jcs.dumps(parsed) == data
        assert parsed == value


@pytest.mark.parametrize(("value", "max_depth", "plain"), [
    ({"a": [1, "x", True, None, {"b": -(2**53 - 1)}]}, 3, True),
    ({"a": [1, {"b": 0.0}]}, 32, False),          # a float: RFC 8785 may write 1e17 as an int
    ({"a": "x\x00"}, 32, False),                  # a NUL in a string
    ({"a\x00": 1}, 32, False),                    # a NUL in a key
    ({"a": "x\\u0000"}, 32, False),               # looks like one in the bytes: try it
    ({"a": [[1]]}, 2, False),                     # deeper than allowed
    ({"a": [[1]]}, 3, True),
    ({"\u00e9": 1}, 32, False),                   # a non-ASCII key takes rfc8785's path
])
def test_dumps_plain_tells_risky_values_apart(value: Any, max_depth: int, plain: bool) -> None:
    assert jcs.dumps_plain(value, max_depth) == (rfc8785.dumps(value), plain)
