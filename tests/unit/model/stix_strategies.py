"""Hypothesis strategies for STIX 2.1 objects of the table-checked types, and mutations.

:func:`stix_objects` draws an object of one type that is meant to be valid, from the
property kinds of :data:`exchange.model.stixtypes.TYPE_SPECS` (the tables themselves are
checked against stix2's class definitions in ``test_stix.py``, so drawing from them does not
hide a missing property). :func:`mutated` then breaks it the ways producers get objects
wrong: a missing or unknown property, a value of the wrong JSON type, a bad timestamp,
identifier or reference, times out of order, a damaged nested object, a bad pattern.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from exchange.model import stixkinds as k
from exchange.model.stixtypes import TLP1_IDS, TYPE_SPECS
from exchange.model.tlp import TLP2_EXTENSION_ID, TLP2_IDS
from tests.unit.model.strategies import mutated_patterns, patterns

EXTENSION_ID = "extension-definition--d83fce45-ef58-4c6c-a3f4-1fbc32e98c6e"
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def identifiers(types: frozenset[str] | list[str]) -> st.SearchStrategy[str]:
    """``<type>--<uuid4>`` for a type drawn from ``types``."""
    return st.sampled_from(sorted(types)).flatmap(
        lambda t: st.uuids(version=4).map(lambda u: f"{t}--{u}")
    )


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """A well-formed STIX timestamp with 0, 1, 3 or 6 fractional digits."""
    when = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31)))
    digits = draw(st.sampled_from([0, 1, 3, 3, 6]))
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{when.microsecond:06d}"[:digits]
    return text + "Z"


def _hashes() -> st.SearchStrategy[dict[str, str]]:
    lengths = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128, "SHA3-256": 64, "TLSH": 70}
    return st.dictionaries(
        st.sampled_from(sorted(lengths)), st.just(""), min_size=1, max_size=2
    ).flatmap(
        lambda d: st.fixed_dictionaries(
            {
                name: st.text("0123456789abcdef", min_size=lengths[name], max_size=lengths[name])
                for name in d
            }
        )
    )


@st.composite
def _external_reference(draw: st.DrawFn) -> dict[str, Any]:
    ref: dict[str, Any] = {"source_name": draw(_TEXT)}
    for key in draw(st.sets(st.sampled_from(["url", "description", "external_id"]), min_size=1)):
        ref[key] = draw(_TEXT)
    if draw(st.integers(0, 4)) == 0:
        ref["hashes"] = draw(_hashes())
    return ref


def _extensions() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {EXTENSION_ID: st.fixed_dictionaries({"extension_type": st.just("property-extension")},
                                             optional={"rank": st.integers(0, 9), "note": _TEXT,
                                                       "source_ref": identifiers(["identity"])})}
    )  # fmt: skip


def values_for(key: str, kind: k.Kind) -> st.SearchStrategy[Any]:
    """A valid value for property ``key`` of the given kind."""
    if key == "lang":
        return st.sampled_from(["en", "pt-BR", "fr"])
    if key == "confidence":
        return st.integers(0, 100)
    if isinstance(kind, k.Timestamp):
        return timestamps()
    if isinstance(kind, k.Bool):
        return st.booleans()
    if isinstance(kind, k.Int):
        return st.integers(
            kind.low if kind.low is not None else -(10**6),
            kind.high if kind.high is not None else 10**6,
        )
    if isinstance(kind, k.Float):
        low = -1e6 if kind.low is None else kind.low
        high = 1e6 if kind.high is None else kind.high
        return st.one_of(
            st.floats(low, high, allow_nan=False, allow_infinity=False),
            st.integers(int(low), int(high)),
        )
    if isinstance(kind, k.StrList):
        return st.lists(_TEXT, min_size=1, max_size=3)
    if isinstance(kind, k.Enum):
        return st.sampled_from(sorted(kind.values))
    if isinstance(kind, k.Ref):
        return identifiers(kind.types)
    if isinstance(kind, k.RefList):
        return st.lists(identifiers(kind.types), min_size=1, max_size=3)
    if isinstance(kind, k.KillChainPhases):
        phase = st.fixed_dictionaries({"kill_chain_name": _TEXT, "phase_name": _TEXT})
        return st.lists(phase, min_size=1, max_size=2)
    if isinstance(kind, k.ExternalReferences):
        return st.lists(_external_reference(), min_size=1, max_size=2)
    if isinstance(kind, k.Hashes):
        return _hashes()
    if isinstance(kind, k.Hex):
        return st.text("0123456789abcdefABCDEF", min_size=1, max_size=8).map(lambda h: h * 2)
    if isinstance(kind, k.Extensions):
        return _extensions()
    return _TEXT


_SKIPPED = {"type", "spec_version", "id", "granular_markings", "objects", "definition", "ipfix"}
_ORDERED = [("created", "modified"), ("first_seen", "last_seen"), ("valid_from", "valid_until"),
            ("start_time", "stop_time"), ("first_observed", "last_observed"),
            ("start", "end")]  # fmt: skip


@st.composite
def _marking_definition(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    form = draw(st.sampled_from(["tlp1", "statement", "tlp2", "extension"]))
    obj.pop("definition_type", None)
    obj.pop("extensions", None)
    if form == "tlp1":
        colour = draw(st.sampled_from(sorted(TLP1_IDS)))
        obj["id"] = TLP1_IDS[colour]
        obj["created"] = draw(st.sampled_from(["2017-01-20T00:00:00.000Z", "2017-01-20T00:00:00Z"]))
        obj["definition_type"] = "tlp"
        obj["definition"] = {"tlp": colour}
    elif form == "statement":
        obj["definition_type"] = "statement"
        obj["definition"] = {"statement": draw(_TEXT.filter(bool))}
    elif form == "tlp2":
        level = draw(st.sampled_from(sorted(TLP2_IDS, key=lambda t: t.rank)))
        obj["id"] = TLP2_IDS[level]
        obj["extensions"] = {
            TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": level.value}
        }
    else:
        obj["extensions"] = draw(_extensions())
        if draw(st.booleans()):
            obj["definition_type"] = draw(st.sampled_from(["statement", "x-custom", ""]))


@st.composite
def stix_objects(draw: st.DrawFn, type_name: str) -> dict[str, Any]:
    """An object of ``type_name`` meant to be valid (a few random clashes aside)."""
    spec = TYPE_SPECS[type_name]
    obj: dict[str, Any] = {"type": type_name, "id": draw(identifiers([type_name]))}
    if "spec_version" in spec.required or draw(st.booleans()):
        obj["spec_version"] = "2.1"
    for key, kind in spec.properties.items():
        if key in _SKIPPED:
            continue
        if key in spec.required or draw(st.booleans()):
            obj[key] = draw(values_for(key, kind))
    for first, last in _ORDERED:
        if first in obj and last in obj and draw(st.integers(0, 9)) > 0:
            a, b = sorted([obj[first], obj[last]], key=k.parse_timestamp)
            obj[first], obj[last] = a, b
    if type_name == "indicator":
        obj["pattern_type"] = draw(st.sampled_from(["stix", "stix", "stix", "sigma", "yara"]))
        obj["pattern"] = draw(patterns()) if obj["pattern_type"] == "stix" else draw(_TEXT)
        if obj["pattern_type"] == "stix" and draw(st.booleans()):
            obj["pattern_version"] = "2.1"
    elif type_name == "location" and draw(st.integers(0, 9)) > 0:
        if "latitude" in obj or "longitude" in obj:
            obj.setdefault("latitude", 1.5)
            obj.setdefault("longitude", -2)
        elif "region" not in obj and "country" not in obj:
            obj["country"] = "UZ"
    elif type_name == "malware" and obj.get("is_family") is True and draw(st.integers(0, 3)):
        obj.setdefault("name", "Family")
    elif type_name == "file" and "name" not in obj and "hashes" not in obj:
        obj["name"] = "a.exe"
    elif type_name == "network-traffic" and draw(st.integers(0, 9)) > 0:
        if "src_ref" not in obj and "dst_ref" not in obj:
            obj["dst_ref"] = draw(identifiers(["ipv4-addr", "domain-name"]))
        if "end" in obj and draw(st.integers(0, 3)) > 0:
            obj["is_active"] = False
    elif type_name == "marking-definition":
        draw(_marking_definition(obj))
    if draw(st.integers(0, 5)) == 0:
        obj["extensions"] = {
            EXTENSION_ID: {"extension_type": "toplevel-property-extension"},
            **obj.get("extensions", {}),
        }
        obj["x_score"] = draw(st.one_of(st.integers(0, 9), _TEXT, st.lists(_TEXT, max_size=2)))
    if draw(st.integers(0, 12)) == 0 and "name" in obj:
        obj["granular_markings"] = [
            {
                "marking_ref": TLP1_IDS["green"],
                "selectors": [draw(st.sampled_from(["name", "id", "x"]))],
            }
        ]
    return obj


_ODD_VALUES = st.sampled_from(
    [5, -1, 0, 101, 1.5, "5", "", "true", True, False, None, [], {}, ["a"], [5], [None], {"a": 1},
     "2016-01-01T00:00:00Z", "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff", [["a"]],
     "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", "2.0", "stix", "a\n"]
)  # fmt: skip
_BAD_TIMESTAMP_LIST = (
    ["2016-13-01T00:00:00Z", "2016-01-01 00:00:00Z", "2016-01-01T00:00:00", "2016-1-1T1:2:3Z",
     "2016-01-01t00:00:00z", "2016-01-01T00:00:00.1234567Z", "2016-02-30T00:00:00Z",
     "2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "2016-01-01T00:00:00+00:00",
     "2016-01-01T00:00:00.Z", "1999-01-01T00:00:00Z", "2031-06-01T00:00:00.5Z", 1451606400]
)  # fmt: skip
_BAD_TIMESTAMPS = st.sampled_from(_BAD_TIMESTAMP_LIST)
_U = "f431f809-377b-45e0-aa1c-6a4751cae5ff"
_BAD_REFS = st.sampled_from(
    [f"x-custom--{_U}", f"identity--{{{_U}}}", f"identity--{_U.upper()}",
     f"identity--{_U[:19]}0{_U[20:]}", f"identity--{_U.replace('-', '')}", f"identity-{_U}",
     f"bundle--{_U}", f"identity--{_U}\n", f"Identity--{_U}", f"identity--{_U} ", "", 5]
)  # fmt: skip
#: References to every registered type (right or wrong for the property) and malformed ones.
_REFS = st.one_of(identifiers(sorted(k.STIX_OBJECT_TYPES | k.SCO_TYPES)), _BAD_REFS)
_NEW_KEYS = st.sampled_from(
    ["x_foo", "foo", "custom_properties", "modified", "created", "Name", "valid_from", "revoked",
     "defanged", "labels", "object_refs", "definition", "spec_version", "is_family", "x"]
)  # fmt: skip
_NESTED_KEYS = ["x", "url", "tlp", "hashes", "MD5", "SHA-256", "sha256", "statement",
                "extension_type", "source_ref", "tlp_2_0"]  # fmt: skip
# Weighted towards what the tables decide; ids, spec_version, created/modified and patterns
# are rules both paths share.
_MUTATIONS = ["drop"] * 3 + ["add"] * 2 + ["retype"] * 3 + ["kind"] * 6 + ["order"] * 3 + [
    "nested"] * 3 + ["extension", "id", "spec_version", "pattern"]  # fmt: skip


def _containers(value: Any, found: list[Any]) -> list[Any]:
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            _containers(item, found)
    elif isinstance(value, list):
        for item in value:
            _containers(item, found)
    return found


_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_FIRST_KEYS = {"created", "first_seen", "valid_from", "start_time", "first_observed", "published"}


def canonical_value(key: str, kind: k.Kind) -> Any:
    """One fixed valid value for property ``key`` (later keys get later timestamps)."""
    if key == "lang":
        return "en"
    if isinstance(kind, k.Timestamp):
        return "2024-03-01T10:00:00.000Z" if key in _FIRST_KEYS else "2024-03-02T10:00:00Z"
    if isinstance(kind, k.Int):
        return 50 if kind.low is None else kind.low + 1
    if isinstance(kind, k.Float):
        return 0.5
    values: dict[type, Any] = {
        k.NonEmptyStr: "indicates", k.Str: "value", k.Bool: True, k.StrList: ["a"],
        k.KillChainPhases: [{"kill_chain_name": "k", "phase_name": "p"}],
        k.ExternalReferences: [{"source_name": "s", "url": "https://example.org/r"}],
        k.Hashes: {"SHA-256": _SHA256}, k.Hex: "00ff",
        k.Extensions: {EXTENSION_ID: {"extension_type": "property-extension", "rank": 1}},
    }  # fmt: skip
    if isinstance(kind, k.Enum):
        return sorted(kind.values)[0]
    if isinstance(kind, k.Ref):
        return f"{sorted(kind.types)[0]}--{_U}"
    if isinstance(kind, k.RefList):
        return [f"{sorted(kind.types)[-1]}--{_U}"]
    return values[type(kind)]


def full_object(type_name: str) -> dict[str, Any]:
    """A valid object of ``type_name`` carrying every property its table knows."""
    spec = TYPE_SPECS[type_name]
    obj: dict[str, Any] = {"type": type_name, "spec_version": "2.1", "id": f"{type_name}--{_U}"}
    for key, kind in spec.properties.items():
        if key not in _SKIPPED:
            obj[key] = canonical_value(key, kind)
    if type_name == "indicator":
        obj["pattern"], obj["pattern_type"] = "[ipv4-addr:value = '198.51.100.7']", "stix"
        obj["pattern_version"] = "2.1"
    elif type_name == "marking-definition":
        obj["definition_type"], obj["definition"] = "statement", {"statement": "Copyright ACME"}
        del obj["extensions"]
    elif type_name == "network-traffic":
        obj["is_active"] = False  # 'end' is present
    return obj


def near_misses(key: str, kind: k.Kind) -> list[Any]:
    """Values of about the right shape that are just outside (or inside) what is allowed."""
    if isinstance(kind, k.Int | k.Float):
        edges = [b + d for b in (kind.low, kind.high) if b is not None for d in (-1, 0, 1)]
        return [*edges, 10**10, -(10**10), 0.5, True, "1", None]
    if isinstance(kind, k.Timestamp):
        return [*_BAD_TIMESTAMP_LIST, "2024-03-01T10:00:00Z", None]
    if isinstance(kind, k.Ref | k.RefList):
        refs = [
            f"{t}--{_U}"
            for t in (
                "identity",
                "marking-definition",
                "malware",
                "ipv4-addr",
                "relationship",
                "bundle",
                "language-content",
                "software",
                "x-custom",
                "location",
                "observed-data",
            )
        ]
        refs += [f"identity--{{{_U}}}", f"identity--{_U.upper()}", f"identity--{_U}\n", 5, ""]
        return [[ref] for ref in refs] + [[]] if isinstance(kind, k.RefList) else refs
    if isinstance(kind, k.StrList):
        return [[], [""], ["a", 5], "a", [["a"]], [None], None]
    if isinstance(kind, k.Str | k.NonEmptyStr):
        return ["", 5, None, True, [], ["a"], {"a": 1}]
    if isinstance(kind, k.Bool):
        return ["true", 1, 0, None, False]
    if isinstance(kind, k.Enum):
        return ["", sorted(kind.values)[0].upper(), 5, "agree "]
    if isinstance(kind, k.Hashes):
        return [
            {},
            {"MD5": "0" * 31},
            {"SHA-224": "0" * 56},
            {"md5": "0" * 32},
            {"MD5": 5},
            {"SSDEEP": "3:a:b"},
            {"SSDEEP": "3:a b:c"},
            {"TLSH": "0" * 70 + "\n"},
            {"SHA-256": _SHA256.upper()},
        ]
    if isinstance(kind, k.Hex):
        return ["", "abc", "0g", "00\n", "AbCd", 5]
    if isinstance(kind, k.KillChainPhases):
        return [
            [],
            [{}],
            [{"kill_chain_name": "a"}],
            [{"kill_chain_name": "a", "phase_name": 5}],
            [{"kill_chain_name": "a", "phase_name": "b", "x": 1}],
            ["a"],
            {"kill_chain_name": "a", "phase_name": "b"},
            [{"kill_chain_name": "", "phase_name": ""}],
        ]
    if isinstance(kind, k.ExternalReferences):
        return [
            [],
            [{}],
            [{"source_name": "a"}],
            [{"source_name": "a", "url": ""}],
            [{"source_name": 5, "url": "u"}],
            [{"source_name": "a", "url": 5}],
            [{"source_name": "a", "external_id": "x", "hashes": {}}],
            [{"source_name": "a", "description": "d", "hashes": {"SHA-256": _SHA256}}],
            [{"source_name": "a", "url": "u", "hashes": {"SHA-224": "0" * 56}}],
            [{"source_name": "a", "url": "u", "x": 1}],
            {"source_name": "a", "url": "u"},
        ]
    if isinstance(kind, k.Extensions):
        return [
            {},
            {"x-ext": {}},
            {"ntfs-ext": {"sid": "1"}},
            {EXTENSION_ID: "x"},
            {EXTENSION_ID: {}},
            {EXTENSION_ID: {"extension_type": "toplevel-property-extension"}},
            {"extension-definition--nope": {}},
            [],
            {TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "red"}},
        ]
    if key == "definition":
        return [
            {"tlp": "green"},
            {"tlp": "green", "x": 1},
            {"tlp": "amber"},
            {"tlp": 5},
            {"statement": ""},
            {"statement": "x", "x": 1},
            {"statement": 5},
            '{"statement": "x"}',
            {},
            None,
        ]
    if key == "granular_markings":
        return [
            [{"marking_ref": TLP1_IDS["green"], "selectors": ["id"]}],
            [{"lang": "en", "selectors": ["modified"]}],
            [{"selectors": ["id"]}],
            [{"marking_ref": TLP1_IDS["green"], "selectors": ["labels.[0]"]}],
            [],
        ]
    if key == "objects":
        return [{"0": {"type": "ipv4-addr", "value": "198.51.100.7"}}, {}]
    return []  # type, spec_version and id follow rules both paths share


def _near_miss(kind: k.Kind) -> st.SearchStrategy[Any]:
    values = near_misses("", kind)
    return st.sampled_from(values) if values else _ODD_VALUES


@st.composite
def mutated(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` broken in one or two of the ways producers get objects wrong."""
    obj = copy.deepcopy(obj)
    spec = TYPE_SPECS[obj["type"]]
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        how = draw(st.sampled_from(_MUTATIONS))
        keys = sorted(obj)
        if how == "drop" and keys:
            del obj[draw(st.sampled_from(keys))]
        elif how == "add":
            obj[draw(_NEW_KEYS)] = draw(st.one_of(_ODD_VALUES, timestamps(), _TEXT))
        elif how == "retype" and keys:
            obj[draw(st.sampled_from(keys))] = draw(_ODD_VALUES)
        elif how == "kind":
            key = draw(st.sampled_from(sorted(spec.properties)))
            obj[key] = draw(_near_miss(spec.properties[key]))
        elif how == "id":
            obj["id"] = draw(st.one_of(_BAD_REFS, identifiers(sorted(TYPE_SPECS))))
        elif how == "order":
            pairs = [pair for pair in _ORDERED[1:] if pair[0] in spec.properties]
            first, last = draw(st.sampled_from(pairs or _ORDERED[:1]))
            obj[first] = "2001-01-01T00:00:00.000Z"
            obj[last] = draw(st.sampled_from(["1999-01-01T00:00:00Z", obj[first]]))
        elif how == "nested":
            containers = _containers({key: obj[key] for key in keys if key != "type"}, [])[1:]
            if containers:
                inner = draw(st.sampled_from(containers))
                inner_keys = sorted(inner)
                action = draw(st.sampled_from(["drop", "add", "retype"]))
                if action == "drop" and inner_keys:
                    del inner[draw(st.sampled_from(inner_keys))]
                elif action == "add":
                    inner[draw(st.sampled_from(_NESTED_KEYS))] = draw(_ODD_VALUES)
                elif inner_keys:
                    words = st.sampled_from(
                        ["white", "red", "amber+strict", "toplevel-property-extension"]
                    )
                    inner[draw(st.sampled_from(inner_keys))] = draw(st.one_of(_ODD_VALUES, words))
        elif how == "pattern":
            obj["pattern"] = draw(mutated_patterns())
        elif how == "extension":
            obj["extensions"] = draw(
                st.sampled_from(
                    [{"ntfs-ext": {"sid": "1"}}, {"x-ext": {}}, {EXTENSION_ID: "text"},
                     {"extension-definition--nope": {}},
                     {EXTENSION_ID: {"extension_type": "toplevel-property-extension"}},
                     {EXTENSION_ID: {"extension_type": "new-sdo"}},
                     {TLP2_EXTENSION_ID: {"tlp_2_0": "green"}}]
                )
            )  # fmt: skip
        else:
            obj["spec_version"] = draw(st.sampled_from(["2.0", "2.1", 2.1, None]))
    return obj
