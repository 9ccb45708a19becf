"""The push run: what a MISP target's owner may receive, since the last cursor, onto it.

:func:`run_push` is one push of one target (issue 19, DESIGN.md decision 7):

1. **Read.** The object versions stored after the cursor (``date_added``, node-wide) in
   every collection the target's owner may read (its grants; the target's
   ``filters.collections`` narrow them), all versions, oldest first. Context the
   mapping needs is fetched whatever its age: marking-definitions the objects
   reference, and the indicators a report or grouping references that this target has
   not received yet (so they land in the report's event). At most
   :data:`MAX_VERSIONS` versions per run; the rest waits for the next run.
2. **Judge and map** with :func:`exchange.node.mispmap.map_for_target`: each object is
   judged by :func:`exchange.policy.decide` for the owner on channel ``misp`` (the
   RED lock, the filters, AMBER+STRICT only to a party's own instance), and becomes
   MISP events with deterministic UUIDs. What the target already holds stays where it
   is (``placed``, from :meth:`~exchange.storage.base.Store.misp_pushed`, and for an
   indicator this node never pushed there, from MISP itself: MISP keeps an attribute
   UUID in one event only, and drops it from any other), and a
   revocation reaches the target only if it received the object (``received_earlier``).
   MISP is asked (one search per 1,000 new indicators, on a worker thread, after
   PyMISP's constructor, which starts once the run knows it has something to push)
   while the run maps as if MISP held none of them; when it holds some, the run maps
   again with their places.
3. **Sharing groups.** AMBER content of a collection governed by an agreement goes to
   a sharing group of the agreement's parties on the target (distribution 4), created
   once (after the disclosures are in the ledger, step 5: a run that cannot write the
   ledger writes nothing to MISP) with a UUID derived from the agreement and remembered
   (:meth:`~exchange.storage.base.Store.save_misp_sharing_group`). An account that may
   not create one leaves AMBER at distribution 0 (the owner's organisation only), and
   the report says why.
4. **Orgc.** With a sync user (``perm_sync``), each event's creator organisation is
   the contributing member (found on the target by name, else created by MISP under the
   UUID of the member's STIX identity); otherwise MISP makes the exchange's own
   organisation the creator, and the report says so.
5. **Disclose, then push.** One disclosure per object version the target has not
   received yet goes to the audit ledger (channel ``misp``, recipient the owner, one
   record per collection), durably, before anything is written to MISP; if the ledger
   cannot be written nothing is pushed. Then each event is pushed
   (:meth:`~exchange.misp.client.MispClient.push_event`, idempotent by UUID: an event
   already up to date gets no write request; a new event of many attributes is added in
   the target's ``push_parts`` requests at once and published only once whole), revoked
   indicators' attributes are soft-deleted in one edit that also publishes the event
   (an edit that changes something is what makes MISP run its own publish, and so push
   the deletion on to its sync partners), and changed events are published (MISP syncs
   only published events; an unchanged event is published only if it is not). What
   succeeded is recorded in ``misp_pushed``.
6. **No echo to the source.** What the pull imported from this very target (a version
   the node signed for the owner, named by the report or grouping the pull made of a
   MISP event recorded by :meth:`~exchange.storage.base.Store.misp_pulled` for this
   target) is already there, under its own UUIDs in the member's own event: it is
   skipped with the rule :data:`ECHO_RULE`, never pushed back (the push would edit the
   member's event). It still goes to every other target the policy allows.
7. **Cursor.** ``cursor_after`` passes only what succeeded, in ``date_added`` order: a
   failed event stops it just before its first object version; later events are still
   pushed (they are idempotent, so the next run redoes them at no cost).

A dry run reads (the store and MISP) but writes nothing anywhere, and fills
:attr:`~exchange.misp.report.RunReport.plan` with one line per event or attribute that
would be created, updated or deleted and why. The run does not save the target's sync
state: the caller does (``exchange.misp.sync``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Final

from exchange.audit.records import DisclosureBatch
from exchange.errors import (
    AuthError,
    ConfigError,
    ExchangeError,
    NotFound,
    PermissionDenied,
    StorageError,
)
from exchange.misp.client import MispClient, MispRefused, PushResult
from exchange.misp.report import Outcome, RunReport
from exchange.misp.targets import MispTarget
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP_MARKING_IDS
from exchange.node.base import now_micros
from exchange.node.collector import collector_paused
from exchange.node.mispmap import (
    NAMESPACE,
    MappedObject,
    MispEvent,
    PushMapping,
    PushOptions,
    SourceObject,
    map_for_target,
)
from exchange.node.service import Exchange
from exchange.policy import Recipient
from exchange.policy.model import PolicySet
from exchange.storage.base import (
    Collection,
    MispPushed,
    ObjectQuery,
    Organisation,
    StoredVersion,
    VersionMatch,
)

__all__ = ["CHANNEL", "ECHO_RULE", "MAX_VERSIONS", "run_push", "sharing_group_uuid"]

log = logging.getLogger(__name__)

#: The channel of the disclosures a push records (the policy's channel too).
CHANNEL: Final = "misp"
#: The rule of a skipped version the pull imported from the target it would go to.
ECHO_RULE: Final = "echo-from-target"
#: Object versions read per run at most; the cursor stops at the last one read.
MAX_VERSIONS: Final = 50_000
#: Rows per store query.
_PAGE: Final = 1000
#: Ids looked up per context query.
_BATCH: Final = 500
_CONTRIBUTOR_TAG: Final = 'cert-exchange:contributor="'


def sharing_group_uuid(agreement: str) -> str:
    """The UUID of an agreement's sharing group, the same on every target."""
    return str(uuid.uuid5(NAMESPACE, f"sharing-group/{agreement}"))


class _Bodies:
    """Each stored version's body, parsed once per run (the run reads most of them three
    or four times: references, context, the mapping's sources, the fresh set). The
    parsed objects are shared: nothing in the run changes them."""

    __slots__ = ("_parsed",)

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, str, int], dict[str, Any]] = {}

    def __call__(self, row: StoredVersion) -> dict[str, Any]:
        key = (row.collection_id, row.id, row.version)
        obj = self._parsed.get(key)
        if obj is None:
            obj = self._parsed[key] = json.loads(row.body)
        return obj


@dataclass(slots=True)
class _Offer:
    """What one run offers the mapping."""

    #: Versions stored after the cursor, ``date_added`` ascending.
    rows: list[StoredVersion] = field(default_factory=list)
    #: Older versions fetched as context.
    context: list[StoredVersion] = field(default_factory=list)
    collections: dict[str, Collection] = field(default_factory=dict)
    truncated: bool = False
    #: The ``date_added`` of the last version read (echoes included).
    last_added: int | None = None
    #: The bodies of the versions read, parsed once.
    bodies: _Bodies = field(default_factory=_Bodies)


def run_push(node: Exchange, target: MispTarget, client: MispClient, *,
             dry_run: bool = False, now: int | None = None) -> RunReport:
    """Push to one MISP target what its owner may receive, since the last cursor.

    Args:
        node: The exchange, with its policy source set.
        target: The target.
        client: Its MISP client.
        dry_run: Read only: write nothing to the ledger, MISP or the store, and fill
            ``plan`` with what would be written and why.
        now: The current time, µs since the epoch (default: the clock).

    Returns:
        The report: counts, skipped and failed items with reasons, the plan (dry run),
        the cursor before and after. The caller saves the sync state.

    Raises:
        ConfigError: No policy is in force, or the owner is not a registered
            organisation.
        StorageError: The store could not be read.
    """
    with collector_paused():  # reading and mapping allocate much and make no cycles
        return _run_push(node, target, client, dry_run=dry_run, now=now)


def _run_push(node: Exchange, target: MispTarget, client: MispClient, *,
              dry_run: bool, now: int | None) -> RunReport:
    at = now_micros() if now is None else now
    if node.policy is None:
        raise ConfigError(f"target {target.name!r}: the MISP push needs a sharing policy"
                          " (policy_dir)")
    policy = node.policy.current()
    try:
        owner = node.store.find_org(target.owner)
    except NotFound:
        raise ConfigError(f"target {target.name!r}: owner {target.owner!r} is not an"
                          " organisation registered on this exchange") from None
    state = node.store.misp_state(target.name, "push")
    cursor = state.cursor if state is not None else None
    report = RunReport(target.name, "push", dry_run=dry_run, cursor_before=cursor,
                       cursor_after=cursor)
    recipient = Recipient(org_name=owner.name, org_identity=owner.identity_id,
                          parent_org_name=node.org_name(owner.parent_id),
                          account_name=None, role="misp", channel=CHANNEL)
    offer = _read(node, target, owner, _cursor_value(target, cursor))
    if not offer.rows:
        report.message = "nothing new since the cursor"
        return report
    echoes = _pulled_from_target(node, target, owner, offer.rows, offer.bodies)
    if echoes:
        for row in offer.rows:
            if row.id in echoes:
                report.skip(row.id, ECHO_RULE, (
                    f"the exchange pulled it from {target.name} (MISP event"
                    f" {echoes[row.id]}), which holds it under its own UUIDs: it is not"
                    " pushed back"))
        offer.rows = [r for r in offer.rows if r.id not in echoes]
        if not offer.rows:
            report.cursor_after = str(offer.last_added)
            report.message = (f"nothing to push: the {report.counts['skipped']} new object"
                              f" version(s) came from {target.name} itself")
            return report
    # PyMISP's constructor (four requests) runs while the store is read and mapped.
    client.connect_ahead()
    pushed = node.store.misp_pushed(target.name, sorted(
        {r.id for r in offer.rows} | _referenced(offer.rows, offer.bodies)))
    context = _context(node, offer, set(pushed))
    held_there = _pulled_from_target(node, target, owner, context, offer.bodies)
    offer.context += [r for r in context if r.id not in held_there]
    if offer.context:
        pushed.update(node.store.misp_pushed(target.name, sorted(
            {r.id for r in offer.context} - set(pushed))))
    run = _Run(node, target, client, policy, report, offer, pushed, dry_run, at)
    try:
        run.go(recipient)
    except AuthError as e:
        report.outcome = Outcome.AUTH_FAILED
        report.message = e.reason
        report.cursor_after = cursor
    except StorageError:
        raise
    except ExchangeError as e:
        # MISP down, refusing or failing before any event was judged: nothing moved.
        report.outcome = Outcome.FAILED
        report.message = e.reason
        report.cursor_after = cursor
    return report


def _cursor_value(target: MispTarget, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise ConfigError(f"target {target.name!r}: the stored push cursor {cursor!r} is"
                          " not a date_added (µs)") from None


def _read(node: Exchange, target: MispTarget, owner: Organisation, after: int | None
          ) -> _Offer:
    """Every version after ``after`` in the collections the owner may read."""
    offer = _Offer()
    wanted = set(target.filters.collections)
    for collection in node.store.list_collections(node.settings.api_root):
        grant = node.store.grant_for(collection.id, owner.id)
        if grant is None or not grant.can_read:
            continue
        if wanted and (collection.alias or collection.id) not in wanted:
            continue
        offer.collections[collection.id] = collection
        page_cursor: int | None = None
        for _ in range(MAX_VERSIONS // _PAGE + 1):
            page = node.store.get_objects(ObjectQuery(
                collection_id=collection.id, added_after=after, cursor=page_cursor,
                versions=VersionMatch(all=True), limit=_PAGE, include_body=True))
            offer.rows.extend(page.rows)
            if not page.more or not page.rows:
                break
            page_cursor = page.rows[-1].date_added
    offer.rows.sort(key=lambda r: r.date_added)
    if len(offer.rows) > MAX_VERSIONS:
        del offer.rows[MAX_VERSIONS:]
        offer.truncated = True
    offer.last_added = offer.rows[-1].date_added if offer.rows else None
    return offer


def _pulled_from_target(node: Exchange, target: MispTarget, owner: Organisation,
                        rows: Sequence[StoredVersion], bodies: _Bodies) -> dict[str, str]:
    """Object id -> MISP event UUID, for the ``rows`` the pull imported from ``target``.

    A pulled event becomes a report or grouping with the event's UUID naming every
    object made of it, stored as the owner's contribution and signed by the node
    (:mod:`exchange.misp.pull`). So a version is the target's own content when the owner
    produced it, a node key signed it, and a report or grouping of the same kind, made
    of an event :meth:`~exchange.storage.base.Store.misp_pulled` records for this
    target, is it or names it. A member's own TAXII publication (its key, not the
    node's) and an operator's withdrawal of it (not named by a pulled event) are not.
    """
    if not rows or node.store.misp_state(target.name, "pull") is None:
        return {}
    node_kids = {k.kid for k in node.store.list_member_keys(purpose="node")}
    candidates = [r for r in rows if r.producer_org == owner.id and r.signed_kid in node_kids]
    if not candidates:
        return {}
    found: dict[str, str] = {}
    for collection_id in sorted({r.collection_id for r in candidates}):
        containers: dict[str, list[StoredVersion]] = defaultdict(list)
        page_cursor: int | None = None
        for _ in range(MAX_VERSIONS // _PAGE + 1):
            page = node.store.get_objects(ObjectQuery(
                collection_id=collection_id, types=("report", "grouping"),
                cursor=page_cursor, versions=VersionMatch(all=True), limit=_PAGE,
                include_body=True))
            for row in page.rows:
                if row.producer_org == owner.id and row.signed_kid in node_kids:
                    containers[row.id.split("--", 1)[1]].append(row)
            if not page.more or not page.rows:
                break
            page_cursor = page.rows[-1].date_added
        pulled = node.store.misp_pulled(target.name, sorted(containers))
        for event_uuid in sorted(pulled):
            for row in containers[event_uuid]:
                found.setdefault(row.id, event_uuid)
                for ref in _references(row, bodies)[1]:
                    found.setdefault(ref, event_uuid)
    return {r.id: found[r.id] for r in candidates if r.id in found}


def _references(row: StoredVersion, bodies: _Bodies) -> tuple[set[str], set[str]]:
    """(marking-definition ids, object_refs) an object version names."""
    obj = bodies(row)
    markings = {m for m in obj.get("object_marking_refs") or () if isinstance(m, str)}
    for granular in obj.get("granular_markings") or ():
        ref = granular.get("marking_ref") if isinstance(granular, dict) else None
        if isinstance(ref, str):
            markings.add(ref)
    refs = obj.get("object_refs") if row.type in ("report", "grouping") else None
    return markings, {r for r in refs or () if isinstance(r, str)}


def _referenced(rows: Iterable[StoredVersion], bodies: _Bodies) -> set[str]:
    out: set[str] = set()
    for row in rows:
        out |= _references(row, bodies)[1]
    return out


def _context(node: Exchange, offer: _Offer, received: set[str]) -> list[StoredVersion]:
    """The latest versions of what the mapping needs that the run did not read: custom
    marking-definitions the objects reference, and indicators a report or grouping
    references that the target has not received (same collection)."""
    policy_markings = node.policy.current().markings if node.policy is not None else {}
    have = {(r.collection_id, r.id) for r in offer.rows}
    wanted: dict[str, set[str]] = defaultdict(set)
    for row in offer.rows:
        markings, refs = _references(row, offer.bodies)
        for ref in markings:
            if ref not in TLP_MARKING_IDS and ref not in policy_markings:
                wanted[row.collection_id].add(ref)
        for ref in refs:
            if ref.startswith("indicator--") and ref not in received:
                wanted[row.collection_id].add(ref)
    out: list[StoredVersion] = []
    for collection_id, ids in sorted(wanted.items()):
        missing = sorted(i for i in ids if (collection_id, i) not in have)
        for start in range(0, len(missing), _BATCH):
            chunk = tuple(missing[start:start + _BATCH])
            page = node.store.get_objects(ObjectQuery(
                collection_id=offer.collections[collection_id].id, ids=chunk,
                versions=VersionMatch.latest(), limit=len(chunk), include_body=True))
            out.extend(page.rows)
    return out


def _version_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("modified") or obj.get("created") or "")


class _Run:
    """One push of one target, after reading (see the module docstring)."""

    def __init__(self, node: Exchange, target: MispTarget, client: MispClient,
                 policy: PolicySet, report: RunReport, offer: _Offer,
                 pushed: dict[str, MispPushed], dry_run: bool, now: int) -> None:
        self.node, self.target, self.client, self.policy = node, target, client, policy
        self.report, self.offer, self.pushed = report, offer, pushed
        self.dry_run, self.now = dry_run, now
        #: (id, version string, collection alias) -> the row the mapping saw for it.
        self.rows: dict[tuple[str, str, str], StoredVersion] = {}
        self.notes: list[str] = []
        #: New indicators the target already holds, and where (asked once per run).
        self.held: dict[str, str] = {}

    # -- mapping ---------------------------------------------------------------------
    def _sources(self) -> list[SourceObject]:
        sources = []
        for row in [*self.offer.context, *self.offer.rows]:
            obj = self.offer.bodies(row)
            collection = self.offer.collections[row.collection_id]
            sources.append(SourceObject(
                obj, self.node.org_name(row.producer_org),
                collection.alias or collection.id, Tlp(collection.default_tlp),
                received_earlier=row.id in self.pushed))
            self.rows[(row.id, _version_of(obj), collection.alias or collection.id)] = row
        return sources

    def _agreements(self) -> tuple[set[str], dict[str, int]]:
        """The agreements whose AMBER content the run offers to a party, and the ids of
        the sharing groups the target already has for them (agreement -> id)."""
        agreements: set[str] = set()
        for row in self.offer.rows:
            collection = self.offer.collections[row.collection_id]
            binding = self.policy.collections.get(collection.alias or collection.id)
            if binding is not None and binding.agreement and row.effective_tlp == "amber":
                agreement = self.policy.agreements.get(binding.agreement)
                if agreement is not None and self._party(agreement.parties):
                    agreements.add(binding.agreement)
        known = {a: g[0] for a, g in self.node.store.misp_sharing_groups(
            self.target.name).items() if a in agreements}
        return agreements, known

    def _sharing_groups(self, agreements: set[str], known: Mapping[str, int]
                        ) -> dict[str, int]:
        """Agreement -> sharing group id, for ``agreements`` (created on the target when
        missing; a dry run only plans it, with id 0)."""
        out: dict[str, int] = {}
        for agreement_id in sorted(agreements):
            if agreement_id in known:
                out[agreement_id] = known[agreement_id]
                continue
            agreement = self.policy.agreements.get(agreement_id)
            if agreement is None:
                continue
            group_uuid = sharing_group_uuid(agreement_id)
            name = f"cert-exchange {agreement_id}"
            if self.dry_run:
                self.report.plan.append(
                    f"create sharing group {name!r} ({group_uuid}) of"
                    f" {', '.join(agreement.parties)}: TLP:AMBER of agreement"
                    f" {agreement_id} goes to its parties only (distribution 4)")
                out[agreement_id] = 0
                continue
            try:
                names = dict.fromkeys([*agreement.parties, self.target.owner])
                parties = [(p, self._org_uuid(p)) for p in names]
                group_id = self.client.ensure_sharing_group(
                    group_uuid, name, agreement.title[:255], parties)
            except PermissionDenied as e:
                self.notes.append(
                    f"no sharing group for agreement {agreement_id}, so its TLP:AMBER goes"
                    f" with distribution 0 (the owner's organisation only): {e.reason}")
                continue
            self.node.store.save_misp_sharing_group(self.target.name, agreement_id,
                                                    group_id, group_uuid)
            out[agreement_id] = group_id
        return out

    def _party(self, parties: Sequence[str]) -> bool:
        """Whether the owner (or the member it is a constituent of) is a party."""
        owner = self.node.store.find_org(self.target.owner)
        return owner.name in parties or self.node.org_name(owner.parent_id) in parties

    def _org_uuid(self, name: str) -> str:
        """The UUID of the organisation ``name`` on the target: the target's own if it
        has one by that name, else that of the member's STIX identity (MISP creates
        it under that UUID)."""
        found = self.client.find_organisation(name)
        if found is not None:
            return found
        try:
            identity = self.node.store.find_org(name).identity_id
        except NotFound:
            return str(uuid.uuid5(NAMESPACE, f"organisation/{name}"))
        return identity.split("--", 1)[1]

    # -- the run -----------------------------------------------------------------------
    def go(self, recipient: Recipient) -> None:
        report = self.report
        sources = self._sources()
        agreements, known = self._agreements()
        # Sharing groups the target lacks are created only once the ledger holds the
        # disclosures (nothing reaches MISP before); until then the mapping sees id 0
        # for them, which decides no object's fate, only its distribution.
        groups = {a: known.get(a, 0) for a in agreements}
        # MISP is asked where it already holds the new indicators while the run maps them
        # as if it held none (almost always so); if it holds any, the run maps again.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="misp-push-locate") as pool:
            locating = pool.submit(self._held_elsewhere, sources)
            mapping = self._map(sources, recipient, groups)
            self.held = locating.result()
        if self.held:
            mapping = self._map(sources, recipient, groups)
        fresh = {(r.id, _version_of(self.offer.bodies(r))) for r in self.offer.rows}
        for skipped in mapping.skipped:
            if (skipped.object_id, skipped.version) in fresh:
                report.skip(skipped.object_id, skipped.rule, skipped.reason)
        new = [m for m in mapping.mapped if self._is_new(m)]
        failed_at: list[int] = []
        if not self.dry_run and new and not self._disclose(new):
            failed_at.append(self.offer.rows[0].date_added)
            mapping = replace(mapping, events=())
        elif agreements - set(known):
            made = self._sharing_groups(agreements, known)
            if made != groups:
                mapping = self._map(sources, recipient, made)
        events = self._with_orgc(mapping) if mapping.events else []
        by_event: dict[str, list[MappedObject]] = defaultdict(list)
        for mapped in mapping.mapped:
            by_event[mapped.event_uuid].append(mapped)
        for event in self._ordered(events, by_event):
            objects = by_event[event.uuid]
            try:
                if self.dry_run:
                    self._plan(event, objects)
                else:
                    self._push(event, objects)
            except AuthError:
                raise
            except ExchangeError as e:
                first = min((self._row(m).date_added for m in objects
                             if (m.object_id, m.version) in fresh), default=None)
                for mapped in objects:
                    report.fail(mapped.object_id, _rule(e), e.reason)
                if first is not None:
                    failed_at.append(first)
                log.warning("push to %s: event %s failed: %s", self.target.name,
                            event.uuid, e.reason)
        self._advance(failed_at)
        self._finish_message()

    def _held_elsewhere(self, sources: Sequence[SourceObject]) -> dict[str, str]:
        """Indicators this node never pushed here whose attribute the target already
        holds (pushed from another home, or grouped otherwise then): id -> event UUID.
        Asked of MISP once per run, for new indicators only."""
        unknown = {s.id.split("--", 1)[1]: s.id for s in sources
                   if s.type == "indicator" and s.id not in self.pushed}
        if not unknown:
            return {}
        return {unknown[a]: e for a, e in self.client.locate_attributes(
            sorted(unknown)).items() if a in unknown}

    def _map(self, sources: Sequence[SourceObject], recipient: Recipient,
             groups: Mapping[str, int]) -> PushMapping:
        placed = {**self.held, **{k: v.event_uuid for k, v in self.pushed.items()}}
        options = PushOptions(grouping=self.target.event_grouping, sharing_groups=groups,
                              placed=placed, filters=self.target.filters)
        return map_for_target(sources, policy=self.policy, recipient=recipient,
                              options=options, now=self.now)

    def _is_new(self, mapped: MappedObject) -> bool:
        entry = self.pushed.get(mapped.object_id)
        return entry is None or entry.version != mapped.version or \
            entry.deleted != mapped.deleted

    def _row(self, mapped: MappedObject) -> StoredVersion:
        return self.rows[(mapped.object_id, mapped.version, mapped.collection)]

    def _ordered(self, events: Sequence[MispEvent],
                 by_event: Mapping[str, list[MappedObject]]) -> list[MispEvent]:
        """Events in the order of their first object version's ``date_added``."""
        def first(event: MispEvent) -> int:
            return min((self._row(m).date_added for m in by_event[event.uuid]), default=0)
        return sorted(events, key=lambda e: (first(e), e.uuid))

    def _with_orgc(self, mapping: PushMapping) -> list[MispEvent]:
        """The events, each complete one with its contributor as Orgc (sync user)."""
        if not self.client.is_sync_user():
            self.notes.append("Orgc left to MISP: the account is not a sync user"
                              " (perm_sync), so MISP shows the exchange's organisation as"
                              " every event's creator; the contributor is in a tag")
            return list(mapping.events)
        uuids: dict[str, str] = {}
        out = []
        for event in mapping.events:
            producer = _contributor(event)
            if not event.complete or producer is None:
                out.append(event)
                continue
            if producer not in uuids:
                uuids[producer] = self._org_uuid(producer)
            body = {**event.body, "Orgc": {"name": producer, "uuid": uuids[producer]}}
            out.append(replace(event, body=body))
        # A sync user publishes what it writes in the same request, as MISP's own push
        # does (MISP's publish action is for the creator organisation only), and marks
        # the event a synced copy (``locked``), which a sync user may edit later.
        # MISP refuses a published event without attributes ("Received a published
        # event that was empty"): such an event (a report whose indicators went
        # elsewhere or were left out) is written unpublished and stays so.
        return [replace(e, body={**e.body, "published": True, "locked": True})
                if _live(e.body) else e for e in out]

    def _disclose(self, new: Sequence[MappedObject]) -> bool:
        """Record one disclosure per new object version, per collection; False (and the
        run failed) when the ledger cannot be written."""
        by_collection: dict[str, list[tuple[MappedObject, StoredVersion]]] = defaultdict(list)
        for mapped in new:
            row = self._row(mapped)
            by_collection[row.collection_id].append((mapped, row))
        request_id = f"misp-push:{self.target.name}:{uuid.uuid4().hex}"
        try:
            for collection_id, entries in sorted(by_collection.items()):
                groups: list[tuple[str | None, str, str]] = []
                index: dict[tuple[str | None, str, str], int] = {}
                group_of = []
                for mapped, row in entries:
                    key = (self.node.org_name(row.producer_org), mapped.tlp.value,
                           mapped.decision.rule)
                    group_of.append(index.setdefault(key, len(groups)))
                    if group_of[-1] == len(groups):
                        groups.append(key)
                batch = DisclosureBatch(
                    time=now_micros(), channel=CHANNEL,
                    recipient_account=f"misp:{self.target.name}",
                    recipient_org=self.target.owner, collection=collection_id,
                    policy_digest=self.policy.digest, request_id=request_id,
                    groups=groups, object_ids=[m.object_id for m, _ in entries],
                    object_versions=[r.version for _, r in entries],
                    dates_added=[r.date_added for _, r in entries],
                    digests=[r.body_sha256 or b"" for _, r in entries]
                    if all(r.body_sha256 for _, r in entries) else None,
                    group_of=group_of)
                self.node.audit.record(batch, wait=True)
        except (StorageError, OSError) as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            self.report.outcome = Outcome.FAILED
            self.report.message = (f"the audit ledger could not be written, so nothing was"
                                   f" pushed: {reason}")
            return False
        return True

    def _push(self, event: MispEvent, objects: Sequence[MappedObject]) -> None:
        """Push one event, soft-delete its revoked attributes, publish it, remember it."""
        client, counts = self.client, self.report.counts
        # Revocations not pushed yet (one already soft-deleted costs no request).
        deletions = [u for m in objects if m.deleted and self._is_new(m)
                     for u in m.attribute_uuids]
        body = dict(event.body)
        attributes = [a for a in body.get("Attribute") or () if not a.get("deleted")]
        body["Attribute"] = attributes
        written = deleted = False
        sent = event.complete or bool(attributes)
        if sent:
            result = client.push_event(replace(event, body=body))
            counts[result.value] += 1
            written = result is not PushResult.UNCHANGED
        # MISP does not publish an event without attributes (see _with_orgc).
        publish = not (not attributes and event.complete)
        if deletions:
            try:
                # One edit deletes and publishes, so MISP's publish (and its sync) runs.
                done = client.delete_attributes(event.uuid, deletions, publish=publish)
            except NotFound:
                done = 0  # the event is not on the target (removed there): nothing left
            counts["deleted"] += done
            deleted = done > 0
        # A write without "published" leaves the event unpublished; an event left as it
        # was is published only if it is not.
        if not publish or deleted:
            pass
        elif written and not body.get("published"):
            client.publish_event(event.uuid)
        elif sent and not written:
            client.publish_event(event.uuid, if_needed=True)
        new = [m for m in objects if self._is_new(m)]
        at = now_micros()
        entries = [MispPushed(self.target.name, m.object_id, m.version, m.event_uuid,
                              m.attribute_uuids, m.deleted, at) for m in new]
        if entries:
            self.node.store.record_misp_pushed(entries)
            self.pushed.update({e.object_id: e for e in entries})
        counts["pushed"] += len(new)

    def _plan(self, event: MispEvent, objects: Sequence[MappedObject]) -> None:
        """The plan lines of one event (dry run)."""
        report = self.report
        ids = ", ".join(sorted(m.object_id for m in objects)[:5])
        more = f" and {len(objects) - 5} more" if len(objects) > 5 else ""
        why = "; ".join(sorted({m.decision.reason for m in objects})[:3])
        live = [a for a in event.body.get("Attribute") or () if not a.get("deleted")]
        body = {**event.body, "Attribute": live}
        result = self.client.would_push(replace(event, body=body))
        report.counts[result.value] += 1
        if result is not PushResult.UNCHANGED:
            report.plan.append(
                f"{'create' if result is PushResult.CREATED else 'update'} event"
                f" {event.uuid} {event.body.get('info', '')!r} (distribution"
                f" {event.body.get('distribution', 'kept')}, {len(live)} attribute(s)) for"
                f" {ids}{more}: {why}")
        for mapped in objects:
            if mapped.deleted and self._is_new(mapped):
                for attribute_uuid in mapped.attribute_uuids:
                    report.plan.append(
                        f"soft-delete attribute {attribute_uuid} of event {event.uuid}:"
                        f" {mapped.object_id} is revoked and {self.target.owner} received"
                        " it")
        report.counts["pushed"] += sum(1 for m in objects if self._is_new(m))

    def _advance(self, failed_at: Sequence[int]) -> None:
        """The cursor after the run: past every version read, or up to just before the
        first one whose event failed."""
        report = self.report
        if failed_at:
            stop = min(failed_at)
            done = [r.date_added for r in self.offer.rows if r.date_added < stop]
            if done:
                report.cursor_after = str(max(done))
            if report.outcome is Outcome.OK:
                report.outcome = Outcome.PARTIAL
            return
        report.cursor_after = str(self.offer.last_added or self.offer.rows[-1].date_added)

    def _finish_message(self) -> None:
        report = self.report
        counts = report.counts
        parts = [f"{counts[k]} {k}" for k in ("created", "updated", "unchanged", "deleted",
                                               "pushed", "skipped", "failed") if counts[k]]
        text = ", ".join(parts) or "nothing to push"
        if self.offer.truncated:
            text += f"; more than {MAX_VERSIONS} versions: the rest goes in the next run"
        notes = "; ".join(self.notes)
        if report.outcome is Outcome.FAILED:
            report.message = f"{report.message}; {notes}" if notes else report.message
            return
        report.message = f"{text}; {notes}" if notes else text


def _live(body: Mapping[str, Any]) -> bool:
    """Whether an event body holds an attribute that is not deleted."""
    return any(not a.get("deleted") for a in body.get("Attribute") or ())


def _contributor(event: MispEvent) -> str | None:
    for tag in event.body.get("Tag") or ():
        name = str(tag.get("name", ""))
        if name.startswith(_CONTRIBUTOR_TAG) and name.endswith('"'):
            return name[len(_CONTRIBUTOR_TAG):-1]
    return None


def _rule(error: ExchangeError) -> str:
    if isinstance(error, PermissionDenied):
        return "misp-forbidden"
    if isinstance(error, NotFound):
        return "misp-not-found"
    if isinstance(error, MispRefused):
        return "misp-refused"
    return "misp-error"
