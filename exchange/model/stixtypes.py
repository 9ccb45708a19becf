"""Property tables for the STIX 2.1 types :mod:`exchange.model.stix` checks without stix2.

Each :class:`TypeSpec` lists a type's properties with their kind
(:mod:`exchange.model.stixkinds`), the required ones and the cross-property rules. Together
they reproduce what ``stix2.parse(obj, allow_custom=False, version="2.1")`` (stix2 3.0.2)
accepts for values of the right JSON type. ``tests/unit/model/test_stix.py`` checks every
table against stix2's class definitions and proves the verdicts equal, property by property
and with Hypothesis.

One stix2 rule is reproduced on purpose although it surprises: a TLP 1.0 marking definition
must be exactly one of the four predefined ones (id, colour and ``created``).

Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from exchange.model.stixkinds import (
    ANY_OBJECT,
    BOOL,
    EXTENSIONS,
    EXTERNAL_REFERENCES,
    HASHES,
    HEX,
    KILL_CHAIN_PHASES,
    RELATIONSHIP_ENDPOINTS,
    SCO_TYPES,
    SDO_TYPES,
    SKIP,
    SRO_TYPES,
    STR,
    STR_LIST,
    TIMESTAMP,
    Enum,
    Float,
    Int,
    Kind,
    NonEmptyStr,
    Ref,
    RefList,
    Skip,
    parse_timestamp,
)

# --- type tables ---------------------------------------------------------------------

Constraint = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """What one STIX type may and must carry.

    Attributes:
        name: The STIX type.
        properties: Every property stix2 defines for the type, with its kind.
        required: Properties that must be present (stix2's and the exchange's).
        constraints: Cross-property rules, each returning a reason or None.
    """

    name: str
    properties: Mapping[str, Kind]
    required: frozenset[str]
    constraints: tuple[Constraint, ...] = ()


GRANULAR_MARKINGS = Skip()  # objects carrying them are checked by stix2 (selector rules)
MARKING_REFS = RefList(frozenset({"marking-definition"}))
IDENTITY_REF = Ref(frozenset({"identity"}))

_SDO_COMMON: Final[dict[str, Kind]] = {
    "type": SKIP, "spec_version": SKIP, "id": SKIP, "created_by_ref": IDENTITY_REF,
    "created": TIMESTAMP, "modified": TIMESTAMP, "revoked": BOOL, "labels": STR_LIST,
    "confidence": Int(), "lang": STR, "external_references": EXTERNAL_REFERENCES,
    "object_marking_refs": MARKING_REFS, "granular_markings": GRANULAR_MARKINGS,
    "extensions": EXTENSIONS,
}  # fmt: skip
_SCO_COMMON: Final[dict[str, Kind]] = {
    "type": SKIP, "spec_version": SKIP, "id": SKIP, "object_marking_refs": MARKING_REFS,
    "granular_markings": GRANULAR_MARKINGS, "defanged": BOOL, "extensions": EXTENSIONS,
}  # fmt: skip
_VERSIONED: Final = frozenset({"type", "spec_version", "id", "created", "modified"})
#: The common properties of SDOs and SROs, and of SCOs (STIX 2.1 sections 3.2 and 6.1): the
#: tables of custom objects (section 11.2), and names a custom property may not take.
SDO_COMMON: Final[Mapping[str, Kind]] = _SDO_COMMON
SCO_COMMON: Final[Mapping[str, Kind]] = _SCO_COMMON
VERSIONED: Final = _VERSIONED


def _later(first: str, last: str, *, strictly: bool = False) -> Constraint:
    def rule(obj: Mapping[str, Any]) -> str | None:
        if first in obj and last in obj:
            start, end = parse_timestamp(obj[first]), parse_timestamp(obj[last])
            if start is not None and end is not None:
                if strictly and end <= start:
                    return f"'{last}' must be later than '{first}'"
                if end < start:
                    return f"'{last}' must not be earlier than '{first}'"
        return None

    return rule


def _malware_family_named(obj: Mapping[str, Any]) -> str | None:
    if obj.get("is_family") is True and "name" not in obj:
        return "'name' is required when 'is_family' is true"
    return None


def _location_placed(obj: Mapping[str, Any]) -> str | None:
    if ("latitude" in obj) != ("longitude" in obj):
        return "'latitude' and 'longitude' must be given together"
    if "precision" in obj and "latitude" not in obj:
        return "'precision' needs 'latitude' and 'longitude'"
    if "region" not in obj and "country" not in obj and "latitude" not in obj:
        return "needs 'region', 'country', or 'latitude' and 'longitude'"
    return None


def _file_identified(obj: Mapping[str, Any]) -> str | None:
    if "hashes" not in obj and "name" not in obj:
        return "needs 'hashes' or 'name'"
    return None


def _network_traffic(obj: Mapping[str, Any]) -> str | None:
    # stix2's NetworkTraffic._check_object_constraints, in its order.
    if "src_ref" not in obj and "dst_ref" not in obj:
        return "needs 'src_ref' or 'dst_ref'"
    if "end" in obj and obj.get("is_active") is not False:
        return "'is_active' must be false when 'end' is present"
    return None


def _observed_data_refs(obj: Mapping[str, Any]) -> str | None:
    # 'objects' (deprecated) never reaches the table: such objects are checked by stix2.
    if "object_refs" not in obj:
        return "'object_refs' is missing"
    return None


TLP1_CREATED: Final = datetime(2017, 1, 20)  # naive UTC like parse_timestamp
#: stix2's predefined TLP 1.0 marking-definition id for each colour.
TLP1_IDS: Final = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}


def _marking_definition(obj: Mapping[str, Any]) -> str | None:
    has_type, has_definition = "definition_type" in obj, "definition" in obj
    definition_type = obj.get("definition_type")
    if has_type and has_definition:
        definition = obj["definition"]
        if definition_type not in ("tlp", "statement"):
            return "'definition_type' must be 'tlp' or 'statement' when 'definition' is given"
        if not isinstance(definition, dict):
            return "'definition' must be an object"
        if definition_type == "statement":
            if definition.keys() != {"statement"} or not isinstance(definition["statement"], str):
                return "a statement 'definition' must hold exactly one string 'statement'"
            if not definition["statement"]:
                return "a statement 'definition' must not be empty"
            return None
        if definition.keys() != {"tlp"} or not isinstance(definition["tlp"], str):
            return "a tlp 'definition' must hold exactly one string 'tlp'"
        colour = definition["tlp"]
        if colour not in TLP1_IDS:
            return f"'definition' names unknown TLP colour {colour[:20]!r}"
        if obj.get("id") != TLP1_IDS[colour] or parse_timestamp(obj["created"]) != TLP1_CREATED:
            return (
                f"a TLP 1.0 {colour} marking definition must be the predefined one"
                f" ({TLP1_IDS[colour]}, created 2017-01-20T00:00:00.000Z)"
            )
        return None
    if has_definition:
        return "'definition' needs 'definition_type'"
    if "extensions" not in obj:
        return "needs 'definition_type' and 'definition', or 'extensions'"
    if definition_type == "tlp":
        return "a 'tlp' definition_type needs a 'definition'"
    return None


def _sdo(
    name: str,
    own: dict[str, Kind],
    required: set[str],
    *constraints: Constraint,
) -> TypeSpec:
    return TypeSpec(
        name, {**_SDO_COMMON, **own}, _VERSIONED | frozenset(required), tuple(constraints)
    )


def _sco(name: str, own: dict[str, Kind], required: set[str], *constraints: Constraint) -> TypeSpec:
    return TypeSpec(
        name,
        {**_SCO_COMMON, **own},
        frozenset({"type", "id"} | required),
        tuple(constraints),
    )


def _refs(*types: str) -> RefList:
    return RefList(frozenset(types))


_SEEN = _later("first_seen", "last_seen")
_ENDPOINTS = frozenset({"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"})
_OBJECT_REFS = RefList(ANY_OBJECT)

TYPE_SPECS: Final[dict[str, TypeSpec]] = {
    spec.name: spec
    for spec in (
        _sdo("attack-pattern", {"name": STR, "description": STR, "aliases": STR_LIST,
             "kill_chain_phases": KILL_CHAIN_PHASES}, {"name"}),
        _sdo("campaign", {"name": STR, "description": STR, "aliases": STR_LIST,
             "first_seen": TIMESTAMP, "last_seen": TIMESTAMP, "objective": STR}, {"name"}, _SEEN),
        _sdo("course-of-action", {"name": STR, "description": STR}, {"name"}),
        _sdo("grouping", {"name": STR, "description": STR, "context": STR,
             "object_refs": _OBJECT_REFS}, {"context", "object_refs"}),
        _sdo("identity", {"name": STR, "description": STR, "roles": STR_LIST,
             "identity_class": STR, "sectors": STR_LIST, "contact_information": STR}, {"name"}),
        _sdo("incident", {"name": STR, "description": STR,
             "kill_chain_phases": KILL_CHAIN_PHASES}, {"name"}),
        _sdo("indicator", {"name": STR, "description": STR, "indicator_types": STR_LIST,
             "pattern": STR, "pattern_type": STR, "pattern_version": STR,
             "valid_from": TIMESTAMP, "valid_until": TIMESTAMP,
             "kill_chain_phases": KILL_CHAIN_PHASES},
             {"pattern", "pattern_type", "valid_from"},
             _later("valid_from", "valid_until", strictly=True)),
        _sdo("infrastructure", {"name": STR, "description": STR,
             "infrastructure_types": STR_LIST, "aliases": STR_LIST,
             "kill_chain_phases": KILL_CHAIN_PHASES, "first_seen": TIMESTAMP,
             "last_seen": TIMESTAMP}, {"name"}, _SEEN),
        _sdo("intrusion-set", {"name": STR, "description": STR, "aliases": STR_LIST,
             "first_seen": TIMESTAMP, "last_seen": TIMESTAMP, "goals": STR_LIST,
             "resource_level": STR, "primary_motivation": STR,
             "secondary_motivations": STR_LIST}, {"name"}, _SEEN),
        _sdo("location", {"name": STR, "description": STR, "latitude": Float(-90.0, 90.0),
             "longitude": Float(-180.0, 180.0), "precision": Float(0.0, None), "region": STR,
             "country": STR, "administrative_area": STR, "city": STR, "street_address": STR,
             "postal_code": STR}, set(), _location_placed),
        _sdo("malware", {"name": STR, "description": STR, "malware_types": STR_LIST,
             "is_family": BOOL, "aliases": STR_LIST, "kill_chain_phases": KILL_CHAIN_PHASES,
             "first_seen": TIMESTAMP, "last_seen": TIMESTAMP,
             "operating_system_refs": _refs("software"),
             "architecture_execution_envs": STR_LIST, "implementation_languages": STR_LIST,
             "capabilities": STR_LIST, "sample_refs": _refs("artifact", "file")},
             {"is_family"}, _SEEN, _malware_family_named),
        _sdo("note", {"abstract": STR, "content": STR, "authors": STR_LIST,
             "object_refs": _OBJECT_REFS}, {"content", "object_refs"}),
        _sdo("observed-data", {"first_observed": TIMESTAMP, "last_observed": TIMESTAMP,
             "number_observed": Int(1, 999999999), "objects": SKIP,
             "object_refs": RefList(SCO_TYPES | SRO_TYPES)},
             {"first_observed", "last_observed", "number_observed"},
             _later("first_observed", "last_observed"), _observed_data_refs),
        _sdo("opinion", {"explanation": STR, "authors": STR_LIST,
             "opinion": Enum(frozenset({"strongly-disagree", "disagree", "neutral", "agree",
                                        "strongly-agree"})),
             "object_refs": _OBJECT_REFS}, {"opinion", "object_refs"}),
        _sdo("report", {"name": STR, "description": STR, "report_types": STR_LIST,
             "published": TIMESTAMP, "object_refs": _OBJECT_REFS},
             {"name", "published", "object_refs"}),
        _sdo("threat-actor", {"name": STR, "description": STR, "threat_actor_types": STR_LIST,
             "aliases": STR_LIST, "first_seen": TIMESTAMP, "last_seen": TIMESTAMP,
             "roles": STR_LIST, "goals": STR_LIST, "sophistication": STR,
             "resource_level": STR, "primary_motivation": STR,
             "secondary_motivations": STR_LIST, "personal_motivations": STR_LIST},
             {"name"}, _SEEN),
        _sdo("tool", {"name": STR, "description": STR, "tool_types": STR_LIST,
             "aliases": STR_LIST, "kill_chain_phases": KILL_CHAIN_PHASES,
             "tool_version": STR}, {"name"}),
        _sdo("vulnerability", {"name": STR, "description": STR}, {"name"}),
        _sdo("relationship", {"relationship_type": NonEmptyStr(), "description": STR,
             "source_ref": Ref(RELATIONSHIP_ENDPOINTS), "target_ref": Ref(RELATIONSHIP_ENDPOINTS),
             "start_time": TIMESTAMP, "stop_time": TIMESTAMP},
             {"relationship_type", "source_ref", "target_ref"},
             _later("start_time", "stop_time", strictly=True)),
        _sdo("sighting", {"description": STR, "first_seen": TIMESTAMP, "last_seen": TIMESTAMP,
             "count": Int(0, 999999999), "sighting_of_ref": Ref(SDO_TYPES),
             "observed_data_refs": _refs("observed-data"),
             "where_sighted_refs": _refs("identity", "location"), "summary": BOOL},
             {"sighting_of_ref"}, _SEEN),
        TypeSpec("marking-definition", {
            "type": SKIP, "spec_version": SKIP, "id": SKIP, "created_by_ref": IDENTITY_REF,
            "created": TIMESTAMP, "definition_type": STR, "name": STR, "definition": SKIP,
            "external_references": EXTERNAL_REFERENCES, "object_marking_refs": MARKING_REFS,
            "granular_markings": GRANULAR_MARKINGS, "extensions": EXTENSIONS},
            frozenset({"type", "spec_version", "id", "created"}), (_marking_definition,)),
        _sco("ipv4-addr", {"value": STR, "resolves_to_refs": _refs("mac-addr"),
             "belongs_to_refs": _refs("autonomous-system")}, {"value"}),
        _sco("ipv6-addr", {"value": STR, "resolves_to_refs": _refs("mac-addr"),
             "belongs_to_refs": _refs("autonomous-system")}, {"value"}),
        _sco("domain-name", {"value": STR,
             "resolves_to_refs": _refs("ipv4-addr", "ipv6-addr", "domain-name")}, {"value"}),
        _sco("url", {"value": STR}, {"value"}),
        # 'ipfix' (a dictionary) is left to stix2 itself (_needs_stix2).
        _sco("network-traffic", {"start": TIMESTAMP, "end": TIMESTAMP, "is_active": BOOL,
             "src_ref": Ref(_ENDPOINTS), "dst_ref": Ref(_ENDPOINTS),
             "src_port": Int(0, 65535), "dst_port": Int(0, 65535), "protocols": STR_LIST,
             "src_byte_count": Int(0, None), "dst_byte_count": Int(0, None),
             "src_packets": Int(0, None), "dst_packets": Int(0, None), "ipfix": SKIP,
             "src_payload_ref": Ref(frozenset({"artifact"})),
             "dst_payload_ref": Ref(frozenset({"artifact"})),
             "encapsulates_refs": _refs("network-traffic"),
             "encapsulated_by_ref": Ref(frozenset({"network-traffic"}))},
             {"protocols"}, _network_traffic, _later("start", "end")),
        _sco("email-addr", {"value": STR, "display_name": STR,
             "belongs_to_ref": Ref(frozenset({"user-account"}))}, {"value"}),
        _sco("file", {"hashes": HASHES, "size": Int(0, None), "name": STR, "name_enc": STR,
             "magic_number_hex": HEX, "mime_type": STR, "ctime": TIMESTAMP, "mtime": TIMESTAMP,
             "atime": TIMESTAMP, "parent_directory_ref": Ref(frozenset({"directory"})),
             "contains_refs": RefList(SCO_TYPES), "content_ref": Ref(frozenset({"artifact"}))},
             set(), _file_identified),
    )
}  # fmt: skip
