"""Tests for exchange.member.generate: synthetic indicators and identities."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
import stix2
from stix2.pattern_visitor import create_pattern_object

from exchange.errors import InvalidInput
from exchange.member.generate import (
    DEFAULT_TLP_WEIGHTS,
    SYNTHETIC_LABEL,
    generate_identity,
    generate_indicators,
    identity_id_for,
)
from exchange.member.iocs import parse_ioc_text
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP_MARKING_IDS

ORG = "identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# STIX 2.1 indicator-type-ov, without "benign", "unknown" and "anonymization".
INDICATOR_TYPES = {"malicious-activity", "anomalous-activity", "attribution", "compromised"}
KILL_CHAIN_PHASES = {
    "reconnaissance",
    "weaponization",
    "delivery",
    "exploitation",
    "installation",
    "command-and-control",
    "actions-on-objectives",
}
PATH_KINDS = {
    "ipv4-addr:value": "ipv4",
    "domain-name:value": "domain",
    "url:value": "url",
    "email-addr:value": "email",
    "file:hashes.MD5": "md5",
    "file:hashes.'SHA-1'": "sha1",
    "file:hashes.'SHA-256'": "sha256",
}


def sample(count: int, **kwargs: Any) -> list[dict[str, Any]]:
    arguments: dict[str, Any] = {"identity_id": ORG, "seed": 7, "start": START, **kwargs}
    return list(generate_indicators(count, **arguments))


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def kind_and_value(pattern: str) -> tuple[str, str]:
    comparison = create_pattern_object(pattern, version="2.1").operand
    literal = re.sub(r"\\(['\\])", r"\1", comparison.rhs.value)
    return PATH_KINDS[str(comparison.lhs)], literal


@pytest.fixture(scope="module")
def indicators() -> list[dict[str, Any]]:
    return sample(400)


def test_every_indicator_passes_stix2_parse(indicators: list[dict[str, Any]]) -> None:
    for indicator in indicators:
        stix2.parse(indicator, allow_custom=False)


def test_every_value_is_a_valid_ioc_of_its_kind(indicators: list[dict[str, Any]]) -> None:
    for indicator in indicators:
        kind, value = kind_and_value(indicator["pattern"])
        parsed = parse_ioc_text(f"type,value\n{kind},{value}\n", fmt="csv")
        assert [(i.kind, i.value) for i in parsed] == [(kind, value)], indicator["pattern"]


def test_ipv4_addresses_are_public(indicators: list[dict[str, Any]]) -> None:
    addresses = [
        ipaddress.IPv4Address(value)
        for kind, value in (kind_and_value(i["pattern"]) for i in indicators)
        if kind == "ipv4"
    ]
    assert addresses
    assert all(address.is_global for address in addresses)


def test_all_kinds_are_mixed(indicators: list[dict[str, Any]]) -> None:
    kinds = Counter(kind_and_value(i["pattern"])[0] for i in indicators)
    assert set(kinds) == set(PATH_KINDS.values())


def test_fields_stay_within_their_vocabularies(indicators: list[dict[str, Any]]) -> None:
    for indicator in indicators:
        assert indicator["created_by_ref"] == ORG
        assert set(indicator["indicator_types"]) <= INDICATOR_TYPES
        assert 30 <= indicator["confidence"] <= 95
        assert indicator["labels"][0] == SYNTHETIC_LABEL
        assert len(indicator["labels"]) == len(set(indicator["labels"])) >= 2
        assert indicator["name"]
        assert "Synthetic" in indicator["description"]
        for phase in indicator.get("kill_chain_phases", []):
            assert phase["kill_chain_name"] == "lockheed-martin-cyber-kill-chain"
            assert phase["phase_name"] in KILL_CHAIN_PHASES
        assert [TLP_MARKING_IDS[ref] for ref in indicator["object_marking_refs"]]


def test_optional_fields_appear_sometimes(indicators: list[dict[str, Any]]) -> None:
    for field in ("kill_chain_phases", "valid_until"):
        present = sum(field in indicator for indicator in indicators)
        assert 0 < present < len(indicators), field
    assert len({i["confidence"] for i in indicators}) > 30
    assert len({tuple(i["indicator_types"]) for i in indicators}) > 1


def test_timestamps_lie_in_the_90_days_before_start(indicators: list[dict[str, Any]]) -> None:
    earliest = START - timedelta(days=90)
    for indicator in indicators:
        created, modified = stamp(indicator["created"]), stamp(indicator["modified"])
        assert earliest <= created <= modified <= START
        assert indicator["valid_from"] == indicator["created"]
        if "valid_until" in indicator:
            assert stamp(indicator["valid_until"]) > created
    spread = max(stamp(i["created"]) for i in indicators) - min(
        stamp(i["created"]) for i in indicators
    )
    assert spread > timedelta(days=80)
    assert any(i["modified"] != i["created"] for i in indicators)


def test_same_seed_gives_the_same_indicators() -> None:
    assert sample(200) == sample(200)


def test_other_seed_gives_other_indicators() -> None:
    one, two = sample(50), sample(50, seed=8)
    assert {i["id"] for i in one}.isdisjoint(i["id"] for i in two)
    assert [i["pattern"] for i in one] != [i["pattern"] for i in two]


def test_start_moves_only_the_timestamps() -> None:
    one, two = sample(100), sample(100, start=START + timedelta(days=3))
    for a, b in zip(one, two, strict=True):
        assert stamp(b["created"]) - stamp(a["created"]) == timedelta(days=3)
        without_time = {"created", "modified", "valid_from", "valid_until"}
        assert {k: v for k, v in a.items() if k not in without_time} == {
            k: v for k, v in b.items() if k not in without_time
        }


def test_a_prefix_is_the_start_of_a_longer_run() -> None:
    assert sample(30) == sample(300)[:30]


def test_default_start_is_now() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    newest = max(stamp(i["modified"]) for i in sample(200, start=None))
    assert before - timedelta(days=90) <= newest <= datetime.now(UTC)


def test_ids_are_unique() -> None:
    ids = [i["id"] for i in generate_indicators(10_000, identity_id=ORG, seed=1, start=START)]
    assert len(set(ids)) == len(ids)


def test_ids_differ_between_publishers() -> None:
    other = identity_id_for("CERT-YY")
    assert {i["id"] for i in sample(20)}.isdisjoint(i["id"] for i in sample(20, identity_id=other))


def tlp_shares(weights: dict[Tlp, float] | None, count: int = 10_000) -> dict[Tlp, float]:
    levels = Counter(
        TLP_MARKING_IDS[i["object_marking_refs"][0]]
        for i in generate_indicators(
            count, identity_id=ORG, seed=3, tlp_weights=weights, start=START
        )
    )
    return {level: levels[level] / count for level in Tlp}


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param(None, id="default"),
        pytest.param({Tlp.RED: 3.0, Tlp.CLEAR: 1.0}, id="two-levels-unnormalised"),
        pytest.param({Tlp.AMBER: 1.0, Tlp.GREEN: 0.0}, id="one-level-zero-other"),
    ],
)
def test_tlp_distribution_follows_the_weights(weights: dict[Tlp, float] | None) -> None:
    expected = dict(DEFAULT_TLP_WEIGHTS if weights is None else weights)
    total = sum(expected.values())
    shares = tlp_shares(weights)
    for level in Tlp:
        wanted = expected.get(level, 0.0) / total
        # 10k draws: the standard error is at most 0.5 points; 2.5 points is 5 sigma.
        assert abs(shares[level] - wanted) < 0.025, (level, shares[level], wanted)
        if wanted == 0:
            assert shares[level] == 0


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        pytest.param({"count": -1}, "must not be negative", id="negative-count"),
        pytest.param({"identity_id": "CERT-XX"}, "not a STIX identity id", id="bad-identity"),
        pytest.param({"tlp_weights": {Tlp.RED: -1.0, Tlp.GREEN: 2.0}}, "non-negative",
                     id="negative-weight"),
        pytest.param({"tlp_weights": {Tlp.RED: 0.0}}, "not all zero", id="all-zero"),
        pytest.param({"tlp_weights": {}}, "not all zero", id="empty-weights"),
        pytest.param({"start": datetime(2025, 1, 1)}, "timezone-aware", id="naive-start"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_at_call_time(kwargs: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"count": 5, "identity_id": ORG, "seed": 1, **kwargs}
    with pytest.raises(InvalidInput, match=reason):
        generate_indicators(**arguments)  # no next(): the call itself refuses


def test_zero_count_yields_nothing() -> None:
    assert sample(0) == []


def test_generation_is_lazy() -> None:
    first = list(islice(generate_indicators(10**9, identity_id=ORG, seed=7, start=START), 3))
    assert first == sample(3)


# ---------------------------------------------------------------------------- identities


def test_identity_passes_stix2_parse_and_has_the_national_fields() -> None:
    identity = generate_identity("CERT-XX", country="xx", seed=1)
    stix2.parse(identity, allow_custom=False)
    assert identity["identity_class"] == "organization"
    assert identity["sectors"] == ["government-national"]
    assert identity["name"] == "CERT-XX"
    assert "XX" in identity["description"]
    assert identity["contact_information"].startswith("incident@cert-xx.example")
    assert not [key for key in identity if key.startswith("x_")]


def test_identity_id_depends_on_the_name_only() -> None:
    one = generate_identity("CERT-XX", country="XX", seed=1)
    again = generate_identity("  cert-xx ", country="YY", seed=2)
    other = generate_identity("CERT-YY", country="XX", seed=1)
    assert one["id"] == again["id"] == identity_id_for("CERT-XX")
    assert one["id"] != other["id"]


def test_identity_is_reproducible_for_a_seed() -> None:
    one = generate_identity("CERT-XX", country="XX", seed=1)
    assert one == generate_identity("CERT-XX", country="XX", seed=1)
    assert one != generate_identity("CERT-XX", country="XX", seed=2)


@pytest.mark.parametrize(
    ("name", "country", "reason"),
    [
        pytest.param("  ", "XX", "non-empty name", id="blank-name"),
        pytest.param("CERT-XX", "XXX", "alpha-2", id="three-letter-country"),
        pytest.param("CERT-XX", "1X", "alpha-2", id="digit-in-country"),
    ],
)
def test_identity_refuses(name: str, country: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        generate_identity(name, country=country, seed=1)
