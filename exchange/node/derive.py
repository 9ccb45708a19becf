"""Derived copies of objects for recipients a policy transforms (redaction, attribution).

When a policy says a recipient gets a redacted copy, or a copy that does not name the
producer (FIRST IEP 2.0 ``provider_attribution: must-not``), the exchange never alters
the original: it serves a new object with a new, deterministic id, produced by the
exchange's own identity, whose provenance names the original: an external reference
(source ``cert-exchange-derived-from``, ``external_id`` the original id), the in-object
equivalent of a ``derived-from`` relationship (STIX 2.1 section 5.1.3) that keeps one
object per stored row, so a page never holds more than ``limit`` objects. The producer's
cx-sig signature does not cover the copy, so it is removed. Pure functions; the same
original and transforms always give the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

from exchange.policy import AnonymiseProducer, PolicySet, Redact, Transform, redact_properties
from exchange.signing.canonical import EXTENSION_ID as CX_SIG_EXTENSION_ID

#: Namespace of derived-object ids: uuid5(namespace, "<original id>|<transforms>").
DERIVED_NAMESPACE = uuid.UUID("0b5b3f61-9d1e-5c59-a3a2-6a1f3f1b7c42")
#: ``source_name`` of the external reference that names the original of a copy.
PROVENANCE_SOURCE = "cert-exchange-derived-from"


def transform_key(transforms: Sequence[Transform]) -> str:
    """A stable text naming a list of transforms."""
    return ",".join(sorted(str(t) for t in transforms))


def derived_id(original_id: str, transforms: Sequence[Transform]) -> str:
    """The id of the copy of ``original_id`` under ``transforms``."""
    kind = original_id.split("--", 1)[0]
    name = original_id + "|" + transform_key(transforms)
    return f"{kind}--{uuid.uuid5(DERIVED_NAMESPACE, name)}"


def derive(original: Mapping[str, Any], transforms: Sequence[Transform], policy: PolicySet,
           *, node_identity: str) -> bytes:
    """The derived copy, as canonical JSON bytes.

    Args:
        original: The stored object, parsed.
        transforms: What the policy requires for this recipient (non-empty).
        policy: The policy in force (for the redaction profiles).
        node_identity: The exchange's own identity id, producer of the copy.

    Returns:
        The copy: one object for one stored row, so pages never exceed ``limit``.
    """
    copy: dict[str, Any] = dict(original)
    for transform in transforms:
        if isinstance(transform, Redact):
            copy = redact_properties(copy, policy.redaction_profiles[transform.profile])
        elif isinstance(transform, AnonymiseProducer):
            copy.pop("created_by_ref", None)
    copy["created_by_ref"] = node_identity
    extensions = dict(copy.get("extensions") or {})
    extensions.pop(CX_SIG_EXTENSION_ID, None)
    if extensions:
        copy["extensions"] = extensions
    else:
        copy.pop("extensions", None)
    new_id = derived_id(str(original["id"]), transforms)
    copy["id"] = new_id
    references = [r for r in copy.get("external_references", [])
                  if isinstance(r, dict) and r.get("source_name") != PROVENANCE_SOURCE]
    references.append({
        "source_name": PROVENANCE_SOURCE,
        "external_id": str(original["id"]),
        "description": f"derived-from {original['id']} by the exchange: "
                       f"{transform_key(transforms)}",
    })
    copy["external_references"] = references
    return rfc8785.dumps(copy)
