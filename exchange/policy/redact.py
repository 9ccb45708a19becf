"""Apply a redaction profile to a STIX object's properties (pure).

This only computes the redacted property set. Turning it into the derived object a
recipient receives (a new id, the provenance naming the original, references resolved
for the recipient, the node's signature, no ``created_by_ref`` when anonymising) is the
node's job (:mod:`exchange.node.derive`); the original object is never altered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exchange.policy.model import RedactionProfile

__all__ = ["redact_properties"]


def redact_properties(obj: Mapping[str, Any], profile: RedactionProfile) -> dict[str, Any]:
    """A shallow copy of ``obj`` with the profile's properties dropped or replaced.

    Replacements apply only to properties the object has; dropping an absent property is
    not an error. Identifying, versioning and marking properties cannot be named by a
    profile (the loader refuses them), so they always survive.

    Args:
        obj: The STIX object as parsed JSON (not modified).
        profile: The redaction profile.

    Returns:
        A new dict.
    """
    out = {key: value for key, value in obj.items() if key not in profile.drop}
    for key, value in profile.replace.items():
        if key in out:
            out[key] = value
    return out
