"""The push mapping on the real STIX 2.1 files, for a MISP instance owned by PK-CERT under
the shipped policies: deterministic bytes, the TLP -> distribution table, RED never
reaching an owner it does not name, attribute types, revocation, the signature."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exchange.errors import InvalidInput
from exchange.misp.targets import EventGrouping, TargetFilters
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_IDS
from exchange.node.mispmap import (
    NAMESPACE,
    PushMapping,
    PushOptions,
    SourceObject,
    map_for_target,
)
from exchange.node.misppatterns import simple_attributes
from exchange.policy import RED_RECIPIENTS_EXTENSION_ID, Recipient
from exchange.policy.load import load_policies, parse_policies, read_policy_files
from exchange.policy.model import PolicySet
from exchange.signing.cxsig import sign_object
from exchange.signing.envelope import object_matches_envelope
from exchange.signing.keys import generate

REPO = Path(__file__).resolve().parents[3]
REAL = REPO.parent / "shared" / "data" / "real"
REAL_FILES = sorted([*REAL.glob("stix21/*.json"), *REAL.glob("misp-stix/*stix21*.json")])
PK_IDENTITY = "identity--04b3afef-f6a7-50a0-a2e9-548d3877b7eb"
UZ_IDENTITY = "identity--05f58713-053b-5b2c-b92a-050f448178b8"
PK = Recipient("PK-CERT", PK_IDENTITY, None, None, "misp", "misp")
NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000
JWG_SG = 7
OPTIONS = PushOptions(sharing_groups={"uz-pk-jwg-2026": JWG_SG})


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def strict_misp() -> PolicySet:
    """The shipped policies with the agreement's MISP re-share widened to every level, so
    the engine's TLP rules (not the re-share cap) decide AMBER+STRICT and RED."""
    files = read_policy_files(REPO / "policies")
    name = "agreements/uz-pk-jwg-2026.yaml"
    old = b"misp: [clear, green, amber]         # up to TLP:AMBER"
    assert old in files[name]
    files[name] = files[name].replace(old, b"misp: [clear, green, amber, amber+strict, red]")
    return parse_policies(files)


def real(path: Path) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = json.loads(path.read_text())["objects"]
    return objects


def offer(objects: list[dict[str, Any]], producer: str = "UZ-CERT", alias: str = "jwg",
          default: Tlp = Tlp.GREEN) -> list[SourceObject]:
    return [SourceObject(o, producer, alias, default) for o in objects]


def attributes(result: PushMapping) -> Iterator[Mapping[str, Any]]:
    for event in result.events:
        yield from event.body["Attribute"]


def by_uuid(result: PushMapping) -> dict[str, Mapping[str, Any]]:
    return {a["uuid"]: a for a in attributes(result)}


def indicator(pattern: str, level: Tlp | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(NAMESPACE, pattern)}",
        "created": "2026-03-01T10:00:00.000Z", "modified": "2026-03-01T10:00:00.000Z",
        "name": "test indicator", "pattern": pattern, "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": "2026-03-01T10:00:00Z",
    }
    if level is not None:
        obj["object_marking_refs"] = [TLP2_IDS[level]]
    obj.update(extra)
    return obj


@pytest.mark.skipif(not REAL_FILES, reason=f"real data not found under {REAL}")
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_files_map_to_the_same_bytes_every_time(path: Path, shipped: PolicySet) -> None:
    objects = real(path)
    first = map_for_target(offer(objects), policy=shipped, recipient=PK, options=OPTIONS,
                           now=NOW)
    again = map_for_target(offer(copy.deepcopy(objects[::-1])), policy=shipped,
                           recipient=PK, options=OPTIONS, now=NOW)
    assert [e.to_json() for e in first.events] == [e.to_json() for e in again.events]
    assert first.skipped == again.skipped
    assert [(m.object_id, m.attribute_uuids) for m in first.mapped] == \
        [(m.object_id, m.attribute_uuids) for m in again.mapped]
    # Every object is accounted for: mapped, or skipped with a reason.
    seen = {m.object_id for m in first.mapped} | {s.object_id for s in first.skipped}
    assert seen == {o["id"] for o in objects}
    assert all(s.reason for s in first.skipped)
    # Attribute UUID = indicator UUID.
    held = by_uuid(first)
    for m in first.mapped:
        if m.object_id.startswith("indicator--") and m.attribute_uuids:
            assert m.object_id.split("--")[1] in held
    for attribute in attributes(first):
        assert attribute["to_ids"] is (attribute["type"] != "text")


@pytest.mark.skipif(not REAL_FILES, reason=f"real data not found under {REAL}")
def test_a_report_is_one_event_with_its_uuid_and_its_indicators(shipped: PolicySet) -> None:
    objects = real(REAL / "stix21" / "apt1.json")
    result = map_for_target(offer(objects), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    (report,) = [o for o in objects if o["type"] == "report"]
    (event,) = result.events
    assert event.uuid == report["id"].split("--")[1]
    assert event.body["info"] == report["name"]
    assert event.body["date"] == report["published"][:10]
    assert {t["name"] for t in event.body["Tag"]} == {
        "tlp:green", 'cert-exchange:contributor="UZ-CERT"'}
    kinds = {a["value"]: a["type"] for a in event.body["Attribute"]}
    assert kinds["223.166.0.0/15"] == "ip-dst"
    assert kinds["hugesoft.org"] == "domain"
    assert kinds["001dd76872d80801692ff942308c64e6"] == "md5"
    assert sum(1 for t in kinds.values() if t == "stix2-pattern") == 2  # the x509 ones
    skipped_types = {s.object_type for s in result.skipped}
    assert skipped_types == {"intrusion-set", "threat-actor", "identity", "malware", "tool",
                             "attack-pattern", "relationship"}


PATTERNS = [
    ("ipv4", "[ipv4-addr:value = '198.51.100.7']", [("ip-dst", "Network activity")]),
    ("ipv4-cidr", "[ipv4-addr:value = '223.166.0.0/15']", [("ip-dst", "Network activity")]),
    ("ipv6", "[ipv6-addr:value = '2001:db8::1']", [("ip-dst", "Network activity")]),
    ("domain", "[domain-name:value = 'evil.example']", [("domain", "Network activity")]),
    ("url", "[url:value = 'http://x4z9arb.cn/4712/']", [("url", "Network activity")]),
    ("email", "[email-addr:value = 'phish@example.com']", [("email", "Network activity")]),
    ("md5", "[file:hashes.md5 = '001dd76872d80801692ff942308c64e6']",
     [("md5", "Payload delivery")]),
    ("sha1", "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
     [("sha1", "Payload delivery")]),
    ("sha256", "[file:hashes.'SHA-256' = "
               "'ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c']",
     [("sha256", "Payload delivery")]),
    ("sha512", "[file:hashes.'SHA-512' = '" + "a" * 128 + "']", [("sha512", "Payload delivery")]),
    ("or-in-one", "[domain-name:value = 'a.example' OR ipv4-addr:value = '192.0.2.1']",
     [("domain", "Network activity"), ("ip-dst", "Network activity")]),
    ("or-of-two", "[url:value = 'http://a.example/'] OR [file:hashes.MD5 = "
                  "'d41d8cd98f00b204e9800998ecf8427e']",
     [("url", "Network activity"), ("md5", "Payload delivery")]),
    ("and", "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:name = 'x.exe']",
     [("stix2-pattern", "Payload delivery")]),
    ("matches", "[email-message:from_ref.value MATCHES '.+@g0thamnatl\\\\.com$']",
     [("stix2-pattern", "Payload delivery")]),
    ("qualifier", "[ipv4-addr:value = '192.0.2.1'] WITHIN 300 SECONDS",
     [("stix2-pattern", "Payload delivery")]),
    ("unknown-path", "[x509-certificate:issuer = 'CN=WEBMAIL']",
     [("stix2-pattern", "Payload delivery")]),
    # poisonivy.json's value: MISP would silently drop it as a domain attribute.
    ("not-a-host-name", "[domain-name:value = 'domain autuo.xicp.net' OR ipv4-addr:value"
     " = '60.10.1.115']", [("stix2-pattern", "Payload delivery")]),
]


@pytest.mark.parametrize(("pattern", "expected"), [(p, e) for _, p, e in PATTERNS],
                         ids=[i for i, _, _ in PATTERNS])
def test_attribute_type_and_category_for_each_observable_kind(
        pattern: str, expected: list[tuple[str, str]], shipped: PolicySet) -> None:
    obj = indicator(pattern, Tlp.GREEN)
    result = map_for_target(offer([obj]), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    (mapped,) = result.mapped
    got = [(by_uuid(result)[u]["type"], by_uuid(result)[u]["category"])
           for u in mapped.attribute_uuids]
    assert sorted(got) == sorted(expected)
    assert by_uuid(result)[obj["id"].split("--")[1]]["to_ids"] is True
    if expected[0][0] == "stix2-pattern":
        assert by_uuid(result)[obj["id"].split("--")[1]]["value"] == pattern
    else:
        values = simple_attributes(pattern)
        assert values is not None
        assert {by_uuid(result)[u]["value"] for u in mapped.attribute_uuids} == \
            {v.value for v in values}


LEVELS = [
    # level, producer, sharing groups, expected distribution, sharing group id
    (Tlp.CLEAR, "UZ-CERT", True, "3", None),
    (Tlp.GREEN, "UZ-CERT", True, "1", None),
    (Tlp.AMBER, "UZ-CERT", True, "4", str(JWG_SG)),
    (Tlp.AMBER, "UZ-CERT", False, "0", None),
    (Tlp.AMBER_STRICT, "UZ-CERT", True, "0", None),
    (Tlp.RED, "UZ-CERT", True, "0", None),
]


@pytest.mark.parametrize(("level", "producer", "with_sg", "distribution", "sg"), LEVELS,
                         ids=[f"{lv.value}-{'sg' if s else 'no-sg'}" for lv, _, s, _, _ in LEVELS])
def test_distribution_and_tag_of_each_level(level: Tlp, producer: str, with_sg: bool,
                                            distribution: str, sg: str | None,
                                            strict_misp: PolicySet) -> None:
    extra: dict[str, Any] = {}
    if level is Tlp.RED:
        extra["extensions"] = {RED_RECIPIENTS_EXTENSION_ID: {
            "extension_type": "property-extension", "recipients": [PK_IDENTITY]}}
    obj = indicator("[domain-name:value = 'level.example']", level, **extra)
    options = OPTIONS if with_sg else PushOptions()
    result = map_for_target(offer([obj], producer), policy=strict_misp, recipient=PK,
                            options=options, now=NOW)
    assert result.skipped == ()
    (event,) = result.events
    (attribute,) = event.body["Attribute"]
    assert attribute["distribution"] == distribution
    assert attribute.get("sharing_group_id") == sg
    # At the event's level the attribute needs no tag of its own: the event's applies.
    assert "Tag" not in attribute
    # The event has the level of its only attribute: tag and distribution agree.
    assert event.body["distribution"] == distribution
    assert event.body.get("sharing_group_id") == sg
    assert {"name": f"tlp:{level.value}"} in event.body["Tag"]


def test_shipped_policy_keeps_amber_strict_and_red_off_misp(shipped: PolicySet) -> None:
    red = indicator("[domain-name:value = 'red.example']", Tlp.RED, extensions={
        RED_RECIPIENTS_EXTENSION_ID: {"extension_type": "property-extension",
                                      "recipients": [PK_IDENTITY]}})
    strict = indicator("[domain-name:value = 'strict.example']", Tlp.AMBER_STRICT)
    result = map_for_target(offer([red, strict]), policy=shipped, recipient=PK,
                            options=OPTIONS, now=NOW)
    assert result.events == ()
    assert {s.rule for s in result.skipped} == {"deny-reshare-misp:uz-pk-jwg-2026"}


def test_own_objects_reach_the_owners_instance_at_every_level(shipped: PolicySet) -> None:
    """PK-CERT's own instance gets PK-CERT's AMBER+STRICT and RED (producer rule)."""
    objs = [indicator(f"[domain-name:value = '{lv.value}.own.example']", lv)
            for lv in (Tlp.AMBER_STRICT, Tlp.RED)]
    result = map_for_target(offer(objs, "PK-CERT", "pk"), policy=shipped, recipient=PK,
                            options=OPTIONS, now=NOW)
    assert result.skipped == ()
    assert sorted(a["distribution"] for a in attributes(result)) == ["0", "0"]


@pytest.mark.parametrize("policy_name", ["shipped", "strict_misp"])
@pytest.mark.parametrize("named", [[UZ_IDENTITY], []], ids=["names-uz", "names-nobody"])
def test_red_never_mapped_for_an_owner_it_does_not_name(
        policy_name: str, named: list[str], request: pytest.FixtureRequest) -> None:
    policy: PolicySet = request.getfixturevalue(policy_name)
    extra = {"extensions": {RED_RECIPIENTS_EXTENSION_ID: {
        "extension_type": "property-extension", "recipients": named}}} if named else {}
    red = indicator("[ipv4-addr:value = '203.0.113.66']", Tlp.RED, **extra)
    green = indicator("[ipv4-addr:value = '203.0.113.1']", Tlp.GREEN)
    result = map_for_target(offer([red, green]), policy=policy, recipient=PK,
                            options=OPTIONS, now=NOW)
    (skip,) = result.skipped
    assert skip.object_id == red["id"]
    assert skip.reason
    dump = b"".join(e.to_json() for e in result.events)
    assert b"203.0.113.66" not in dump
    assert b"tlp:red" not in dump
    assert red["id"].split("--")[1].encode() not in dump


@pytest.mark.skipif(not REAL_FILES, reason=f"real data not found under {REAL}")
def test_granular_red_in_a_real_file_stays_off(strict_misp: PolicySet) -> None:
    """The OASIS granular-markings example marks part of its indicator RED: the whole
    object is held at RED and names nobody, so PK-CERT's instance gets none of it."""
    objects = real(REAL / "stix21" / "using-granular-markings.json")
    result = map_for_target(offer(objects), policy=strict_misp, recipient=PK,
                            options=OPTIONS, now=NOW)
    (ind,) = [o for o in objects if o["type"] == "indicator"]
    assert ind["id"] not in {m.object_id for m in result.mapped}
    assert any(s.object_id == ind["id"] and s.rule == "deny-tlp-red-not-named"
               for s in result.skipped)


def test_revoked_indicator_becomes_a_soft_delete(shipped: PolicySet) -> None:
    obj = indicator("[domain-name:value = 'gone.example' OR ipv4-addr:value = '192.0.2.9']",
                    Tlp.GREEN, revoked=True, modified="2026-03-02T00:00:00.000Z")
    seen = [SourceObject(obj, "UZ-CERT", "jwg", Tlp.GREEN, received_earlier=True)]
    result = map_for_target(seen, policy=shipped, recipient=PK, options=OPTIONS, now=NOW)
    (mapped,) = result.mapped
    assert mapped.deleted
    assert set(result.deletions) == set(mapped.attribute_uuids)
    assert obj["id"].split("--")[1] in result.deletions
    assert all(a["deleted"] is True for a in attributes(result))
    # Never received: nothing to delete, and nothing sent.
    unseen = map_for_target(offer([obj]), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    assert unseen.events == ()
    assert [s.rule for s in unseen.skipped] == ["deny-revoked-not-received"]


def test_signature_travels_as_the_detached_envelope(shipped: PolicySet) -> None:
    key = generate("Ed25519")
    obj = sign_object(indicator("[url:value = 'http://signed.example/']", Tlp.GREEN), key)
    result = map_for_target(offer([obj]), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    held = by_uuid(result)
    (mapped,) = result.mapped
    url_attr = held[obj["id"].split("--")[1]]
    (sig_uuid,) = [u for u in mapped.attribute_uuids if held[u]["type"] == "text"]
    sig_attr = held[sig_uuid]
    assert sig_uuid == str(uuid.uuid5(NAMESPACE, f"cx-sig/{obj['id']}"))
    assert object_matches_envelope(obj, json.loads(sig_attr["value"]))
    assert key.kid in url_attr["comment"]
    assert sig_uuid in url_attr["comment"]
    assert sig_attr["to_ids"] is False
    assert (sig_attr["distribution"], sig_attr.get("Tag")) == (url_attr["distribution"],
                                                               url_attr.get("Tag"))


def test_indicators_outside_reports_group_by_producer_and_day(shipped: PolicySet) -> None:
    a = indicator("[domain-name:value = 'a.example']", Tlp.GREEN)
    b = indicator("[domain-name:value = 'b.example']", Tlp.CLEAR)
    c = indicator("[domain-name:value = 'c.example']", Tlp.GREEN,
                  created="2026-03-02T08:00:00.000Z", modified="2026-03-02T08:00:00.000Z")
    result = map_for_target(offer([a, b, c]), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    events = {(e.body["date"], e.body["Tag"][0]["name"]): e for e in result.events}
    # One event per producer, day and level: each event's tag is true of all it holds.
    assert set(events) == {("2026-03-01", "tlp:green"), ("2026-03-01", "tlp:clear"),
                           ("2026-03-02", "tlp:green")}
    first = events["2026-03-01", "tlp:green"]
    assert first.uuid == str(uuid.uuid5(NAMESPACE, "producer-day/UZ-CERT/2026-03-01/green"))
    assert first.body["info"] == "UZ-CERT indicators, 2026-03-01, TLP:GREEN (cert-exchange)"
    assert first.body["distribution"] == "1"
    assert events["2026-03-01", "tlp:clear"].body["distribution"] == "3"
    assert all("Tag" not in attribute for e in result.events
               for attribute in e.body["Attribute"])
    # A new version stays in the event of the first (created does not change).
    a2 = dict(a, modified="2026-04-10T00:00:00.000Z", description="updated")
    later = map_for_target(offer([a2]), policy=shipped, recipient=PK, options=OPTIONS,
                           now=NOW)
    assert later.events[0].uuid == first.uuid
    # Per indicator: one event each.
    each = map_for_target(offer([a, b, c]), policy=shipped, recipient=PK,
                          options=PushOptions(grouping=EventGrouping.INDICATOR), now=NOW)
    assert len(each.events) == 3


def test_an_indicator_the_target_holds_stays_in_its_event(shipped: PolicySet) -> None:
    a = indicator("[domain-name:value = 'placed.example']", Tlp.GREEN)
    held = "11111111-2222-4333-8444-555555555555"
    result = map_for_target(offer([a]), policy=shipped, recipient=PK,
                            options=PushOptions(placed={a["id"]: held}), now=NOW)
    (event,) = result.events
    assert (event.uuid, event.complete) == (held, False)
    assert set(event.body) == {"uuid", "Attribute"}


FILTERS = [
    ("collection", TargetFilters(collections=("pk",)), "filter-collection"),
    ("ceiling", TargetFilters(tlp_ceiling=Tlp.CLEAR), "filter-tlp-ceiling"),
    ("include", TargetFilters(include_tags=("phishing",)), "filter-tags"),
    ("exclude", TargetFilters(exclude_tags=("test",)), "filter-tags"),
]


@pytest.mark.parametrize(("filters", "rule"), [(f, r) for _, f, r in FILTERS],
                         ids=[i for i, _, _ in FILTERS])
def test_target_filters_narrow_with_a_reason(filters: TargetFilters, rule: str,
                                             shipped: PolicySet) -> None:
    obj = indicator("[domain-name:value = 'filtered.example']", Tlp.GREEN, labels=["test"])
    result = map_for_target(offer([obj]), policy=shipped, recipient=PK,
                            options=PushOptions(filters=filters), now=NOW)
    assert result.events == ()
    assert [s.rule for s in result.skipped] == [rule]


def test_only_the_latest_version_is_mapped(shipped: PolicySet) -> None:
    v1 = indicator("[domain-name:value = 'v.example']", Tlp.GREEN)
    v2 = dict(v1, modified="2026-03-05T00:00:00.000Z", pattern="[domain-name:value = 'w.example']")
    result = map_for_target(offer([v2, v1]), policy=shipped, recipient=PK, options=OPTIONS,
                            now=NOW)
    assert [a["value"] for a in attributes(result)] == ["w.example"]
    assert [(s.version, s.rule) for s in result.skipped] == [(v1["modified"], "superseded")]


def test_a_recipient_on_another_channel_is_refused(shipped: PolicySet) -> None:
    taxii = Recipient("PK-CERT", PK_IDENTITY, None, None, "consumer", "taxii")
    with pytest.raises(InvalidInput, match="channel 'misp'"):
        map_for_target([], policy=shipped, recipient=taxii, options=OPTIONS, now=NOW)


@pytest.mark.parametrize("order", [1, -1], ids=["jwg-first", "uz-first"])
def test_an_id_in_two_collections_goes_from_the_copy_the_policy_allows(
        order: int, shipped: PolicySet) -> None:
    # AMBER in UZ-CERT's national feed is for its constituents, not PK-CERT; the same
    # indicator in the joint working group's collection is PK-CERT's under the agreement.
    obj = indicator("[domain-name:value = 'two-copies.example']", Tlp.AMBER)
    copies = [*offer([obj], alias="jwg"), *offer([copy.deepcopy(obj)], alias="uz")]
    result = map_for_target(copies[::order], policy=shipped, recipient=PK,
                            options=OPTIONS, now=NOW)
    [mapped] = result.mapped
    assert (mapped.object_id, mapped.collection) == (obj["id"], "jwg")
    assert [a["value"] for a in attributes(result)] == ["two-copies.example"]
    assert [a["distribution"] for a in attributes(result)] == ["4"]
    [other] = result.skipped
    assert other.rule == "other-copy"
    assert "'uz'" in other.reason
    assert "'jwg'" in other.reason
    # Alone, the copy in 'uz' is refused by the policy (the control).
    alone = map_for_target(copies[1:], policy=shipped, recipient=PK, options=OPTIONS,
                           now=NOW)
    assert alone.mapped == ()
    assert alone.skipped[0].rule != "other-copy"


def test_a_later_version_the_owner_may_not_receive_leaves_the_allowed_copy(
        shipped: PolicySet) -> None:
    v1 = indicator("[domain-name:value = 'copy-v1.example']", Tlp.AMBER)
    v2 = dict(v1, modified="2026-03-05T00:00:00.000Z",
              pattern="[domain-name:value = 'copy-v2.example']")
    result = map_for_target([*offer([v1], alias="jwg"), *offer([v2], alias="uz")],
                            policy=shipped, recipient=PK, options=OPTIONS, now=NOW)
    assert [a["value"] for a in attributes(result)] == ["copy-v1.example"]
    assert [(s.version, s.rule) for s in result.skipped] == [(v2["modified"], "other-copy")]


def test_no_copy_allowed_gives_each_copy_its_own_reason(shipped: PolicySet) -> None:
    obj = indicator("[domain-name:value = 'red-copies.example']", Tlp.RED)
    result = map_for_target([*offer([obj], alias="jwg"), *offer([obj], alias="uz")],
                            policy=shipped, recipient=PK, options=OPTIONS, now=NOW)
    assert result.mapped == ()
    assert len(result.skipped) == 2
    assert all(s.rule != "other-copy" and s.reason for s in result.skipped)


def test_in_a_mixed_report_only_attributes_below_the_events_level_carry_a_tag(
        shipped: PolicySet) -> None:
    clear = indicator("[domain-name:value = 'clear.mixed.example']", Tlp.CLEAR)
    green = indicator("[domain-name:value = 'green.mixed.example']", Tlp.GREEN)
    report = {"type": "report", "spec_version": "2.1",
              "id": "report--8a1b6c1e-2f7d-4b55-9a57-5c4d2e3f1a90",
              "created": "2026-03-01T10:00:00.000Z", "modified": "2026-03-01T10:00:00.000Z",
              "name": "mixed", "published": "2026-03-01T10:00:00Z",
              "object_refs": [clear["id"], green["id"]],
              "object_marking_refs": [TLP2_IDS[Tlp.CLEAR]]}
    result = map_for_target(offer([report, clear, green]), policy=shipped, recipient=PK,
                            options=OPTIONS, now=NOW)
    (event,) = result.events  # the report's event, at the report's level
    assert event.uuid == report["id"].split("--")[1]
    assert {"name": "tlp:clear"} in event.body["Tag"]
    assert event.body["distribution"] == "3"
    held = by_uuid(result)
    assert "Tag" not in held[clear["id"].split("--")[1]]
    assert held[green["id"].split("--")[1]]["Tag"] == [{"name": "tlp:green"}]
    assert held[green["id"].split("--")[1]]["distribution"] == "1"
