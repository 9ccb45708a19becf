"""The strict ingest check of one STIX 2.1 object: :func:`validate_object`.

An object is accepted when ``stix2.parse(obj, allow_custom=False, version="2.1")`` (stix2
3.0.2) accepts it **and** it passes the exchange's own rules. The exchange is stricter than
stix2 by design, because it stores and serves the bytes it received, never stix2's rewrite:

* every object needs ``id`` and, SCOs apart (STIX 2.1 makes it optional for them),
  ``spec_version`` ``"2.1"``: a STIX 2.0 object, which has none, is refused; SDOs, SROs
  and marking definitions need ``created``, SDOs and SROs ``modified`` and indicators
  ``valid_from`` (stix2 fills those in with "now");
* top-level property names are lowercase letters, digits and ``_`` starting with a letter;
  ``custom_properties``, ``allow_custom`` and ``interoperability`` (stix2 constructor
  arguments, the first one a way around ``allow_custom=False``) are refused;
* custom content is accepted as STIX 2.1 section 11 allows (:func:`custom_content_of` says
  what an object holds, for a policy that restricts it): a property the spec does not
  define for the type (a legacy ``x_`` property, or one a toplevel-property-extension
  defines) has a name of 3 to 250 characters that is not one of the common property names
  (sections 3.2, 6.1) and a value that is not null or an empty list; custom properties
  inside a predefined SCO extension likewise. stix2 checks the object without them. An
  object of a type the spec does not define (a legacy ``x-`` custom object, or a
  ``new-sdo``/``new-sro``/``new-sco`` type of an extension definition, section 7.3) has
  the common properties of an SDO (``spec_version``, ``created``, ``modified``
  required), or of an SCO when it declares ``new-sco``, each checked as for predefined
  types; its own properties follow the custom property rules;
* ``id`` is ``<type>--<RFC 4122 UUID>`` in the 8-4-4-4-12 form, in lower case, its
  prefix equal to ``type``; every ``*_ref``/``*_refs`` property, at any depth, holds such
  identifiers (an upper-case spelling is refused with the lower-case one to use, never
  folded: one object has one id);
* timestamps are ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (stix2 also reads ``2016-1-1T1:2:3z``)
  and ``modified`` is not earlier than ``created`` (stix2 accepts ``modified < created``);
* values have their JSON type: stix2 turns ``5`` into ``"5"``, ``"true"`` into ``true``, a
  string into a one-element list, and silently drops ``null`` and ``[]``; all are refused;
* ``confidence`` is 0-100 (stix2: any integer); ``lang`` looks like a language tag;
  ``extensions`` is a non-empty object keyed by extension-definition ids (or predefined
  SCO extensions); ``null`` appears nowhere;
* an indicator with ``pattern_type`` ``stix`` passes :func:`check_pattern` (size caps before
  any parser; ``pattern_version``, if given, is ``"2.1"``);
* a marking definition using a known TLP id carries that TLP level (stix2 checks only the
  reverse direction, for TLP 1.0); the TLP 2.0 extension holds a valid ``tlp_2_0``;
* the object's TLP markings do not conflict (:func:`exchange.model.tlp.tlp_of`), and its
  RFC 8785 canonical form is at most ``max_object_bytes``.

stix2 costs about 1 ms per indicator, so the common types (:data:`TYPE_SPECS`) are checked
against property tables instead; objects of other types, and the rare features the tables
leave out (granular markings, predefined SCO extensions, observed-data ``objects``), go
through stix2 itself (:func:`validate_with_stix2`), whose refusals become one-line reasons.
Both paths share the exchange's own rules; ``tests/unit/model/test_stix.py`` proves with
Hypothesis that the table verdict equals the stix2 verdict.

Pure code, no I/O. Storing, signing and policy are left to the callers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import rfc8785

from exchange.errors import InvalidObject, LimitExceeded
from exchange.model import jcs
from exchange.model.limits import Limits
from exchange.model.objects import StixId, StixObject, Tlp
from exchange.model.pattern import check_pattern
from exchange.model.stixkinds import (
    IDENTIFIER,
    SCO_EXTENSIONS,
    SCO_TYPES,
    STIX_OBJECT_TYPES,
    TIMESTAMP_HINT,
    case_reason,
    non_canonical_case,
    parse_timestamp,
)
from exchange.model.stixtypes import (
    SCO_COMMON,
    SDO_COMMON,
    TLP1_IDS,
    TYPE_SPECS,
    VERSIONED,
    TypeSpec,
)
from exchange.model.tlp import TLP2_EXTENSION_ID, TLP_MARKING_IDS, tlp_of

__all__ = [
    "TYPE_SPECS",
    "CustomContent",
    "custom_content_of",
    "is_custom_type",
    "is_observable",
    "validate_object",
    "validate_with_stix2",
]

_TYPE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,249}")
#: Names stix2 takes as constructor arguments instead of properties.
_RESERVED_NAMES: Final = frozenset({"custom_properties", "allow_custom", "interoperability"})
#: Top-level property names that passed the two checks above, so that the few dozen
#: names real objects use are checked once, not per object; bounded, as the names come
#: from senders (a full set only means checking the others each time).
_NAMES_SEEN: set[str] = set()
_MAX_NAMES_SEEN: Final = 1024
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_TLP1_COLOURS: Final = {identifier: colour for colour, identifier in TLP1_IDS.items()}
_TLP2_LEVELS: Final = frozenset(level.value for level in Tlp)
_EXTENSION_DEFINITION = "extension-definition--"
#: Names a custom property may not take: the common properties' (STIX 2.1 sections 3.2, 6.1).
_COMMON_NAMES: Final = frozenset(SDO_COMMON) | frozenset(SCO_COMMON)
_CUSTOM_NAME_MIN = 3  # STIX 2.1 section 11.1: 3 to 250 characters
_NEW_OBJECT_KINDS: Final = frozenset({"new-sdo", "new-sco", "new-sro"})
_STIX20_HINT = " (STIX 2.0? `exchange publish FILE` upgrades it to 2.1 before sending)"

_JSON_NAMES = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _json_name(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_NAMES.get(type(value), "an unsupported value")


def _label(obj: Mapping[str, Any]) -> str:
    for key in ("id", "type"):
        value = obj.get(key)
        if isinstance(value, str) and 0 < len(value) <= 120 and value.isprintable():
            return value
    return "object"


def is_observable(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a STIX Cyber-observable Object (STIX 2.1 section 6).

    A predefined SCO type, or a custom one: an object whose ``extensions`` hold an
    extension-definition entry of ``extension_type`` ``new-sco`` (section 7.3). SCOs
    have deterministic ids and no versions of their own, so the same SCO may be
    contributed by several members (docs/adr/0001-sco-contributions.md).
    """
    if obj.get("type") in SCO_TYPES:
        return True
    extensions = obj.get("extensions")
    return isinstance(extensions, Mapping) and any(
        isinstance(entry, Mapping) and entry.get("extension_type") == "new-sco"
        for key, entry in extensions.items() if key.startswith(_EXTENSION_DEFINITION)
    )


# --- the exchange's own rules (both paths) ---------------------------------------------


def is_custom_type(obj_type: str) -> bool:
    """Whether STIX 2.1 does not define ``obj_type`` (a custom object, section 11.2 or 7.3)."""
    return obj_type not in STIX_OBJECT_TYPES and obj_type not in SCO_TYPES


def _declared_kind(obj: Mapping[str, Any]) -> str | None:
    """The ``new-sdo``/``new-sro``/``new-sco`` an object's extensions declare, if any."""
    extensions = obj.get("extensions")
    if isinstance(extensions, dict):
        for key, content in extensions.items():
            if key.startswith(_EXTENSION_DEFINITION) and isinstance(content, dict):
                kind = content.get("extension_type")
                if kind in _NEW_OBJECT_KINDS:
                    return str(kind)
    return None


def _check_custom_properties(obj: Mapping[str, Any], names: list[str], type_name: str,
                             where: str = "") -> None:
    """STIX 2.1 section 11.1 for the properties ``names`` of ``obj`` the spec does not define."""
    for key in names:
        shown = f"{where}.{key}" if where else repr(key)
        if not where and key in _COMMON_NAMES:
            raise InvalidObject(
                f"{shown} is not a property of {type_name} in STIX 2.1 (a custom property"
                " may not take a common property's name)"
            )
        if len(key) < _CUSTOM_NAME_MIN:
            raise InvalidObject(
                f"custom property {shown} must have at least {_CUSTOM_NAME_MIN} characters"
                " (STIX 2.1 section 11.1)"
            )
        value = obj[key]
        if value is None or value == []:
            raise InvalidObject(f"{shown} is {'null' if value is None else 'an empty list'}")
        _check_value({key: value}, where)


def _check_value(value: Any, where: str) -> None:
    """No null anywhere; identifiers in every ``*_ref``/``*_refs`` at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else repr(key)
            if item is None:
                raise InvalidObject(f"{inner} is null")
            if key.endswith("_ref"):
                if non_canonical_case(item):
                    raise InvalidObject(f"{inner} {case_reason(item)}")
                if not isinstance(item, str) or IDENTIFIER.fullmatch(item) is None:
                    raise InvalidObject(f"{inner} must be an identifier <type>--<UUID>")
            elif key.endswith("_refs"):
                upper = next((ref for ref in item if non_canonical_case(ref)), None) \
                    if isinstance(item, list) else None
                if upper is not None:
                    raise InvalidObject(f"{inner} {case_reason(upper)}")
                if not isinstance(item, list) or not all(
                    isinstance(ref, str) and IDENTIFIER.fullmatch(ref) for ref in item
                ):
                    raise InvalidObject(f"{inner} must be a list of identifiers <type>--<UUID>")
            else:
                _check_value(item, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if item is None:
                raise InvalidObject(f"{where}[{index}] is null")
            _check_value(item, f"{where}[{index}]")


def _check_timestamps(obj: Mapping[str, Any], obj_type: str) -> None:
    if obj_type in STIX_OBJECT_TYPES:
        if "created" not in obj:
            raise InvalidObject("'created' is missing")
        if "modified" not in obj and obj_type != "marking-definition":
            raise InvalidObject("'modified' is missing")
    stamps: dict[str, datetime] = {}
    for key in ("created", "modified"):
        if key in obj:
            value = obj[key]
            stamp = parse_timestamp(value) if isinstance(value, str) else None
            if stamp is None:
                raise InvalidObject(f"'{key}' must be {TIMESTAMP_HINT}")
            stamps[key] = stamp
    if len(stamps) == 2 and stamps["modified"] < stamps["created"]:
        raise InvalidObject("'modified' is earlier than 'created'")


def _check_extensions(extensions: Any) -> None:
    if not isinstance(extensions, dict) or not extensions:
        raise InvalidObject("'extensions' must be a non-empty object")
    for key, content in extensions.items():
        if key.startswith(_EXTENSION_DEFINITION):
            m = IDENTIFIER.fullmatch(key)
            if m is None or m.group(1) != "extension-definition":
                raise InvalidObject(f"extension {key[:80]!r} is not an extension-definition id")
        elif key not in SCO_EXTENSIONS:
            raise InvalidObject(
                f"extension {key[:80]!r} is neither an extension-definition id nor a"
                " predefined SCO extension"
            )
        if not isinstance(content, dict):
            raise InvalidObject(f"extension {key[:80]!r} must be an object")
        if key == TLP2_EXTENSION_ID and (
            content.keys() - {"extension_type", "tlp_2_0"}
            or content.get("extension_type") != "property-extension"
            or not isinstance(content.get("tlp_2_0"), str)
            or content.get("tlp_2_0") not in _TLP2_LEVELS
        ):
            raise InvalidObject(
                "the TLP 2.0 extension must hold extension_type 'property-extension' and"
                " tlp_2_0 one of " + ", ".join(sorted(_TLP2_LEVELS))
            )


def _check_tlp_definition(obj: Mapping[str, Any], identifier: str) -> None:
    level = TLP_MARKING_IDS.get(identifier)
    if level is None:
        return
    colour = _TLP1_COLOURS.get(identifier)
    if colour is not None:
        definition = obj.get("definition")
        if not (
            obj.get("definition_type") == "tlp"
            and isinstance(definition, dict)
            and definition.get("tlp") == colour
        ):
            raise InvalidObject(
                f"this is the predefined TLP:{colour.upper()} marking definition; it must"
                f' have definition_type "tlp" and definition {{"tlp": "{colour}"}}'
            )
        return
    extensions = obj.get("extensions")
    content = extensions.get(TLP2_EXTENSION_ID) if isinstance(extensions, dict) else None
    if not (isinstance(content, dict) and content.get("tlp_2_0") == level.value):
        raise InvalidObject(
            f"this is the TLP 2.0 {level.value.upper()} marking definition; it must carry the"
            f" TLP 2.0 extension with tlp_2_0 {level.value!r}"
        )


def _check_own_rules(obj: Mapping[str, Any], limits: Limits) -> Tlp | None:
    """The exchange's rules, applied before stix2 or the tables; returns the TLP level."""
    obj_type = obj.get("type")
    if not isinstance(obj_type, str):
        raise InvalidObject("'type' is missing" if obj_type is None else "'type' is not a string")
    if not (3 <= len(obj_type) <= 250 and _TYPE_NAME.fullmatch(obj_type)):
        raise InvalidObject(
            "'type' must be 3-250 characters of a-z, 0-9 and single hyphens, starting with a letter"
        )
    if obj_type == "bundle":
        raise InvalidObject("a bundle is not stored as an object; send the objects it holds")
    identifier = obj.get("id")
    if not isinstance(identifier, str):
        raise InvalidObject("'id' is missing" if identifier is None else "'id' is not a string")
    m = IDENTIFIER.fullmatch(identifier)
    if m is None:
        if non_canonical_case(identifier):
            raise InvalidObject(f"'id' {case_reason(identifier)}")
        raise InvalidObject(f"'id' must be {obj_type}--<RFC 4122 UUID>")
    if m.group(1) != obj_type:
        raise InvalidObject(f"'id' must start with '{obj_type}--', not '{m.group(1)}--'")
    for key in obj:
        if key in _NAMES_SEEN:
            continue
        if _PROPERTY_NAME.fullmatch(key) is None:
            raise InvalidObject(
                f"property name {key[:40]!r} must be lowercase letters, digits and '_',"
                " starting with a letter"
            )
        if key in _RESERVED_NAMES:
            raise InvalidObject(f"{key!r} is not a STIX 2.1 property name")
        if len(_NAMES_SEEN) < _MAX_NAMES_SEEN:
            _NAMES_SEEN.add(key)
    if "spec_version" not in obj:
        if obj_type not in SCO_TYPES and not (
            is_custom_type(obj_type) and _declared_kind(obj) == "new-sco"
        ):
            raise InvalidObject(
                "spec_version is missing; this exchange accepts STIX 2.1 only" + _STIX20_HINT
            )
    elif obj["spec_version"] != "2.1":
        shown = repr(obj["spec_version"])[:20]
        hint = _STIX20_HINT if obj["spec_version"] == "2.0" else ""
        raise InvalidObject(f"spec_version is {shown}; this exchange accepts STIX 2.1 only{hint}")
    _check_timestamps(obj, obj_type)
    if "confidence" in obj:
        confidence = obj["confidence"]
        if type(confidence) is not int or not 0 <= confidence <= 100:
            raise InvalidObject("'confidence' must be an integer from 0 to 100")
    if "lang" in obj:
        lang = obj["lang"]
        if not isinstance(lang, str) or _LANGUAGE_TAG.fullmatch(lang) is None:
            raise InvalidObject("'lang' must be a language tag such as en or pt-BR")
    if "extensions" in obj:
        _check_extensions(obj["extensions"])
    if obj_type == "indicator" and "valid_from" not in obj:
        raise InvalidObject("'valid_from' is missing")  # stix2 would fill in "now"
    if obj_type == "indicator" and obj.get("pattern_type") == "stix":
        if "pattern_version" in obj and obj["pattern_version"] != "2.1":
            raise InvalidObject(
                "pattern_version must be '2.1' (or absent); this exchange accepts STIX 2.1"
                " patterns only"
            )
        pattern = obj.get("pattern")
        if isinstance(pattern, str):
            check_pattern(pattern, limits)
    if obj_type == "marking-definition":
        _check_tlp_definition(obj, identifier)
    refs = obj.get("object_marking_refs")
    markings = obj.get("granular_markings")
    granular = [m["marking_ref"] for m in (markings if isinstance(markings, list) else [])
                if isinstance(m, dict) and isinstance(m.get("marking_ref"), str)]
    if isinstance(refs, list) and all(isinstance(ref, str) for ref in refs):
        return tlp_of(refs, granular)
    return tlp_of((), granular)


# --- fast path: the property tables ---------------------------------------------------


def _needs_stix2(obj: Mapping[str, Any], spec: TypeSpec | None) -> bool:
    if spec is None or "granular_markings" in obj:
        return True
    extensions = obj.get("extensions")
    if isinstance(extensions, dict) and any(key in SCO_EXTENSIONS for key in extensions):
        return True
    if spec.name == "network-traffic":
        return "ipfix" in obj
    return spec.name == "observed-data" and "objects" in obj


def _check_table(obj: Mapping[str, Any], spec: TypeSpec) -> None:
    properties = spec.properties
    extra: list[str] = []
    for key, value in obj.items():
        kind = properties.get(key)
        if kind is None:
            extra.append(key)
            continue
        reason = kind.check(value)
        if reason is not None:
            if value is None or value == []:
                reason = "is null" if value is None else "is an empty list"
            raise InvalidObject(f"'{key}' {reason}")
    if extra:
        _check_custom_properties(obj, sorted(extra), spec.name)
    missing = spec.required - obj.keys()
    if missing:
        names = " and ".join(f"'{key}'" for key in sorted(missing))
        raise InvalidObject(f"{names} {'is' if len(missing) == 1 else 'are'} missing")
    for rule in spec.constraints:
        reason = rule(obj)
        if reason is not None:
            raise InvalidObject(reason)
    extensions = obj.get("extensions")
    if extensions is not None:
        for key, content in extensions.items():
            _check_value(content, f"'extensions'.{key}")


def _check_granular_shape(value: Any) -> None:
    """Granular markings of a custom object, which stix2 cannot check (section 7.2.3)."""
    if not isinstance(value, list) or not value:
        raise InvalidObject("'granular_markings' must be a non-empty list")
    for item in value:
        if not isinstance(item, dict) or item.keys() - {"marking_ref", "lang", "selectors"}:
            raise InvalidObject("'granular_markings' holds an entry that is not a granular marking")
        if ("marking_ref" in item) == ("lang" in item):
            raise InvalidObject("a granular marking needs exactly one of marking_ref and lang")
        selectors = item.get("selectors")
        if not (isinstance(selectors, list) and selectors
                and all(isinstance(s, str) and s for s in selectors)):
            raise InvalidObject("a granular marking needs a non-empty list of selectors")


def _check_custom_object(obj: dict[str, Any]) -> None:
    """An object of a type STIX 2.1 does not define (sections 11.2 and 7.3)."""
    if _declared_kind(obj) == "new-sco":
        spec = TypeSpec(obj["type"], SCO_COMMON, frozenset({"type", "id"}))
    else:
        spec = TypeSpec(obj["type"], SDO_COMMON, VERSIONED)
    _check_value(obj, "")
    if "granular_markings" in obj:
        _check_granular_shape(obj["granular_markings"])
    _check_table(obj, spec)


# --- reference path: stix2 itself -------------------------------------------------------


def _stix2_properties(kind: str, name: str) -> frozenset[str] | None:
    """The properties stix2 3.0.2 defines for a 2.1 object type or predefined extension."""
    from stix2.registry import STIX2_OBJ_MAPS  # noqa: PLC0415 - slow to import

    maps = STIX2_OBJ_MAPS["2.1"]
    if kind == "extension":
        cls = maps["extensions"].get(name)
    else:
        cls = maps["objects"].get(name) or maps["observables"].get(name)
    return None if cls is None else frozenset(cls._properties)


def _without_custom(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without its custom properties, which are checked here (section 11.1)."""
    defined = _stix2_properties("object", obj["type"])
    if defined is None:  # pragma: no cover - only predefined types come here
        return obj
    extra = sorted(obj.keys() - defined)
    _check_custom_properties(obj, extra, obj["type"])
    core = {key: value for key, value in obj.items() if key in defined}
    extensions = core.get("extensions")
    if isinstance(extensions, dict):
        trimmed: dict[str, Any] = {}
        for name, content in extensions.items():
            own = _stix2_properties("extension", name) if isinstance(content, dict) else None
            if own is not None:
                inner = sorted(content.keys() - own)
                _check_custom_properties(content, inner, name, where=f"'extensions'.{name}")
                trimmed[name] = {key: value for key, value in content.items() if key in own}
            else:
                trimmed[name] = content
        core["extensions"] = trimmed
    return core




def _stix2_reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    if not text:
        return f"refused by the STIX 2.1 library ({type(error).__name__})"
    return text if len(text) <= 240 else text[:237] + "..."


def _same_as_given(given: Any, parsed: Any, where: str) -> None:
    """Refuse any value stix2 had to convert, drop or rename to accept it."""
    if isinstance(parsed, datetime):
        if not (isinstance(given, str) and parse_timestamp(given) is not None):
            raise InvalidObject(f"{where} must be {TIMESTAMP_HINT}")
    elif isinstance(parsed, bool):
        if not isinstance(given, bool):
            raise InvalidObject(f"{where} must be true or false, not {_json_name(given)}")
    elif isinstance(parsed, int):
        if type(given) is not int:
            raise InvalidObject(f"{where} must be an integer, not {_json_name(given)}")
    elif isinstance(parsed, float):
        if not isinstance(given, int | float) or isinstance(given, bool):
            raise InvalidObject(f"{where} must be a number, not {_json_name(given)}")
    elif isinstance(parsed, str):
        if not isinstance(given, str) or given != parsed:
            raise InvalidObject(f"{where} must be a string, not {_json_name(given)}")
    elif isinstance(parsed, list):
        if not isinstance(given, list) or len(given) != len(parsed):
            raise InvalidObject(f"{where} must be a list, not {_json_name(given)}")
        for index, (item, kept) in enumerate(zip(given, parsed, strict=True)):
            _same_as_given(item, kept, f"{where}[{index}]")
    elif isinstance(parsed, Mapping):
        if not isinstance(given, dict):
            raise InvalidObject(f"{where} must be an object, not {_json_name(given)}")
        for key, value in given.items():
            inner = f"{where}.{key}" if where else repr(key)
            if key not in parsed:
                if value is None:
                    raise InvalidObject(f"{inner} is null")
                if value == []:
                    raise InvalidObject(f"{inner} is an empty list")
                raise InvalidObject(f"{inner} is not in its STIX 2.1 form")
            _same_as_given(value, parsed[key], inner)


def _check_with_stix2(obj: dict[str, Any]) -> None:
    import stix2  # noqa: PLC0415 - slow to import, needed only off the fast path

    core = _without_custom(obj)
    try:
        parsed = stix2.parse(core, allow_custom=False, version="2.1")
    except Exception as e:  # noqa: BLE001 - any stix2 refusal is a per-object failure
        raise InvalidObject(_stix2_reason(e)) from None
    _same_as_given(core, parsed, "")


# --- public API -------------------------------------------------------------------------


def _validate(obj: Any, limits: Limits, *, use_tables: bool) -> StixObject:
    if not isinstance(obj, dict):
        raise InvalidObject(f"a STIX object must be a JSON object, not {_json_name(obj)}")
    label = _label(obj)
    try:
        canonical, plain = jcs.dumps_plain(obj, limits.max_depth)
    except (rfc8785.CanonicalizationError, UnicodeError, TypeError, ValueError) as e:
        raise InvalidObject(f"{label}: cannot be canonicalised (RFC 8785)") from e
    if len(canonical) > limits.max_object_bytes:
        raise LimitExceeded(
            f"{label}: object is {len(canonical)} bytes, limit is {limits.max_object_bytes}",
            http_status=413,
        )
    try:
        tlp = _check_own_rules(obj, limits)
        spec = TYPE_SPECS.get(obj["type"])
        if is_custom_type(obj["type"]):
            _check_custom_object(obj)
        elif use_tables and spec is not None and not _needs_stix2(obj, spec):
            _check_table(obj, spec)
        else:
            _check_value(obj, "")
            _check_with_stix2(obj)
    except LimitExceeded as e:
        raise LimitExceeded(f"{label}: {e.reason}", http_status=e.http_status) from None
    except InvalidObject as e:
        raise InvalidObject(f"{label}: {e.reason}") from None
    created, modified = obj.get("created"), obj.get("modified")
    created_by = obj.get("created_by_ref")
    return StixObject(
        id=StixId(obj["id"]),
        type=obj["type"],
        spec_version="2.1",
        created=created if isinstance(created, str) else None,
        modified=modified if isinstance(modified, str) else None,
        created_by_ref=created_by if isinstance(created_by, str) else None,
        marking_refs=tuple(obj.get("object_marking_refs", ())),
        revoked=obj.get("revoked") is True,
        tlp=tlp,
        canonical=canonical,
        data=obj,
        plain=plain,
    )


def validate_object(obj: Any, limits: Limits) -> StixObject:
    """Check one candidate object against the strict STIX 2.1 ingest profile.

    Args:
        obj: One element of an envelope's ``objects`` list, as parsed from JSON.
        limits: The caps in force (``max_object_bytes`` and the pattern limits).

    Returns:
        The validated object, with its RFC 8785 canonical bytes and its TLP level.

    Raises:
        LimitExceeded: The canonical object is larger than ``max_object_bytes`` (HTTP
            413), or its pattern exceeds the pattern caps (HTTP 422).
        InvalidObject: The object is not a valid STIX 2.1 object under the rules in this
            module's docstring, or its TLP markings conflict; the reason starts with the
            object's id when it has a usable one.
    """
    return _validate(obj, limits, use_tables=True)


def validate_with_stix2(obj: Any, limits: Limits) -> StixObject:
    """Like :func:`validate_object`, but always through ``stix2.parse`` (about 1 ms).

    The reference the property tables are proved against; :func:`validate_object` uses it
    for the types and features the tables do not cover.

    Raises:
        LimitExceeded: As for :func:`validate_object`.
        InvalidObject: As for :func:`validate_object`.
    """
    return _validate(obj, limits, use_tables=False)


@dataclass(frozen=True, slots=True)
class CustomContent:
    """What an object holds beyond the types and properties STIX 2.1 defines.

    Attributes:
        custom_type: The object's type is not a STIX 2.1 type (section 11.2 or 7.3).
        properties: Custom properties of a predefined type (section 11.1): top-level
            names, and ``extensions.<ext>.<name>`` inside predefined SCO extensions.
    """

    custom_type: bool
    properties: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Whether the object holds no custom content at all."""
        return not self.custom_type and not self.properties


def custom_content_of(obj: Mapping[str, Any]) -> CustomContent:
    """The custom content of a validated object, for a policy that restricts it.

    Property-extensions (entries of ``extensions`` keyed by an extension-definition id,
    such as the exchange's own signature) are the spec's own extension mechanism and are
    not listed.

    Args:
        obj: An object :func:`validate_object` accepted.

    Returns:
        Whether its type is custom, and its custom properties.
    """
    obj_type = obj.get("type")
    if not isinstance(obj_type, str) or is_custom_type(obj_type):
        return CustomContent(custom_type=True, properties=())
    spec = TYPE_SPECS.get(obj_type)
    defined = spec.properties.keys() if spec is not None else _stix2_properties("object", obj_type)
    names = sorted(obj.keys() - (defined or ()))
    extensions = obj.get("extensions")
    if isinstance(extensions, dict):
        for name, content in sorted(extensions.items()):
            own = _stix2_properties("extension", name) if name in SCO_EXTENSIONS else None
            if own is not None and isinstance(content, dict):
                names += [f"extensions.{name}.{key}" for key in sorted(content.keys() - own)]
    return CustomContent(custom_type=False, properties=tuple(names))
