"""TAXII 2.1 envelope parsing (exchange.model.envelope)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidInput, LimitExceeded, MalformedJSON
from exchange.model.envelope import parse_envelope
from exchange.model.limits import Limits

LIMITS = Limits()
INDICATOR = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_returns_the_objects_unvalidated() -> None:
    objects = [INDICATOR, {"not": "stix"}, 42]
    assert parse_envelope(_body({"objects": objects}), LIMITS) == objects


def test_more_and_next_are_allowed() -> None:
    body = _body({"objects": [INDICATOR], "more": True, "next": "page-2"})
    assert parse_envelope(body, LIMITS) == [INDICATOR]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        pytest.param(
            [INDICATOR],
            "expected a TAXII envelope (a JSON object with an 'objects' list), got a JSON array",
            id="bare-array",
        ),
        pytest.param("objects", "got a JSON string", id="string"),
        pytest.param(None, "got null", id="null"),
        pytest.param(
            {
                "type": "bundle",
                "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
                "objects": [INDICATOR],
            },
            'got a STIX bundle; send its objects list as {"objects": [...]}',
            id="stix-bundle",
        ),
        pytest.param(
            {"objects": [INDICATOR], "id": "x"}, "unknown envelope property 'id'", id="unknown-key"
        ),
        pytest.param(
            {"objects": [INDICATOR], "b": 1, "a": 2},
            "unknown envelope properties 'a', 'b'",
            id="unknown-keys",
        ),
        pytest.param({}, "the envelope has no 'objects' list", id="no-objects"),
        pytest.param({"more": False}, "the envelope has no 'objects' list", id="only-more"),
        pytest.param(
            {"objects": INDICATOR},
            "'objects' must be a list, got a JSON object",
            id="objects-is-object",
        ),
        pytest.param(
            {"objects": "x"}, "'objects' must be a list, got a JSON string", id="objects-is-string"
        ),
        pytest.param({"objects": []}, "'objects' list is empty", id="empty-objects"),
        pytest.param(
            {"objects": [INDICATOR], "more": "yes"},
            "'more' must be true or false",
            id="more-not-boolean",
        ),
        pytest.param(
            {"objects": [INDICATOR], "next": 2}, "'next' must be a string", id="next-not-string"
        ),
    ],
)
def test_refuses_what_is_not_an_envelope(doc: Any, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_envelope(_body(doc), LIMITS)
    assert type(caught.value) is InvalidInput
    assert caught.value.http_status == 400
    assert reason in caught.value.reason


def test_too_many_objects_is_413_naming_count_and_limit() -> None:
    limits = Limits(max_objects=3)
    assert len(parse_envelope(_body({"objects": [INDICATOR] * 3}), limits)) == 3
    with pytest.raises(LimitExceeded) as caught:
        parse_envelope(_body({"objects": [INDICATOR] * 4}), limits)
    assert caught.value.http_status == 413
    assert caught.value.reason == "the envelope holds 4 objects, limit is 3"


def test_strict_json_errors_pass_through() -> None:
    with pytest.raises(MalformedJSON, match="duplicate key 'objects'"):
        parse_envelope(b'{"objects": [], "objects": [1]}', LIMITS)
    with pytest.raises(LimitExceeded) as caught:
        parse_envelope(b'{"objects": [' + b"[" * 40 + b"]" * 40 + b"]}", LIMITS)
    assert caught.value.http_status == 400


@settings(max_examples=300)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_give_objects_or_an_invalid_input_error(body: bytes) -> None:
    try:
        objects = parse_envelope(b'{"objects": [' + body + b"]}", LIMITS)
    except InvalidInput as e:
        status = e.http_status
    else:
        assert isinstance(objects, list)
        assert objects
        return
    assert status in (400, 413)
