"""One MISP event as STIX 2.1 objects, with misp-stix's known losses compensated (pure).

:func:`convert_event` runs misp-stix's ``MISPtoSTIX21Parser`` (research/misp.md section
5) on one event as MISP serves it (soft-deleted attributes included) and then corrects
what misp-stix gets wrong for the exchange (sections 5.2-5.4). The simple attributes of
an event (IP addresses, domains, URLs, hashes) are written directly as the very objects
misp-stix makes for them (:mod:`exchange.misp.simple`, proved equal), without stix2's
cost; the corrections below apply to both alike:

* **TLP 2.0 by level.** misp-stix writes TLP 1.0 marking ids for ``tlp:white``,
  ``tlp:green``, ``tlp:amber`` and ``tlp:red``, and marks only the report. Here every
  object gets the TLP 2.0 id of its level (:data:`exchange.model.tlp.TLP2_IDS`): the
  attribute's own ``tlp:`` tag, else the event's. The TLP marking-definition objects
  misp-stix adds are left out (the standard ids need no definition); any other
  marking-definition (MISP has none by default) is left out with its references, and
  counted as a loss.
* **Distribution.** An event, attribute or MISP object with distribution 0 (the
  organisation only) or 1 (this community: the owner's own MISP) becomes TLP:RED naming
  the target's owner as its only recipient (the RED recipients extension,
  :mod:`exchange.policy.tlp`), whatever its ``tlp:`` tag says: the owner never agreed to
  share it further, and RED is the only level the exchange gives to nobody else.
  Distribution 4 (a sharing group: a list of organisations the exchange cannot map) is
  held at TLP:AMBER at least. Distributions 2, 3 and 5 follow the tags.
* **Soft deletions become revocations.** misp-stix exports a soft-deleted attribute or
  object as if it were live; here every versioned object made from it gets
  ``revoked: true``. (Its cyber-observables, which have no versions, stay as they are.)
* **Patterns.** ``ip-dst``/``ip-src`` export as a ``network-traffic`` comparison; they
  are written back in the simple ``[ipv4-addr:value = '...']`` form (``ipv6-addr`` too).
* **Stable times.** misp-stix stamps objects without a MISP timestamp (feed-format
  attributes, the sighting organisations' identities) with the export time. Every
  ``created``/``modified`` later than the event's timestamp, or missing, is set to the
  event's timestamp, so converting the same event twice gives the same objects.
* **Custom types.** misp-stix writes attributes and objects STIX has no type for
  (comments, free text, unknown MISP objects) as ``x-misp-attribute``/``x-misp-object``,
  which STIX objects may not reference; each becomes a ``note`` with the same UUID on
  the event's report or grouping, its value (and comment) as the note's content.
* **Sightings** are kept as misp-stix writes them (``sighting`` objects, and
  ``opinion`` objects for false positives).
* **One object per ``to_ids`` value.** misp-stix writes such an attribute as an
  indicator and an observed-data twin (with its cyber-observables and a ``based-on``
  relationship); the twin is left out when it says nothing the indicator does not, and
  MISP's first/last seen become the indicator's ``valid_from``/``valid_until``
  (:func:`exchange.misp.twins.without_twins`, docs/adr/0005-misp-pull-objects.md).

:func:`measure_losses` says, per MISP element kind, how many elements have no trace in
the STIX objects (tests keep these counts in a golden file).

What it leaves to others: echo detection, versions against what the exchange holds,
signatures, storage and policy (:mod:`exchange.misp.pull`). Pure code, no I/O; misp-stix
is called in memory only.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from misp_stix_converter import MISPtoSTIX21Parser
from stix2.serialization import serialize

from exchange.errors import ExchangeError, InvalidInput
from exchange.misp.simple import simple_objects
from exchange.misp.twins import without_twins
from exchange.model.objects import Tlp
from exchange.model.pattern import stix2_indicator_class
from exchange.model.tlp import TLP2_IDS, TLP_MARKING_IDS
from exchange.policy.tlp import RED_RECIPIENTS_EXTENSION_ID
from exchange.storage.timestamps import to_micros

__all__ = ["Conversion", "ConversionFailed", "convert_event", "measure_losses",
           "normal_pattern", "tlp_of_tags"]

log = logging.getLogger(__name__)

#: MISP tag -> TLP 2.0 level (TLP 1.0 names map to their 2.0 level).
_TLP_TAGS: Final[Mapping[str, Tlp]] = {
    "tlp:white": Tlp.CLEAR, "tlp:clear": Tlp.CLEAR, "tlp:green": Tlp.GREEN,
    "tlp:amber": Tlp.AMBER, "tlp:amber+strict": Tlp.AMBER_STRICT, "tlp:red": Tlp.RED,
}
_NETWORK_PATTERN = re.compile(
    r"\[network-traffic:(?P<side>dst|src)_ref\.type = '(?P<kind>ipv4-addr|ipv6-addr)'"
    r" AND network-traffic:(?P=side)_ref\.value = '(?P<value>[^'\\]*)'\]")
_STIX_UUID = re.compile(r"--([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: Event fields STIX has no place for (research/misp.md 5.4).
_EVENT_METADATA: Final = ("threat_level_id", "analysis", "date")
#: Times misp-stix fills with the export time when MISP gives none.
_LATER_TIMES: Final = ("first_observed", "last_observed", "valid_from", "first_seen",
                       "last_seen", "published")


class ConversionFailed(ExchangeError):
    """misp-stix could not convert an event (the message names the event and why)."""

    http_status = 502
    title = "MISP event not convertible"


@dataclass(frozen=True, slots=True)
class Conversion:
    """One event as STIX 2.1 objects.

    Attributes:
        event_uuid: The event's UUID.
        timestamp: The event's timestamp (MISP's clock, epoch seconds).
        objects: The STIX objects (parsed JSON, unsigned), in misp-stix's order.
        revoked: Ids of the objects made revoked (soft-deleted attributes or objects).
        restricted: Ids of the objects held at RED for the owner (distribution 0 or 1).
    """

    event_uuid: str
    timestamp: int
    objects: tuple[dict[str, Any], ...]
    revoked: frozenset[str]
    restricted: frozenset[str]


def tlp_of_tags(tags: object) -> Tlp | None:
    """The strictest TLP level among a MISP tag list, or None."""
    levels = [_TLP_TAGS[name] for name in _tag_names(tags) if name in _TLP_TAGS]
    return max(levels, key=lambda level: level.rank) if levels else None


def normal_pattern(pattern: str) -> str:
    """misp-stix's network-traffic form of an IP pattern in the simple form."""
    match = _NETWORK_PATTERN.fullmatch(pattern.strip())
    if match is None:
        return pattern
    return f"[{match['kind']}:value = '{match['value']}']"


def _tag_names(tags: object) -> list[str]:
    if not isinstance(tags, list):
        return []
    return [str(t["name"]).strip().lower() for t in tags
            if isinstance(t, Mapping) and isinstance(t.get("name"), str)]


def _uuid_of(stix_id: object) -> str | None:
    match = _STIX_UUID.search(stix_id) if isinstance(stix_id, str) else None
    return match[1] if match else None


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _instant(value: str) -> int | None:
    """A STIX timestamp as microseconds since the epoch, None when it is none.

    The conversion compares times as instants, never as text: ``...:15Z``,
    ``...:15.000Z`` and ``...:15.000001Z`` order differently as strings than as times.
    """
    try:
        return to_micros(value)
    except InvalidInput:
        return None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _elements(event: Mapping[str, Any], *, inner: bool = True
              ) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Every attribute and MISP object (and, with ``inner``, the attributes of the
    objects), with whether it is an object."""
    for attribute in event.get("Attribute") or ():
        if isinstance(attribute, Mapping):
            yield attribute, False
    for misp_object in event.get("Object") or ():
        if isinstance(misp_object, Mapping):
            yield misp_object, True
            for attribute in misp_object.get("Attribute") or () if inner else ():
                if isinstance(attribute, Mapping):
                    yield attribute, False


def _copy(event: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of an event: through the C JSON codec when it is plain JSON (as MISP
    serves it; several times faster than ``copy.deepcopy``), else ``copy.deepcopy``."""
    try:
        copied = json.loads(json.dumps(event, allow_nan=False))
    except (TypeError, ValueError):
        return copy.deepcopy(dict(event))
    if copied != event:  # a tuple, a non-string key...: not plain JSON
        return copy.deepcopy(dict(event))
    return dict(copied)


def _without(event: Mapping[str, Any], drop: Collection[str]) -> dict[str, Any]:
    out = _copy(event)
    out["Attribute"] = [a for a in out.get("Attribute") or ()
                        if not (isinstance(a, Mapping) and a.get("uuid") in drop)]
    objects = []
    for misp_object in out.get("Object") or ():
        if isinstance(misp_object, dict) and misp_object.get("uuid") not in drop:
            misp_object["Attribute"] = [a for a in misp_object.get("Attribute") or ()
                                        if not (isinstance(a, Mapping)
                                                and a.get("uuid") in drop)]
            objects.append(misp_object)
    out["Object"] = objects
    return out


class _Parser(MISPtoSTIX21Parser):  # type: ignore[misc]
    """misp-stix's parser, building its indicators with the exchange's fast grammar check
    (:func:`~exchange.model.pattern.stix2_indicator_class`: the same verdicts as the
    ANTLR validator stix2 runs, at a fraction of its cost; a third of a pull's time went
    there)."""

    @staticmethod
    def _create_indicator(indicator_args: dict[str, Any]) -> Any:
        defaults = {"pattern_type": "stix", "pattern_version": "2.1"}
        fields = {k: v for k, v in indicator_args.items() if v is not None or k not in defaults}
        return stix2_indicator_class()(**{**defaults, **fields, "spec_version": "2.1"})


def convert_event(event: Mapping[str, Any], *, owner_identity: str,
                  drop: Collection[str] = ()) -> Conversion:
    """Convert one MISP event (``{"Event": ...}`` or the bare event) to STIX 2.1.

    Args:
        event: The event as MISP serves it, soft-deleted attributes included.
        owner_identity: The STIX identity of the organisation owning the MISP instance,
            named as the only recipient of what distribution 0 or 1 restricts.
        drop: UUIDs of attributes and MISP objects to leave out (the pull's echoes).

    Returns:
        The compensated objects (module docstring).

    Raises:
        ConversionFailed: The event has no UUID or timestamp, or misp-stix failed on it
            (the message names the event and misp-stix's error).
    """
    body = event.get("Event", event)
    if not isinstance(body, Mapping):
        raise ConversionFailed("not a MISP event: 'Event' is not an object")
    event_uuid = str(body.get("uuid") or "")
    timestamp = _int(body.get("timestamp"))
    if not event_uuid or timestamp is None:
        raise ConversionFailed(f"MISP event {event_uuid or '(no uuid)'} has no uuid or no"
                               " timestamp")
    # The direct path and the twin rule only read the event (a test holds it unchanged):
    # it is copied only when something is dropped, or for misp-stix, a library that is
    # given a copy of its own.
    source = _without(body, drop) if drop else body
    try:
        # An event of simple attributes: misp-stix's objects written directly (the same
        # objects, exchange.misp.simple); anything else through misp-stix itself.
        direct = simple_objects(source, _Parser, twins=False)
        if direct is not None:
            objects: list[dict[str, Any]] = direct
        else:
            if source is body:
                source = _copy(body)
            parser = _Parser()
            parser.parse_misp_event({"Event": source})
            # The objects as stix2 writes them, without the bundle: building one
            # re-checks every object (a fifth of the conversion).
            objects = json.loads(serialize(list(parser.stix_objects)))
    except Exception as e:  # noqa: BLE001 - misp-stix raises stix2 errors, KeyError, ...
        text = str(e).splitlines()[0][:300] if str(e) else ""
        raise ConversionFailed(f"misp-stix could not convert event {event_uuid}:"
                               f" {type(e).__name__}: {text}") from None
    return _compensate(source, event_uuid, timestamp, without_twins(source, objects),
                       owner_identity)


def _levels(event: Mapping[str, Any]) -> tuple[Tlp | None, bool, dict[str, tuple[Tlp | None,
                                                                             bool]]]:
    """The event's level and restriction, and per element UUID its own."""
    event_level = tlp_of_tags(event.get("Tag"))
    distribution = _int(event.get("distribution"))
    restricted = distribution in (0, 1)
    if distribution == 4:
        event_level = _at_least(event_level, Tlp.AMBER)
    per: dict[str, tuple[Tlp | None, bool]] = {}
    for element, is_object in _elements(event):
        key = element.get("uuid")
        if not isinstance(key, str):
            continue
        level = tlp_of_tags(element.get("Tag")) or event_level
        own = _int(element.get("distribution"))
        if own == 4:
            level = _at_least(level, Tlp.AMBER)
        per[key] = (level, restricted or own in (0, 1))
        if is_object:
            for attribute in element.get("Attribute") or ():
                inner = attribute.get("uuid") if isinstance(attribute, Mapping) else None
                if isinstance(inner, str):
                    a_level = tlp_of_tags(attribute.get("Tag")) or level
                    a_own = _int(attribute.get("distribution"))
                    per[inner] = (a_level, per[key][1] or a_own in (0, 1))
    return event_level, restricted, per


def _at_least(level: Tlp | None, floor: Tlp) -> Tlp:
    return floor if level is None or level.rank < floor.rank else level


def _deleted(event: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for element, _ in _elements(event):
        if element.get("deleted") in (True, 1, "1", "true") and isinstance(
                element.get("uuid"), str):
            out.add(str(element["uuid"]))
    return out


def _as_note(obj: Mapping[str, Any], container: str | None) -> dict[str, Any] | None:
    """misp-stix's custom ``x-misp-attribute``/``x-misp-object`` as a STIX ``note`` on the
    event's report or grouping (a custom type cannot be referenced by STIX objects)."""
    key = _uuid_of(obj.get("id"))
    if key is None or container is None:
        return None
    if obj.get("type") == "x-misp-attribute":
        content = f"{obj.get('x_misp_type', 'attribute')}: {obj.get('x_misp_value', '')}"
        comment = obj.get("x_misp_comment")
        abstract = f"MISP attribute ({obj.get('x_misp_category', 'Other')})"
    else:
        lines = [f"{a.get('object_relation', a.get('type', '?'))}: {a.get('value', '')}"
                 for a in obj.get("x_misp_attributes") or () if isinstance(a, Mapping)]
        content = "\n".join([f"MISP object {obj.get('x_misp_name', '?')}", *lines])
        comment = obj.get("x_misp_comment")
        abstract = f"MISP object {obj.get('x_misp_name', '?')}"
    if isinstance(comment, str) and comment:
        content += f"\n{comment}"
    note: dict[str, Any] = {"type": "note", "spec_version": "2.1", "id": f"note--{key}",
                            "abstract": abstract[:200], "content": content,
                            "object_refs": [container]}
    for name in ("created_by_ref", "created", "modified", "labels"):
        if name in obj:
            note[name] = obj[name]
    return note


_REF_LISTS: Final = ("object_refs", "where_sighted_refs", "observed_data_refs")
_REFS: Final = ("source_ref", "target_ref", "sighting_of_ref")


def _notes_for_custom(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    container = next((str(o["id"]) for o in objects
                      if o.get("type") in ("report", "grouping")), None)
    renamed: dict[str, str | None] = {}
    out: list[dict[str, Any]] = []
    for obj in objects:
        if obj.get("type") in ("x-misp-attribute", "x-misp-object"):
            note = _as_note(obj, container)
            renamed[str(obj["id"])] = note["id"] if note is not None else None
            if note is not None:
                out.append(note)
        else:
            out.append(obj)
    if not renamed:
        return out
    kept: list[dict[str, Any]] = []
    for obj in out:
        for name in _REF_LISTS:
            if isinstance(obj.get(name), list):
                obj[name] = [renamed.get(r, r) for r in obj[name] if renamed.get(r, r)]
        if any(obj.get(name) in renamed and renamed[obj[name]] is None for name in _REFS):
            continue
        for name in _REFS:
            if obj.get(name) in renamed:
                obj[name] = renamed[obj[name]]
        kept.append(obj)
    return kept


def _compensate(event: Mapping[str, Any], event_uuid: str, timestamp: int,
                objects: list[dict[str, Any]], owner_identity: str) -> Conversion:
    objects = _notes_for_custom(objects)
    event_level, event_restricted, per = _levels(event)
    deleted = _deleted(event)
    dropped_markings = {o["id"] for o in objects if o.get("type") == "marking-definition"}
    ceiling = _stamp(timestamp)
    ceiling_us = timestamp * 1_000_000
    out: list[dict[str, Any]] = []
    revoked: set[str] = set()
    restricted: set[str] = set()
    for original in objects:
        if original.get("type") == "marking-definition":
            continue
        obj = dict(original)
        key = _uuid_of(obj.get("id"))
        level, is_restricted = per.get(key or "", (event_level, event_restricted))
        refs = [r for r in obj.get("object_marking_refs") or ()
                if r not in dropped_markings and r not in TLP_MARKING_IDS]
        if is_restricted:
            level = Tlp.RED
            restricted.add(str(obj["id"]))
            extensions = dict(obj.get("extensions") or {})
            extensions[RED_RECIPIENTS_EXTENSION_ID] = {
                "extension_type": "property-extension", "recipients": [owner_identity]}
            obj["extensions"] = extensions
        if level is not None:
            refs.insert(0, TLP2_IDS[level])
        if refs:
            obj["object_marking_refs"] = refs
        else:
            obj.pop("object_marking_refs", None)
        if obj.get("type") == "indicator" and isinstance(obj.get("pattern"), str):
            obj["pattern"] = normal_pattern(obj["pattern"])
        if "created" in obj or "modified" in obj:
            for name in ("created", "modified"):
                value = obj.get(name)
                at = _instant(value) if isinstance(value, str) else None
                if at is None or at > ceiling_us:
                    obj[name] = ceiling
            obj["created"] = min(obj["created"], obj["modified"])
            if key in deleted:
                obj["revoked"] = True
                revoked.add(str(obj["id"]))
        else:
            obj.pop("revoked", None)  # a cyber-observable has no versions to revoke
        for name in _LATER_TIMES:
            value = obj.get(name)
            at = _instant(value) if isinstance(value, str) else None
            if at is not None and at > ceiling_us:
                obj[name] = ceiling
        out.append(obj)
    return Conversion(event_uuid, timestamp, tuple(out), frozenset(revoked),
                      frozenset(restricted))


def measure_losses(event: Mapping[str, Any], objects: Collection[Mapping[str, Any]]
                   ) -> dict[str, int]:
    """What of a MISP event has no trace in its STIX objects, by element kind.

    Kinds: ``Attribute`` and ``Object`` (no STIX object carries its UUID), ``Sighting``
    (likewise), ``Galaxy`` (a cluster with no object carrying its UUID or name),
    ``Tag`` and ``Attribute.Tag`` (a non-TLP tag no label, name or marking carries),
    ``Attribute.comment`` (a comment no description or property carries), and the event
    metadata STIX has no place for (``Event.threat_level_id``...). Zero counts are left
    out.
    """
    body = event.get("Event", event)
    lost: Counter[str] = Counter()
    uuids = {_uuid_of(o.get("id")) for o in objects}
    text = json.dumps(list(objects), ensure_ascii=False).lower()
    for element, is_object in _elements(body, inner=False):
        kind = "Object" if is_object else "Attribute"
        if element.get("uuid") not in uuids:
            lost[kind] += 1
            continue
        for name in _tag_names(element.get("Tag")):
            if name not in _TLP_TAGS and json.dumps(name, ensure_ascii=False)[1:-1] not in text:
                lost[f"{kind}.Tag"] += 1
        comment = element.get("comment")
        if (not is_object and isinstance(comment, str) and comment.strip()
                and json.dumps(comment.lower(), ensure_ascii=False)[1:-1] not in text):
            lost["Attribute.comment"] += 1
        for sighting in element.get("Sighting") or ():
            if isinstance(sighting, Mapping) and sighting.get("uuid") not in uuids:
                lost["Sighting"] += 1
    for name in _tag_names(body.get("Tag")):
        if name not in _TLP_TAGS and json.dumps(name, ensure_ascii=False)[1:-1] not in text:
            lost["Tag"] += 1
    for galaxy in body.get("Galaxy") or ():
        for cluster in galaxy.get("GalaxyCluster") or () if isinstance(galaxy, Mapping) else ():
            if not isinstance(cluster, Mapping):
                continue
            value = str(cluster.get("value") or "").lower()
            if cluster.get("uuid") not in uuids and (not value or value not in text):
                lost["Galaxy"] += 1
    for name in _EVENT_METADATA:
        if body.get(name) not in (None, ""):
            lost[f"Event.{name}"] += 1
    return dict(sorted((k, v) for k, v in lost.items() if v))
