"""feeds/misp-targets.yaml: the shipped example loads, and broken documents are refused
with the file, the key path and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.errors import ConfigError
from exchange.misp.targets import (
    TEST_MIN_INTERVAL_ENV,
    Direction,
    EventGrouping,
    Schedule,
    check_owners,
    load_targets,
    parse_targets,
)
from exchange.model.objects import Tlp
from exchange.policy.load import load_policies

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "feeds" / "misp-targets.yaml"
F = "feeds/misp-targets.yaml"


def test_shipped_example_names_both_cert_instances() -> None:
    targets = {t.name: t for t in load_targets(SHIPPED)}
    assert set(targets) == {"uz-cert-misp", "pk-cert-misp"}
    uz, pk = targets["uz-cert-misp"], targets["pk-cert-misp"]
    assert (uz.owner, pk.owner) == ("UZ-CERT", "PK-CERT")
    assert uz.direction is Direction.BOTH
    assert uz.direction.pushes
    assert uz.direction.pulls
    assert uz.schedule == Schedule(interval=900)
    assert pk.schedule == Schedule(cron="*/10 * * * *")
    assert uz.api_key_file is not None
    assert uz.api_key_env is None
    assert pk.api_key_env == "EXCHANGE_MISP_KEY_PK_CERT"
    assert pk.api_key_file is None
    assert uz.filters.tlp_ceiling is Tlp.AMBER
    assert uz.filters.exclude_tags == ("test",)
    assert pk.filters.collections == ("jwg", "pk")
    assert pk.timeout == 45.0
    assert pk.event_grouping is EventGrouping.PRODUCER_DAY
    check_owners(targets.values(), load_policies(REPO / "policies"), F)


def test_no_parsed_target_holds_a_key() -> None:
    """The file names where keys are; the parsed targets carry no secret to leak."""
    for target in load_targets(SHIPPED):
        assert "key" not in repr(target).lower().replace("api_key_file", "").replace(
            "api_key_env", "").replace("exchange_misp_key", "").replace(".key", "")


MINIMAL = """\
targets:
  pk:
    url: https://misp.example.org
    api_key_env: PK_KEY
    owner: PK-CERT
    direction: push
    schedule: {interval: 600}
"""


def test_minimal_target_takes_the_defaults() -> None:
    (target,) = parse_targets(F, MINIMAL.encode())
    assert target.timeout == 30.0
    assert target.ca_file is None
    assert target.filters.collections == ()
    assert target.filters.tlp_ceiling is Tlp.RED
    assert target.event_grouping is EventGrouping.PRODUCER_DAY
    assert target.push_parts == 2
    (one,) = parse_targets(F, MINIMAL.encode() + b"    push_parts: 1\n")
    assert one.push_parts == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "http://localhost/misp",
                                 "http://[::1]:9000", "https://10.0.0.5"])
def test_loopback_may_use_plain_http(url: str) -> None:
    (target,) = parse_targets(F, MINIMAL.replace("https://misp.example.org", url).encode())
    assert target.url == url


def _edit(old: str, new: str) -> bytes:
    assert old in MINIMAL
    return MINIMAL.replace(old, new).encode()


BROKEN: list[tuple[str, bytes, str]] = [
    ("not-yaml", b"targets: [",
     "feeds/misp-targets.yaml: line 1, column 11: broken YAML: expected the node content, but"
     " found '<stream end>'"),
    ("empty", b"", "feeds/misp-targets.yaml: top level: empty file; expected a mapping with"
                   " 'targets'"),
    ("duplicate-key", _edit("    owner: PK-CERT\n", "    owner: PK-CERT\n    owner: UZ-CERT\n"),
     "feeds/misp-targets.yaml: line 6: duplicate key 'owner' (each key may appear once)"),
    ("unknown-top-key", MINIMAL.encode() + b"extra: 1\n",
     "feeds/misp-targets.yaml: extra: unknown key 'extra' (allowed here: targets, version)"),
    ("unknown-target-key",
     _edit("    direction: push\n", "    direction: push\n    verify: false\n"),
     "feeds/misp-targets.yaml: targets.pk.verify: unknown key 'verify' (allowed here: "
     "api_key_env, api_key_file, ca_file, description, direction, event_grouping, filters, "
     "owner, push_parts, schedule, timeout, url)"),
    ("inline-key", _edit("    api_key_env: PK_KEY\n", "    api_key: s3cr3tvalue\n"),
     "feeds/misp-targets.yaml: targets.pk.api_key: an API key is never written in this file:"
     " put it in a file readable only by the exchange (api_key_file) or in an environment"
     " variable (api_key_env)"),
    ("no-key-source", _edit("    api_key_env: PK_KEY\n", ""),
     "feeds/misp-targets.yaml: targets.pk: give exactly one of api_key_file and api_key_env"),
    ("two-key-sources", _edit("    api_key_env: PK_KEY\n",
                              "    api_key_env: PK_KEY\n    api_key_file: /k\n"),
     "feeds/misp-targets.yaml: targets.pk: give exactly one of api_key_file and api_key_env"),
    ("bad-env-name", _edit("PK_KEY", "pk-key"),
     "feeds/misp-targets.yaml: targets.pk.api_key_env: 'pk-key' is not an environment"
     " variable name (A-Z, 0-9, '_')"),
    ("plain-http", _edit("https://misp.example.org", "http://misp.example.org"),
     "feeds/misp-targets.yaml: targets.pk.url: 'http://misp.example.org' must use https"
     " (plain http is allowed only to a loopback address)"),
    ("credentials-in-url", _edit("https://misp.example.org", "https://u:p@misp.example.org"),
     "feeds/misp-targets.yaml: targets.pk.url: the URL must not carry credentials; use"
     " api_key_file or api_key_env"),
    ("ftp-url", _edit("https://misp.example.org", "ftp://misp.example.org"),
     "feeds/misp-targets.yaml: targets.pk.url: 'ftp://misp.example.org' is not an https URL"
     " with a host"),
    ("url-not-string", _edit("https://misp.example.org", "42"),
     "feeds/misp-targets.yaml: targets.pk.url: expected a string, found a number (42)"),
    ("bad-direction", _edit("direction: push", "direction: sideways"),
     "feeds/misp-targets.yaml: targets.pk.direction: 'sideways' is not one of push, pull,"
     " both"),
    ("bad-owner", _edit("owner: PK-CERT", "owner: '-bad'"),
     "feeds/misp-targets.yaml: targets.pk.owner: '-bad' is not an organisation name"),
    ("interval-and-cron", _edit("{interval: 600}", "{interval: 600, cron: '* * * * *'}"),
     "feeds/misp-targets.yaml: targets.pk.schedule: give exactly one of interval (seconds)"
     " and cron (five fields)"),
    ("interval-too-short", _edit("600", "5"),
     "feeds/misp-targets.yaml: targets.pk.schedule.interval: 5 s is outside 60..604800 s"),
    ("interval-text", _edit("600", "'600'"),
     "feeds/misp-targets.yaml: targets.pk.schedule.interval: expected a whole number of"
     " seconds, found '600'"),
    ("cron-four-fields", _edit("{interval: 600}", "{cron: '*/5 * * *'}"),
     "feeds/misp-targets.yaml: targets.pk.schedule.cron: '*/5 * * *' is not a cron"
     " expression of five fields (minute hour day-of-month month day-of-week)"),
    ("timeout-zero", MINIMAL.encode() + b"    timeout: 0\n",
     "feeds/misp-targets.yaml: targets.pk.timeout: 0 s is outside (0, 600] s"),
    ("timeout-bool", MINIMAL.encode() + b"    timeout: true\n",
     "feeds/misp-targets.yaml: targets.pk.timeout: expected a number of seconds, found True"),
    ("bad-ceiling", MINIMAL.encode() + b"    filters: {tlp_ceiling: orange}\n",
     "feeds/misp-targets.yaml: targets.pk.filters.tlp_ceiling: unknown TLP level 'orange';"
     " use clear, green, amber, amber+strict or red"),
    ("unknown-filter", MINIMAL.encode() + b"    filters: {levels: [red]}\n",
     "feeds/misp-targets.yaml: targets.pk.filters.levels: unknown key 'levels' (allowed here:"
     " collections, tags, tlp_ceiling)"),
    ("collection-twice", MINIMAL.encode() + b"    filters: {collections: [jwg, jwg]}\n",
     "feeds/misp-targets.yaml: targets.pk.filters.collections[1]: collection 'jwg' is listed"
     " twice"),
    ("tag-in-and-out", MINIMAL.encode() + b"    filters: {tags: {include: [a], exclude: [a]}}\n",
     "feeds/misp-targets.yaml: targets.pk.filters.tags: tag 'a' is both included and"
     " excluded"),
    ("bad-grouping", MINIMAL.encode() + b"    event_grouping: weekly\n",
     "feeds/misp-targets.yaml: targets.pk.event_grouping: 'weekly' is not one of"
     " producer-day, producer-month, indicator"),
    ("no-push-parts", MINIMAL.encode() + b"    push_parts: 0\n",
     "feeds/misp-targets.yaml: targets.pk.push_parts: 0 is outside (0, 8]"),
    ("too-many-push-parts", MINIMAL.encode() + b"    push_parts: 9\n",
     "feeds/misp-targets.yaml: targets.pk.push_parts: 9 is outside (0, 8]"),
    ("half-a-push-part", MINIMAL.encode() + b"    push_parts: 1.5\n",
     "feeds/misp-targets.yaml: targets.pk.push_parts: expected a whole number, found 1.5"),
    ("bad-target-name", _edit("  pk:\n", "  PK MISP:\n"),
     "feeds/misp-targets.yaml: targets.PK MISP: target name 'PK MISP' is not lowercase"
     " letters, digits, '.', '_' or '-' (at most 64)"),
    ("no-targets", b"targets: {}\n",
     "feeds/misp-targets.yaml: targets: no targets; list at least one"),
    ("same-url-twice", MINIMAL.encode() + MINIMAL.replace("targets:\n", "").replace(
        "  pk:", "  pk2:").encode(),
     "feeds/misp-targets.yaml: targets.pk2: url 'https://misp.example.org' is already the"
     " url of target 'pk'"),
    ("bad-version", b"version: 2\n" + MINIMAL.encode(),
     "feeds/misp-targets.yaml: version: unsupported version 2 (use 1)"),
]


@pytest.mark.parametrize(("document", "message"), [(d, m) for _, d, m in BROKEN],
                         ids=[i for i, _, _ in BROKEN])
def test_broken_documents_are_refused_with_the_reason(document: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_targets(F, document)
    text = str(caught.value)
    assert text == message
    assert "s3cr3tvalue" not in text


def test_an_owner_outside_the_community_is_refused() -> None:
    targets = parse_targets(F, _edit("owner: PK-CERT", "owner: UZ-SOC"))
    with pytest.raises(ConfigError, match=r"targets\.pk\.owner: 'UZ-SOC' is not a member of"
                                          r" community 'uz-pk-cert-community'"):
        check_owners(targets, load_policies(REPO / "policies"), F)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the MISP targets file"):
        load_targets(tmp_path / "missing.yaml")


def test_a_test_only_variable_lowers_the_shortest_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    short = _edit("600", "3")
    monkeypatch.setenv(TEST_MIN_INTERVAL_ENV, "2")
    [target] = parse_targets(F, short)
    assert target.schedule == Schedule(interval=3)
    monkeypatch.setenv(TEST_MIN_INTERVAL_ENV, "5")
    with pytest.raises(ConfigError, match=r"3 s is outside 5\.\.604800 s"):
        parse_targets(F, short)
    monkeypatch.setenv(TEST_MIN_INTERVAL_ENV, "0")
    with pytest.raises(ConfigError, match=r"expected whole seconds 1\.\.60"):
        parse_targets(F, short)
