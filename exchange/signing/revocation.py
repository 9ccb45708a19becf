"""Revoked versions: the new version of an object that withdraws it (STIX 2.1 section 3.6).

A revocation is a new version of the object with ``revoked: true`` and a ``modified``
strictly later than the newest version's; everything else is carried over, so it is
still a valid object of its type, and the same readers receive it. Who revoked, and why,
is recorded in an external reference (STIX 2.1 section 2.5) with ``source_name``
:data:`REVOCATION_SOURCE` and the reason as its ``description``: a standard property
every STIX consumer keeps, which needs no custom property or extension-definition.

The previous version's cx-sig signature does not cover the new version, so it is
removed; the caller signs the result (a member with its key, ``exchange revoke``; the
node with its own key when an admin withdraws an object, TAXII DELETE).

Only versionable objects (those with ``modified``: SDOs, SROs, language content) can be
revoked; STIX cyber-observables and marking definitions have no versions. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from exchange.errors import InvalidObject
from exchange.model.stixkinds import parse_timestamp
from exchange.signing.canonical import EXTENSION_ID

__all__ = ["MAX_REASON", "REVOCATION_SOURCE", "revocation_reason", "revoked_version"]

#: ``source_name`` of the external reference that says who revoked a version and why.
REVOCATION_SOURCE: Final = "cert-exchange-revocation"
#: Longest reason accepted (characters).
MAX_REASON: Final = 1000


def _label(obj: Mapping[str, Any]) -> str:
    identifier = obj.get("id")
    if isinstance(identifier, str) and 0 < len(identifier) <= 120 and identifier.isprintable():
        return identifier
    return "object"


def _check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidObject("a revocation needs a reason (--reason TEXT)")
    if len(text) > MAX_REASON:
        raise InvalidObject(f"the reason is {len(text)} characters; at most {MAX_REASON}")
    if not all(c.isprintable() or c in "\n\t" for c in text):
        raise InvalidObject("the reason contains control characters")
    return text


def _later(modified: str, now: datetime) -> str:
    """A timestamp strictly later than ``modified``, at millisecond precision: now, or one
    millisecond after ``modified`` (truncated to the millisecond) if now is not later."""
    previous = parse_timestamp(modified)
    if previous is None:
        raise InvalidObject(f"'modified' {modified[:40]!r} is not a STIX timestamp")
    floor = previous.replace(microsecond=previous.microsecond // 1000 * 1000)
    candidate = now.astimezone(UTC).replace(tzinfo=None)
    candidate = candidate.replace(microsecond=candidate.microsecond // 1000 * 1000)
    if candidate <= previous:
        candidate = floor + timedelta(milliseconds=1)
    return candidate.strftime("%Y-%m-%dT%H:%M:%S.") + f"{candidate.microsecond // 1000:03d}Z"


def revoked_version(obj: Mapping[str, Any], reason: str, *,
                    now: datetime | None = None) -> dict[str, Any]:
    """The revoked version of ``obj``, unsigned.

    Args:
        obj: The newest version of the object.
        reason: Why it is revoked; recorded in the :data:`REVOCATION_SOURCE` reference.
        now: The time of the revocation (default: the current time).

    Returns:
        A new dict: ``revoked`` true, ``modified`` strictly later than ``obj``'s, the
        previous cx-sig entry removed, the reason appended to ``external_references``.

    Raises:
        InvalidObject: The object is already revoked, has no versions (no ``modified``),
            or the reason is empty, too long or holds control characters.
    """
    label = _label(obj)
    text = _check_reason(reason)
    if obj.get("revoked") is True:
        raise InvalidObject(f"{label} is already revoked")
    modified = obj.get("modified")
    if not isinstance(modified, str):
        raise InvalidObject(
            f"{label} has no 'modified': a {str(obj.get('type'))[:40]} has no versions in"
            " STIX 2.1, so it cannot be revoked"
        )
    new = dict(obj)
    new["revoked"] = True
    new["modified"] = _later(modified, now or datetime.now(UTC))
    extensions = new.get("extensions")
    if isinstance(extensions, Mapping) and EXTENSION_ID in extensions:
        rest = {k: v for k, v in extensions.items() if k != EXTENSION_ID}
        if rest:
            new["extensions"] = rest
        else:
            del new["extensions"]
    references = new.get("external_references")
    kept = list(references) if isinstance(references, list) else []
    new["external_references"] = [*kept, {"source_name": REVOCATION_SOURCE,
                                          "description": text}]
    return new


def revocation_reason(obj: Mapping[str, Any]) -> str | None:
    """The reason a revoked version records (its last :data:`REVOCATION_SOURCE`
    reference), or None."""
    references = obj.get("external_references")
    found = None
    if isinstance(references, list):
        for reference in references:
            if (isinstance(reference, Mapping)
                    and reference.get("source_name") == REVOCATION_SOURCE
                    and isinstance(reference.get("description"), str)):
                found = reference["description"]
    return found
