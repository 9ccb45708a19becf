"""Markings under a policy: the effective TLP level and the RED recipients of an object.

:func:`level_of` extends :func:`exchange.model.tlp.tlp_of` with what a policy adds, and
fails closed: every marking-definition an object references must be a known TLP id, an
inline TLP marking-definition sent in the same envelope, or a marking ``markings.yaml``
names (mapped to a level, or to ``ignore`` for PAP, IEP or statement markings). Anything
else is refused, as are two different TLP levels on one object.

RED recipients
--------------
TLP:RED goes only to the recipients named on the object. A publisher names them with the
project's STIX property-extension :data:`RED_RECIPIENTS_EXTENSION_ID`, holding a list of
STIX identity ids (organisations registered with the exchange)::

    "extensions": {
      "extension-definition--6859b3dc-d65f-409b-a17a-fb127c6b16eb": {
        "extension_type": "property-extension",
        "recipients": ["identity--05f58713-053b-5b2c-b92a-050f448178b8"]
      }
    }

The extension is part of the signed object, so nobody on the way can add a recipient.
It is read only for RED objects; on other levels it has no effect. The producer always
sees its own objects and need not name itself.

Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from exchange.errors import InvalidObject
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP2_EXTENSION_ID, TLP_MARKING_IDS, parse_level
from exchange.policy.model import PolicySet

__all__ = [
    "MAX_RED_RECIPIENTS",
    "RED_RECIPIENTS_EXTENSION_ID",
    "inline_markings",
    "inline_tlp_of",
    "level_of",
    "marking_refs_of",
    "red_recipients_of",
]

#: The project's property-extension naming the recipients of a TLP:RED object.
RED_RECIPIENTS_EXTENSION_ID: Final = "extension-definition--6859b3dc-d65f-409b-a17a-fb127c6b16eb"
MAX_RED_RECIPIENTS: Final = 64

_IDENTITY = re.compile(
    r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def level_of(marking_refs: Iterable[str], policy: PolicySet,
             inline: Mapping[str, Tlp | None] | None = None, *,
             granular: Iterable[str] = ()) -> Tlp | None:
    """The TLP level an object's markings carry under ``policy``.

    The object-level markings must agree on one level. Granular markings may mark parts
    of the object at other levels (the OASIS example marks a description AMBER and an
    indicator type RED); the exchange serves objects whole, so the object is held at the
    strictest level found anywhere in it.

    Args:
        marking_refs: The object-level marking-definition ids (``object_marking_refs``).
        policy: The policy in force; its ``markings`` name extra ids.
        inline: Marking-definition ids defined inline in the same envelope -> the TLP
            level they carry, or None for a statement (see :func:`inline_markings`).
        granular: The ``marking_ref`` of each granular marking.

    Returns:
        The level, or None when the object carries no TLP marking (the collection's
        default then applies, decided by the caller).

    Raises:
        InvalidObject: A marking-definition that is neither a known TLP id, nor an inline
            TLP or statement marking, nor named by the policy; or two different TLP
            levels among the object-level markings.
    """
    levels = _levels(marking_refs, policy, inline or {})
    if len(levels) > 1:
        names = ", ".join(level.value.upper() for level in sorted(levels, key=_rank))
        raise InvalidObject(f"conflicting TLP markings on one object: {names}")
    levels |= _levels(granular, policy, inline or {})
    return max(levels, key=_rank, default=None)


def _levels(refs: Iterable[str], policy: PolicySet,
            inline: Mapping[str, Tlp | None]) -> set[Tlp]:
    levels: set[Tlp] = set()
    for ref in refs:
        if ref in TLP_MARKING_IDS:
            levels.add(TLP_MARKING_IDS[ref])
        elif ref in inline:
            inline_level = inline[ref]
            if inline_level is not None:
                levels.add(inline_level)
        elif ref in policy.markings:
            level = policy.markings[ref]
            if level is not None:
                levels.add(level)
        else:
            raise InvalidObject(
                f"unknown marking-definition {ref[:80]!r}; refused (fail closed) unless a"
                " policy names it (markings.yaml)"
            )
    return levels


def _rank(level: Tlp) -> int:
    return level.rank


def marking_refs_of(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """Every marking-definition id an object references, object-level and granular.

    Raises:
        InvalidObject: ``object_marking_refs`` or ``granular_markings`` is malformed.
    """
    object_level, granular = split_marking_refs(obj)
    return object_level + granular


def split_marking_refs(obj: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An object's object-level marking ids and its granular markings' ``marking_ref``s.

    Raises:
        InvalidObject: ``object_marking_refs`` or ``granular_markings`` is malformed.
    """
    object_refs = obj.get("object_marking_refs", [])
    if not isinstance(object_refs, list) or not all(isinstance(r, str) for r in object_refs):
        raise InvalidObject("'object_marking_refs' must be a list of identifiers")
    granular = obj.get("granular_markings", [])
    if not isinstance(granular, list):
        raise InvalidObject("'granular_markings' must be a list")
    refs: list[str] = []
    for marking in granular:
        if not isinstance(marking, dict):
            raise InvalidObject("each granular marking must be an object")
        ref = marking.get("marking_ref")
        if ref is not None:
            if not isinstance(ref, str):
                raise InvalidObject("'marking_ref' must be an identifier")
            refs.append(ref)
    return tuple(object_refs), tuple(refs)


def inline_tlp_of(definition: Mapping[str, Any]) -> Tlp | None:
    """The TLP level an inline marking-definition object defines, or None if not TLP.

    Reads TLP 1.0 (``definition_type: tlp``, ``definition.tlp``) and TLP 2.0 (the OASIS
    extension's ``tlp_2_0``).

    Raises:
        InvalidObject: It claims to be a TLP marking but the level is unreadable, or the
            two forms disagree.
    """
    levels: set[Tlp] = set()
    if definition.get("definition_type") == "tlp":
        body = definition.get("definition")
        colour = body.get("tlp") if isinstance(body, dict) else None
        if not isinstance(colour, str):
            raise InvalidObject("a TLP 1.0 marking-definition needs definition.tlp")
        levels.add(parse_level(colour))
    extensions = definition.get("extensions")
    if isinstance(extensions, dict) and TLP2_EXTENSION_ID in extensions:
        content = extensions[TLP2_EXTENSION_ID]
        value = content.get("tlp_2_0") if isinstance(content, dict) else None
        if not isinstance(value, str):
            raise InvalidObject("the TLP 2.0 extension needs a tlp_2_0 value")
        levels.add(parse_level(value))
    if len(levels) > 1:
        raise InvalidObject("a marking-definition carries two different TLP levels")
    return next(iter(levels), None)


def inline_markings(objects: Iterable[Mapping[str, Any]]) -> dict[str, Tlp | None]:
    """The marking-definitions defined inline in an envelope: id -> TLP level.

    A TLP definition maps to its level. A statement (``definition_type`` ``statement``,
    STIX 2.1 section 7.2.1.3: a copyright or terms-of-use text) maps to None: it says
    nothing about who may receive the object, and, being self-describing, it is known
    without the policy naming it. Other marking-definitions (PAP, IEP, an unknown
    extension) are left out: they count as known only when the policy names them, since
    what they ask of recipients is not written in them.

    Raises:
        InvalidObject: An inline definition reuses a well-known TLP id for another level,
            defines one id twice with different levels, or is unreadable.
    """
    out: dict[str, Tlp | None] = {}
    for obj in objects:
        if obj.get("type") != "marking-definition":
            continue
        ref = obj.get("id")
        level = inline_tlp_of(obj)
        if (level is None and isinstance(ref, str) and ref not in TLP_MARKING_IDS
                and obj.get("definition_type") == "statement"
                and isinstance(obj.get("definition"), dict)):
            if out.get(ref) is not None:
                raise InvalidObject(f"marking-definition {ref} is defined twice, as TLP and as"
                                    " a statement")
            out[ref] = None
            continue
        if not isinstance(ref, str) or level is None:
            continue
        known = TLP_MARKING_IDS.get(ref)
        if known is not None and known is not level:
            raise InvalidObject(f"inline marking-definition {ref} redefines TLP:"
                                f"{known.value.upper()} as TLP:{level.value.upper()}")
        if ref in out and out[ref] is not level:
            raise InvalidObject(f"marking-definition {ref} is defined twice with different"
                                " TLP levels")
        out[ref] = level
    return out


def red_recipients_of(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The identity ids an object names as its TLP:RED recipients (see module docstring).

    Args:
        obj: The STIX object as parsed JSON.

    Returns:
        The identity ids, in the order given, without duplicates; empty when the object
        does not carry the extension.

    Raises:
        InvalidObject: The extension is present but malformed (wrong extension_type, a
            recipient that is not an identity id, an empty or oversized list, extra
            properties).
    """
    extensions = obj.get("extensions")
    if not isinstance(extensions, dict) or RED_RECIPIENTS_EXTENSION_ID not in extensions:
        return ()
    content = extensions[RED_RECIPIENTS_EXTENSION_ID]
    name = "the RED recipients extension"
    if not isinstance(content, dict):
        raise InvalidObject(f"{name} must be an object")
    extra = content.keys() - {"extension_type", "recipients"}
    if extra:
        raise InvalidObject(f"{name} has unknown properties: {', '.join(sorted(extra))}")
    if content.get("extension_type") != "property-extension":
        raise InvalidObject(f"{name} must have extension_type 'property-extension'")
    recipients = content.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise InvalidObject(f"{name} needs a non-empty 'recipients' list of identity ids")
    if len(recipients) > MAX_RED_RECIPIENTS:
        raise InvalidObject(f"{name} names {len(recipients)} recipients; at most "
                            f"{MAX_RED_RECIPIENTS}")
    out: list[str] = []
    for recipient in recipients:
        if not isinstance(recipient, str) or not _IDENTITY.fullmatch(recipient):
            raise InvalidObject(f"{name}: {str(recipient)[:80]!r} is not an identity id")
        if recipient not in out:
            out.append(recipient)
    return tuple(out)
