"""Strict JSON parsing of untrusted bodies (exchange.model.jsonparse)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import LimitExceeded, MalformedJSON
from exchange.model.jsonparse import MAX_SAFE_INTEGER, nesting_depth, parse_json
from exchange.model.limits import Limits

LIMITS = Limits()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"objects": []}', {"objects": []}, id="envelope-shape"),
        pytest.param(b" [1, 2.5, true, null] ", [1, 2.5, True, None], id="whitespace-around"),
        pytest.param(b'["\\ud83d\\ude00"]', ["\U0001f600"], id="valid-surrogate-pair"),
        pytest.param(b'["\\\\u0000"]', ["\\u0000"], id="escaped-backslash-then-u0000-text"),
        pytest.param(b'["\\\\ud800"]', ["\\ud800"], id="escaped-backslash-then-ud800-text"),
        pytest.param(b'"[[[[\\"]]]"', '[[[["]]]', id="brackets-in-string-with-escaped-quote"),
        pytest.param(b"[9007199254740991]", [MAX_SAFE_INTEGER], id="max-safe-integer"),
        pytest.param(b"[-9007199254740991]", [-MAX_SAFE_INTEGER], id="min-safe-integer"),
        pytest.param(b"[1e15, -0, -0.0, 9007199254740991.0]", [1e15, 0, 0.0, 2**53 - 1.0],
                     id="floats-within-2-pow-53-and-minus-zero"),
        pytest.param(b"[1.2345678901234567890123456789, 1e-320]",
                     [1.2345678901234568, 1e-320], id="long-mantissa-and-subnormal"),
        pytest.param('{"name": "Ташкент"}'.encode(), {"name": "Ташкент"}, id="utf-8-text"),
        pytest.param(
            b'{"a": {"a": 1}, "b": {"a": 2}}',
            {"a": {"a": 1}, "b": {"a": 2}},
            id="same-key-in-two-objects",
        ),
    ],
)
def test_accepts_strict_json(body: bytes, expected: Any) -> None:
    assert parse_json(body, LIMITS) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "Expecting value at line 1 column 1", id="empty"),
        pytest.param(b'{"objects": [', "line 1 column 14", id="truncated"),
        pytest.param(b"[1] x", "Extra data at line 1 column 5", id="trailing-garbage"),
        pytest.param(b"[1,]", "line 1 column 4", id="trailing-comma"),
        pytest.param(b"{'a': 1}", "property name enclosed in double quotes", id="single-quotes"),
        pytest.param(b"\xef\xbb\xbf[]", "byte order mark", id="utf-8-bom"),
        pytest.param(
            b'["\xff"]', "not valid UTF-8: invalid start byte at byte 2", id="invalid-utf-8"
        ),
        pytest.param(b'["\xed\xa0\x80"]', "not valid UTF-8", id="utf-8-encoded-surrogate"),
        pytest.param("[1]".encode("utf-16"), "not valid UTF-8", id="utf-16"),
        pytest.param(b'{"a": 1, "a": 2}', "duplicate key 'a'", id="duplicate-key"),
        pytest.param(
            b'[{"x": {"id": 1, "id": 1}}]', "duplicate key 'id'", id="duplicate-key-nested"
        ),
        pytest.param(b"[NaN]", "NaN is not allowed", id="nan"),
        pytest.param(b"[Infinity]", "Infinity is not allowed", id="infinity"),
        pytest.param(b"[-Infinity]", "-Infinity is not allowed", id="minus-infinity"),
        pytest.param(b"[1e400]", "too large for a 64-bit float", id="float-overflow"),
        pytest.param(b'["\\ud800"]', "lone UTF-16 surrogate", id="lone-high-surrogate"),
        pytest.param(b'["\\uDC00x"]', "lone UTF-16 surrogate", id="lone-low-surrogate-uppercase"),
        pytest.param(b'{"\\ud800": 1}', "lone UTF-16 surrogate", id="lone-surrogate-in-key"),
        pytest.param(
            b'["\\ud800\\u0041"]', "lone UTF-16 surrogate", id="high-surrogate-then-non-low"
        ),
        pytest.param(b'["\\ude00\\ud83d"]', "lone UTF-16 surrogate", id="surrogates-reversed"),
        pytest.param(b'["a\\u0000b"]', "\\u0000 (char 3)", id="nul-escape"),
        pytest.param(b'{"a\\u0000": 1}', "\\u0000", id="nul-escape-in-key"),
        pytest.param(b'["\\\\\\u0000"]', "\\u0000", id="escaped-backslash-then-nul-escape"),
        pytest.param(b'["a\x00"]', "Invalid control character", id="raw-nul-byte"),
        pytest.param(b"[9007199254740992]", "outside +-(2**53-1)", id="int-2-pow-53"),
        pytest.param(b"[-9007199254740992]", "outside +-(2**53-1)", id="int-minus-2-pow-53"),
        pytest.param(b"[123456789012345678901234]", "outside +-(2**53-1)", id="int-24-digits"),
        pytest.param(b"[" + b"7" * 5000 + b"]", "(5000 digits)", id="int-5000-digits"),
        # Doubles beyond 2**53: RFC 8785 would write 1e17 as 100000000000000000, an
        # integer no strict reader takes back (the denial of service of issue 18 item 1).
        pytest.param(b'{"precision": 1e17}', "number 1e17 is outside", id="float-1e17"),
        pytest.param(b"[1E+17]", "number 1E+17 is outside", id="float-upper-case-exponent"),
        pytest.param(b"[-1e17]", "outside +-(2**53-1)", id="float-minus-1e17"),
        pytest.param(b"[9007199254740992.0]", "outside +-(2**53-1)", id="float-2-pow-53"),
        pytest.param(b"[1e16]", "outside +-(2**53-1)", id="float-1e16"),
        pytest.param(b"[1e21]", "outside +-(2**53-1)", id="float-1e21"),
        pytest.param(b"[1e308]", "outside +-(2**53-1)", id="float-1e308"),
        pytest.param(b"[123456789012345678901234.5]", "outside", id="float-24-digit-mantissa"),
    ],
)
def test_refuses_malformed_json(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedJSON) as caught:
        parse_json(body, LIMITS)
    assert reason in caught.value.reason
    assert caught.value.http_status == 400


def test_body_over_the_limit_is_413_before_parsing() -> None:
    limits = Limits(max_body_bytes=100)
    body = b'{"objects": [' + b'"x",' * 30 + b'"x"]}'
    with pytest.raises(LimitExceeded) as caught:
        parse_json(body, limits)
    assert caught.value.http_status == 413
    assert caught.value.reason == f"body is {len(body)} bytes, limit is 100"
    assert parse_json(b"[" + b" " * 98 + b"]", limits) == []  # exactly at the limit


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


def test_depth_at_the_limit_is_accepted_one_more_is_400() -> None:
    assert nesting_depth(_nested(32)) == 32
    parse_json(_nested(32), LIMITS)
    with pytest.raises(LimitExceeded) as caught:
        parse_json(_nested(33), LIMITS)
    assert caught.value.http_status == 400
    assert caught.value.reason == "JSON nests 33 levels deep, limit is 32"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100000-nested-arrays"),
        pytest.param(b"[" * 100_000, id="100000-unclosed-arrays"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="100000-nested-objects"),
        pytest.param(b'["\\"", ' + b"[" * 5000 + b"]" * 5000 + b"]", id="deep-after-escaped-quote"),
    ],
)
def test_hostile_nesting_is_refused_quickly_without_recursion(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(LimitExceeded) as caught:
        parse_json(body, LIMITS)
    assert time.perf_counter() - started < 0.5
    assert "levels deep, limit is 32" in caught.value.reason


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = json.dumps({"pattern": "[" * 500 + "]" * 10, "q": '"[[[[' * 50}).encode()
    assert nesting_depth(body) == 1
    assert parse_json(body, LIMITS)["pattern"].startswith("[[[")


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.floats(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, allow_nan=False),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=5).filter(lambda k: "\x00" not in k), inner, max_size=4),
    ),
    max_leaves=25,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=200)
@given(_JSON_VALUES, st.booleans())
def test_strict_parse_agrees_with_json_on_plain_json(value: Any, ascii_only: bool) -> None:
    """Whatever the strict profile has no quarrel with parses exactly as the stdlib does."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(body) == _depth(value)
    assert parse_json(body, Limits(max_depth=64)) == json.loads(body)


_ANY_NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-10**20, 10**20), st.integers(-400, 400)),
    st.builds(lambda i, f, e: f"{i}.{f}E+{e}", st.integers(0, 10**6), st.integers(0, 10**30),
              st.integers(0, 30)),
)


@settings(max_examples=400)
@given(st.lists(_ANY_NUMBER_TEXT, min_size=1, max_size=5))
def test_every_accepted_number_survives_canonicalisation(numbers: list[str]) -> None:
    """Whatever is accepted can be canonicalised, read back and canonicalised again to
    the same bytes: what the node stores, it can always serve and verify."""
    body = ("[" + ", ".join(numbers) + "]").encode()
    try:
        value = parse_json(body, LIMITS)
    except MalformedJSON:
        return
    canonical = rfc8785.dumps(value)
    assert rfc8785.dumps(parse_json(canonical, LIMITS)) == canonical
