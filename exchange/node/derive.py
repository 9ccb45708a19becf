"""Derived copies of objects for recipients a policy transforms (redaction, attribution).

When a policy says a recipient gets a redacted copy, or a copy that does not name the
producer (FIRST IEP 2.0 ``provider_attribution: must-not``), the exchange never alters
the original: it serves a new object with a new, deterministic id whose provenance names
the original: an external reference (source :data:`PROVENANCE_SOURCE`, ``external_id``
the original id), the in-object equivalent of a ``derived-from`` relationship (STIX 2.1
section 5.1.3) that keeps one object per stored row, so a page never holds more than
``limit`` objects.

The copy is graph-true: every reference in it (any ``*_ref`` or ``*_refs`` property, at
any depth: ``created_by_ref``, ``object_refs``, ``source_ref``, granular markings'
``marking_ref``, references inside extensions and custom properties) is passed through
a resolver the caller builds from the same policy decision as the read. The resolver
maps a referenced id to the id the recipient knows it by (the copy's id, or the original
where no transform applies) or to None: the reference is then dropped, and each property
that lost references names itself in an external reference (source :data:`DROPPED_SOURCE`,
``external_id`` the property path, the count in ``description``), never the dropped ids,
which would tell the recipient about objects it may not see. An object whose required
reference would be dropped (a relationship's ``source_ref``, a sighting's
``sighting_of_ref``, a report's last ``object_refs`` entry, :data:`REQUIRED_REFERENCES`)
cannot be served coherently: :func:`derive` returns it withheld, with the reason.

The producer's cx-sig signature does not cover the copy, so it is removed; the caller
signs the copy with the node's key (a node attestation, :func:`derive` with ``key``).
Pure functions: the same original, transforms, resolved references, key and signing
time always give the same bytes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import rfc8785

from exchange.model.stix import is_observable
from exchange.policy import AnonymiseProducer, PolicySet, Redact, Transform, redact_properties
from exchange.signing.canonical import EXTENSION_ID as CX_SIG_EXTENSION_ID
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey

__all__ = [
    "DERIVED_NAMESPACE",
    "DROPPED_SOURCE",
    "PROVENANCE_SOURCE",
    "REQUIRED_REFERENCES",
    "Derived",
    "Resolver",
    "Rewritten",
    "derive",
    "derived_id",
    "references",
    "rewrite_references",
    "transform_key",
]

#: Namespace of derived-object ids: uuid5(namespace, "<original id>|<transforms>").
DERIVED_NAMESPACE = uuid.UUID("0b5b3f61-9d1e-5c59-a3a2-6a1f3f1b7c42")
#: ``source_name`` of the external reference that names the original of a copy.
PROVENANCE_SOURCE: Final = "cert-exchange-derived-from"
#: ``source_name`` of an external reference recording references dropped from a copy.
DROPPED_SOURCE: Final = "cert-exchange-dropped-refs"

#: Maps a referenced id to the id the recipient knows it by, or None to drop it.
Resolver = Callable[[str], str | None]

#: Properties an object of a type cannot lose (STIX 2.1 sections 5.1, 5.2, 4.x, 6.12):
#: each tuple names alternatives, at least one of which must remain.
REQUIRED_REFERENCES: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    "relationship": (("source_ref",), ("target_ref",)),
    "sighting": (("sighting_of_ref",),),
    "report": (("object_refs",),),
    "note": (("object_refs",),),
    "opinion": (("object_refs",),),
    "grouping": (("object_refs",),),
    "observed-data": (("object_refs", "objects"),),
    "network-traffic": (("src_ref", "dst_ref"),),
}

_STIX_ID = re.compile(r"[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}")
_PROJECT_SOURCES = frozenset({PROVENANCE_SOURCE, DROPPED_SOURCE})


def transform_key(transforms: Sequence[Transform]) -> str:
    """A stable text naming a list of transforms."""
    return ",".join(sorted(str(t) for t in transforms))


def derived_id(original_id: str, transforms: Sequence[Transform]) -> str:
    """The id of the copy of ``original_id`` under ``transforms``."""
    kind = original_id.split("--", 1)[0]
    name = original_id + "|" + transform_key(transforms)
    return f"{kind}--{uuid.uuid5(DERIVED_NAMESPACE, name)}"


def _walk_refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_ref") and isinstance(item, str):
                if _STIX_ID.fullmatch(item):
                    yield item
            elif key.endswith("_refs") and isinstance(item, list):
                yield from (i for i in item if isinstance(i, str) and _STIX_ID.fullmatch(i))
            else:
                yield from _walk_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_refs(item)


def references(obj: Mapping[str, Any]) -> set[str]:
    """Every STIX id the object references, at any depth (its cx-sig entry excluded)."""
    found: set[str] = set()
    for key, value in obj.items():
        kept = value
        if key == "extensions" and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if k != CX_SIG_EXTENSION_ID}
        found.update(_walk_refs({key: kept}))
    return found


@dataclass(frozen=True, slots=True)
class Rewritten:
    """An object with its references resolved for one recipient.

    Attributes:
        obj: The rewritten object (a new dict; the input is not modified).
        dropped: Property path -> how many references it lost, in document order.
        missing: Required properties (:data:`REQUIRED_REFERENCES`) the object lost
            entirely; when not empty it cannot be served coherently.
    """

    obj: dict[str, Any]
    dropped: dict[str, int]
    missing: tuple[str, ...]


class _Rewriter:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.dropped: dict[str, int] = {}

    def _drop(self, path: str, count: int = 1) -> None:
        self.dropped[path] = self.dropped.get(path, 0) + count

    def _one(self, ref: str) -> str | None:
        return self.resolve(ref) if _STIX_ID.fullmatch(ref) else ref

    def mapping(self, value: Mapping[str, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key.endswith("_ref") and isinstance(item, str):
                new = self._one(item)
                if new is None:
                    self._drop(where)
                else:
                    out[key] = new
            elif key.endswith("_refs") and isinstance(item, list):
                kept = []
                for ref in item:
                    new = self._one(ref) if isinstance(ref, str) else ref
                    if new is None:
                        self._drop(where)
                    else:
                        kept.append(new)
                if kept or not item:
                    out[key] = kept
            elif key == "granular_markings" and isinstance(item, list):
                markings = self.granular(item, where)
                if markings:
                    out[key] = markings
            else:
                out[key] = self.value(item, where)
        return out

    def granular(self, items: list[Any], path: str) -> list[Any]:
        # A granular marking without its marking_ref (and without lang) marks nothing:
        # the entry goes (STIX 2.1 section 7.2.3).
        kept = []
        for index, item in enumerate(items):
            new = self.value(item, f"{path}[{index}]")
            if (isinstance(item, dict) and "marking_ref" in item and isinstance(new, dict)
                    and "marking_ref" not in new and "lang" not in new):
                continue
            kept.append(new)
        return kept

    def value(self, item: Any, path: str) -> Any:
        if isinstance(item, dict):
            return self.mapping(item, path)
        if isinstance(item, list):
            return [self.value(x, f"{path}[{i}]") for i, x in enumerate(item)]
        return item


def rewrite_references(obj: Mapping[str, Any], resolve: Resolver) -> Rewritten:
    """Resolve every reference of ``obj`` for one recipient.

    Args:
        obj: The object (not modified).
        resolve: Maps a referenced STIX id to the id to write, or None to drop it.
            Values of ``*_ref`` properties that are not STIX ids are left alone.

    Returns:
        The rewritten object, the references dropped per property path, and the
        required properties that were lost.
    """
    rewriter = _Rewriter(resolve)
    out = rewriter.mapping(obj, "")
    missing = tuple(
        "/".join(choices)
        for choices in REQUIRED_REFERENCES.get(str(obj.get("type")), ())
        if any(name in obj for name in choices) and not any(name in out for name in choices)
    )
    return Rewritten(out, rewriter.dropped, missing)


@dataclass(frozen=True, slots=True)
class Derived:
    """One derived copy, or why there is none.

    Attributes:
        id: The copy's id.
        body: The copy's canonical bytes; None when it is withheld.
        withheld: Why the copy cannot be served (empty when it can).
        dropped: Property path -> references dropped from it.
    """

    id: str
    body: bytes | None
    withheld: str = ""
    dropped: Mapping[str, int] | None = None


def derive(original: Mapping[str, Any], transforms: Sequence[Transform], policy: PolicySet,
           resolve: Resolver, *, key: SigningKey | None = None,
           signed_at: str | None = None) -> Derived:
    """The derived copy of ``original`` for a recipient ``transforms`` apply to.

    Args:
        original: The stored object, parsed.
        transforms: What the policy requires for this recipient (non-empty).
        policy: The policy in force (for the redaction profiles).
        resolve: The recipient's view of referenced ids (module docstring).
        key: The node's signing key; the copy is signed with it (a node attestation).
        signed_at: The signing time claimed in the signature (with ``key``).

    Returns:
        The copy, or the reason it is withheld (a required reference was dropped).

    Raises:
        InvalidObject: The copy could not be signed (not expected for a stored object:
            the copy of a valid object is valid).
    """
    new_id = derived_id(str(original["id"]), transforms)
    copy: dict[str, Any] = dict(original)
    for transform in transforms:
        if isinstance(transform, Redact):
            copy = redact_properties(copy, policy.redaction_profiles[transform.profile])
        elif isinstance(transform, AnonymiseProducer):
            copy.pop("created_by_ref", None)
    extensions = dict(copy.get("extensions") or {})
    extensions.pop(CX_SIG_EXTENSION_ID, None)
    if extensions:
        copy["extensions"] = extensions
    else:
        copy.pop("extensions", None)
    kept_refs = [r for r in copy.pop("external_references", None) or []
                 if not (isinstance(r, dict) and r.get("source_name") in _PROJECT_SOURCES)]
    rewritten = rewrite_references(copy, resolve)
    if rewritten.missing:
        return Derived(new_id, None,
                       f"{', '.join(rewritten.missing)} would reference objects this"
                       " recipient does not receive", rewritten.dropped)
    copy = rewritten.obj
    copy["id"] = new_id
    kept_refs.append({
        "source_name": PROVENANCE_SOURCE,
        "external_id": str(original["id"]),
        "description": f"derived-from {original['id']} by the exchange: "
                       f"{transform_key(transforms)}",
    })
    kept_refs.extend({
        "source_name": DROPPED_SOURCE,
        "external_id": path,
        "description": f"{count} reference(s) dropped: the referenced objects are not"
                       " shared with this recipient in this collection",
    } for path, count in rewritten.dropped.items())
    if is_observable(original):
        # A (custom) cyber-observable may not carry external references (STIX 2.1
        # section 6): its provenance is the node's signature and the derived-id record.
        copy.pop("external_references", None)
    else:
        copy["external_references"] = kept_refs
    if key is not None:
        copy = sign_object(copy, key, signed_at=signed_at, attest=True)
    return Derived(new_id, rfc8785.dumps(copy), "", rewritten.dropped)
