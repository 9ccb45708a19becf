"""TAXII HTTP details: media types, raw splicing, next tokens, error bodies."""

from __future__ import annotations

import json

import pytest

from exchange.errors import InvalidInput
from exchange.taxii.http import (
    NextTokens,
    RawJSON,
    accept_ok,
    content_type_ok,
    dumps,
    error_body,
    token_scope,
)


@pytest.mark.parametrize(("header", "ok"), [
    ("application/taxii+json;version=2.1", True),
    ("application/taxii+json; version=2.1", True),
    ("application/taxii+json", True),
    ("*/*", True),
    ("text/html, application/taxii+json;version=2.1;q=0.9", True),
    ("application/taxii+json;version=2.0", False),
    ("application/json", False),
    ("application/taxii+json;version=2.1;q=0", False),
    ("", False),
    (None, False),
])
def test_accept(header: str | None, ok: bool) -> None:
    assert accept_ok(header) is ok


@pytest.mark.parametrize(("header", "ok"), [
    ("application/taxii+json;version=2.1", True),
    ("application/taxii+json", True),
    ("application/stix+json;version=2.1", False),
    ("application/json", False),
    ("application/taxii+json;version=2.0", False),
    (None, False),
])
def test_content_type(header: str | None, ok: bool) -> None:
    assert content_type_ok(header) is ok


def test_raw_json_is_spliced_verbatim() -> None:
    raw = '{"b":1,"a":"\u00fc"}'
    text = dumps({"more": False, "objects": [RawJSON(raw), RawJSON("{}")]})
    assert raw in text
    assert json.loads(text) == {"more": False, "objects": [{"b": 1, "a": "\u00fc"}, {}]}


SCOPE = token_scope("coll-1", "objects", [("match[type]", ["indicator"])])


def test_next_tokens_are_bound_to_the_account_and_unforgeable() -> None:
    tokens = NextTokens(b"secret")
    token = tokens.mint(1234567, "acct-1", SCOPE)
    assert tokens.open(token, "acct-1", SCOPE) == 1234567
    with pytest.raises(InvalidInput, match="not a token this server issued to you"):
        tokens.open(token, "acct-2", SCOPE)
    with pytest.raises(InvalidInput):
        NextTokens(b"other").open(token, "acct-1", SCOPE)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidInput):
        tokens.open(forged, "acct-1", SCOPE)
    with pytest.raises(InvalidInput):
        tokens.open("!!!", "acct-1", SCOPE)


def test_next_tokens_are_bound_to_collection_endpoint_and_filters() -> None:
    tokens = NextTokens(b"secret")
    token = tokens.mint(99, "acct", SCOPE)
    for other in (token_scope("coll-2", "objects", [("match[type]", ["indicator"])]),
                  token_scope("coll-1", "manifest", [("match[type]", ["indicator"])]),
                  token_scope("coll-1", "objects", [("match[type]", ["malware"])]),
                  token_scope("coll-1", "objects", [])):
        with pytest.raises(InvalidInput, match="continues another listing"):
            tokens.open(token, "acct", other)


def test_token_scope_compares_filters_by_meaning() -> None:
    a = token_scope("c", "objects", [("match[type]", ["indicator", "malware"]),
                                     ("added_after", ["2026-01-01T00:00:00Z"])])
    b = token_scope("c", "objects", [("added_after", ["2026-01-01T00:00:00Z"]),
                                     ("match[type]", ["malware", "indicator", "malware"])])
    assert a == b
    assert len(a) == 32
    assert set(a) <= set("0123456789abcdef")
    assert a != token_scope("c", "objects", [("match[type]", ["indicator", "malware"])])


def test_every_cursor_round_trips() -> None:
    """MACs are binary: some contain the separator byte; all tokens must still open."""
    tokens = NextTokens(b"secret")
    for cursor in range(1_700_000_000_000_000, 1_700_000_000_002_000):
        assert tokens.open(tokens.mint(cursor, "acct", SCOPE), "acct", SCOPE) == cursor


def test_error_body_has_string_status() -> None:
    assert error_body(404, "Not found", "x", "rid") == {
        "title": "Not found", "http_status": "404", "description": "x", "error_id": "rid"}
