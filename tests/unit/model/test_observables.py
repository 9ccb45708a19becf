"""Which values an object names, in which normal form, and what a search looks up.

Table-driven: patterns with AND, OR, IN, FOLLOWEDBY and NOT; networks; hashes; defanged
values (never indexed, never searchable); and odd but valid inputs.
"""

from __future__ import annotations

from typing import Any

import pytest

from exchange.errors import InvalidInput
from exchange.model.observables import Observable, observables_of, search_terms

SHA256 = "AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899"
MD5 = "001DD76872D80801692FF942308C64E6"


def ind(pattern: str, **kw: Any) -> dict[str, Any]:
    return {"type": "indicator", "pattern": pattern, "pattern_type": "stix", **kw}


def found(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(o.kind, o.value) for o in observables_of(obj)}


@pytest.mark.parametrize(("obj", "expected"), [
    (ind("[ipv4-addr:value = '203.0.113.7']"), {("ipv4", "203.0.113.7")}),
    (ind("[ipv4-addr:value = '203.0.113.7/24']"), {("ipv4", "203.0.113.0/24")}),
    (ind("[ipv4-addr:value = '203.0.113.7/32']"), {("ipv4", "203.0.113.7")}),
    (ind("[ipv4-addr:value ISSUBSET '198.51.100.0/24']"), {("ipv4", "198.51.100.0/24")}),
    (ind("[ipv6-addr:value = '2001:DB8:0::1']"), {("ipv6", "2001:db8::1")}),
    (ind("[ipv6-addr:value = '2001:db8::1/48']"), {("ipv6", "2001:db8::/48")}),
    (ind("[ipv4-addr:value IN ('10.0.0.1', '10.0.0.2')]"),
     {("ipv4", "10.0.0.1"), ("ipv4", "10.0.0.2")}),
    (ind("[domain-name:value = 'Evil.Example.'] AND [ipv4-addr:value = '10.0.0.3']"),
     {("domain", "evil.example"), ("ipv4", "10.0.0.3")}),
    (ind("([url:value = 'HTTPS://Evil.Example:443'] OR [url:value = 'http://a.example:8080/X?q=Y#f'])"
         " FOLLOWEDBY [email-addr:value = 'Bob@Evil.Example']"),
     {("url", "https://evil.example/"), ("url", "http://a.example:8080/X?q=Y#f"),
      ("email", "bob@evil.example")}),
    (ind(f"[file:hashes.'SHA-256' = '{SHA256}' AND file:name = 'x.exe']"),
     {("sha256", SHA256.lower())}),
    (ind(f"[file:hashes.MD5 = '{MD5}' OR file:hashes.'SHA-1' = '{'A' * 40}']"),
     {("md5", MD5.lower()), ("sha1", "a" * 40)}),
    (ind("[email-message:from_ref.value = 'x@Evil.Example' AND "
         "email-message:to_refs[*].value = 'victim@gov.example']"),
     {("email", "x@evil.example"), ("email", "victim@gov.example")}),
    (ind("[network-traffic:dst_ref.value = '198.51.100.9' AND "
         "network-traffic:dst_port = 443]"), {("ipv4", "198.51.100.9")}),
    (ind("[domain-name:resolves_to_refs[*].value = '198.51.100.10']"),
     {("ipv4", "198.51.100.10")}),
], ids=["ip", "cidr-host-bits-cleared", "slash-32-is-an-address", "issubset-network",
        "ipv6-canonical", "ipv6-network", "in-set", "and-across-observations",
        "or-followedby-url-email", "hash-with-and", "hashes-or", "email-message-refs",
        "network-traffic-dst", "resolves-to"])
def test_values_in_patterns(obj: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert found(obj) == expected


@pytest.mark.parametrize("obj", [
    ind("[ipv4-addr:value != '203.0.113.7']"),
    ind("[ipv4-addr:value NOT = '203.0.113.7']"),
    ind("[ipv4-addr:value NOT IN ('203.0.113.7')]"),
    ind("[domain-name:value LIKE '%.evil.example']"),
    ind("[domain-name:value MATCHES '^evil']"),
    ind("[domain-name:value = 'evil[.]example']"),
    ind("[url:value = 'hxxp://evil.example/']"),
    ind("[ipv4-addr:value = '203.0.113[.]7']"),
    ind("[file:hashes.MD5 = 'not-a-hash']"),
    ind("[file:name = 'evil.example']"),
    ind("[ipv4-addr:value = 'evil.example']"),
    ind("[domain-name:value = '203.0.113.7']"),
    ind("[ipv4-addr:value = '203.0.113.7']", pattern_type="snort"),
    ind("not a pattern ["),
    {"type": "malware", "name": "203.0.113.7"},
    {"type": "ipv4-addr", "value": "2001:db8::1"},
    {"type": "domain-name", "value": "localhost"},
    {"type": "url", "value": "/relative/path"},
    {"type": "email-addr", "value": "no-at-sign"},
], ids=["not-equal", "not-equals", "not-in", "like", "matches", "defanged-domain",
        "defanged-url", "defanged-ip", "bad-hash", "file-name", "ip-path-with-domain",
        "domain-path-with-ip", "other-pattern-language", "invalid-pattern", "sdo",
        "wrong-ip-version", "single-label-domain", "relative-url", "email-without-at"])
def test_nothing_is_indexed(obj: dict[str, Any]) -> None:
    assert observables_of(obj) == []


@pytest.mark.parametrize(("obj", "expected"), [
    ({"type": "ipv4-addr", "value": "198.51.100.0/24"}, {("ipv4", "198.51.100.0/24")}),
    ({"type": "ipv6-addr", "value": "2001:DB8::1"}, {("ipv6", "2001:db8::1")}),
    ({"type": "domain-name", "value": "Bücher.Example"}, {("domain", "xn--bcher-kva.example")}),
    ({"type": "url", "value": "HTTP://[2001:DB8::1]:80/a"}, {("url", "http://[2001:db8::1]/a")}),
    ({"type": "email-addr", "value": "CEO@Corp.Example"}, {("email", "ceo@corp.example")}),
    ({"type": "file", "hashes": {"MD5": MD5, "SHA-256": SHA256, "x-custom": "1"}},
     {("md5", MD5.lower()), ("sha256", SHA256.lower())}),
    ({"type": "observed-data", "objects": {"0": {"type": "ipv4-addr", "value": "10.1.1.1"},
                                          "1": {"type": "domain-name", "value": "a.example"}}},
     {("ipv4", "10.1.1.1"), ("domain", "a.example")}),
], ids=["sco-network", "sco-ipv6", "idn-domain", "url-ipv6-default-port", "email",
        "file-hashes", "observed-data-embedded"])
def test_values_of_scos(obj: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert found(obj) == expected


@pytest.mark.parametrize(("text", "kinds", "value"), [
    ("203.0.113.7", ("ipv4",), "203.0.113.7"),
    (" 2001:DB8::1 ", ("ipv6",), "2001:db8::1"),
    (MD5, ("md5",), MD5.lower()),
    ("a" * 40, ("sha1",), "a" * 40),
    (SHA256, ("sha256", "sha3-256"), SHA256.lower()),
    ("b" * 128, ("sha512", "sha3-512"), "b" * 128),
    ("Evil.Example", ("domain",), "evil.example"),
    ("HTTP://Evil.Example/Path", ("url",), "http://evil.example/Path"),
    ("Bob@Evil.Example", ("email",), "bob@evil.example"),
], ids=["ipv4", "ipv6", "md5", "sha1", "sha256", "sha512", "domain", "url", "email"])
def test_search_recognises_the_kind(text: str, kinds: tuple[str, ...], value: str) -> None:
    term = search_terms(text)
    assert (term.kinds, term.value) == (kinds, value)


def test_an_address_is_looked_up_with_every_network_containing_it() -> None:
    term = search_terms("203.0.113.7")
    assert len(term.keys) == 33
    assert {"203.0.113.7", "203.0.113.0/24", "203.0.0.0/16", "0.0.0.0/0"} <= set(term.keys)
    assert term.matches(Observable("ipv4", "203.0.113.0/24"))
    assert not term.matches(Observable("ipv4", "203.0.114.0/24"))
    assert len(search_terms("2001:db8::1").keys) == 129


def test_subdomains_share_a_key_prefix() -> None:
    term = search_terms("evil.example", subdomains=True)
    assert term.matches(Observable("domain", "www.evil.example"))
    assert term.matches(Observable("domain", "evil.example"))
    assert not term.matches(Observable("domain", "notevil.example"))
    assert not search_terms("evil.example").matches(Observable("domain", "www.evil.example"))


@pytest.mark.parametrize("text", ["", "   ", "evil[.]example", "hxxp://evil.example/",
                                  "word", "not an@address@x", "1.2.3[.]4"],
                         ids=["empty", "blank", "defanged-domain", "defanged-url",
                              "bare-word", "bad-email", "defanged-ip"])
def test_unsearchable_values_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        search_terms(text)


def test_a_very_long_url_is_indexed_by_digest() -> None:
    url = "http://evil.example/" + "a" * 1000
    [observable] = observables_of({"type": "url", "value": url})
    assert observable.key.startswith("#sha256:")
    term = search_terms(url)
    assert term.keys == (observable.key,)
    assert term.matches(observable)
