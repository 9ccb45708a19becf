"""``dry-run``: for a bundle not yet published, who would receive each object, and why.

Pure: the caller supplies the parsed objects, the candidate recipients (accounts and
organisations, with the channels to test) and the time. Each object is judged as the
exchange would judge it once stored: its markings through
:func:`~exchange.policy.tlp.level_of` (an object ingest would refuse is reported with
the reason instead), its RED recipients, then :func:`~exchange.policy.engine.decide`
for every recipient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.errors import InvalidObject
from exchange.model.objects import Tlp
from exchange.policy.engine import Decision, ObjectMeta, Recipient, decide
from exchange.policy.model import PolicySet
from exchange.policy.tlp import (
    inline_markings,
    level_of,
    red_recipients_of,
    split_marking_refs,
)

__all__ = ["DryRunEntry", "dry_run", "format_dry_run"]


@dataclass(frozen=True, slots=True)
class DryRunEntry:
    """The verdicts for one object of the bundle.

    Attributes:
        object_id: The object's id (or ``"?"`` when it has none).
        type: Its type.
        tlp: Its effective level (None when it would be refused).
        tlp_explicit: Whether the level comes from its own markings.
        error: Why ingest would refuse it, or None.
        note: Anything else worth saying (e.g. for marking-definitions).
        outcomes: ``(recipient, decision)`` for every recipient, in the order given.
    """

    object_id: str
    type: str
    tlp: Tlp | None
    tlp_explicit: bool
    error: str | None = None
    note: str = ""
    outcomes: tuple[tuple[Recipient, Decision], ...] = ()

    @property
    def receivers(self) -> tuple[Recipient, ...]:
        """The recipients that would receive the object."""
        return tuple(r for r, d in self.outcomes if d.allowed)


def dry_run(policy: PolicySet, objects: Sequence[Mapping[str, Any]],
            recipients: Sequence[Recipient], *, now: int, collection_alias: str,
            producer_org_name: str | None = None,
            org_by_identity: Mapping[str, str] | None = None,
            default_tlp: Tlp = Tlp.AMBER) -> list[DryRunEntry]:
    """Judge every object of an unpublished bundle for every recipient.

    Args:
        policy: The policy in force.
        objects: The bundle's objects, parsed JSON.
        recipients: The candidate recipients (one per organisation/account and channel).
        now: The time to judge at, microseconds since the epoch.
        collection_alias: The collection the bundle would be published to.
        producer_org_name: The publishing organisation; by default resolved from each
            object's ``created_by_ref`` through ``org_by_identity`` and the identities
            pinned in ``community.yaml``.
        org_by_identity: Identity id -> organisation name, as the exchange registered
            them (takes precedence over ``community.yaml``).
        default_tlp: The collection's level for objects without a TLP marking.

    Returns:
        One entry per object, in bundle order.
    """
    try:
        inline = inline_markings(objects)
    except InvalidObject as e:
        inline = {}
        envelope_error: str | None = e.reason
    else:
        envelope_error = None
    by_identity = {e.identity: name for name, e in policy.community.orgs.items()
                   if e.identity is not None}
    by_identity.update(org_by_identity or {})
    entries: list[DryRunEntry] = []
    for obj in objects:
        object_id = str(obj.get("id", "?"))
        kind = str(obj.get("type", "?"))
        if kind == "marking-definition":
            entries.append(DryRunEntry(object_id, kind, None, False, error=envelope_error,
                                       note="a marking-definition travels with the objects"
                                            " that reference it"))
            continue
        try:
            if envelope_error is not None:
                raise InvalidObject(envelope_error)
            object_level, granular = split_marking_refs(obj)
            level = level_of(object_level, policy, inline, granular=granular)
            red = red_recipients_of(obj)
        except InvalidObject as e:
            entries.append(DryRunEntry(object_id, kind, None, False,
                                       error=f"ingest would refuse it: {e.reason}"))
            continue
        producer = producer_org_name
        note = ""
        if producer is None:
            creator = obj.get("created_by_ref")
            producer = by_identity.get(creator) if isinstance(creator, str) else None
            if producer is None:
                note = ("producer not resolved from created_by_ref; judged as if published"
                        " by another organisation")
        if red and level is not Tlp.RED:
            note = (note + "; " if note else "") + "RED recipients are named but the object" \
                " is not TLP:RED; the names have no effect"
        meta = ObjectMeta(
            id=object_id, type=kind, producer_org_name=producer,
            tlp=level or default_tlp, tlp_explicit=level is not None,
            red_recipients=red, revoked=obj.get("revoked") is True, date_added=0,
            collection_alias=collection_alias,
        )
        outcomes = tuple((r, decide(policy, r, meta, now=now)) for r in recipients)
        entries.append(DryRunEntry(object_id, kind, meta.tlp, meta.tlp_explicit,
                                   note=note, outcomes=outcomes))
    return entries


def format_dry_run(entries: Sequence[DryRunEntry], policy_digest: str) -> str:
    """The dry-run result as readable text, one block per object.

    Args:
        entries: What :func:`dry_run` returned.
        policy_digest: The digest of the policy used, printed at the top.

    Returns:
        Text: per object a header, then ``+`` (receives) or ``-`` (does not) lines with
        the rule, transforms and reason.
    """
    lines = [f"policy {policy_digest}"]
    for entry in entries:
        if entry.tlp is None:
            header = f"{entry.object_id} ({entry.type})"
        else:
            origin = "marked" if entry.tlp_explicit else "collection default"
            header = f"{entry.object_id} ({entry.type}, TLP:{entry.tlp.value.upper()}, {origin})"
        lines.append(header)
        if entry.error:
            lines.append(f"  ! {entry.error}")
        if entry.note:
            lines.append(f"  note: {entry.note}")
        for recipient, decision in entry.outcomes:
            mark = "+" if decision.allowed else "-"
            extra = ""
            if decision.transforms:
                extra = " transforms: " + ", ".join(str(t) for t in decision.transforms)
            lines.append(f"  {mark} {recipient.describe()} [{decision.rule}]{extra}")
            lines.append(f"      {decision.reason}")
    return "\n".join(lines)
