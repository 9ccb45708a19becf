"""misp-stix's STIX 2.1 objects for an event of simple attributes, built without stix2.

misp-stix builds every object through the ``stix2`` library (about 0.6 ms per
attribute, most of a pull's conversion time). For the commonest MISP events, plain lists
of ``ip-src``/``ip-dst``/``domain``/``hostname``/``url``/``md5``/``sha1``/``sha256``
attributes (feeds, IOC lists, the exchange's own push), :func:`simple_objects` writes
the same objects directly, in the same order, as the JSON misp-stix's ``stix2`` objects
serialise to: ``json.loads(serialize(parser.stix_objects))`` after
``parser.parse_misp_event``. It borrows misp-stix's own pieces for everything that
depends on a value (the attribute type's handler, pattern building and escaping, hash
checks, relationship UUIDs, the TLP marking definitions), and PyMISP's attribute
validation, which misp-stix runs on every attribute, decides whether an attribute is
taken as it is (and reads its first/last seen).

The other attributes of such an event (other types, values PyMISP would change) go
through misp-stix, run on a copy of the event holding only them, and their objects and
relationships are put back in their attribute's place. The whole event goes through
misp-stix itself (None) when it has MISP objects, galaxies, event reports, sightings or
analyst data, a tag that is neither a TLP tag nor a plain label, an attribute with tags,
galaxies, sightings or analyst data of its own, a repeated UUID, no simple attribute,
when it is unpublished or has no ``Orgc``, or when misp-stix makes an object for the
other attributes that is not keyed by one of them. ``tests/unit/misp/test_simple.py``
proves the output equal to misp-stix's on the real events (reduced to their simple
attributes, and with every attribute), and on generated ones. Some of the borrowed
helpers are private, so once per process :func:`direct_path_agrees` compares the direct
path with misp-stix on a sample event of every type it builds; if an installed release
writes otherwise (or has renamed a helper), the direct path is off for the process and
a warning says so: pulls are slower, never different.

Pure code, no I/O.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from misp_stix_converter import MISPtoSTIX21Parser
from pymisp.abstract import describe_types
from pymisp.tools.attributevalidationtool import AttributeValidationTool, validate_attribute
from stix2.serialization import serialize
from stix2.utils import format_datetime

from exchange.misp.twins import carried_times, in_pattern, leaves

__all__ = ["direct_path_agrees", "simple_objects"]

log = logging.getLogger(__name__)

#: misp-stix's handler of each attribute type built here.
_HANDLERS: Final = {"ip-src": "_parse_ip_attribute", "ip-dst": "_parse_ip_attribute",
                    "domain": "_parse_domain_attribute",
                    "hostname": "_parse_domain_attribute", "url": "_parse_url_attribute",
                    "md5": "_parse_hash_attribute", "sha1": "_parse_hash_attribute",
                    "sha256": "_parse_hash_attribute"}
#: stix2's name of each hash (its HashesProperty writes the STIX vocabulary's name).
_HASH_NAMES: Final = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
#: Event and attribute members whose presence (non-empty) sends the event to misp-stix.
_EVENT_EXTRAS: Final = ("Object", "Galaxy", "EventReport", "Sighting", "Note", "Opinion",
                        "Relationship", "Analyst", "cryptographic_key")
_ATTRIBUTE_EXTRAS: Final = ("Tag", "Galaxy", "Sighting", "Note", "Opinion", "Relationship",
                            "object_relation")
#: What PyMISP's load must leave unchanged for an attribute to be taken as it is.
_LOADED_AS_GIVEN: Final = ("type", "category", "value", "uuid", "to_ids", "comment")


def _ms(moment: datetime) -> str:
    """stix2's form of a whole-second time at millisecond precision (created, modified)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _any(moment: datetime) -> str:
    """stix2's form of a whole-second time at its own precision (valid_from, published,
    first_observed, last_observed)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: object) -> datetime | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    if not 0 < number < 253402300800:  # stix2 writes four-digit years
        return None
    moment = datetime.fromtimestamp(number, UTC)
    return moment if moment.year >= 1000 else None


_Times = tuple[datetime, datetime, datetime]


#: Members of a MISP attribute PyMISP's load sets as they are (``MISPAttribute.from_dict``):
#: the identifying and descriptive ones, whose values :func:`_loads_as_given` checks, and
#: lists that are read only when not empty (an empty one is set as it is).
_PLAIN_MEMBERS: Final = frozenset({
    "id", "event_id", "object_id", "object_relation", "category", "type", "to_ids", "uuid",
    "timestamp", "distribution", "sharing_group_id", "comment", "deleted",
    "disable_correlation", "value", "first_seen", "last_seen", "event_uuid"})
_LIST_MEMBERS: Final = frozenset({"Tag", "Galaxy", "Sighting", "ShadowAttribute", "Note",
                                  "Opinion", "Relationship"})
#: PyMISP's own type table (the describeTypes it ships and loads attributes against).
_CATEGORY_TYPES: Final = {category: frozenset(types) for category, types
                          in describe_types["category_type_mappings"].items()}
_KNOWN_TYPES: Final = frozenset(describe_types["types"])
#: PyMISP's value rules, as ``validate_attribute`` runs them (untyped in PyMISP).
_modified: Final[Callable[[Any, Any], Any]] = AttributeValidationTool.modifyBeforeValidation
_validated: Final[Callable[[Any, Any], Any]] = AttributeValidationTool.validate


def _integral(value: Any) -> bool:
    """Whether ``int(value)`` is certain to succeed (PyMISP converts these members)."""
    return (type(value) is int) or (type(value) is str and value.isascii()
                                    and value.isdigit())


def _loads_as_given(attribute: Mapping[str, Any]) -> bool:
    """Whether PyMISP's ``validate_attribute`` certainly returns this attribute with its
    type, category, value, UUID, ``to_ids`` and comment as given and no first or last
    seen, without building a ``MISPAttribute`` (most of a simple attribute's time).

    True only when: no first or last seen; every member is one PyMISP's load sets as it
    is (the lists among them empty); the category is one of PyMISP's, the type one of
    that category's; the members PyMISP converts to integers are integers or ASCII
    digits, the distribution 0, 1, 2, 3 or 5 (4 needs a sharing group PyMISP checks);
    and PyMISP's own value rules (refanging, normalisation, then validation, its
    ``AttributeValidationTool``) leave the value as it is and accept it. False says
    nothing: the caller asks PyMISP. ``tests/unit/misp/test_simple.py`` checks the true
    answers against ``validate_attribute`` on the real events and generated attributes.
    """
    if attribute.get("first_seen") or attribute.get("last_seen"):
        return False
    for name, value in attribute.items():
        if name not in _PLAIN_MEMBERS and not (name in _LIST_MEMBERS and value == []):
            return False
    kind, category = attribute.get("type"), attribute.get("category")
    if kind not in _KNOWN_TYPES or kind not in _CATEGORY_TYPES.get(category, ()):
        return False
    for name in ("id", "event_id", "sharing_group_id"):
        value = attribute.get(name)
        if value and not _integral(value):
            return False
    distribution = attribute.get("distribution")
    if distribution is not None and not (_integral(distribution)
                                         and int(distribution) in (0, 1, 2, 3, 5)):
        return False
    value = attribute.get("value")
    try:
        return _modified(kind, value) == value and _validated(kind, value) is True
    except Exception:  # noqa: BLE001 - PyMISP's rules failing: let PyMISP itself say
        return False


def _taken(attribute: Any, parser: MISPtoSTIX21Parser) -> _Times | None:
    """The attribute's time, first and last observation when the direct path may build
    it (as misp-stix: MISP's first_seen/last_seen as PyMISP reads them, else the
    attribute's time, the later one moved back to the earlier when they cross), else
    None."""
    if not isinstance(attribute, Mapping):
        return None
    kind = attribute.get("type")
    if kind not in _HANDLERS or parser._mapping.attribute_types_mapping(kind) != _HANDLERS[kind]:
        return None
    if any(attribute.get(name) for name in _ATTRIBUTE_EXTRAS):
        return None
    if not (isinstance(attribute.get("value"), str) and isinstance(attribute.get("uuid"), str)
            and isinstance(attribute.get("category"), str) and attribute["category"]
            and type(attribute.get("to_ids")) is bool
            and isinstance(attribute.get("comment", ""), str)):
        return None
    moment = _moment(attribute.get("timestamp"))
    if moment is None:
        return None
    loaded: Any = None
    # A missing comment is loaded as absent, not as the "" it is compared with below.
    if "comment" not in attribute or not _loads_as_given(attribute):
        try:
            loaded = validate_attribute(json.loads(json.dumps(attribute)))
        except Exception:  # noqa: BLE001 - PyMISP refuses it: misp-stix's path says how
            return None
        for name in _LOADED_AS_GIVEN:
            given = attribute.get(name, "" if name == "comment" else None)
            if getattr(loaded, name, None) != given:
                return None
    if kind in _HASH_NAMES:
        try:
            parser._create_hash_pattern(kind, attribute["value"])
        except Exception:  # noqa: BLE001 - misp-stix makes a custom attribute of it
            return None
        if not parser._check_hash_value(parser._define_hash_type(kind), attribute["value"]):
            return None
    first: Any = getattr(loaded, "first_seen", None) if attribute.get("first_seen") else moment
    last: Any = getattr(loaded, "last_seen", None) if attribute.get("last_seen") else moment
    if not (isinstance(first, datetime) and isinstance(last, datetime)
            and first.tzinfo is not None and last.tzinfo is not None):
        return None
    if first > last:
        if attribute.get("last_seen"):
            first = last
        else:
            last = first
    return moment, first, last


def simple_objects(event: Mapping[str, Any],
                   parser_class: Callable[[], MISPtoSTIX21Parser] = MISPtoSTIX21Parser,
                   *, twins: bool = True) -> list[dict[str, Any]] | None:
    """misp-stix's objects for ``event`` (the bare event, as MISP serves it), or None when
    the direct path does not take the event (module docstring), or is off in this
    process because the installed misp-stix or PyMISP no longer agree with it
    (:func:`direct_path_agrees`).

    Args:
        event: The event.
        parser_class: The misp-stix parser the caller would run (the attributes the direct
            path does not build go through it, in a copy of the event holding only them).
        twins: False: a ``to_ids`` attribute the direct path builds is left as what
            :func:`exchange.misp.twins.without_twins` makes of its objects when the rule
            leaves its twin out (its indicator alone, carrying the twin's times), so the
            twin is never built. Nothing else names a directly built attribute's objects
            (the attributes misp-stix converts here carry nothing that refers to another),
            so the rule's own conditions are those of the attribute's objects;
            ``tests/unit/misp/test_simple.py`` holds the result equal to the rule's.
    """
    if not direct_path_agrees(parser_class):
        return None
    return _simple_objects(event, parser_class, twins=twins)


#: A published event of one attribute of each type the direct path builds, with and
#: without ``to_ids``, a comment and first/last seen, and a TLP tag: the self-check's.
_SAMPLE: Final[dict[str, Any]] = {
    "uuid": "5b0e3a2c-7d41-4f7e-9c1a-2f6d8e4b9a10", "info": "cert-exchange self-check",
    "date": "2026-12-01", "timestamp": "1764583200", "publish_timestamp": "1764583260",
    "published": True, "distribution": "1", "threat_level_id": "2", "analysis": "2",
    "Orgc": {"name": "UZ-CERT", "uuid": "0c5b4a8e-2d7f-4c3b-9e1a-6f2d8b4c7a19"},
    "Tag": [{"name": "tlp:green"}],
    "Attribute": [
        {"uuid": f"7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a{n:02d}", "type": kind,
         "category": category, "value": value, "to_ids": n % 2 == 0,
         "timestamp": str(1764583200 + n), "comment": "self-check" if n % 3 == 0 else "",
         **({"first_seen": "2026-11-30T10:00:00.000000+00:00",
             "last_seen": "2026-12-01T10:00:00.000000+00:00"} if n == 2 else {})}
        for n, (kind, category, value) in enumerate((
            ("ip-dst", "Network activity", "198.51.100.23"),
            ("ip-src", "Network activity", "203.0.113.9"),
            ("domain", "Network activity", "self-check.example"),
            ("hostname", "Network activity", "www.self-check.example"),
            ("url", "Network activity", "http://self-check.example/a?b=c'd"),
            ("md5", "Payload delivery", "d41d8cd98f00b204e9800998ecf8427e"),
            ("sha1", "Payload delivery", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            ("sha256", "Payload delivery",
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")))],
}

_AGREES: dict[Callable[[], MISPtoSTIX21Parser], bool] = {}


def direct_path_agrees(parser_class: Callable[[], MISPtoSTIX21Parser] = MISPtoSTIX21Parser
                       ) -> bool:
    """Whether the direct path writes exactly what ``parser_class`` writes for a sample
    event of every attribute type it builds (checked once per process and parser).

    The direct path borrows misp-stix's and PyMISP's own helpers, some of them private,
    so a release that renames or changes one must not change what a pull stores: if the
    check fails or raises, the direct path is off for the process (every event goes
    through misp-stix itself, slower and the same) and a warning says so.
    """
    known = _AGREES.get(parser_class)
    if known is not None:
        return known
    try:
        direct = _simple_objects(_SAMPLE, parser_class, twins=True)
        parser = parser_class()
        parser.parse_misp_event({"Event": json.loads(json.dumps(_SAMPLE))})
        reference = json.loads(serialize(list(parser.stix_objects)))
        agrees = direct is not None and direct == reference
        why = "it writes different objects for the sample event"
    except Exception as e:  # noqa: BLE001 - whatever a changed library raises
        agrees, why = False, f"{type(e).__name__} on the sample event"
    if not agrees:
        log.warning("MISP pull: the direct conversion is off (%s); every event goes"
                    " through misp-stix itself", why)
    _AGREES[parser_class] = agrees
    return agrees


def _simple_objects(event: Mapping[str, Any], parser_class: Callable[[], MISPtoSTIX21Parser],
                    *, twins: bool) -> list[dict[str, Any]] | None:
    """:func:`simple_objects` without the self-check."""
    if any(event.get(name) for name in _EVENT_EXTRAS):
        return None
    attributes = event.get("Attribute")
    orgc = event.get("Orgc")
    if not (isinstance(attributes, list) and attributes and isinstance(orgc, Mapping)
            and isinstance(orgc.get("name"), str) and isinstance(orgc.get("uuid"), str)
            and isinstance(event.get("uuid"), str) and isinstance(event.get("info"), str)
            and event["info"] and event.get("published") is True):
        return None
    stamp, published = _moment(event.get("timestamp")), _moment(event.get("publish_timestamp"))
    if stamp is None or published is None:
        return None
    parser = MISPtoSTIX21Parser()
    labels = ["Threat-Report", 'misp:tool="MISP-STIX-Converter"']
    markings: list[dict[str, Any]] = []
    tags = event.get("Tag") or []
    if not isinstance(tags, list):
        return None
    for tag in tags:
        name = tag.get("name") if isinstance(tag, Mapping) else None
        if not isinstance(name, str) or not name:
            return None
        definition = parser._mapping.tlp_markings(name)
        if definition is None:
            if (parser._mapping.tlp2_markings(name) is not None
                    or parser._mapping.confidence_tags(name) is not None):
                return None
            labels.append(name)
            continue
        marking = json.loads(serialize(definition))
        if all(m["id"] != marking["id"] for m in markings):
            markings.append(marking)
    moments = [_taken(a, parser) for a in attributes]
    uuids = [a.get("uuid") for a in attributes if isinstance(a, Mapping)]
    if len(set(uuids)) != len(attributes) or not any(moments):
        return None
    others = [a for a, times in zip(attributes, moments, strict=True) if times is None]
    converted = _others(event, others, parser_class) if others else ({}, {})
    if converted is None:
        return None
    by_attribute, their_relationships = converted
    identity_id = f"identity--{orgc['uuid']}"
    event_ms = _ms(stamp)
    identity = {"type": "identity", "spec_version": "2.1", "id": identity_id,
                "created": event_ms, "modified": event_ms, "name": orgc["name"],
                "identity_class": "organization"}
    marking_refs = [m["id"] for m in markings]
    body: list[dict[str, Any]] = []
    relationships: list[dict[str, Any]] = []
    for attribute, times in zip(attributes, moments, strict=True):
        if times is None:
            body += by_attribute.get(attribute["uuid"], [])
            relationships += their_relationships.get(attribute["uuid"], [])
            continue
        body += _attribute_objects(attribute, times, identity_id, parser, relationships,
                                   twins=twins)
    report: dict[str, Any] = {
        "type": "report", "spec_version": "2.1", "id": f"report--{event['uuid']}",
        "created_by_ref": identity_id, "created": event_ms, "modified": event_ms,
        "name": event["info"], "published": _any(published),
        "object_refs": [o["id"] for o in body + relationships], "labels": labels}
    if marking_refs:
        report["object_marking_refs"] = marking_refs
    return [identity, report, *body, *relationships, *markings]


def _others(event: Mapping[str, Any], others: list[Any],
            parser_class: Callable[[], MISPtoSTIX21Parser]
            ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]] | None:
    """misp-stix's objects for the attributes the direct path does not build, by attribute
    UUID, and their relationships by the UUID of the attribute they start from: misp-stix
    run on a copy of the event holding only those attributes. None (the whole event goes
    through misp-stix) when one of them carries what could make misp-stix's output depend
    on the other attributes (tags, galaxies, sightings, analyst data, a MISP object
    relation), or misp-stix made an object that is not keyed by its attribute's UUID."""
    keys: set[str] = set()
    for attribute in others:
        if not isinstance(attribute, Mapping) or not isinstance(attribute.get("uuid"), str):
            return None
        if any(attribute.get(name) for name in _ATTRIBUTE_EXTRAS):
            return None
        keys.add(attribute["uuid"])
    source = json.loads(json.dumps({**event, "Attribute": others}))
    parser = parser_class()
    parser.parse_misp_event({"Event": source})
    objects: list[dict[str, Any]] = json.loads(serialize(list(parser.stix_objects)))
    event_ids = {f"identity--{event['Orgc']['uuid']}", f"report--{event['uuid']}"}
    by_attribute: dict[str, list[dict[str, Any]]] = {}
    relationships: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        object_id = obj.get("id")
        if object_id in event_ids or obj.get("type") == "marking-definition":
            continue
        if obj.get("type") == "relationship":
            key = str(obj.get("source_ref", "")).partition("--")[2]
            if key not in keys:
                return None
            relationships.setdefault(key, []).append(obj)
            continue
        key = str(object_id).partition("--")[2]
        if key not in keys:
            return None
        by_attribute.setdefault(key, []).append(obj)
    return by_attribute, relationships


def _attribute_objects(attribute: Mapping[str, Any], times: _Times, identity_id: str,
                       parser: MISPtoSTIX21Parser, relationships: list[dict[str, Any]],
                       *, twins: bool = True) -> list[dict[str, Any]]:
    """One attribute's observed-data, cyber-observables and (``to_ids``) indicator (no
    markings: misp-stix marks only the report); its indicator's relationship goes to
    ``relationships``. Without ``twins``, a ``to_ids`` attribute whose twin the rule of
    :mod:`exchange.misp.twins` leaves out is its indicator alone (:func:`simple_objects`).
    """
    key, kind, value = attribute["uuid"], attribute["type"], attribute["value"]
    moment, first, last = times
    at_ms, at_any = _ms(moment), _any(moment)
    labels = [f'misp:{name}="{attribute[name]}"' for name in ("type", "category")
              if attribute.get(name)]
    if kind in ("ip-src", "ip-dst"):
        side = kind.split("-")[1]
        address_type = "ipv6-addr" if ":" in value else "ipv4-addr"
        address_id = f"{address_type}--{key}"
        observables: list[dict[str, Any]] = [
            {"type": "network-traffic", "spec_version": "2.1",
             "id": f"network-traffic--{key}", f"{side}_ref": address_id,
             "protocols": ["tcp"]},
            {"type": address_type, "spec_version": "2.1", "id": address_id, "value": value}]
        pattern = parser._create_ip_pattern(side, parser._handle_value_for_pattern(value))
    elif kind in _HASH_NAMES:
        observables = [{"type": "file", "spec_version": "2.1", "id": f"file--{key}",
                        "hashes": {_HASH_NAMES[kind]: value}}]
        pattern = parser._create_hash_pattern(kind, value)
    elif kind == "url":
        observables = [{"type": "url", "spec_version": "2.1", "id": f"url--{key}",
                        "value": value}]
        pattern = f"url:value = '{parser._handle_value_for_pattern(value)}'"
    else:
        observables = [{"type": "domain-name", "spec_version": "2.1",
                        "id": f"domain-name--{key}", "value": value}]
        pattern = parser._create_domain_pattern(parser._handle_value_for_pattern(value))
    observed: dict[str, Any] = {
        "type": "observed-data", "spec_version": "2.1", "id": f"observed-data--{key}",
        "created_by_ref": identity_id, "created": at_ms, "modified": at_ms,
        "first_observed": format_datetime(first), "last_observed": format_datetime(last),
        "number_observed": 1,
        "object_refs": [o["id"] for o in observables], "labels": labels}
    out = [observed, *observables]
    if attribute["to_ids"]:
        indicator: dict[str, Any] = {
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{key}",
            "created_by_ref": identity_id, "created": at_ms, "modified": at_ms,
            "pattern": f"[{pattern}]", "pattern_type": "stix", "pattern_version": "2.1",
            "valid_from": at_any,
            "kill_chain_phases": [{"kill_chain_name": "misp-category",
                                   "phase_name": attribute["category"]}],
            "labels": labels}
        if attribute.get("comment"):
            indicator["description"] = attribute["comment"]
        if not twins:
            carried = carried_times(attribute, indicator, observed)
            if carried is not None and all(in_pattern(v, indicator["pattern"])
                                           for sco in observables for v in leaves(sco)):
                indicator.update(carried)
                return [indicator]
        out.append(indicator)
        source, target = indicator["id"], observed["id"]
        name = parser._create_v5_uuid(f"{source} - based-on - {target}")
        relationships.append({
            "type": "relationship", "spec_version": "2.1", "id": f"relationship--{name}",
            "created": at_ms, "modified": at_ms, "relationship_type": "based-on",
            "source_ref": source, "target_ref": target})
    return out
