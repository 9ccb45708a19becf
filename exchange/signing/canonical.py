"""The bytes cx-sig v1 signs: RFC 8785 canonical JSON inside a DSSE pre-authentication encoding.

research/security.md 1.3 and DESIGN.md decision 5: a signature covers

    PAE(PAYLOAD_TYPE, JCS(obj'))

where ``JCS`` is the JSON Canonicalization Scheme of RFC 8785 (:func:`exchange.model.jcs.dumps`:
the ``rfc8785`` package's bytes, through the standard library's C encoder only for values
where the two provably agree: no floats, ASCII keys; a plain ``json.dumps(sort_keys=True)``
sorts by code point and prints numbers the Python way), ``PAE`` is the DSSE v1
pre-authentication encoding (secure-systems-lab/dsse, protocol.md) and ``obj'`` is the
STIX object with only the ``sig`` member of its cx-sig extension entry removed; the rest
of the entry (algorithm, key id, ``signed_at``) is signed with the object.

A signer signs only objects in *normal form*: objects that the reference STIX library
(``stix2`` 3.0.2) re-emits with the same canonical bytes. Otherwise any consumer built on
that library (it writes ``"...00.1Z"`` as ``"...00.100Z"``, adds ``pattern_version`` to
indicators, drops ``revoked: false``) would break the signature by re-serialising the
object (research/security.md 1.2). :func:`require_normal_form` refuses such objects and
names the property; :func:`normal_form` gives the fixed point a publisher can sign instead.

Pure code, no I/O. Keys and signatures are in :mod:`exchange.signing.keys` and
:mod:`exchange.signing.cxsig`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import rfc8785

from exchange.errors import InvalidObject
from exchange.model import jcs
from exchange.model.pattern import stix2_indicator_class

__all__ = [
    "CANON",
    "EXTENSION_ID",
    "PAYLOAD_TYPE",
    "canonical",
    "canonical_plain",
    "normal_form",
    "normal_form_same",
    "pae",
    "require_normal_form",
    "signing_input",
    "without_signature",
]

_T = TypeVar("_T")

#: The DSSE payload type of a signed STIX object. Authenticated by PAE, so a signature over a
#: STIX object can never be taken for one over a registry, policy or checkpoint.
PAYLOAD_TYPE: Final = "application/vnd.cti-exchange.stix-object+json; v=1"

#: The id of the extension-definition that defines the cx-sig v1 property-extension
#: (fixed once for the project; the definition itself is
#: :func:`exchange.signing.cxsig.extension_definition`).
EXTENSION_ID: Final = "extension-definition--8cfe494a-40dc-48f9-8577-ada1bbcec232"

#: The ``canon`` value of a cx-sig v1 entry: RFC 8785 JSON Canonicalization Scheme.
CANON: Final = "jcs-rfc8785"


def _label(obj: Mapping[str, Any]) -> str:
    identifier = obj.get("id")
    if isinstance(identifier, str) and 0 < len(identifier) <= 120 and identifier.isprintable():
        return identifier
    return "object"


def canonical(obj: Any) -> bytes:
    """The RFC 8785 canonical JSON bytes of a JSON value.

    Args:
        obj: A JSON value made of dicts (any top-level Mapping), lists, str, int, float,
            bool and None.

    Returns:
        The canonical UTF-8 bytes (RFC 8785 section 3.2: no whitespace, members sorted by
        UTF-16 code units, ECMAScript number form, minimal string escapes).

    Raises:
        InvalidObject: The value cannot be canonicalised: NaN or an infinity, an integer
            beyond +-(2**53-1) (RFC 8785 section 3.2.2.3, I-JSON), a lone surrogate, a
            non-string key or a value of a non-JSON type.
    """
    value = dict(obj) if isinstance(obj, Mapping) and not isinstance(obj, dict) else obj
    return _canonicalised(jcs.dumps, value)


def canonical_plain(obj: Mapping[str, Any], max_depth: int) -> tuple[bytes, bool]:
    """:func:`canonical`, and whether the bytes certainly parse back, under the strict JSON
    profile at ``max_depth``, as the value itself (:func:`exchange.model.jcs.dumps_plain`);
    false means "try it".

    Raises:
        InvalidObject: As :func:`canonical`.
    """
    value = dict(obj) if not isinstance(obj, dict) else obj
    return _canonicalised(lambda v: jcs.dumps_plain(v, max_depth), value)


def _canonicalised(encode: Callable[[Any], _T], value: Any) -> _T:
    """``encode(value)``, its errors as the :class:`InvalidObject` of :func:`canonical`."""
    try:
        return encode(value)
    except rfc8785.IntegerDomainError as e:
        raise InvalidObject(
            "cannot canonicalise (RFC 8785): an integer is outside +-(2**53-1)"
        ) from e
    except rfc8785.FloatDomainError as e:
        raise InvalidObject("cannot canonicalise (RFC 8785): NaN or Infinity is not JSON") from e
    except rfc8785.CanonicalizationError as e:
        reason = str(e)
        if "non-UTF-8" in reason:
            reason = "a string holds a lone UTF-16 surrogate, which is not Unicode"
        elif reason.startswith("unsupported type"):
            reason = "a value is not of a JSON type"
        raise InvalidObject(f"cannot canonicalise (RFC 8785): {reason}") from e
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidObject(f"cannot canonicalise (RFC 8785): {type(e).__name__}") from e


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of a payload and its type.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, with LEN the decimal byte
    length without leading zeros and ``type`` UTF-8 encoded (DSSE protocol.md).

    Args:
        payload_type: The payload type (a media type).
        payload: The serialised body.

    Returns:
        The bytes a DSSE signature covers.
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def without_signature(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object with the ``sig`` member of its cx-sig entry removed (``obj'``).

    Only the containers on the way to ``sig`` are copied; everything else is shared with
    ``obj``, so treat the result as read-only. An object without a cx-sig entry comes back
    as a plain copy of its top level.

    Args:
        obj: A STIX object.

    Returns:
        A new top-level dict.
    """
    stripped = dict(obj)
    extensions = stripped.get("extensions")
    if isinstance(extensions, Mapping):
        entry = extensions.get(EXTENSION_ID)
        if isinstance(entry, Mapping) and "sig" in entry:
            stripped["extensions"] = {
                **extensions,
                EXTENSION_ID: {key: value for key, value in entry.items() if key != "sig"},
            }
    return stripped


def signing_input(obj: Mapping[str, Any]) -> bytes:
    """The message a cx-sig v1 signature covers: ``PAE(PAYLOAD_TYPE, JCS(obj'))``.

    Args:
        obj: A STIX object carrying a cx-sig entry (``sig`` present or not).

    Returns:
        The DSSE PAE bytes.

    Raises:
        InvalidObject: The object cannot be canonicalised (see :func:`canonical`).
    """
    return pae(PAYLOAD_TYPE, canonical(without_signature(obj)))


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON value, a few times faster than :func:`copy.deepcopy` on one.

    Dicts and lists are rebuilt, strings, numbers, booleans and null (immutable) are
    shared; anything else goes through :func:`copy.deepcopy`.
    """
    kind = type(value)
    if kind is dict:
        return {key: _copy_json(inner) for key, inner in value.items()}
    if kind is list:
        return [_copy_json(inner) for inner in value]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)


def _stix2_form(obj: Mapping[str, Any]) -> dict[str, Any]:
    import stix2  # noqa: PLC0415 - slow to import; needed only when signing

    try:
        data = _copy_json(dict(obj))
        if data.get("type") == "indicator":
            # The library's own class, its grammar check by the exchange's fast validator
            # (the same verdicts, exchange.model.pattern): 0.5 ms less per indicator.
            parsed = stix2_indicator_class()(allow_custom=True, **data)
        else:
            parsed = stix2.parse(data, allow_custom=True, version="2.1")
        # stix2 writes its own output with the stdlib encoder; reading it back is safe.
        result = json.loads(parsed.serialize())
    except Exception as e:  # noqa: BLE001 - any stix2 refusal is a reason to refuse signing
        text = " ".join(str(e).split()) or type(e).__name__
        raise InvalidObject(
            f"{_label(obj)}: the STIX 2.1 library refuses it: {text[:200]}"
        ) from None
    if not isinstance(result, dict):  # pragma: no cover - stix2 always emits an object
        raise InvalidObject(f"{_label(obj)}: the STIX 2.1 library did not return an object")
    return result


def normal_form(obj: Mapping[str, Any], *, checked: bool = False) -> dict[str, Any]:
    """The object as the reference library re-emits it: the fixed point a signer may sign.

    For publishers that want to sign an object :func:`require_normal_form` refused. It
    changes bytes (e.g. timestamps to millisecond precision, ``pattern_version`` added to
    indicators, ``revoked: false`` and empty lists dropped), so run it before any signature
    is made, never on a signed object.

    With ``checked`` (the caller vouches that the object, but for the cx-sig entry, passed
    :func:`~exchange.model.stix.validate_object`, whose verdict is stix2's), an object
    whose *shape* (:func:`_shape`) stix2 has already normalised in this process, changing
    nothing but timestamp digits, gets the same timestamp rewrites without running stix2
    (about 0.3 ms less per object): stix2's rewrite of a value depends only on what the
    shape records (the type, the property names, the JSON type of each value,
    ``true``/``false``, empty lists, and for a valid timestamp its count of fraction
    digits and of trailing zeros), never on the other characters of a string. A shape
    whose normal form added, dropped or changed anything else is never cached.
    ``tests/unit/signing/test_normal_shape.py`` proves the result equal to stix2's on every
    object of the real files, on every fraction form and on Hypothesis-made objects.

    Args:
        obj: A STIX 2.1 object.
        checked: The object passed the strict ingest check (see above).

    Returns:
        A new dict, equal to ``json.loads(stix2.parse(obj, allow_custom=True).serialize())``
        (its RFC 8785 bytes equal).

    Raises:
        InvalidObject: ``stix2`` 3.0.2 refuses the object.
    """
    return normal_form_same(obj, checked=checked)[0]


def normal_form_same(obj: Mapping[str, Any], *, checked: bool = False, share: bool = False
                     ) -> tuple[dict[str, Any], bool]:
    """:func:`normal_form`, and whether it is certainly ``obj`` itself, value for value.

    The second item is true only for a checked object whose shape stix2 has already
    normalised and whose timestamps the shape's rewrites leave as they are: the normal
    form then differs from ``obj`` in nothing (only timestamp strings could have changed,
    and each compared equal), so a verdict on ``obj`` is a verdict on it. False says
    nothing either way.

    With ``share`` (the caller hands ``obj`` over and will not change it), that normal
    form is a new top-level dict sharing ``obj``'s values instead of a deep copy.

    Raises:
        InvalidObject: As :func:`normal_form`.
    """
    if not checked:
        return _stix2_form(obj), False
    shape = _shape(obj)
    plan = _PLANS.get(shape) if shape is not None else None
    if plan is not None:
        if share and _unchanged(obj, plan):
            return dict(obj), True
        return _rewritten(obj, plan)
    result = _stix2_form(obj)
    if shape is not None and len(_PLANS) < _MAX_SHAPES:
        learned = _plan_of(obj, result)
        if learned is not None:
            _PLANS[shape] = learned
    return result, False


#: Timestamp rewrites: (path of the value, fraction digits stix2 writes).
_Plan = tuple[tuple[tuple[str, ...], int], ...]
#: Shape of a checked object -> the only rewrites stix2 made to an object of that shape.
_PLANS: dict[tuple[Any, ...], _Plan] = {}
_MAX_SHAPES: Final = 4096
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,6}))?Z")


def _rewrite_timestamp(value: str, digits: int) -> str:
    """``value`` (a timestamp of :data:`_TIMESTAMP`) with ``digits`` fraction digits, its
    own digits kept (zero-padded or cut), as stix2 writes a timestamp of its precision."""
    match = _TIMESTAMP.fullmatch(value)
    fraction = (match[1] if match is not None and match[1] else "") + "000000"
    return value[:19] + (f".{fraction[:digits]}" if digits else "") + "Z"


def _unchanged(obj: Mapping[str, Any], plan: _Plan) -> bool:
    """Whether the plan's rewrites leave every timestamp of ``obj`` as it is."""
    for path, digits in plan:
        holder: Any = obj
        for key in path[:-1]:
            holder = holder[key]
        value = holder[path[-1]]
        if _rewrite_timestamp(value, digits) != value:
            return False
    return True


def _rewritten(obj: Mapping[str, Any], plan: _Plan) -> tuple[dict[str, Any], bool]:
    """``obj`` with the plan's timestamp rewrites, and whether none of them changed it."""
    out: dict[str, Any] = _copy_json(dict(obj))
    same = True
    for path, digits in plan:
        holder = out
        for key in path[:-1]:
            holder = holder[key]
        before = holder[path[-1]]
        after = _rewrite_timestamp(before, digits)
        if after != before:
            holder[path[-1]] = after
            same = False
    return out, same


def _plan_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> _Plan | None:
    """The timestamp rewrites that turn ``before`` into ``after``; None when stix2 changed
    anything else (added, dropped or changed another value), which is never cached."""
    plan: list[tuple[tuple[str, ...], int]] = []

    def walk(left: Any, right: Any, path: tuple[str, ...]) -> bool:
        if type(left) is dict and type(right) is dict:
            if left.keys() != right.keys():
                return False
            return all(walk(left[key], right[key], (*path, key)) for key in left)
        if type(left) is str and type(right) is str and left != right:
            match, written = _TIMESTAMP.fullmatch(left), _TIMESTAMP.fullmatch(right)
            if match is None or written is None or left[:19] != right[:19]:
                return False
            plan.append((path, len(written[1] or "")))
            return True
        return type(left) is type(right) and left == right

    if not walk(dict(before), after, ()):
        return None
    done = tuple(plan)
    try:
        if canonical(_rewritten(before, done)[0]) != canonical(after):
            return None
    except InvalidObject:
        return None
    return done


def _value_shape(value: Any) -> Any:
    """What stix2's rewrite of one JSON value can depend on; None: do not cache."""
    kind = type(value)
    if kind is str:
        # Only 20 to 27 characters ending in "Z" can be a timestamp of _TIMESTAMP: the
        # other strings (names, patterns, ids) skip the expression.
        if not 20 <= len(value) <= 27 or value[-1] != "Z":
            return "s"
        match = _TIMESTAMP.fullmatch(value)
        if match is None:
            return "s"
        if value[0] == "0":
            return None  # a year before 1000: stix2's strftime writes it differently
        try:
            datetime.fromisoformat(value[:19])
        except ValueError:
            return "s"
        fraction = match[1] or ""
        return ("t", len(fraction), len(fraction) - len(fraction.rstrip("0")))
    if kind is bool:
        return "T" if value else "F"
    if kind is int:
        return "i"
    if kind is dict:
        return _shape(value)
    if kind is list:
        if not value:
            return "[]"
        inner = {_value_shape(item) for item in value}
        if None in inner:
            return None
        if len(inner) == 1:  # the common case: a list of strings, of one kind of dict
            return ("l", *inner)
        return ("l", *sorted(inner, key=repr))
    return None  # floats, null and anything else always go through stix2


def _shape(obj: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The shape of an object (or of a dict inside one): its type, and per property name
    the shape of the value; None when it holds something that is never cached."""
    out: list[Any] = [obj.get("type") if isinstance(obj.get("type"), str) else None]
    for key in sorted(obj):
        if type(key) is not str:
            return None
        inner = _value_shape(obj[key])
        if inner is None:
            return None
        out.append((key, inner))
    return tuple(out)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _differences(before: Any, after: Any, where: str, found: list[str]) -> None:
    if len(found) >= 3:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            inner = f"{where}.{key}" if where else f"'{key}'"
            if key not in after:
                found.append(f"stix2 drops {inner} ({_show(before[key])})")
            elif key not in before:
                found.append(f"stix2 adds {inner}: {_show(after[key])}")
            else:
                _differences(before[key], after[key], inner, found)
            if len(found) >= 3:
                return
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (item, kept) in enumerate(zip(before, after, strict=True)):
            _differences(item, kept, f"{where}[{index}]", found)
    elif canonical(before) != canonical(after):
        found.append(f"{where or 'the object'} is {_show(before)}; stix2 writes {_show(after)}")


def require_normal_form(obj: Mapping[str, Any]) -> None:
    """Refuse an object that the reference library would not re-emit byte for byte.

    The check is ``JCS(obj) == JCS(json.loads(stix2.parse(obj, allow_custom=True)
    .serialize()))`` with ``stix2`` 3.0.2 (research/security.md 1.3, signing step 4).
    Unknown extension-definition entries, the cx-sig entry among them, are kept by
    ``stix2`` and so pass.

    Args:
        obj: The object about to be signed (with its cx-sig entry, ``sig`` absent or not).

    Raises:
        InvalidObject: ``stix2`` refuses the object, or re-emits it differently; the
            reason names up to three properties and what ``stix2`` writes for them.
    """
    before = canonical(obj)
    after = _stix2_form(obj)
    if canonical(after) == before:
        return
    found: list[str] = []
    _differences(json.loads(before), after, "", found)
    detail = "; ".join(found) or "stix2 re-emits it with different bytes"
    raise InvalidObject(
        f"{_label(obj)}: not in normal form, so a stix2-based consumer would break its"
        f" signature ({detail}); sign normal_form(obj) instead"
    )
