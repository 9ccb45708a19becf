"""The push mapping: what a MISP target's owner may receive, as MISP events (pure).

:func:`map_for_target` takes stored STIX 2.1 object versions and returns the flat event
dicts PyMISP sends (``add_event``/``update_event``, research/misp.md 1 and 2), plus, for
every object it leaves out, the rule and the reason (what ``exchange sync status``
shows). It never talks to MISP; the PyMISP wrapper that sends the events comes later in
issue 19.

What it decides (DESIGN.md decision 7):

* **Policy first.** Each object is judged by :func:`exchange.policy.decide` with the
  target's owner as the recipient on channel ``misp``; the target's filters (collections,
  TLP ceiling, labels) can only narrow that. As a second lock, a TLP:RED object is mapped
  only if it names the owner's identity, whatever the policy says.
* **Deterministic UUIDs**, so runs are idempotent. An indicator's attribute has the
  indicator's UUID (an ``OR`` of several values: the first value the event does not
  already hold keeps it, the others get UUIDv5 names under the indicator's UUID). A report
  or grouping is one event with the report's UUID, holding the indicators it references;
  any other indicator goes to an event per contributor, UTC day of its ``created`` and
  TLP level (``producer-day``, the default), per contributor, month and level, or per
  indicator (:class:`EventGrouping`), with a UUIDv5 name under
  :data:`NAMESPACE`. One level per event keeps the event's tag true of everything in
  it, for the many MISP consumers that read only event tags. ``created`` is the same in
  every version, so a new version lands in the same event as the first. An indicator
  the target already holds stays in its event (``PushOptions.placed``, kept by the sync).
* **TLP and distribution agree.** Each attribute carries the distribution of its level:
  CLEAR 3 (all communities), GREEN 1 (this community), AMBER 4 with the sharing group
  of the collection's agreement when the sync has one on that instance, else 0 (the
  owner's organisation), AMBER+STRICT 0, RED 0. An event takes the
  level of its report (report events), or the least restrictive level among its
  attributes (other events), with the matching tag; MISP shows an attribute only within
  both its own and its event's distribution, so nothing becomes wider than its level.
  An attribute has its own ``tlp:`` tag unless its level is the event's: an event's tags
  apply to all its attributes (MISP's reading, misp-stix's and the pull's). Attributes
  added to an event the target already holds are always tagged.
* **Patterns.** Simple patterns become typed attributes (:mod:`exchange.node.misppatterns`),
  all with ``to_ids`` true; any other pattern is kept whole as one ``stix2-pattern``
  attribute. MISP keeps one attribute per type and value in an event; a value another
  indicator of the same event already carries is not repeated, and the note says so.
* **The signature travels.** For each signed object (cx-sig v1, DESIGN.md decision 5) the
  event gets a ``text`` attribute (category ``Other``, ``to_ids`` false, same tag and
  distribution as the object) whose value is the object's detached DSSE envelope as
  compact JSON, with UUIDv5 ``cx-sig/<object id>`` under :data:`NAMESPACE`; the signed
  attribute's comment names the key id, the algorithm and that attribute's UUID. A MISP
  user verifies the envelope with ``exchange verify`` and the member's public key; the
  payload is the signed STIX object, so the check covers the indicator, not MISP's copy.
* **Revocation.** A revoked indicator the owner received before (the policy's rule) maps
  to its attributes with ``deleted`` true (MISP's soft delete) and their UUIDs in
  :attr:`PushMapping.deletions`. A revoked report or grouping is left out with a reason:
  MISP has no soft delete for events, and its indicators follow their own revocations.
* The contributing member is kept as the event tag ``cert-exchange:contributor="..."``
  (the ``Orgc`` of a sync user's push is the pusher's business).

Pure code: no I/O, time passed in.
"""

from __future__ import annotations

import enum
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from exchange.errors import ExchangeError, InvalidInput, InvalidObject
from exchange.model.objects import Tlp
from exchange.node.misppatterns import MispValue, simple_attributes
from exchange.policy.engine import Decision, ObjectMeta, Recipient, decide
from exchange.policy.model import PolicySet
from exchange.policy.tlp import (
    inline_markings,
    level_of,
    red_recipients_of,
    split_marking_refs,
)
from exchange.signing.cxsig import signature_of
from exchange.signing.envelope import envelope_for

__all__ = [
    "DISTRIBUTION",
    "NAMESPACE",
    "EventGrouping",
    "MappedObject",
    "MispEvent",
    "PushMapping",
    "PushOptions",
    "Skipped",
    "SourceObject",
    "TargetFilters",
    "map_for_target",
    "tlp_tag",
]

#: The UUIDv5 namespace of the events and attributes the exchange names itself.
NAMESPACE: Final = uuid.UUID("5f0c7a2e-8d4b-4c61-9a3e-2b7d1e9f4c08")
#: TLP level -> MISP distribution (0 organisation, 1 community, 3 all, 4 sharing group).
DISTRIBUTION: Final[Mapping[Tlp, int]] = {
    Tlp.CLEAR: 3, Tlp.GREEN: 1, Tlp.AMBER: 4, Tlp.AMBER_STRICT: 0, Tlp.RED: 0,
}
#: Distributions from the widest (all communities) to the narrowest (organisation only).
_NARROWNESS: Final[Mapping[int, int]] = {3: 0, 1: 1, 4: 2, 0: 3}
#: Types that become events or attributes; others are left out with a reason.
_CONTAINERS: Final = frozenset({"report", "grouping"})
#: MISP stores an attribute value as TEXT (64 KiB); a larger envelope is not carried.
MAX_SIGNATURE_VALUE: Final = 60_000
#: Longest description copied into a comment.
_MAX_DESCRIPTION: Final = 1000
_THREAT_LEVEL_UNDEFINED: Final = "4"
_ANALYSIS_COMPLETED: Final = "2"


class EventGrouping(enum.StrEnum):
    """Which MISP event an indicator that no report or grouping holds goes to.

    ``producer-day``: one event per contributing organisation, UTC day of the
    indicator's ``created`` and TLP level (the default); ``producer-month``: per
    organisation, month and level; ``indicator``: one event per indicator.
    """

    PRODUCER_DAY = "producer-day"
    PRODUCER_MONTH = "producer-month"
    INDICATOR = "indicator"


@dataclass(frozen=True, slots=True)
class TargetFilters:
    """What a target leaves out, on top of the sharing policy (filters only narrow).

    Attributes:
        collections: Collection aliases whose objects are pushed; empty means every
            collection the owner may read.
        tlp_ceiling: The most restrictive TLP level pushed (``amber`` leaves out
            AMBER+STRICT and RED even where the policy would allow them).
        include_tags: Push only objects carrying at least one of these STIX ``labels``
            (pull: only events carrying one of these MISP tags); empty means no such
            condition.
        exclude_tags: Never push objects carrying one of these labels (pull: events
            carrying one of these tags).
    """

    collections: tuple[str, ...] = ()
    tlp_ceiling: Tlp = Tlp.RED
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()


def tlp_tag(level: Tlp) -> str:
    """The MISP tag for a TLP level (``tlp:amber+strict``)."""
    return f"tlp:{level.value}"


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One stored object version offered to a target.

    Attributes:
        obj: The STIX object as stored (signed, parsed JSON).
        producer_org_name: The contributing member (None if unknown).
        collection_alias: The collection it is in.
        collection_default_tlp: The collection's default level, for an unmarked object.
        received_earlier: Whether the owner received an earlier version (ledger), which
            decides whether a revocation reaches it.
    """

    obj: Mapping[str, Any]
    producer_org_name: str | None
    collection_alias: str
    collection_default_tlp: Tlp = Tlp.AMBER
    received_earlier: bool = False

    @property
    def id(self) -> str:
        """The STIX id (``?`` when missing)."""
        return str(self.obj.get("id", "?"))

    @property
    def type(self) -> str:
        """The STIX type (``?`` when missing)."""
        return str(self.obj.get("type", "?"))

    @property
    def version(self) -> str:
        """``modified``, or ``created`` for objects without versions."""
        return str(self.obj.get("modified") or self.obj.get("created") or "")


@dataclass(frozen=True, slots=True)
class PushOptions:
    """How the events for one target are shaped.

    Attributes:
        grouping: Where indicators outside reports and groupings go.
        sharing_groups: Agreement id -> the id of its sharing group on the target
            (created once by the sync); AMBER from a collection of an agreement without
            one gets distribution 0.
        placed: STIX id -> UUID of the event the target already holds it in.
        filters: The target's filters.
    """

    grouping: EventGrouping = EventGrouping.PRODUCER_DAY
    sharing_groups: Mapping[str, int] = field(default_factory=dict)
    placed: Mapping[str, str] = field(default_factory=dict)
    filters: TargetFilters = field(default_factory=TargetFilters)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object version left out, and why (for ``sync status``).

    Attributes:
        object_id: The STIX id.
        object_type: The STIX type.
        version: Its ``modified`` (or ``created``).
        rule: A stable id: the policy rule (``deny-tlp-red-not-named``), or
            ``filter-collection``, ``filter-tlp-ceiling``, ``filter-tags``,
            ``unsupported-type``, ``invalid-markings``, ``superseded``, ``other-copy``,
            ``revoked-container``, ``red-not-named``.
        reason: One sentence for people.
    """

    object_id: str
    object_type: str
    version: str
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class MappedObject:
    """An object version that goes to the target (one disclosure each in the ledger).

    Attributes:
        object_id: The STIX id.
        version: Its ``modified`` (or ``created``).
        event_uuid: The event it goes to (for a report: its own event).
        attribute_uuids: The attributes it became (signature attribute included).
        tlp: Its level.
        decision: The policy decision that allowed it.
        deleted: Whether it maps to soft deletions (a revoked indicator).
        notes: What the mapping could not keep (values already in the event, a
            signature too large to carry).
        collection: The collection of the copy that goes (an id stored in several
            collections goes from one of them, see :func:`map_for_target`).
    """

    object_id: str
    version: str
    event_uuid: str
    attribute_uuids: tuple[str, ...]
    tlp: Tlp
    decision: Decision
    deleted: bool = False
    notes: tuple[str, ...] = ()
    collection: str = ""


@dataclass(frozen=True, slots=True)
class MispEvent:
    """One MISP event, as the flat dict PyMISP sends.

    Attributes:
        uuid: The event's UUID.
        body: The event: ``uuid``, ``info``, ``date``, ``distribution``,
            ``sharing_group_id`` (distribution 4 only), ``threat_level_id``,
            ``analysis``, ``Tag``, ``Attribute``; MISP's numbers as strings. When
            ``complete`` is false the event already exists on the target (see
            :attr:`PushOptions.placed`) and the body holds only ``uuid`` and the
            attributes to add or edit.
        complete: Whether ``body`` describes the whole event.
    """

    uuid: str
    body: Mapping[str, Any]
    complete: bool = True

    def to_json(self) -> bytes:
        """The body as compact JSON with sorted keys (identical input, identical bytes)."""
        return json.dumps(self.body, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class PushMapping:
    """What :func:`map_for_target` returns.

    Attributes:
        events: The events, by UUID.
        mapped: Every object version that goes to the target, by id.
        skipped: Every object version left out, with the reason, by id.
        deletions: UUIDs of attributes to soft-delete on the target, sorted.
    """

    events: tuple[MispEvent, ...]
    mapped: tuple[MappedObject, ...]
    skipped: tuple[Skipped, ...]
    deletions: tuple[str, ...]


@dataclass(slots=True)
class _Allowed:
    source: SourceObject
    tlp: Tlp
    decision: Decision
    distribution: int
    sharing_group: int | None


@dataclass(slots=True)
class _EventDraft:
    uuid: str
    complete: bool
    info: str = ""
    date: str = ""
    container: _Allowed | None = None
    producer: str | None = None
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    levels: list[tuple[Tlp, int, int | None]] = field(default_factory=list)
    values: set[tuple[str, str]] = field(default_factory=set)


def _uuid_of(stix_id: str) -> str:
    return stix_id.split("--", 1)[1] if "--" in stix_id else stix_id


@functools.lru_cache(maxsize=4096)
def _named(name: str, under: uuid.UUID = NAMESPACE) -> str:
    return str(uuid.uuid5(under, name))


def _day(stamp: object) -> str:
    """``YYYY-MM-DD`` of a STIX timestamp (UTC), or the epoch day when unreadable."""
    return _day_of(stamp) if isinstance(stamp, str) else "1970-01-01"


@functools.lru_cache(maxsize=4096)
def _day_of(stamp: str) -> str:
    """:func:`_day` of a string (many indicators of a run share a ``created``)."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "1970-01-01"
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _labels(obj: Mapping[str, Any]) -> set[str]:
    labels = obj.get("labels")
    return {x for x in labels if isinstance(x, str)} if isinstance(labels, list) else set()


def map_for_target(objects: Sequence[SourceObject], *, policy: PolicySet,
                   recipient: Recipient, options: PushOptions, now: int) -> PushMapping:
    """Map the object versions a target's owner may receive to MISP events.

    Args:
        objects: Stored object versions (any order; several versions of one id allowed:
            only the latest is mapped; an id stored in several collections is mapped
            from the copy the owner may receive, the latest such version).
        policy: The policy in force.
        recipient: The target's owner, channel ``misp`` (or the reader of a MISP feed,
            channel ``feed``: :mod:`exchange.node.mispfeed`).
        options: Grouping, sharing groups, placements and filters.
        now: The current time, microseconds since the epoch (for the policy).

    Returns:
        The events, the mapped objects, the skipped objects with reasons, and the
        attributes to soft-delete. Identical input gives identical output, whatever
        the order of ``objects``.

    Raises:
        InvalidInput: ``recipient`` is on neither channel ``misp`` nor ``feed``.
    """
    if recipient.channel not in ("misp", "feed"):
        raise InvalidInput(f"a MISP mapping judges recipients on channel 'misp' (push) or"
                           f" 'feed' (MISP feed), not "
                           f"{recipient.channel!r}")
    skipped: list[Skipped] = []
    copies = _latest_versions(objects, skipped)
    try:
        inline = inline_markings([s.obj for group in copies.values() for s in group])
        inline_error: str | None = None
    except InvalidObject as e:
        inline, inline_error = {}, e.reason

    allowed: dict[str, _Allowed] = {}
    for object_id in sorted(copies):
        verdict = _choose(copies[object_id], skipped, lambda source: _judge(
            source, policy, recipient, options, now, inline, inline_error))
        if verdict is not None:
            allowed[object_id] = verdict

    drafts: dict[str, _EventDraft] = {}
    mapped: list[MappedObject] = []
    deletions: list[str] = []
    home = _containers(allowed, options, drafts, mapped, skipped)
    for object_id in sorted(allowed):
        item = allowed[object_id]
        if item.source.type != "indicator":
            continue
        draft = _draft_for(item, home.get(object_id), options, drafts)
        entry = _add_indicator(item, draft)
        mapped.append(entry)
        if entry.deleted:
            deletions.extend(entry.attribute_uuids)

    events = tuple(_finish(drafts[key]) for key in sorted(drafts))
    return PushMapping(
        events=events,
        mapped=tuple(sorted(mapped, key=lambda m: m.object_id)),
        skipped=tuple(sorted(skipped, key=lambda s: (s.object_id, s.version))),
        deletions=tuple(sorted(deletions)),
    )


def _latest_versions(objects: Iterable[SourceObject], skipped: list[Skipped]
                     ) -> dict[str, list[SourceObject]]:
    """Id -> the latest version of it in each collection that holds it, latest version
    first (then by collection); the older versions are skipped as superseded."""
    by_copy: dict[tuple[str, str], SourceObject] = {}
    for source in sorted(objects, key=lambda s: (s.id, s.collection_alias, s.version)):
        key = (source.id, source.collection_alias)
        earlier = by_copy.get(key)
        if earlier is not None:
            skipped.append(Skipped(earlier.id, earlier.type, earlier.version, "superseded",
                                   f"version {source.version} of {source.id} is in the same"
                                   " run; MISP holds one version, the latest"))
        by_copy[key] = source
    out: dict[str, list[SourceObject]] = {}
    for (object_id, _), source in sorted(by_copy.items()):
        out.setdefault(object_id, []).append(source)
    for group in out.values():
        group.sort(key=lambda s: s.collection_alias)
        group.sort(key=lambda s: s.version, reverse=True)
    return out


def _choose(copies: Sequence[SourceObject], skipped: list[Skipped],
            judge: Callable[[SourceObject], _Allowed | Skipped]) -> _Allowed | None:
    """The copy of one id that goes to the target, when it is stored in several
    collections: the latest version among the copies the owner may receive (the owner
    may read each of them where it is stored, so the collection that lets it through
    decides). The other copies are skipped as ``other-copy``; when none may go, each
    copy's own reason is given."""
    refused: list[Skipped] = []
    for index, source in enumerate(copies):
        verdict = judge(source)
        if isinstance(verdict, Skipped):
            refused.append(verdict)
            continue
        for other in [*copies[:index], *copies[index + 1:]]:
            skipped.append(Skipped(
                other.id, other.type, other.version, "other-copy",
                f"also stored in collection {other.collection_alias!r}; the copy in"
                f" {source.collection_alias!r} (version {source.version}) is the one the"
                " target receives"))
        return verdict
    skipped.extend(refused)
    return None


def _judge(source: SourceObject, policy: PolicySet, recipient: Recipient,
           options: PushOptions, now: int, inline: Mapping[str, Tlp | None],
           inline_error: str | None) -> _Allowed | Skipped:
    """Policy, filters and the RED lock for one object: allowed, or why not."""
    obj = source.obj

    def skip(rule: str, reason: str) -> Skipped:
        return Skipped(source.id, source.type, source.version, rule, reason)

    if source.type == "marking-definition":
        return skip("unsupported-type", "a marking-definition travels as the TLP tags of"
                                        " the objects that reference it")
    if source.type != "indicator" and source.type not in _CONTAINERS:
        return skip("unsupported-type", f"the MISP push maps indicators, reports and"
                                        f" groupings; a {source.type} is not sent")
    filters = options.filters
    if filters.collections and source.collection_alias not in filters.collections:
        return skip("filter-collection", f"the target takes collections "
                    f"{', '.join(filters.collections)} only; this is in "
                    f"{source.collection_alias!r}")
    try:
        if inline_error is not None:
            raise InvalidObject(inline_error)
        object_level, granular = split_marking_refs(obj)
        level = level_of(object_level, policy, inline, granular=granular)
        red = red_recipients_of(obj)
    except InvalidObject as e:
        return skip("invalid-markings", f"its markings cannot be judged: {e.reason}")
    tlp = level or source.collection_default_tlp
    if tlp.rank > filters.tlp_ceiling.rank:
        return skip("filter-tlp-ceiling", f"TLP:{tlp.value.upper()} is above the target's"
                                          f" ceiling TLP:{filters.tlp_ceiling.value.upper()}")
    labels = _labels(obj)
    if filters.include_tags and not labels & set(filters.include_tags):
        return skip("filter-tags", "it carries none of the labels the target takes ("
                    f"{', '.join(filters.include_tags)})")
    excluded = sorted(labels & set(filters.exclude_tags))
    if excluded:
        return skip("filter-tags", f"it carries label {excluded[0]!r}, which the target"
                                   " excludes")
    meta = ObjectMeta(
        id=source.id, type=source.type, producer_org_name=source.producer_org_name,
        tlp=tlp, tlp_explicit=level is not None, red_recipients=red,
        revoked=obj.get("revoked") is True, date_added=0,
        collection_alias=source.collection_alias,
    )
    decision = decide(policy, recipient, meta, now=now,
                      received_earlier=source.received_earlier)
    if not decision.allowed:
        return skip(decision.rule, decision.reason)
    if tlp is Tlp.RED and source.producer_org_name != recipient.org_name and (
            recipient.org_identity is None or recipient.org_identity not in red):
        return skip("red-not-named", f"TLP:RED goes only to an instance of a recipient the"
                                     f" object names; {recipient.org_name} is not named")
    distribution = DISTRIBUTION[tlp]
    sharing_group: int | None = None
    if tlp is Tlp.AMBER:
        binding = policy.collections.get(source.collection_alias)
        agreement = binding.agreement if binding is not None else None
        sharing_group = options.sharing_groups.get(agreement) if agreement else None
        if sharing_group is None:
            distribution = 0
    return _Allowed(source, tlp, decision, distribution, sharing_group)


def _containers(allowed: Mapping[str, _Allowed], options: PushOptions,
                drafts: dict[str, _EventDraft], mapped: list[MappedObject],
                skipped: list[Skipped]) -> dict[str, str]:
    """Open one event per allowed report or grouping; indicator id -> its event UUID."""
    home: dict[str, str] = {}
    for object_id in sorted(allowed):
        item = allowed[object_id]
        source = item.source
        if source.type not in _CONTAINERS:
            continue
        if source.obj.get("revoked") is True:
            allowed_revoked = Skipped(source.id, source.type, source.version,
                                      "revoked-container",
                                      "MISP has no soft delete for events: the event stays;"
                                      " its indicators follow their own revocations")
            skipped.append(allowed_revoked)
            continue
        event_uuid = options.placed.get(object_id, _uuid_of(object_id))
        draft = _EventDraft(event_uuid, complete=object_id not in options.placed,
                            container=item, producer=source.producer_org_name)
        draft.info = str(source.obj.get("name") or f"{source.type} {object_id}")
        stamp = source.obj.get("published") if source.type == "report" else None
        draft.date = _day(stamp or source.obj.get("created"))
        draft.levels.append((item.tlp, item.distribution, item.sharing_group))
        drafts[event_uuid] = draft
        signature = _signature_attribute(item, draft)
        attribute_uuids = (signature[0],) if signature[0] else ()
        mapped.append(MappedObject(object_id, source.version, event_uuid, attribute_uuids,
                                   item.tlp, item.decision, notes=signature[1],
                                   collection=source.collection_alias))
        refs = source.obj.get("object_refs")
        for ref in refs if isinstance(refs, list) else ():
            if isinstance(ref, str) and ref not in home and ref not in options.placed:
                home[ref] = event_uuid
    return home


def _label(level: Tlp) -> str:
    return f"TLP:{level.value.upper()}"


def _draft_for(item: _Allowed, container: str | None, options: PushOptions,
               drafts: dict[str, _EventDraft]) -> _EventDraft:
    """The event an indicator goes to, opened on first use."""
    source = item.source
    placed = options.placed.get(source.id)
    if placed is not None or container is not None:
        event_uuid = placed or container or ""
        if event_uuid not in drafts:
            drafts[event_uuid] = _EventDraft(event_uuid, complete=False)
        return drafts[event_uuid]
    producer = source.producer_org_name or "unknown contributor"
    day = _day(source.obj.get("created"))
    if options.grouping is EventGrouping.INDICATOR:
        key, info, date = f"indicator/{source.id}", str(
            source.obj.get("name") or f"Indicator {source.id}"), day
    elif options.grouping is EventGrouping.PRODUCER_MONTH:
        key, info, date = (f"producer-month/{producer}/{day[:7]}/{item.tlp.value}",
                           f"{producer} indicators, {day[:7]}, {_label(item.tlp)}"
                           " (cert-exchange)", f"{day[:7]}-01")
    else:
        key, info, date = (f"producer-day/{producer}/{day}/{item.tlp.value}",
                           f"{producer} indicators, {day}, {_label(item.tlp)}"
                           " (cert-exchange)", day)
    event_uuid = _named(key)
    if event_uuid not in drafts:
        drafts[event_uuid] = _EventDraft(event_uuid, complete=True, info=info, date=date,
                                         producer=source.producer_org_name)
    return drafts[event_uuid]


def _base_attribute(item: _Allowed, attribute_uuid: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uuid": attribute_uuid,
        "distribution": str(item.distribution),
        "Tag": [{"name": tlp_tag(item.tlp)}],
    }
    if item.distribution == 4:
        out["sharing_group_id"] = str(item.sharing_group)
    if item.source.obj.get("revoked") is True:
        out["deleted"] = True
    return out


def _comment(obj: Mapping[str, Any], signature_note: str | None) -> str:
    parts = []
    name = obj.get("name")
    if isinstance(name, str) and name:
        parts.append(name)
    description = obj.get("description")
    if isinstance(description, str) and description:
        parts.append(description if len(description) <= _MAX_DESCRIPTION
                     else description[:_MAX_DESCRIPTION] + "...")
    parts.append(f"STIX {obj.get('id')} version {obj.get('modified') or obj.get('created')}")
    if signature_note:
        parts.append(signature_note)
    return "; ".join(parts)


def _signature_attribute(item: _Allowed, draft: _EventDraft
                         ) -> tuple[str | None, tuple[str, ...]]:
    """Add the object's cx-sig envelope as a ``text`` attribute: (its UUID, notes)."""
    obj = item.source.obj
    try:
        entry = signature_of(obj)
        envelope = envelope_for(obj) if entry is not None else None
    except ExchangeError as e:
        return None, (f"its cx-sig signature is malformed and not carried ({e})",)
    if entry is None or envelope is None:
        return None, ()
    value = json.dumps(envelope, sort_keys=True, separators=(",", ":"))
    if len(value) > MAX_SIGNATURE_VALUE:
        return None, (f"its signature envelope ({len(value)} characters) is larger than a"
                      " MISP attribute holds and is not carried",)
    attribute_uuid = _named(f"cx-sig/{item.source.id}")
    attribute = _base_attribute(item, attribute_uuid)
    attribute.update({
        "type": "text", "category": "Other", "to_ids": False, "value": value,
        "comment": (f"cx-sig v1 detached DSSE envelope of {item.source.id} version "
                    f"{item.source.version}, signed by key {entry.kid} ({entry.alg}); "
                    "verify with `exchange verify` and the contributor's public key"),
    })
    draft.attributes[attribute_uuid] = attribute
    return attribute_uuid, ()


def _add_indicator(item: _Allowed, draft: _EventDraft) -> MappedObject:
    source = item.source
    obj = source.obj
    pattern = obj.get("pattern")
    pattern_type = obj.get("pattern_type", "stix")
    values: tuple[MispValue, ...] | None = None
    if isinstance(pattern, str) and pattern_type == "stix":
        values = simple_attributes(pattern)
    if values is None:
        text = pattern if isinstance(pattern, str) else ""
        values = (MispValue("stix2-pattern", "Payload delivery", text),)
    notes: list[str] = []
    signature_uuid, signature_notes = _signature_attribute(item, draft)
    notes.extend(signature_notes)
    signature_note = None
    if signature_uuid is not None:
        entry = signature_of(obj)
        if entry is not None:
            signature_note = (f"cx-sig {entry.alg} key {entry.kid}, envelope in attribute "
                              f"{signature_uuid}")
    indicator_uuid = _uuid_of(source.id)
    uuids: list[str] = []
    for value in values:
        if (value.type, value.value) in draft.values:
            notes.append(f"{value.type} {value.value!r} is already an attribute of event "
                         f"{draft.uuid} (MISP keeps one per type and value)")
            continue
        attribute_uuid = indicator_uuid if not uuids else _named(
            f"{value.type}/{value.value}", uuid.UUID(indicator_uuid))
        attribute = _base_attribute(item, attribute_uuid)
        attribute.update({
            "type": value.type, "category": value.category, "value": value.value,
            "to_ids": True, "comment": _comment(obj, signature_note),
        })
        for stix_name, misp_name in (("valid_from", "first_seen"),
                                     ("valid_until", "last_seen")):
            stamp = obj.get(stix_name)
            if isinstance(stamp, str):
                attribute[misp_name] = stamp
        draft.attributes[attribute_uuid] = attribute
        draft.values.add((value.type, value.value))
        uuids.append(attribute_uuid)
    if signature_uuid is not None:
        uuids.append(signature_uuid)
    draft.levels.append((item.tlp, item.distribution, item.sharing_group))
    if draft.producer is None:
        draft.producer = source.producer_org_name
    return MappedObject(source.id, source.version, draft.uuid, tuple(uuids), item.tlp,
                        item.decision, deleted=obj.get("revoked") is True,
                        notes=tuple(notes), collection=source.collection_alias)


def _without_tag(attribute: dict[str, Any], event_tag: dict[str, str]) -> dict[str, Any]:
    if attribute.get("Tag") != [event_tag]:
        return attribute
    return {k: v for k, v in attribute.items() if k != "Tag"}


def _finish(draft: _EventDraft) -> MispEvent:
    attributes = [draft.attributes[k] for k in sorted(draft.attributes)]
    if not draft.complete:
        return MispEvent(draft.uuid, {"uuid": draft.uuid, "Attribute": attributes},
                         complete=False)
    if draft.container is not None:
        level = draft.container.tlp
        distribution, sharing_group = (draft.container.distribution,
                                       draft.container.sharing_group)
    else:
        # The least restrictive level; among equal levels the widest distribution.
        level, distribution, sharing_group = min(
            draft.levels, key=lambda x: (x[0].rank, _NARROWNESS[x[1]]))
    tags = [{"name": tlp_tag(level)}]
    # An event's tags apply to every attribute in it (MISP's and misp-stix's reading,
    # and the pull's): an attribute at the event's level needs no tag of its own, and
    # MISP takes about a fifth longer to store an event whose every attribute is tagged.
    attributes = [_without_tag(a, tags[0]) for a in attributes]
    if draft.producer is not None:
        tags.append({"name": f'cert-exchange:contributor="{draft.producer}"'})
    body: dict[str, Any] = {
        "uuid": draft.uuid,
        "info": draft.info,
        "date": draft.date,
        "distribution": str(distribution),
        "threat_level_id": _THREAT_LEVEL_UNDEFINED,
        "analysis": _ANALYSIS_COMPLETED,
        "Tag": tags,
        "Attribute": attributes,
    }
    if distribution == 4:
        body["sharing_group_id"] = str(sharing_group)
    return MispEvent(draft.uuid, body)
