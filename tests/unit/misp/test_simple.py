"""exchange.misp.simple: misp-stix's own objects for events of simple attributes.

Each real MISP event is reduced to its simple attributes (the event-level extras the
direct path does not build removed) and converted both ways; the objects must be equal,
in the same order. Events the direct path does not build must come back None.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from stix2.serialization import serialize

from exchange.misp import simple as simple_module
from exchange.misp.convert import _Parser, convert_event
from exchange.misp.simple import direct_path_agrees
from exchange.misp.simple import simple_objects as direct_objects
from tests.unit.misp.test_convert import FILES, OWNER, events_of

HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}
SIMPLE = ("ip-src", "ip-dst", "domain", "hostname", "url", "md5", "sha1", "sha256")


def simple_objects(event: dict[str, Any]) -> list[dict[str, Any]] | None:
    return direct_objects(event, _Parser)  # the parser convert_event runs


def misp_stix(event: dict[str, Any]) -> list[dict[str, Any]]:
    parser = _Parser()
    parser.parse_misp_event({"Event": copy.deepcopy(event)})
    objects: list[dict[str, Any]] = json.loads(serialize(list(parser.stix_objects)))
    return objects


def reduced(event: dict[str, Any], *, only_simple: bool = True) -> dict[str, Any]:
    """The event with only its simple attributes (or all of them), stripped of what they
    may not carry."""
    out = copy.deepcopy(event)
    for name in ("Object", "Galaxy", "EventReport", "Sighting"):
        out.pop(name, None)
    kept = []
    for attribute in out.get("Attribute", []):
        if attribute.get("type") in SIMPLE or not only_simple:
            for name in ("Tag", "Galaxy", "Sighting"):
                attribute.pop(name, None)
            kept.append(attribute)
    out["Attribute"] = kept
    out["Tag"] = [t for t in out.get("Tag", []) if not str(t.get("name")).startswith(
        "misp-galaxy:")]
    out.setdefault("Orgc", {"name": "CIRCL", "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"})
    out["published"] = True
    out.setdefault("publish_timestamp", out.get("timestamp"))
    return out


def real_events() -> list[dict[str, Any]]:
    return [reduced(e) for relative in FILES for e in events_of(relative)
            if any(a.get("type") in SIMPLE for a in e.get("Attribute", []))]


def test_real_events_same_objects_as_misp_stix() -> None:
    events = real_events()
    built = 0
    for event in events:
        direct = simple_objects(event)
        if direct is None:
            continue
        assert direct == misp_stix(event), event["uuid"]
        built += 1
    assert built >= 3, f"only {built} of {len(events)} real events took the direct path"


def test_real_events_with_every_attribute_type_same_objects_as_misp_stix() -> None:
    """The attributes the direct path does not build go through misp-stix and are put
    back in their place: the whole event equals misp-stix's conversion of it."""
    events = [reduced(e, only_simple=False) for relative in FILES for e in events_of(relative)
              if e.get("Attribute")]
    mixed = 0
    for event in events:
        direct = simple_objects(event)
        if direct is None:
            continue
        assert direct == misp_stix(event), event["uuid"]
        if any(a.get("type") not in SIMPLE for a in event["Attribute"]):
            mixed += 1
    assert mixed >= 3, f"only {mixed} real events mixed both paths"


def generated(seed: int, count: int = 40) -> dict[str, Any]:
    rng = random.Random(seed)
    attributes = []
    for n in range(count):
        kind = rng.choice(SIMPLE)
        if kind.startswith("ip"):
            value = (f"2001:db8::{rng.randrange(1, 9999):x}" if rng.random() < 0.2
                     else f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        elif kind in HASH_LENGTHS:
            value = f"{rng.getrandbits(4 * HASH_LENGTHS[kind]):0{HASH_LENGTHS[kind]}x}"
        elif kind == "url":
            value = f"http://{rng.choice(['a', 'b-c'])}{n}.example/p?q='{n}'&x=\\y"
        else:
            value = f"{rng.choice(['a', 'b-c', 'x1'])}{n}.{rng.choice(['example', 'test'])}"
        seen = [None, None]
        for side in (0, 1):
            if rng.random() < 0.3:
                fraction = rng.choice(["000000", "123400", "500000", "000001"])
                seen[side] = (f"{rng.choice([2023, 2024])}-0{rng.randrange(1, 10)}-1"
                              f"{rng.randrange(10)}T0{rng.randrange(10)}:00:00.{fraction}+00:00")
        if seen[0] and seen[1]:
            seen.sort()  # PyMISP refuses last_seen before first_seen
        attributes.append({
            "id": str(n), "type": kind,
            "category": ("Payload delivery" if kind in HASH_LENGTHS
                         else rng.choice(["Network activity", "Payload delivery"])),
            "to_ids": rng.random() < 0.75, "uuid": str(uuid.UUID(int=rng.getrandbits(128),
                                                                 version=4)),
            "event_id": "1", "distribution": rng.choice(["0", "1", "5"]),
            "timestamp": str(1_700_000_000 + rng.randrange(10_000)),
            "comment": rng.choice(["", "seen in 'campaign'", "back\\slash", "bench"]),
            "sharing_group_id": "0", "deleted": rng.random() < 0.1,
            "disable_correlation": False, "object_id": "0", "object_relation": None,
            "first_seen": seen[0], "last_seen": seen[1], "value": value})
    return {"id": "1", "orgc_id": "1", "org_id": "1", "date": "2026-01-01",
            "threat_level_id": "2", "info": f"generated {seed}", "published": True,
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "attribute_count": str(count), "analysis": "2",
            "timestamp": "1700020000", "publish_timestamp": "1700020001",
            "distribution": rng.choice(["1", "3"]), "sharing_group_id": "0",
            "Orgc": {"id": "1", "name": "UZ-CERT", "uuid": "044597aa-c911-4030-8e9b-91990eef6f76"},
            "Org": {"id": "1", "name": "UZ-CERT", "uuid": "044597aa-c911-4030-8e9b-91990eef6f76"},
            "Tag": rng.choice([[{"name": "tlp:green"}], [{"name": "tlp:white"},
                                                          {"name": "feed:x"}], []]),
            "Attribute": attributes, "Object": [], "Galaxy": [], "EventReport": []}


@pytest.mark.parametrize("seed", range(12))
def test_generated_events_same_objects_as_misp_stix(seed: int) -> None:
    event = generated(seed)
    direct = simple_objects(event)
    assert direct is not None
    assert direct == misp_stix(event)


@pytest.mark.parametrize("change", [
    lambda e: e["Attribute"][0].update(Tag=[{"name": "tlp:red"}]),
    lambda e: [a.update(type="stix2-pattern", value="[a:b = 'c']") for a in e["Attribute"]],
    lambda e: e["Attribute"][1].update(uuid=e["Attribute"][0]["uuid"]),
    lambda e: e.update(Object=[{"name": "file"}]),
    lambda e: e.update(published=False),
    lambda e: e.update(Tag=[{"name": "misp:confidence-level=\"completely-confident\""}]),
    lambda e: e.pop("Orgc"),
])
def test_what_the_direct_path_leaves_to_misp_stix(change: Any) -> None:
    event = generated(99)
    change(event)
    assert simple_objects(event) is None


@pytest.mark.parametrize(("change", "taken"), [
    (lambda e: e["Attribute"][0].update(type="ip-dst|port", value="10.0.0.1|80"), True),
    (lambda e: e["Attribute"][0].update(type="stix2-pattern", value="[a:b = 'c']"), True),
    (lambda e: e["Attribute"][0].update(type="filename|sha256", value=f"a.exe|{'0' * 64}"),
     True),
    (lambda e: e["Attribute"][0].update(type="text", value="free text"), True),
    (lambda e: e["Attribute"][0].update(value="A.EXAMPLE", type="domain"), True),
    # PyMISP drops these: misp-stix's run on them alone differs, so the event goes whole
    (lambda e: e["Attribute"][0].update(type="md5", value="zz"), False),
    (lambda e: e["Attribute"][0].update(value="not an ip", type="ip-dst"), False),
])
def test_an_attribute_misp_stix_converts_is_put_back_in_its_place(change: Any,
                                                                  taken: bool) -> None:
    event = generated(98)
    change(event)
    direct = simple_objects(event)
    assert (direct is not None) is taken
    assert direct is None or direct == misp_stix(event)


def test_convert_event_is_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import exchange.misp.convert as convert_module  # noqa: PLC0415
    events = [generated(seed) for seed in range(7, 19)] + real_events()
    direct = [convert_event(e, owner_identity=OWNER) for e in events]
    monkeypatch.setattr(convert_module, "simple_objects", lambda e, p, **_: None)
    assert [convert_event(e, owner_identity=OWNER) for e in events] == direct


def test_without_twins_the_direct_path_is_what_the_twin_rule_makes_of_it() -> None:
    """The pull asks the direct path not to build the twins the rule of ADR 0005 would
    leave out: the objects must be exactly the rule's result on the full objects, and
    some twins must have been left out and some kept (times that cannot be carried)."""
    from exchange.misp.twins import without_twins  # noqa: PLC0415

    events = [generated(seed) for seed in range(7, 31)] + real_events()
    left_out = kept = 0
    for event in events:
        full = simple_objects(event)
        if full is None:
            continue
        ruled = without_twins(event, full)
        assert direct_objects(event, _Parser, twins=False) == ruled, event.get("uuid")
        left_out += len(full) - len(ruled)
        kept += sum(o["type"] == "relationship" for o in ruled)
    assert left_out > 100
    assert kept > 0


# --- the pre-check that spares PyMISP's attribute load ---------------------------------

_VALUES = {
    "ip-dst": ["198.51.100.7", "198.051.100.7", " 198.51.100.7", "198.51.100.7/32",
               "198.51.100.0/24", "2001:DB8::1", "2001:db8::1", "2001:db8:0::1/128",
               "198[.]51.100.7", "300.1.1.1", "", "example.org"],
    "domain": ["example.org", "Example.ORG", "exa_mple.org", "example[.]org", "example",
               "-bad-.org", "xn--bcher-kva.example", "b\u00fccher.example", "example.org.",
               " example.org", "a" * 70 + ".org"],
    "hostname": ["www.example.org", "WWW.example.org", "www.example.org:80", "www[.]x.org"],
    "url": ["https://example.org/a?b=c", "hxxps://example.org/", "https://example[.]org/",
            "example.org/path", "https://example.org/\u00e9", " https://example.org/"],
    "md5": ["d41d8cd98f00b204e9800998ecf8427e", "D41D8CD98F00B204E9800998ECF8427E",
            "d41d8cd98f00b204e9800998ecf8427", "zz1d8cd98f00b204e9800998ecf8427e"],
    "sha256": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"],
}


def _attributes(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Attributes as MISP serves them, with the members the pre-check reads varied."""
    from pymisp.abstract import describe_types  # noqa: PLC0415

    categories = list(describe_types["category_type_mappings"])
    out = []
    for _ in range(count):
        kind = rng.choice(list(_VALUES))
        def pick(good: Any, *risky: Any) -> Any:
            return good if rng.random() < 0.85 else rng.choice(risky)

        attribute: dict[str, Any] = {
            "id": pick("12", 12, "x1", "", "\u00b2"),
            "event_id": pick("3", "", None, "-1"),
            "object_id": "0", "object_relation": rng.choice([None, ""]),
            "category": pick(rng.choice(["Network activity", "Payload delivery",
                                         "External analysis"]),
                             rng.choice(categories), "No such category"),
            "type": kind, "to_ids": rng.choice([True, False]),
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": "1764979200",
            "distribution": pick(rng.choice(["0", "1", "3", "5", 2]), "4", "7", None, "x"),
            "sharing_group_id": pick("0", "", "2", "a"),
            "comment": rng.choice(["", "seen in a campaign"]),
            "deleted": rng.choice([False, True]),
            "disable_correlation": rng.choice([False, True]),
            "value": rng.choice(_VALUES[kind]),
            "first_seen": pick(None, "", "2026-12-01T10:00:00.000000+00:00"),
            "last_seen": None,
        }
        for name in rng.sample(["Tag", "ShadowAttribute", "data", "extra_member"],
                               rng.randint(0, 1)):
            attribute[name] = rng.choice([[], [{"name": "tlp:green"}], "x"])
        out.append(attribute)
    return out


def test_an_attribute_the_pre_check_takes_is_one_pymisp_loads_as_given() -> None:
    """Whenever the pre-check answers yes, PyMISP's validate_attribute (what the direct
    path asked before) loads the attribute with every compared member as given and no
    first or last seen; and it answers yes for most of the real events' simple ones."""
    from pymisp.tools.attributevalidationtool import validate_attribute  # noqa: PLC0415

    from exchange.misp.simple import _LOADED_AS_GIVEN, _loads_as_given  # noqa: PLC0415

    real = [a for e in real_events() for a in e["Attribute"] if a.get("type") in SIMPLE]
    generated = _attributes(random.Random(19), 3000)
    said_yes = {"real": 0, "generated": 0}
    for where, attributes in (("real", real), ("generated", generated)):
        for attribute in attributes:
            if not _loads_as_given(attribute):
                continue
            said_yes[where] += 1
            loaded = validate_attribute(json.loads(json.dumps(attribute)))
            for name in _LOADED_AS_GIVEN:
                assert getattr(loaded, name, None) == attribute.get(name), (name, attribute)
            assert getattr(loaded, "first_seen", None) is None, attribute
            assert getattr(loaded, "last_seen", None) is None, attribute
    assert said_yes["real"] > len(real) / 2, said_yes
    assert 100 < said_yes["generated"] < len(generated), said_yes


@pytest.fixture
def fresh_self_check() -> Iterator[None]:
    simple_module._AGREES.clear()
    yield
    simple_module._AGREES.clear()


def test_the_installed_libraries_agree_with_the_direct_path(fresh_self_check: None) -> None:
    assert direct_path_agrees(_Parser)
    sample = copy.deepcopy(simple_module._SAMPLE)
    assert simple_objects(sample) == misp_stix(sample)


@pytest.mark.parametrize("drift", ["writes-otherwise", "raises"])
def test_a_library_that_drifted_turns_the_direct_path_off_and_pulls_stay_the_same(
        fresh_self_check: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, drift: str) -> None:
    """As if a misp-stix or PyMISP release changed a helper the direct path borrows:
    the self-check sees it, the direct path is off, and a converted event is exactly
    misp-stix's own (what a pull stores does not change, it is only slower)."""
    if drift == "writes-otherwise":  # first/last seen written with all six digits
        monkeypatch.setattr(simple_module, "format_datetime",
                            lambda value: value.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    else:  # a helper renamed away
        def renamed(*_: Any) -> Any:
            raise AttributeError("'MISPtoSTIX21Parser' object has no attribute"
                                 " '_create_hash_pattern'")
        monkeypatch.setattr(simple_module, "_moment", renamed)
    event = real_events()[0]
    with caplog.at_level("WARNING", logger="exchange.misp.simple"):
        assert not direct_path_agrees(_Parser)
        assert simple_objects(event) is None
    assert "direct conversion is off" in caplog.text
    converted = convert_event({"Event": copy.deepcopy(event)}, owner_identity=OWNER)
    monkeypatch.undo()
    simple_module._AGREES.clear()
    assert converted == convert_event({"Event": copy.deepcopy(event)}, owner_identity=OWNER)
