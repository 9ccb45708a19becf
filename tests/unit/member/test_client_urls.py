"""Tests for the URL checks of exchange.member.client (the network part is in
tests/integration/test_cli_demo_paths.py)."""

from __future__ import annotations

import pytest

from exchange.errors import InvalidInput
from exchange.member.client import _kind, check_url


@pytest.mark.parametrize(("url", "expected"), [
    pytest.param("http://127.0.0.1:8421/cx/collections/jwg", "http://127.0.0.1:8421/cx/collections/jwg/",
                 id="slash-added"),
    pytest.param("https://hub.example/cx/collections/x/", "https://hub.example/cx/collections/x/",
                 id="https"),
])
def test_good_urls(url: str, expected: str) -> None:
    assert check_url(url) == expected


@pytest.mark.parametrize(("url", "phrase"), [
    pytest.param("", "not a URL", id="empty"),
    pytest.param("127.0.0.1:8421/cx/", "http:// or https://", id="no-scheme"),
    pytest.param("ftp://hub.example/cx/", "http:// or https://", id="ftp"),
    pytest.param("http:///cx/", "with a host", id="no-host"),
    pytest.param("http://hub.example:99999/cx/", "not a valid URL", id="bad-port"),
    pytest.param("http://u:p@hub.example/cx/", "credentials", id="credentials"),
    pytest.param("http://hub.example/cx/?a=b", "query or fragment", id="query"),
    pytest.param("http://hub.example/cx/#x", "query or fragment", id="fragment"),
    pytest.param("http://hub.example/c x/", "not a URL", id="space"),
])
def test_malformed_urls_are_one_clear_line(url: str, phrase: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_url(url)
    assert phrase in raised.value.reason
    assert "\n" not in raised.value.reason


@pytest.mark.parametrize(("body", "url", "kind"), [
    pytest.param({"id": "x", "title": "t", "can_read": True, "can_write": False}, "u/",
                 "collection", id="collection"),
    pytest.param({"title": "t", "api_roots": ["/cx/"], "default": "/cx/"}, "u/", "discovery",
                 id="discovery"),
    pytest.param({"title": "t", "versions": ["v"], "max_content_length": 1}, "u/", "api-root",
                 id="api-root"),
    pytest.param({"collections": []}, "u/", "collections", id="collections"),
    pytest.param({}, "http://h/cx/collections/", "collections", id="empty-collections"),
    pytest.param({"objects": []}, "u/", "unknown", id="envelope"),
])
def test_resource_kinds(body: dict[str, object], url: str, kind: str) -> None:
    assert _kind(body, url) == kind
