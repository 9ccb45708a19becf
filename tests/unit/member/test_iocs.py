"""Tests for exchange.member.iocs: analyst IOC text in, STIX 2.1 indicators out."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import stix2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains, urls
from stix2.pattern_visitor import create_pattern_object

from exchange.errors import InvalidInput
from exchange.member.iocs import (
    INDICATOR_NAMESPACE,
    MAX_REPORTED_ERRORS,
    Ioc,
    indicator_pattern,
    ioc_to_indicator,
    iocs_to_objects,
    parse_ioc_text,
)
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS

ORG = "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
OTHER_ORG = "identity--0b7f1f8e-4c55-4a8e-9d3b-6a1c2f0e9b11"
NOW = datetime(2025, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def pattern_parts(pattern: str) -> tuple[str, str, str]:
    """(object path, operator, unescaped literal) of a one-comparison STIX pattern."""
    comparison = create_pattern_object(pattern, version="2.1").operand
    literal = re.sub(r"\\(['\\])", r"\1", comparison.rhs.value)
    return str(comparison.lhs), comparison.operator, literal


def only(text: str, **kwargs: object) -> Ioc:
    iocs = parse_ioc_text(text, **kwargs)  # type: ignore[arg-type]
    assert len(iocs) == 1, iocs
    return iocs[0]


# --------------------------------------------------------------------------- plain lists


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        pytest.param("198.51.100.7", "ipv4", "198.51.100.7", id="ipv4"),
        pytest.param("10.1.2.3/8", "ipv4", "10.0.0.0/8", id="ipv4-cidr-host-bits-cleared"),
        pytest.param("203.0.113.9/32", "ipv4", "203.0.113.9", id="ipv4-slash32-is-address"),
        pytest.param("2001:DB8:0:0::1", "ipv6", "2001:db8::1", id="ipv6-compressed"),
        pytest.param("2001:db8::/32", "ipv6", "2001:db8::/32", id="ipv6-cidr"),
        pytest.param("Evil.Example.COM", "domain", "evil.example.com", id="domain-lowercased"),
        pytest.param("evil.example.com.", "domain", "evil.example.com", id="domain-root-dot"),
        pytest.param("bücher.de", "domain", "bücher.de", id="domain-unicode"),
        pytest.param("xn--bcher-kva.de", "domain", "xn--bcher-kva.de", id="domain-punycode"),
        pytest.param("a.xn--p1ai", "domain", "a.xn--p1ai", id="domain-punycode-tld"),
        pytest.param("https://evil.example/a.php?id=1", "url", "https://evil.example/a.php?id=1",
                     id="url"),
        pytest.param("HTTP://evil.example/", "url", "http://evil.example/", id="url-scheme-case"),
        pytest.param("ftp://192.0.2.1:21/x", "url", "ftp://192.0.2.1:21/x", id="url-ip-host"),
        pytest.param("http://[2001:db8::1]:8080/x", "url", "http://[2001:db8::1]:8080/x",
                     id="url-ipv6-host"),
        pytest.param("https://example.com/#frag", "url", "https://example.com/#frag",
                     id="url-fragment-not-a-comment"),
        pytest.param("Bad.Actor@Example.ORG", "email", "Bad.Actor@example.org", id="email"),
        pytest.param(MD5.upper(), "md5", MD5, id="md5-lowercased"),
        pytest.param(SHA1, "sha1", SHA1, id="sha1"),
        pytest.param(SHA256, "sha256", SHA256, id="sha256"),
    ],
)  # fmt: skip
def test_list_detects_kind(text: str, kind: str, value: str) -> None:
    ioc = only(text)
    assert (ioc.kind, ioc.value) == (kind, value)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        pytest.param("hxxp://evil[.]example/x", "url", "http://evil.example/x", id="hxxp"),
        pytest.param("hXXps://evil[.]example/", "url", "https://evil.example/", id="hXXps"),
        pytest.param("hxxps[:]//evil.example/", "url", "https://evil.example/", id="colon"),
        pytest.param("fxp://files[.]example/a", "url", "ftp://files.example/a", id="fxp"),
        pytest.param("evil(.)example(.)com", "domain", "evil.example.com", id="paren-dot"),
        pytest.param("evil[dot]example[DOT]com", "domain", "evil.example.com", id="dot-word"),
        pytest.param("evil{.}example.com", "domain", "evil.example.com", id="brace-dot"),
        pytest.param("198[.]51[.]100[.]7", "ipv4", "198.51.100.7", id="ipv4-defanged"),
        pytest.param("user[@]evil[.]example", "email", "user@evil.example", id="at-brackets"),
        pytest.param("user[at]evil[.]example", "email", "user@evil.example", id="at-word"),
    ],
)  # fmt: skip
def test_list_refangs(text: str, kind: str, value: str) -> None:
    ioc = only(text)
    assert (ioc.kind, ioc.value) == (kind, value)


def test_list_skips_comments_and_blanks_and_keeps_line_numbers() -> None:
    text = "# campaign X\n\n   \n198.51.100.7\n  # indented comment\nevil.example\n"
    iocs = parse_ioc_text(text)
    assert [(i.line, i.value) for i in iocs] == [(4, "198.51.100.7"), (6, "evil.example")]


def test_list_trailing_comment_becomes_description() -> None:
    ioc = only("evil.example   # C2 seen 2025-01-02")
    assert (ioc.value, ioc.description) == ("evil.example", "C2 seen 2025-01-02")


def test_empty_input_gives_no_iocs() -> None:
    assert parse_ioc_text("# nothing here\n\n") == []


def test_byte_order_mark_is_ignored() -> None:
    assert only("\ufeff198.51.100.7").value == "198.51.100.7"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("foo", "line 1: 'foo' is not a recognised IOC", id="bare-word"),
        pytest.param("1.2.3.999", "line 1: '1.2.3.999' is not a valid ipv4 address", id="octet"),
        pytest.param("1.2.3", "is not a valid ipv4 address", id="ipv4-short"),
        pytest.param("0.0.0.0/0", "too broad", id="ipv4-whole-internet"),
        pytest.param("10.0.0.0/33", "is not a valid ipv4 address", id="ipv4-bad-prefix"),
        pytest.param("fe80::1%eth0", "zone id", id="ipv6-zone"),
        pytest.param("2001:db8::g", "is not a valid ipv6 address", id="ipv6-bad-hex"),
        pytest.param("-evil.example", "is not a valid domain name", id="domain-leading-hyphen"),
        pytest.param("evil..example", "is not a valid domain name", id="domain-empty-label"),
        pytest.param("a" * 64 + ".com", "is not a valid domain name", id="domain-label-too-long"),
        pytest.param("evil.c0m", "is not a valid domain name", id="domain-digit-tld"),
        pytest.param("xn--zz.de", "is not a valid domain name", id="domain-bad-punycode"),
        pytest.param("faß.de", "IDNA maps it to 'fass.de'", id="domain-idna-mapped"),
        pytest.param("invoice.exe", "looks like a file name", id="file-name"),
        pytest.param("evil.example/path", "URL without a scheme", id="url-no-scheme"),
        pytest.param("javascript://x.example/", "is not a valid URL", id="url-bad-scheme"),
        pytest.param("http://", "is not a valid URL", id="url-no-host"),
        pytest.param("http://evil.example:99999/", "is not a valid URL", id="url-bad-port"),
        pytest.param("http://evil.example/\x07", "control characters", id="url-control-char"),
        pytest.param("http://e.example/" + "a" * 2048, "longer than 2048 bytes", id="url-too-long"),
        pytest.param("http://e.example/" + "é" * 1100, "longer than 2048 bytes", id="url-utf8"),
        pytest.param("user@@evil.example", "is not a valid email address", id="email-double-at"),
        pytest.param("us er@evil.example", "contains whitespace", id="email-space"),
        pytest.param("user@localhost", "is not a valid email address", id="email-dotless-host"),
        pytest.param(MD5[:-1], "looks like a hash but has 31 hex digits", id="hash-31"),
        pytest.param("ipv4,198.51.100.7", "needs a header row", id="csv-without-header"),
    ],
)  # fmt: skip
def test_list_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ioc_text(text, fmt="list")
    assert reason in caught.value.reason


def test_all_bad_lines_are_reported_not_just_the_first() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ioc_text("198.51.100.7\nfoo\nevil.example\n1.2.3.999\n")
    reason = caught.value.reason
    assert reason.startswith("2 invalid lines: ")
    assert "line 2: 'foo'" in reason
    assert "line 4: '1.2.3.999'" in reason


def test_reported_errors_are_capped() -> None:
    text = "\n".join(f"bad{n}" for n in range(MAX_REPORTED_ERRORS + 5))
    with pytest.raises(InvalidInput) as caught:
        parse_ioc_text(text)
    reason = caught.value.reason
    assert reason.startswith(f"{MAX_REPORTED_ERRORS + 5} invalid lines")
    assert f"line {MAX_REPORTED_ERRORS}: 'bad{MAX_REPORTED_ERRORS - 1}'" in reason
    assert f"line {MAX_REPORTED_ERRORS + 1}:" not in reason
    assert reason.endswith("; and 5 more")
    assert "\n" not in reason


def test_duplicates_keep_the_first() -> None:
    text = "evil.example # first\nEVIL.example # second\nhxxp://a.example/\nhttp://a.example/\n"
    iocs = parse_ioc_text(text)
    assert [(i.line, i.value, i.description) for i in iocs] == [
        (1, "evil.example", "first"),
        (3, "http://a.example/", ""),
    ]


def test_same_value_different_kind_is_not_a_duplicate() -> None:
    text = "type,value\ndomain,evil.example\nemail,x@evil.example\nurl,http://evil.example\n"
    assert len(parse_ioc_text(text)) == 3


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown IOC format"):
        parse_ioc_text("x", fmt="json")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ CSV


def test_csv_with_all_columns() -> None:
    text = (
        "Type,VALUE,Description,Labels\n"
        "ip-dst,198.51.100.7,C2 server,apt; c2 ;apt;\n"
        'url,"hxxp://evil[.]example/a,b.php","Landing page, ""v2""",phishing\n'
    )
    iocs = parse_ioc_text(text)
    assert iocs == [
        Ioc("ipv4", "198.51.100.7", 2, "C2 server", ("apt", "c2")),
        Ioc("url", "http://evil.example/a,b.php", 3, 'Landing page, "v2"', ("phishing",)),
    ]


@pytest.mark.parametrize(
    ("type_name", "value", "kind"),
    [
        pytest.param("ip", "2001:db8::1", "ipv6", id="ip-v6"),
        pytest.param("ip-src", "198.51.100.7", "ipv4", id="ip-src"),
        pytest.param("IPV4-ADDR", "198.51.100.7", "ipv4", id="ipv4-addr-upper"),
        pytest.param("ipv6-addr", "2001:db8::1", "ipv6", id="ipv6-addr"),
        pytest.param("hostname", "evil.example", "domain", id="hostname"),
        pytest.param("domain-name", "evil.example", "domain", id="domain-name"),
        pytest.param("uri", "http://evil.example/", "url", id="uri"),
        pytest.param("email-src", "a@evil.example", "email", id="email-src"),
        pytest.param("email-dst", "a@evil.example", "email", id="email-dst"),
        pytest.param("sha-256", SHA256, "sha256", id="sha-256"),
        pytest.param("sha-1", SHA1, "sha1", id="sha-1"),
        pytest.param("md5", MD5, "md5", id="md5"),
        pytest.param("", "evil.example", "domain", id="empty-type-detected"),
    ],
)
def test_csv_type_aliases(type_name: str, value: str, kind: str) -> None:
    assert only(f"type,value\n{type_name},{value}\n").kind == kind


def test_csv_without_type_column_detects_kinds() -> None:
    iocs = parse_ioc_text("value,description\n198.51.100.7,x\nevil.example,y\n")
    assert [(i.kind, i.description) for i in iocs] == [("ipv4", "x"), ("domain", "y")]


def test_csv_skips_comments_blank_rows_and_trailing_empty_cells() -> None:
    text = "# export\ntype,value\n\n# note, with comma\ndomain,evil.example,,\n,,\n"
    assert parse_ioc_text(text, fmt="csv") == [Ioc("domain", "evil.example", 5)]


def test_csv_multiline_field_reports_its_first_line() -> None:
    text = 'value,description\nfoo,"two\nlines"\nbar,x\n'
    with pytest.raises(InvalidInput, match=r"^2 invalid lines: line 2: 'foo'.*; line 4: 'bar'"):
        parse_ioc_text(text)


def test_csv_header_only_gives_no_iocs() -> None:
    assert parse_ioc_text("type,value\n", fmt="csv") == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("type,description\nip,x\n", "line 1: the CSV header has no 'value' column",
                     id="missing-value-column"),
        pytest.param("type,value,comment\nip,198.51.100.7,x\n", "unknown CSV column 'comment'",
                     id="unknown-column"),
        pytest.param("value,Value\n1.2.3.4,1.2.3.4\n", "column 'value' appears twice",
                     id="duplicate-column"),
        pytest.param("type,value\nip,198.51.100.7,extra\n", "line 2: 3 fields but the header has 2",
                     id="extra-field"),
        pytest.param("type,value\nipv4\n", "line 2: the value is empty", id="missing-field"),
        pytest.param("type,value\nipv4,evil.example\n",
                     "line 2: 'evil.example' is not a valid ipv4 address", id="wrong-type-ipv4"),
        pytest.param("type,value\nipv6,198.51.100.7\n", "is not a valid ipv6 address",
                     id="wrong-type-ipv6"),
        pytest.param("type,value\nip,evil.example\n", "is not a valid IP address",
                     id="wrong-type-ip"),
        pytest.param("type,value\ndomain,198.51.100.7\n", "is not a valid domain name",
                     id="wrong-type-domain"),
        pytest.param("type,value\nurl,evil.example\n", "is not a valid URL", id="wrong-type-url"),
        pytest.param("type,value\nemail,evil.example\n", "is not a valid email address",
                     id="wrong-type-email"),
        pytest.param(f"type,value\nsha256,{MD5}\n", "is not a valid sha256 hash",
                     id="wrong-type-sha256"),
        pytest.param(f"type,value\nmd5,{SHA1}\n", "is not a valid md5 hash", id="wrong-type-md5"),
        pytest.param(f"type,value\nsha1,{'z' * 40}\n", "is not a valid sha1 hash",
                     id="sha1-not-hex"),
        pytest.param(f"type,value\nfilename|md5,x|{MD5}\n", "unknown type 'filename|md5'",
                     id="misp-composite-type"),
        pytest.param('type,value\nip,"198.51.100.7\n', "unreadable CSV", id="unclosed-quote"),
    ],
)  # fmt: skip
def test_csv_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ioc_text(text, fmt="csv")
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("# c\nType,Value\nip,198.51.100.7\n", "csv", id="csv-after-comment"),
        pytest.param("value\n198.51.100.7\n", "csv", id="value-only-header"),
        pytest.param("198.51.100.7\nvalue.example\n", "list", id="list"),
    ],
)
def test_auto_format(text: str, expected: str) -> None:
    assert parse_ioc_text(text) == parse_ioc_text(text, fmt=expected)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ patterns


@pytest.mark.parametrize(
    ("kind", "value", "path", "operator"),
    [
        pytest.param("ipv4", "198.51.100.7", "ipv4-addr:value", "=", id="ipv4"),
        pytest.param("ipv4", "10.0.0.0/8", "ipv4-addr:value", "ISSUBSET", id="ipv4-network"),
        pytest.param("ipv6", "2001:db8::1", "ipv6-addr:value", "=", id="ipv6"),
        pytest.param("ipv6", "2001:db8::/32", "ipv6-addr:value", "ISSUBSET", id="ipv6-network"),
        pytest.param("domain", "evil.example", "domain-name:value", "=", id="domain"),
        pytest.param("url", "http://evil.example/", "url:value", "=", id="url"),
        pytest.param("email", "a@evil.example", "email-addr:value", "=", id="email"),
        pytest.param("md5", MD5, "file:hashes.MD5", "=", id="md5"),
        pytest.param("sha1", SHA1, "file:hashes.'SHA-1'", "=", id="sha1"),
        pytest.param("sha256", SHA256, "file:hashes.'SHA-256'", "=", id="sha256"),
    ],
)
def test_pattern_per_kind(kind: str, value: str, path: str, operator: str) -> None:
    indicator = ioc_to_indicator(Ioc(kind, value, 1), identity_id=ORG, tlp=Tlp.GREEN, now=NOW)
    assert pattern_parts(indicator["pattern"]) == (path, operator, value)
    stix2.parse(indicator, allow_custom=False)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        pytest.param("http://evil.example/it's", r"[url:value = 'http://evil.example/it\'s']",
                     id="quote"),
        pytest.param("http://evil.example/a\\b", r"[url:value = 'http://evil.example/a\\b']",
                     id="backslash"),
        pytest.param("http://evil.example/\\'", r"[url:value = 'http://evil.example/\\\'']",
                     id="backslash-then-quote"),
        pytest.param("http://evil.example/''", r"[url:value = 'http://evil.example/\'\'']",
                     id="two-quotes"),
    ],
)  # fmt: skip
def test_url_pattern_escaping(value: str, pattern: str) -> None:
    ioc = only(value)
    indicator = ioc_to_indicator(ioc, identity_id=ORG, tlp=Tlp.GREEN, now=NOW)
    assert indicator["pattern"] == pattern
    assert pattern_parts(pattern)[2] == value
    stix2.parse(indicator, allow_custom=False)


def test_email_local_part_quote_is_escaped() -> None:
    ioc = only("o'brien@evil.example")
    pattern = ioc_to_indicator(ioc, identity_id=ORG, tlp=Tlp.RED, now=NOW)["pattern"]
    assert pattern == r"[email-addr:value = 'o\'brien@evil.example']"


def test_unknown_kind_has_no_pattern() -> None:
    with pytest.raises(InvalidInput, match="unknown IOC kind"):
        indicator_pattern("filename", "x.exe")


# ---------------------------------------------------------------------------- indicators


def test_indicator_fields() -> None:
    ioc = Ioc("domain", "evil.example", 3, "C2 server", ("apt", "c2"))
    indicator = ioc_to_indicator(ioc, identity_id=ORG, tlp=Tlp.AMBER_STRICT, now=NOW,
                                 valid_days=30)  # fmt: skip
    assert indicator == {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator["id"],
        "created": "2025-03-04T05:06:07.891Z",
        "modified": "2025-03-04T05:06:07.891Z",
        "created_by_ref": ORG,
        "name": "Malicious domain evil.example",
        "description": "C2 server",
        "indicator_types": ["malicious-activity"],
        "pattern": "[domain-name:value = 'evil.example']",
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": "2025-03-04T05:06:07.891Z",
        "valid_until": "2025-04-03T05:06:07.891Z",
        "labels": ["apt", "c2"],
        "object_marking_refs": ["marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"],
    }
    assert re.fullmatch(r"indicator--[0-9a-f-]{36}", indicator["id"])
    stix2.parse(indicator, allow_custom=False)


def test_indicator_without_optional_fields() -> None:
    indicator = ioc_to_indicator(Ioc("md5", MD5, 1), identity_id=ORG, tlp=Tlp.CLEAR, now=NOW)
    assert {"description", "labels", "valid_until"}.isdisjoint(indicator)
    assert indicator["name"] == f"Malicious file MD5 {MD5}"


@pytest.mark.parametrize("tlp", list(Tlp), ids=[t.value for t in Tlp])
def test_indicator_carries_the_tlp_2_marking(tlp: Tlp) -> None:
    indicator = ioc_to_indicator(Ioc("domain", "evil.example", 1), identity_id=ORG, tlp=tlp,
                                 now=NOW)  # fmt: skip
    assert indicator["object_marking_refs"] == [TLP2_IDS[tlp]]


def test_timestamps_are_utc_milliseconds() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=-5)))
    indicator = ioc_to_indicator(Ioc("domain", "evil.example", 1), identity_id=ORG,
                                 tlp=Tlp.GREEN, now=local)  # fmt: skip
    assert indicator["created"] == "2025-03-04T05:06:07.891Z"


def test_default_now_is_the_current_time() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    indicator = ioc_to_indicator(Ioc("domain", "evil.example", 1), identity_id=ORG, tlp=Tlp.GREEN)
    created = datetime.strptime(indicator["created"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= created <= datetime.now(UTC)


def test_id_is_deterministic_across_time_description_and_defanging() -> None:
    first = ioc_to_indicator(only("evil[.]example # a"), identity_id=ORG, tlp=Tlp.GREEN, now=NOW)
    later = ioc_to_indicator(
        Ioc("domain", "EVIL.example", 9, "b", ("x",)),
        identity_id=ORG,
        tlp=Tlp.RED,
        now=NOW + timedelta(days=3),
    )
    assert first["id"] == later["id"]
    assert first["modified"] != later["modified"]


@pytest.mark.parametrize(
    ("changes"),
    [
        pytest.param({"identity_id": OTHER_ORG}, id="other-publisher"),
        pytest.param({"id_namespace": uuid.uuid4()}, id="other-namespace"),
        pytest.param({"ioc": Ioc("domain", "evil2.example", 1)}, id="other-value"),
        pytest.param({"ioc": Ioc("email", "a@evil.example", 1)}, id="other-kind"),
    ],
)
def test_id_changes_with_publisher_namespace_kind_and_value(changes: dict[str, object]) -> None:
    base: dict[str, object] = {"ioc": Ioc("domain", "evil.example", 1), "identity_id": ORG}
    one = ioc_to_indicator(tlp=Tlp.GREEN, now=NOW, **base)  # type: ignore[arg-type]
    two = ioc_to_indicator(tlp=Tlp.GREEN, now=NOW, **{**base, **changes})  # type: ignore[arg-type]
    assert one["id"] != two["id"]


def test_id_is_uuid5_in_the_project_namespace() -> None:
    indicator = ioc_to_indicator(Ioc("domain", "evil.example", 1), identity_id=ORG,
                                 tlp=Tlp.GREEN, now=NOW)  # fmt: skip
    expected = uuid.uuid5(INDICATOR_NAMESPACE, f'["{ORG}", "domain", "evil.example"]')
    assert indicator["id"] == f"indicator--{expected}"


@pytest.mark.parametrize(
    ("ioc", "kwargs", "reason"),
    [
        pytest.param(Ioc("filename", "a.exe", 1), {}, "unknown IOC kind", id="bad-kind"),
        pytest.param(Ioc("ipv4", "evil.example", 1), {}, "not a valid ipv4", id="bad-value"),
        pytest.param(Ioc("url", "http://x.example/\n", 1), {}, "control", id="newline-in-url"),
        pytest.param(Ioc("domain", "evil.example", 1), {"identity_id": "org-1"},
                     "not a STIX identity id", id="bad-identity"),
        pytest.param(Ioc("domain", "evil.example", 1),
                     {"identity_id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"},
                     "not a STIX identity id", id="identity-of-wrong-type"),
        pytest.param(Ioc("domain", "evil.example", 1), {"now": datetime(2025, 1, 1)},
                     "timezone-aware", id="naive-now"),
        pytest.param(Ioc("domain", "evil.example", 1), {"valid_days": 0}, "at least 1",
                     id="zero-valid-days"),
    ],
)  # fmt: skip
def test_ioc_to_indicator_refuses(ioc: Ioc, kwargs: dict[str, object], reason: str) -> None:
    arguments: dict[str, object] = {"identity_id": ORG, "tlp": Tlp.GREEN, "now": NOW, **kwargs}
    with pytest.raises(InvalidInput, match=reason):
        ioc_to_indicator(ioc, **arguments)  # type: ignore[arg-type]


def test_iocs_to_objects_shares_one_timestamp_and_drops_repeated_ids() -> None:
    iocs = [Ioc("domain", "evil.example", 1), Ioc("ipv4", "198.51.100.7", 2),
            Ioc("domain", "EVIL.EXAMPLE", 3, "again")]  # fmt: skip
    objects = iocs_to_objects(iocs, identity_id=ORG, tlp=Tlp.GREEN, valid_days=7)
    assert [o["name"] for o in objects] == [
        "Malicious domain evil.example",
        "Malicious IPv4 address 198.51.100.7",
    ]
    assert len({o["created"] for o in objects}) == 1
    assert all("valid_until" in o for o in objects)


# ---------------------------------------------------------------------------- properties

_hex = "0123456789abcdefABCDEF"
_url_tail = st.text(alphabet="'\\abc/?=&%.~-", max_size=12)

ioc_values = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=4).flatmap(lambda a: st.integers(8, 32).map(lambda p: f"{a}/{p}")),
    domains(),
    st.builds(lambda u, tail: u.split("#")[0] + tail, urls(), _url_tail),
    st.emails(),
    st.text(alphabet=_hex, min_size=32, max_size=32),
    st.text(alphabet=_hex, min_size=40, max_size=40),
    st.text(alphabet=_hex, min_size=64, max_size=64),
)  # fmt: skip


def as_csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([["type", "value", "description", "labels"], *rows])
    return out.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=ioc_values,
    description=st.text(max_size=40).map(str.strip),
    labels=st.lists(
        st.text(min_size=1, max_size=12).map(str.strip).filter(lambda t: t and ";" not in t),
        max_size=3,
        unique=True,
    ),
    tlp=st.sampled_from(list(Tlp)),
    now=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    valid_days=st.none() | st.integers(1, 3650),
)
def test_every_indicator_passes_stix2_parse(
    value: str,
    description: str,
    labels: list[str],
    tlp: Tlp,
    now: datetime,
    valid_days: int | None,
) -> None:
    ioc = only(as_csv([["", value, description, ";".join(labels)]]), fmt="csv")
    assert (ioc.description, ioc.labels) == (description, tuple(labels))
    indicator = ioc_to_indicator(ioc, identity_id=ORG, tlp=tlp, now=now, valid_days=valid_days)
    stix2.parse(indicator, allow_custom=False)
    assert pattern_parts(indicator["pattern"])[2] == ioc.value
    # The normalised value is a fixed point: parsing it again as its own kind changes nothing.
    assert only(as_csv([[ioc.kind, ioc.value, "", ""]]), fmt="csv").value == ioc.value


@pytest.mark.parametrize("micros", [0, 100_000, 120_000, 123_000, 891_234, 5_000],
                         ids=["whole-second", "100ms", "120ms", "123ms", "sub-ms", "5ms"])
@pytest.mark.parametrize("valid_days", [None, 30])
def test_generated_indicators_are_already_in_normal_form(micros: int,
                                                         valid_days: int | None) -> None:
    # signing would otherwise rewrite them and print "normalised" once per indicator
    from exchange.signing.canonical import canonical, normal_form  # noqa: PLC0415

    moment = NOW.replace(microsecond=micros)
    for text in ("evil.example", "203.0.113.7", "hxxp://bad.example/x", MD5):
        indicator = ioc_to_indicator(only(text), identity_id=ORG, tlp=Tlp.GREEN, now=moment,
                                     valid_days=valid_days)
        assert canonical(normal_form(indicator)) == canonical(indicator)


def test_read_ioc_text_keeps_the_good_lines_and_every_bad_one() -> None:
    from exchange.member.iocs import read_ioc_text  # noqa: PLC0415

    text = "evil.example\nnot an ioc\n203.0.113.7\n999.1.1.1\n# comment\nevil.example\n"
    parsed = read_ioc_text(text)
    assert [(i.kind, i.value, i.line) for i in parsed.iocs] == [
        ("domain", "evil.example", 1), ("ipv4", "203.0.113.7", 3)]
    assert [line for line, _ in parsed.bad_lines] == [2, 4]
    assert "999.1.1.1" in parsed.bad_lines[1][1]
