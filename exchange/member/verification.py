"""What a consumer checks offline: a verdict per object against the published registry.

The registry document itself (:func:`~exchange.signing.published.read_registry`) is
read by :mod:`exchange.signing.published`; this module judges objects against it.

:func:`check_object` gives the verdict a consumer acts on: ``valid`` (signature, owner
binding and time binding hold), ``unsigned``, or ``invalid`` with the reason.

Who a valid signature speaks for (DESIGN.md decision 8): the exchange accepts a
signature only from the member that contributed the object, so the key's registered
owner *is* the contributor. When it is also the object's ``created_by_ref``, the object
is **signed by the author**; otherwise (a non-member author, such as a vendor whose
report a member relays, or no author at all, as for SCOs) it is **attested by
contributor** <owner>: the member vouches for the bytes, not for having written them.
An object whose ``created_by_ref`` names another registered key owner than the signer is
invalid: no member may publish in another member's name, and the exchange refuses it.
An object signed by one of the node's own keys is **attested by the node**: a copy the
node derived or a revocation an admin ordered, bound to the node whatever its
``created_by_ref`` says. The time
that decides key validity is when the exchange recorded the object, which a consumer
knows only approximately: exactly, between two bounds (a TAXII page's
``X-TAXII-Date-Added-First`` and ``-Last``), or not at all (a file). Without it, a
retired or expired key still verifies (the exchange refused it after its window) but a
revoked one does not: only the recording time can show that an object predates the
compromise.

Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from exchange.errors import InvalidObject, SignatureError
from exchange.signing.cxsig import signature_of, verify_object
from exchange.signing.keys import KeyId
from exchange.signing.published import TrustedKeys
from exchange.signing.registry import KeyRecord, Registry, format_micros

__all__ = [
    "Verdict",
    "check_object",
    "describe",
    "summarise",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking one object.

    Attributes:
        object_id: The object's id (``"object"`` when it has no usable id).
        status: ``"valid"``, ``"unsigned"`` or ``"invalid"``.
        kid: The key named by the signature, when there is one.
        owner: The key owner's name, for valid signatures: the contributor.
        signed_by: For valid signatures, ``"author"`` when the key owner is the object's
            ``created_by_ref``, ``"contributor"`` otherwise.
        reason: Why the object is invalid (empty otherwise).
        needs_recording_time: The object was recorded between two bounds that straddle a
            change of its key's validity: check it again with the exact recording time.
        node_attested: Signed with one of the node's own keys (purpose ``node``): a copy
            the exchange derived (redacted or anonymised), attested by the node rather
            than signed by its author.
    """

    object_id: str
    status: Literal["valid", "unsigned", "invalid"]
    kid: KeyId | None = None
    owner: str | None = None
    reason: str = ""
    needs_recording_time: bool = False
    signed_by: Literal["author", "contributor"] | None = None
    node_attested: bool = False

    @property
    def attestation(self) -> str:
        """``signed by the author X``, ``attested by contributor X`` or ``attested by the
        node X`` (valid only)."""
        if self.status != "valid":
            return ""
        if self.node_attested:
            return f"attested by the node {self.owner}"
        if self.signed_by == "author":
            return f"signed by the author {self.owner}"
        return f"attested by contributor {self.owner}"


def _label(obj: Mapping[str, Any]) -> str:
    identifier = obj.get("id")
    if isinstance(identifier, str) and 0 < len(identifier) <= 120 and identifier.isprintable():
        return identifier
    return "object"


class _Ambiguous(Exception):
    """The recording-time bounds straddle a change of the key's validity."""


def check_object(
    trusted: TrustedKeys,
    obj: Mapping[str, Any],
    *,
    recorded_between: tuple[int, int] | None = None,
    now: int,
) -> Verdict:
    """Check an object's signature against the published registry.

    Args:
        trusted: The registry.
        obj: The object as received (a JSON object).
        recorded_between: When the exchange recorded the object (µs since the epoch):
            ``(t, t)`` when known exactly, ``(first, last)`` when known to lie between two
            bounds, None when unknown.
        now: The current time (µs); a key not valid before ``now`` never verifies.

    Returns:
        The verdict; ``invalid`` carries its reason. Nothing is raised for a bad object.
    """
    label = _label(obj)
    try:
        entry = signature_of(obj)
    except SignatureError as e:
        return Verdict(label, "invalid", reason=e.reason)
    if entry is None:
        return Verdict(label, "unsigned")
    kid = entry.kid
    try:
        verified = verify_object(obj, trusted.registry.resolve)
        record = trusted.registry.record(verified.kid)
        if verified.kid in trusted.node_kids:
            # A node key is bound to the node, not to the object's author: the node
            # attests what it made itself (a copy it derived, a revocation an admin
            # ordered), whose created_by_ref (if any) names the author.
            _check_time(trusted.registry, record, recorded_between, now)
            return Verdict(label, "valid", kid, trusted.owner_of(kid), node_attested=True)
        creator = obj.get("created_by_ref")
        signer = record.owner_identity
        if isinstance(creator, str) and creator != signer and creator in _key_owners(trusted):
            name = trusted.owner_names.get(creator, creator[:80])
            raise SignatureError(
                f"key {kid} belongs to {trusted.owner_of(kid)}, not to the object's"
                f" created_by_ref {name}, another member: no member may publish in"
                " another member's name"
            )
        _check_time(trusted.registry, record, recorded_between, now)
    except _Ambiguous as e:
        return Verdict(label, "invalid", kid, reason=str(e), needs_recording_time=True)
    except (SignatureError, InvalidObject) as e:
        return Verdict(label, "invalid", kid, reason=e.reason.removeprefix(f"{label}: "))
    return Verdict(label, "valid", kid, trusted.owner_of(kid),
                   signed_by="author" if creator == signer else "contributor")


def _key_owners(trusted: TrustedKeys) -> frozenset[str]:
    """The identities the registry knows as key owners: members and the node."""
    return frozenset(record.owner_identity for record in trusted.registry)


def _check_time(registry: Registry, record: KeyRecord, recorded_between: tuple[int, int] | None,
                now: int) -> None:
    owner = record.owner_identity
    if record.valid_from > now:
        registry.check(record.kid, owner_identity=owner, at=now)  # raises "not yet valid"
    if recorded_between is None:
        if record.compromised_since is not None:
            raise SignatureError(
                f"key {record.kid} was revoked (compromised since"
                f" {format_micros(record.compromised_since)}) and the time the exchange"
                " recorded this object is not known here; pull it with 'exchange pull"
                " --verify', which checks against the recording time"
            )
        return
    first, last = recorded_between
    ends = [t for t in (record.valid_until, record.compromised_since) if t is not None]
    end = min(ends) if ends else None
    if last < record.valid_from:
        registry.check(record.kid, owner_identity=owner, at=last)  # raises "not yet valid"
    if end is not None and first >= end:
        registry.check(record.kid, owner_identity=owner, at=first)  # raises "revoked" etc.
    if first < record.valid_from or (end is not None and last >= end):
        raise _Ambiguous(
            f"recorded between {format_micros(first)} and {format_micros(last)}, while key"
            f" {record.kid} was valid only from {format_micros(record.valid_from)}"
            + (f" until {format_micros(end)}" if end is not None else "")
        )


def describe(verdict: Verdict) -> str:
    """One line for a verdict: ``valid <id>  signed by the author <owner> (<kid>)``,
    ``valid <id>  attested by contributor <owner> (<kid>)``, ``valid <id>  attested by
    the node <owner> (<kid>)``, ``unsigned <id>`` or ``invalid <id>: <reason>``."""
    if verdict.status == "valid":
        return f"valid    {verdict.object_id}  {verdict.attestation} ({verdict.kid})"
    if verdict.status == "unsigned":
        return f"unsigned {verdict.object_id}"
    return f"invalid  {verdict.object_id}: {verdict.reason}"


def summarise(verdicts: Iterable[Verdict]) -> dict[str, Any]:
    """Counts per status (``valid``, ``unsigned``, ``invalid``), the valid ones split into
    ``signed_by_author``, ``attested_by_contributor`` and ``node_attested``, and the
    invalid objects."""
    listed = list(verdicts)
    counts: dict[str, Any] = {
        status: sum(v.status == status for v in listed)
        for status in ("valid", "unsigned", "invalid")
    }
    counts["signed_by_author"] = sum(v.signed_by == "author" for v in listed)
    counts["attested_by_contributor"] = sum(v.signed_by == "contributor" for v in listed)
    counts["node_attested"] = sum(v.status == "valid" and v.node_attested for v in listed)
    counts["invalid_objects"] = [
        {"id": v.object_id, "reason": v.reason} for v in listed if v.status == "invalid"
    ]
    return counts
