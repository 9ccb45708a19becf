"""The TAXII 2.1 envelope a client POSTs to ``/collections/{id}/objects/``.

:func:`parse_envelope` turns the raw body into the list of candidate objects, refusing
anything that is not an envelope (TAXII 2.1 section 3.7: ``objects``, ``more``, ``next``)
and envelopes over the object-count limit. The objects themselves are returned
unvalidated: each one is checked separately by :func:`exchange.model.stix.validate_object`,
so one bad object becomes one failure in the status resource instead of sinking the rest.

Pure code, no I/O.
"""

from __future__ import annotations

from typing import Any

from exchange.errors import InvalidInput, InvalidObject, LimitExceeded
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.stixkinds import SCO_TYPES

ENVELOPE_KEYS = frozenset({"objects", "more", "next"})
#: The one refusal of an envelope (or bundle) of STIX 2.0 objects.
STIX20_REFUSAL = (
    "STIX 2.0 is not accepted over TAXII 2.1 (its objects have no spec_version \"2.1\");"
    " upgrade it with `exchange publish FILE`, which converts STIX 2.0 to 2.1 on your side"
    " before signing and sending"
)


def is_stix20_object(obj: Any) -> bool:
    """Whether ``obj`` is a STIX 2.0 object.

    True for ``spec_version`` ``"2.0"``, or none on a type that is not a STIX 2.1 SCO
    (2.0 had no top-level SCOs; a 2.1 SCO may omit ``spec_version``).
    """
    if not isinstance(obj, dict):
        return False
    version = obj.get("spec_version")
    if version == "2.0":
        return True
    return version is None and isinstance(obj.get("type"), str) and obj["type"] not in SCO_TYPES


def refuse_stix20(objects: list[Any]) -> None:
    """Refuse, once, an envelope whose objects are all STIX 2.0.

    See :func:`is_stix20_object`. An envelope that mixes 2.0 and 2.1 objects is judged
    object by object.

    Raises:
        InvalidObject: Every object is a STIX 2.0 object (HTTP 422); the message names
            the command that upgrades them.
    """
    if objects and all(is_stix20_object(obj) for obj in objects):
        raise InvalidObject(STIX20_REFUSAL)

_JSON_TYPE_NAMES = {
    list: "a JSON array",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    bool: "a JSON boolean",
    type(None): "null",
}


def parse_envelope(data: bytes, limits: Limits) -> list[Any]:
    """Parse a TAXII 2.1 envelope and return its candidate objects.

    Args:
        data: The raw request body.
        limits: The caps in force (body size, depth and objects per envelope).

    Returns:
        The envelope's ``objects`` list, each element still unvalidated.

    Raises:
        LimitExceeded: The body is too large, nests too deeply, or holds more than
            ``limits.max_objects`` objects (HTTP 413).
        MalformedJSON: The body is not strict JSON (see :func:`parse_json`).
        InvalidInput: The JSON is not an envelope: not an object, a STIX bundle, an
            unknown top-level key, ``objects`` missing, not a list or empty, or
            ``more``/``next`` of the wrong type.
    """
    doc = parse_json(data, limits)
    if not isinstance(doc, dict):
        got = _JSON_TYPE_NAMES.get(type(doc), "something else")
        raise InvalidInput(
            f"expected a TAXII envelope (a JSON object with an 'objects' list), got {got}"
        )
    if doc.get("type") == "bundle":
        if doc.get("spec_version") == "2.0":
            raise InvalidObject(STIX20_REFUSAL)
        raise InvalidInput(
            "expected a TAXII envelope (a JSON object with an 'objects' list), got a STIX"
            ' bundle; send its objects list as {"objects": [...]}'
        )
    unknown = sorted(set(doc) - ENVELOPE_KEYS)
    if unknown:
        names = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise InvalidInput(
            f"unknown envelope propert{'ies' if len(unknown) > 1 else 'y'} {names};"
            " a TAXII envelope has only objects, more and next"
        )
    if "objects" not in doc:
        raise InvalidInput("the envelope has no 'objects' list")
    objects = doc["objects"]
    if not isinstance(objects, list):
        got = (
            "a JSON object"
            if isinstance(objects, dict)
            else _JSON_TYPE_NAMES.get(type(objects), "something else")
        )
        raise InvalidInput(f"the envelope's 'objects' must be a list, got {got}")
    if "more" in doc and not isinstance(doc["more"], bool):
        raise InvalidInput("the envelope's 'more' must be true or false")
    if "next" in doc and not isinstance(doc["next"], str):
        raise InvalidInput("the envelope's 'next' must be a string")
    if len(objects) > limits.max_objects:
        raise LimitExceeded(
            f"the envelope holds {len(objects)} objects, limit is {limits.max_objects}",
            http_status=413,
        )
    if not objects:
        raise InvalidInput("the envelope's 'objects' list is empty; nothing to add")
    return objects
