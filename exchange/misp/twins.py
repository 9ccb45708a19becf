"""The observed-data twins misp-stix writes beside each ``to_ids`` attribute's indicator,
and the rule that leaves them out (docs/adr/0005-misp-pull-objects.md).

:func:`without_twins` applies the rule to misp-stix's objects (or the direct path's,
:mod:`exchange.misp.simple`, which are the same); :func:`carried_times`,
:func:`leaves` and :func:`in_pattern` are its parts, which the direct path uses to
leave out at once what the rule would.

Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from exchange.model.stixkinds import parse_timestamp

__all__ = ["carried_times", "in_pattern", "leaves", "without_twins"]


#: Properties an observed-data twin may hold (anything else keeps it).
_TWIN_KEYS: Final = frozenset({"type", "spec_version", "id", "created_by_ref", "created",
                               "modified", "first_observed", "last_observed",
                               "number_observed", "object_refs", "labels",
                               "object_marking_refs"})
#: Cyber-observable properties that hold no value of the attribute (misp-stix's
#: ``network-traffic`` always says ``tcp``, whatever MISP holds).
_SCO_FRAME: Final = frozenset({"type", "spec_version", "id", "protocols"})


def _refs_in(obj: dict[str, Any]) -> list[str]:
    """Every id an object's ``*_ref``/``*_refs`` properties name, at any depth (parsed
    JSON: dicts and lists)."""
    out: list[str] = []
    stack: list[object] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if isinstance(key, str) and key.endswith(("_ref", "_refs")):
                if isinstance(value, str):
                    out.append(value)
                elif isinstance(value, list):
                    out += [v for v in value if isinstance(v, str)]
            elif isinstance(value, dict | list):
                stack.append(value)
    return out


def leaves(value: object, name: str = "") -> Iterator[str]:
    """The values a cyber-observable holds (references and framing left out)."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key not in _SCO_FRAME and not (str(key).endswith("_ref")
                                              or str(key).endswith("_refs")):
                yield from leaves(inner, str(key))
    elif isinstance(value, list):
        for inner in value:
            yield from leaves(inner, name)
    elif value is not None:
        yield str(value).lower() if isinstance(value, bool) else str(value)


def in_pattern(value: str, pattern: str) -> bool:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return (f"'{escaped}'" in pattern or f"= {value}]" in pattern
            or f"= {value} " in pattern)


def without_twins(event: Mapping[str, Any], objects: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """misp-stix's objects without the observed-data twin of each ``to_ids`` attribute's
    indicator (docs/adr/0005-misp-pull-objects.md).

    For an event-level attribute with ``to_ids``, misp-stix writes an indicator (the
    value in its pattern) and an observed-data of the same UUID with its
    cyber-observables and a ``based-on`` relationship between the two: the value four
    times. The twin, its cyber-observables and the relationship are left out, and the
    container's ``object_refs`` no longer name them, when the twin says nothing the
    indicator does not (or no longer, once the indicator carries MISP's first and last
    seen as ``valid_from``/``valid_until``, the inverse of both misp-stix's STIX import
    and the exchange's push): it was observed once, its author, times, labels and
    markings are the indicator's, every value of its cyber-observables is in the
    indicator's pattern, and no other object names the twin or its cyber-observables.
    Otherwise everything is kept, as misp-stix wrote it. Attributes of MISP objects
    are left as they are (an object's observed-data holds attributes its pattern may
    not).
    """
    attributes = {str(a["uuid"]): a for a in event.get("Attribute") or ()
                  if isinstance(a, Mapping) and a.get("to_ids") in (True, 1, "1", "true")
                  and isinstance(a.get("uuid"), str)}
    if not attributes:
        return objects
    by_id = {str(o.get("id")): o for o in objects}
    based_on: dict[str, str] = {}
    for obj in objects:
        if (obj.get("type") == "relationship" and obj.get("relationship_type") == "based-on"
                and str(obj.get("source_ref", "")).startswith("indicator--")):
            based_on[str(obj["source_ref"]) + " " + str(obj.get("target_ref"))] = str(obj["id"])
    named: dict[str, set[str]] | None = None  # who names each id: read once, if needed
    containers = {str(o["id"]) for o in objects if o.get("type") in ("report", "grouping")}
    drop: set[str] = set()
    seen: dict[str, dict[str, str]] = {}
    for key, attribute in attributes.items():
        indicator = by_id.get(f"indicator--{key}")
        twin = by_id.get(f"observed-data--{key}")
        relationship = based_on.get(f"indicator--{key} observed-data--{key}")
        if indicator is None or twin is None or relationship is None:
            continue
        scos = twin.get("object_refs")
        if (set(twin) - _TWIN_KEYS or not isinstance(scos, list) or not scos
                or twin.get("number_observed") != 1):
            continue
        if any(twin.get(name) != indicator.get(name)
               for name in ("created_by_ref", "created", "modified", "labels",
                            "object_marking_refs")):
            continue
        times = carried_times(attribute, indicator, twin)
        if times is None:
            continue
        pattern = str(indicator.get("pattern", ""))
        group = {twin["id"], *scos}
        allowed = containers | {relationship, twin["id"], *scos}
        if not all(isinstance(by_id.get(ref), dict)
                   and all(in_pattern(v, pattern) for v in leaves(by_id[ref]))
                   for ref in scos):
            continue
        if named is None:
            named = {}
            for obj in objects:
                for ref in _refs_in(obj):
                    named.setdefault(ref, set()).add(str(obj.get("id")))
        if any(named.get(member, set()) - allowed for member in group):
            continue
        if named.get(relationship, set()) - containers:
            continue
        drop |= group | {relationship}
        if times:
            seen[str(indicator["id"])] = times
    if not drop:
        return objects
    out: list[dict[str, Any]] = []
    for obj in objects:
        object_id = obj.get("id")
        if object_id in drop:
            continue
        if object_id in containers:
            refs = [r for r in obj.get("object_refs") or () if r not in drop]
            out.append({**obj, "object_refs": refs})
        elif object_id in seen:
            out.append({**obj, **seen[str(object_id)]})
        else:
            out.append(obj)
    return out


def carried_times(attribute: Mapping[str, Any], indicator: Mapping[str, Any],
                   twin: Mapping[str, Any]) -> dict[str, str] | None:
    """What the indicator must take from its twin to carry the twin's times
    (``valid_from`` from MISP's first seen, ``valid_until`` from its last seen), or None
    when it cannot (a last seen not after the first: STIX wants ``valid_until`` later
    than ``valid_from``) or the twin's times are not what misp-stix derives."""
    stamp = parse_timestamp(str(indicator.get("valid_from", "")))
    first_text, last_text = str(twin.get("first_observed", "")), str(
        twin.get("last_observed", ""))
    first, last = parse_timestamp(first_text), parse_timestamp(last_text)
    if stamp is None or first is None or last is None:
        return None
    out: dict[str, str] = {}
    if attribute.get("first_seen"):
        out["valid_from"] = first_text
    elif first != stamp:
        return None
    if attribute.get("last_seen"):
        if not last > first:
            return None
        out["valid_until"] = last_text
    elif last not in (stamp, first):
        return None
    return out
