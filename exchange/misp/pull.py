"""The pull: published MISP events since the cursor, imported as the owner's contributions.

:func:`run_pull` reads one target (issue 19 item 4; DESIGN.md decisions 7 and 8):

* **What is listed.** Published events whose timestamp is at or after the cursor
  (MISP's clock, ``MispSyncState.cursor``; None = everything), oldest first, page by page
  (at most :data:`MAX_PAGES` pages of :data:`PAGE_SIZE`). MISP's filter is inclusive, so
  an event already imported at the same timestamp (``store.misp_pulled``) is
  ``unchanged`` and not fetched again; an event edited in the cursor's own second is.
  Each changed event is fetched whole, soft-deleted attributes included (research/
  misp.md 4.4 (a)), so one bad event never stops the others; the next one is read while
  the current one is imported (one worker thread, :class:`_Reader`).
* **What is left out, with a reason** (``skipped`` items): events outside the target's
  tag filters (``filter-tags``; MISP tags, compared without case); events the exchange
  pushed to this target (``echo``); and attributes that are the exchange's own coming
  back (``echo``): an attribute whose UUID is that of an indicator the exchange holds
  other than as this target's import, the further values of such an indicator (UUIDv5
  under its UUID) and the cx-sig signature attributes the push adds (UUIDv5 under
  :data:`exchange.node.mispmap.NAMESPACE`). Nothing the exchange sent comes back as a new
  version of itself.
* **Conversion** by :mod:`exchange.misp.convert` (misp-stix's objects, simple attributes
  written directly; misp-stix's known losses compensated; a ``to_ids`` attribute kept as
  its indicator alone, docs/adr/0005-misp-pull-objects.md); an event misp-stix cannot
  convert is a ``failed`` item naming the
  event and misp-stix's error, retried at the next run.
* **Import.** Every object is a contribution of the target's owning organisation into
  one collection: the first of ``filters.collections`` the owner may write (in the
  order given), or, when the target names none, the first collection by alias the
  owner may write. It passes the ingest rules of a TAXII publish: the strict STIX 2.1
  profile and limits, the collection's ``custom_content`` rule, the authorship rule
  (no registered organisation's identity as author), and the policy's TLP reading.
  The node signs each version as an attestation (DESIGN.md decision 8, the key of
  :meth:`~exchange.node.base.NodeBase.node_key`), and the versions and their publish
  record (channel ``misp:pull``, account ``misp-sync-<target>`` of the owner, created on
  first use without an API key) commit in one transaction per event. See
  docs/adr/0003-misp-pull.md for these choices and the limits measured against MISP.
* **Versions.** An object already held identical (signature and ``modified`` aside) is
  ``unchanged``: re-pulling an unchanged event makes no new version. A changed object
  becomes a new version whose ``modified`` is the MISP timestamp, or one millisecond
  after the held version's when that is not later; its ``created`` stays the first
  version's. A revoked object is final (a restored MISP attribute is skipped with a
  reason), and a cyber-observable, which has no versions, is not replaced.
* **Cursor.** ``cursor_after`` is the highest listed timestamp such that every event at
  or before it succeeded or was skipped; a failed event holds it at its timestamp. Each
  event that succeeded or was skipped is recorded with ``store.record_misp_pulled``.
  The state itself is saved by the caller (``exchange.misp.sync``).

A dry run reads MISP and the store, writes nothing, and lists in ``report.plan`` what
would be imported. Counts: ``imported``, ``revoked`` (object versions stored),
``unchanged`` (events already imported at their timestamp, and objects already held
identical), ``skipped`` and ``failed`` (events, attributes or objects).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from exchange.errors import (
    AuthError,
    ExchangeError,
    InvalidObject,
    NotFound,
    PermissionDenied,
    PolicyDenied,
)
from exchange.misp.client import MispClient
from exchange.misp.convert import Conversion, ConversionFailed, convert_event
from exchange.misp.report import Outcome, RunReport
from exchange.misp.targets import MispTarget
from exchange.model.objects import StixObject
from exchange.model.stix import custom_content_of, is_observable, validate_object
from exchange.model.stixkinds import parse_timestamp
from exchange.node.base import now_micros
from exchange.node.collector import collector_paused
from exchange.node.imports import import_account, store_import
from exchange.node.mispmap import NAMESPACE
from exchange.node.publish import version_to_store
from exchange.node.service import Exchange
from exchange.policy import level_of
from exchange.policy.tlp import split_marking_refs
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.cxsig import sign_validated
from exchange.storage.base import (
    Account,
    AddOutcome,
    Collection,
    IdOwnership,
    NewVersion,
    ObjectQuery,
    Organisation,
    StoredVersion,
    VersionMatch,
)

__all__ = ["CHANNEL", "MAX_PAGES", "PAGE_SIZE", "import_collection", "run_pull",
           "sync_account"]

log = logging.getLogger(__name__)

#: The channel of the publish records a pull writes.
CHANNEL: Final = "misp:pull"
#: Events per page of MISP's index, and the most pages one run reads.
PAGE_SIZE: Final = 500
MAX_PAGES: Final = 200
#: Ids per store query.
_CHUNK: Final = 200
_SIG_COMMENT: Final = "cx-sig v1 detached DSSE envelope of "


@dataclass(frozen=True, slots=True)
class _Context:
    node: Exchange
    target: MispTarget
    owner: Organisation
    collection: Collection
    dry_run: bool
    now: int


def run_pull(node: Exchange, target: MispTarget, client: MispClient, *,
             dry_run: bool = False, now: int | None = None) -> RunReport:
    """Pull a target's published events since its cursor (module docstring).

    Args:
        node: The exchange (its policy source set).
        target: The target; its owner must be a registered organisation.
        client: The target's client.
        dry_run: Read only; fill ``report.plan``.
        now: The current time, microseconds since the epoch (signing time and ledger).

    Returns:
        The report; ``outcome`` is ``failed`` when nothing could be listed (or no
        collection takes the import), ``auth-failed`` when MISP refused the key,
        ``partial`` when some events or objects failed.
    """
    at = now_micros() if now is None else now
    report = RunReport(target.name, "pull", dry_run=dry_run)
    # PyMISP's constructor (four requests) runs while the store is read; a failure is
    # raised by the listing, as if it had connected there.
    client.connect_ahead()
    state = node.store.misp_state(target.name, "pull")
    report.cursor_before = state.cursor if state is not None else None
    report.cursor_after = report.cursor_before
    try:
        owner = node.store.find_org(target.owner)
        collection = import_collection(node, target, owner)
        listed = _list_events(client, report.cursor_before, target.filters.include_tags)
    except AuthError as e:
        return _stopped(report, Outcome.AUTH_FAILED, e.reason)
    except (ExchangeError, NotFound) as e:
        return _stopped(report, Outcome.FAILED, e.reason)
    ctx = _Context(node, target, owner, collection, dry_run, at)
    pulled = node.store.misp_pulled(target.name, [u for u, _ in listed])
    changed = [u for u, s in listed if pulled.get(u, -1) < s]
    with _Reader(client, changed) as reader:
        _pull_listed(ctx, reader, listed, pulled, report)
    if not report.message:
        report.message = _summary(report, len(listed), collection)
    return report


class _Reader:
    """The changed events, read from MISP one ahead: while one event is converted,
    signed and stored, a single worker thread reads the next (MISP answers in its own
    process, so the two overlap). Only the worker uses the client while the reader is
    open; an event's read failure is raised where the event is imported, as before."""

    def __init__(self, client: MispClient, order: Sequence[str]) -> None:
        self._client = client
        self._next = {u: order[i + 1] for i, u in enumerate(order[:-1])}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="misp-pull-read")
        self._ahead: dict[str, Future[dict[str, Any] | None]] = {}

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def event(self, event_uuid: str) -> dict[str, Any] | None:
        """The event (``MispClient.get_event``), reading the next one meanwhile."""
        future = self._ahead.pop(event_uuid, None)
        if future is None:
            future = self._pool.submit(self._client.get_event, event_uuid)
        following = self._next.get(event_uuid)
        if following is not None and following not in self._ahead:
            self._ahead[following] = self._pool.submit(self._client.get_event, following)
        return future.result()


def _pull_listed(ctx: _Context, reader: _Reader, listed: Sequence[tuple[str, int]],
                 pulled: Mapping[str, int], report: RunReport) -> None:
    """Import the listed events in order; set the cursor (module docstring)."""
    target, dry_run, at = ctx.target, ctx.dry_run, ctx.now
    node = ctx.node
    held_up: int | None = None
    for position, (event_uuid, stamp) in enumerate(listed):
        if pulled.get(event_uuid, -1) >= stamp:
            report.counts["unchanged"] += 1
            continue
        try:
            with collector_paused():  # an event allocates much and makes no cycles
                done = _pull_event(ctx, reader, event_uuid, report)
        except AuthError as e:
            # Nothing more can be read: stop here; this event and the rest wait.
            held_up = stamp if held_up is None else held_up
            _stopped(report, Outcome.AUTH_FAILED, e.reason)
            log.warning("pull of %s stopped at event %s (%d left): %s", target.name,
                        event_uuid, len(listed) - position, e.reason)
            break
        except ExchangeError as e:
            report.fail(event_uuid, _rule_of(e), e.reason)
            done = None
        if done is None:
            held_up = stamp if held_up is None else held_up
        elif not dry_run:
            node.store.record_misp_pulled(target.name, {event_uuid: done}, at)
    if held_up is not None:
        report.cursor_after = str(held_up)
    elif listed:
        report.cursor_after = str(listed[-1][1])


def _stopped(report: RunReport, outcome: Outcome, message: str) -> RunReport:
    report.outcome = outcome
    report.message = message
    return report


def _rule_of(error: ExchangeError) -> str:
    if isinstance(error, ConversionFailed):
        return "misp-stix-failed"
    return "misp-error" if type(error).__module__.startswith("exchange.misp") or \
        error.title in ("Refused by MISP",) else "import-failed"


def _summary(report: RunReport, listed: int, collection: Collection) -> str:
    c = report.counts
    verb = "would import" if report.dry_run else "imported"
    return (f"{listed} events listed: {verb} {c['imported']} objects and {c['revoked']}"
            f" revocations into {collection.alias or collection.id}; {c['unchanged']}"
            f" unchanged, {c['skipped']} skipped, {c['failed']} failed")


def import_collection(node: Exchange, target: MispTarget, owner: Organisation) -> Collection:
    """The collection a target's events are imported into (module docstring).

    Raises:
        NotFound: No collection the target names (or, naming none, none at all) may be
            written by the owner.
    """
    api_root = node.settings.api_root
    if target.filters.collections:
        candidates: list[Collection] = []
        for alias in target.filters.collections:
            try:
                candidates.append(node.store.get_collection(api_root, alias))
            except NotFound:
                continue
    else:
        candidates = sorted(node.store.list_collections(api_root),
                            key=lambda c: c.alias or c.id)
    for collection in candidates:
        grant = node.store.grant_for(collection.id, owner.id)
        if grant is not None and grant.can_write:
            return collection
    named = ", ".join(target.filters.collections) or "any collection"
    raise NotFound(f"target {target.name!r}: {owner.name} may write to none of {named};"
                   " the pull has nowhere to import to")


def _list_events(client: MispClient, cursor: str | None, tags: Sequence[str]
                 ) -> list[tuple[str, int]]:
    """(uuid, timestamp) of every listed event, oldest first, each UUID once; with
    ``tags``, MISP lists only events carrying one of them."""
    seen: dict[str, int] = {}
    for page in range(1, MAX_PAGES + 1):
        rows = client.search_index(cursor, page=page, limit=PAGE_SIZE, tags=tags)
        for row in rows:
            seen[row["uuid"]] = max(seen.get(row["uuid"], 0), int(row["timestamp"]))
        if len(rows) < PAGE_SIZE:
            break
    else:
        log.warning("the index has more than %d pages; the rest waits for the next run",
                    MAX_PAGES)
    return sorted(seen.items(), key=lambda item: (item[1], item[0]))


def _tags(item: Mapping[str, Any]) -> set[str]:
    return {str(t.get("name")).strip().lower() for t in item.get("Tag") or ()
            if isinstance(t, Mapping) and isinstance(t.get("name"), str)}


def _pull_event(ctx: _Context, reader: _Reader, event_uuid: str, report: RunReport
                ) -> int | None:
    """Import one event; its timestamp when done (imported or skipped), None if failed."""
    target = ctx.target
    event = reader.event(event_uuid)
    if event is None:
        report.skip(event_uuid, "event-gone", "the event was deleted, or is no longer"
                    " visible to the exchange's MISP account, since it was listed")
        return 0
    stamp = int(str(event.get("timestamp") or 0))
    if event.get("published") is not True:
        report.skip(event_uuid, "unpublished", "the event was unpublished (edited) since it"
                    " was listed; it is pulled once it is published again")
        return stamp
    tags = _tags(event)
    include = {t.lower() for t in target.filters.include_tags}
    exclude = sorted(tags & {t.lower() for t in target.filters.exclude_tags})
    if include and not tags & include:
        report.skip(event_uuid, "filter-tags", "the event carries none of the tags the"
                    f" target takes ({', '.join(target.filters.include_tags)})")
        return stamp
    if exclude:
        report.skip(event_uuid, "filter-tags", f"the event carries tag {exclude[0]!r},"
                    " which the target excludes")
        return stamp
    if ctx.node.store.misp_pushed_events(target.name, [event_uuid]):
        report.skip(event_uuid, "echo", "the exchange pushed this event to the target; its"
                    " content is already the exchange's and does not come back")
        return stamp
    echoes = _echoes(ctx, event)
    for attribute_uuid, reason in sorted(echoes.items()):
        report.skip(attribute_uuid, "echo", reason)
    if echoes and not _has_other(event, echoes):
        return stamp
    conversion = convert_event(event, owner_identity=ctx.owner.identity_id, drop=echoes)
    _import(ctx, conversion, report)
    return stamp


def _has_other(event: Mapping[str, Any], echoes: Mapping[str, str]) -> bool:
    elements = [a for a in event.get("Attribute") or () if isinstance(a, Mapping)]
    elements += [o for o in event.get("Object") or () if isinstance(o, Mapping)]
    return any(e.get("uuid") not in echoes for e in elements)


def _attributes(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = [a for a in event.get("Attribute") or () if isinstance(a, Mapping)]
    for misp_object in event.get("Object") or ():
        if isinstance(misp_object, Mapping):
            out += [a for a in misp_object.get("Attribute") or () if isinstance(a, Mapping)]
    return out


def _echoes(ctx: _Context, event: Mapping[str, Any]) -> dict[str, str]:
    """Attribute UUID -> why it is the exchange's own content coming back."""
    attributes = [a for a in _attributes(event) if isinstance(a.get("uuid"), str)]
    out: dict[str, str] = {}
    for attribute in attributes:
        comment = str(attribute.get("comment") or "")
        if attribute.get("type") == "text" and comment.startswith(_SIG_COMMENT):
            signed = comment[len(_SIG_COMMENT):].split(" ", 1)[0]
            if str(uuid.uuid5(NAMESPACE, f"cx-sig/{signed}")) == attribute["uuid"]:
                out[str(attribute["uuid"])] = (f"the cx-sig signature of {signed}, which the"
                                               " exchange pushed")
    held = _held_elsewhere(ctx, [f"indicator--{a['uuid']}" for a in attributes])
    for object_id, where in held.items():
        out[object_id.split("--", 1)[1]] = (f"{object_id} is already held by the exchange"
                                            f" ({where}); it does not come back as a new"
                                            " version")
    held_uuids = [u for u in out if u not in {a for a in out if "cx-sig" in out[a]}]
    for attribute in attributes:
        key = str(attribute["uuid"])
        if key in out:
            continue
        for origin in held_uuids:
            try:
                name = uuid.uuid5(uuid.UUID(origin), f"{attribute.get('type')}/"
                                                     f"{attribute.get('value')}")
            except ValueError:
                continue
            if str(name) == key:
                out[key] = (f"a further value of indicator--{origin}, which the exchange"
                            " already holds")
                break
    return out


def _held_elsewhere(ctx: _Context, ids: Sequence[str]) -> dict[str, str]:
    """Ids the exchange holds other than as this target's own import."""
    found: dict[str, str] = {}
    if not ids:
        return found
    node_kid = None if ctx.dry_run else ctx.node.node_key().kid
    for collection in ctx.node.store.list_collections(ctx.node.settings.api_root):
        for rows in _latest(ctx, collection, ids, body=False).values():
            for row in rows:
                ours = (collection.id == ctx.collection.id and row.producer_org == ctx.owner.id
                        and (node_kid is None or row.signed_kid == node_kid))
                if not ours:
                    found.setdefault(row.id, f"collection {collection.alias or collection.id}")
    return found


def _latest(ctx: _Context, collection: Collection, ids: Sequence[str], *, body: bool
            ) -> dict[str, list[StoredVersion]]:
    out: dict[str, list[StoredVersion]] = {}
    unique = sorted(set(ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = tuple(unique[start:start + _CHUNK])
        page = ctx.node.store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=chunk, limit=len(chunk) * 4,
            versions=VersionMatch.latest(), include_body=body))
        for row in page.rows:
            out.setdefault(row.id, []).append(row)
    return out


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "modified"}
    extensions = {k: v for k, v in (obj.get("extensions") or {}).items() if k != EXTENSION_ID}
    if extensions:
        out["extensions"] = extensions
    else:
        out.pop("extensions", None)
    return out


def _later(held: str, wanted: str) -> str:
    """``wanted``, or one millisecond after ``held`` when ``wanted`` is not later."""
    before, after = parse_timestamp(held), parse_timestamp(wanted)
    if before is None or after is None or after > before:
        return wanted
    moment = before.replace(tzinfo=UTC) + timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ownership(obj: StixObject, owner: Organisation) -> IdOwnership:
    if is_observable(obj.data):
        return IdOwnership.CONTRIBUTOR
    if obj.type == "identity" and obj.id == owner.identity_id:
        return IdOwnership.REGISTERED
    return IdOwnership.CREATOR


def _signed_at(now: int) -> str:
    moment = datetime.fromtimestamp(now / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _import(ctx: _Context, conversion: Conversion, report: RunReport) -> None:
    """Judge, version, sign and store one converted event (one transaction)."""
    node, owner, collection = ctx.node, ctx.owner, ctx.collection
    policy = node.policy.current() if node.policy is not None else None
    custom_rule = node.custom_content_rule(collection, policy)
    registered = node.registered_identities()
    held = _latest(ctx, collection, [str(o["id"]) for o in conversion.objects], body=True)
    key = None if ctx.dry_run else node.node_key()
    signed_at = _signed_at(ctx.now)
    versions: list[NewVersion] = []
    for candidate in conversion.objects:
        object_id = str(candidate["id"])
        try:
            prepared = _prepare(candidate, held.get(object_id, []), owner, registered,
                                custom_rule, node)
            if prepared is None:
                report.counts["unchanged"] += 1
                continue
            data, verdict = prepared
            if key is None:
                obj = verdict or validate_object(data, node.limits)
            else:  # the signer's own strict check of what it signed, the same limits
                obj = sign_validated(data, key, signed_at=signed_at, attest=True,
                                     limits=node.limits, checked=True, verdict=verdict)
            if policy is not None:
                object_level, granular = split_marking_refs(obj.data)
                tlp = level_of(object_level, policy, {}, granular=granular)
            else:
                tlp = obj.tlp
        except ExchangeError as e:
            report.skip(object_id, _object_rule(e), e.reason)
            continue
        versions.append(version_to_store(
            obj, producer_org=owner.id, tlp=tlp.value if tlp else None,
            effective_tlp=tlp.value if tlp else collection.default_tlp,
            signed_kid=key.kid if key is not None else None,
            ownership=_ownership(obj, owner)))
    if ctx.dry_run:
        for version in versions:
            kind = "revoke" if version.revoked else "import"
            report.counts["revoked" if version.revoked else "imported"] += 1
            report.plan.append(f"{kind} {version.id} from event {conversion.event_uuid} into"
                               f" {collection.alias or collection.id} as a contribution of"
                               f" {owner.name} (TLP:{(version.tlp or 'default').upper()})")
        return
    if not versions:
        return
    _store(ctx, conversion, versions, key.kid if key is not None else None, report)


def _object_rule(error: ExchangeError) -> str:
    if isinstance(error, InvalidObject):
        return "invalid-object"
    return error.title.lower().replace(" ", "-")[:60] or "refused"


def _prepare(candidate: Mapping[str, Any], held: Sequence[StoredVersion],
             owner: Organisation, registered: Mapping[str, str], custom_rule: str,
             node: Exchange) -> tuple[dict[str, Any], StixObject | None] | None:
    """The object to store and the strict check's verdict on it (None when the object
    was changed after the check), or None when it is already held identical.

    Raises:
        ExchangeError: It may not be stored (the reason says why).
    """
    obj = dict(candidate)
    checked = validate_object(obj, node.limits)
    if custom_rule != "accept":
        found = custom_content_of(checked.data)
        if found.custom_type or (custom_rule == "predefined-only" and found.properties):
            what = (f"objects of type {checked.type!r}" if found.custom_type
                    else f"custom properties ({', '.join(found.properties[:5])})")
            raise PolicyDenied(f"{what} are refused in collection"
                               f" {checked.id} (policy: custom_content {custom_rule})")
    author = checked.created_by_ref
    if author is not None and author != owner.identity_id and author in registered:
        raise PermissionDenied(f"created_by_ref {author} is the registered identity of"
                               f" {registered[author]}, not of {owner.name}")
    mine = [row for row in held if row.producer_org == owner.id]
    others = [row for row in held if row.producer_org != owner.id]
    if not mine and others and not is_observable(obj):
        raise PermissionDenied(f"another organisation created {checked.id} in this"
                               " collection; only it may add versions")
    if not mine:
        return obj, checked
    stored = json.loads(mine[0].body)
    if _comparable(stored) == _comparable(obj):
        return None
    if mine[0].revoked:
        raise PolicyDenied(f"{checked.id} is revoked in the exchange; a revoked object"
                           " gets no further versions (the MISP attribute was restored?)")
    if "modified" not in stored:
        raise PolicyDenied(f"{checked.id} is a cyber-observable the exchange already holds"
                           " with other content; it has no versions to replace it with")
    obj["created"] = stored.get("created", obj.get("created"))
    obj["modified"] = _later(str(stored["modified"]), str(obj.get("modified")))
    obj["created"] = min(obj["created"], obj["modified"])
    if _comparable(stored) == _comparable(obj):
        return None
    return obj, None


def sync_account(node: Exchange, target: MispTarget, owner: Organisation) -> Account:
    """The owner's account a target's imports are recorded under: ``misp-sync-<target>``
    (:func:`exchange.node.imports.import_account`).

    Raises:
        ConfigError: The name is taken by an account of another organisation.
    """
    return import_account(node, f"misp-sync-{target.name}", owner,
                          what=f"target {target.name!r}")


def _store(ctx: _Context, conversion: Conversion, versions: list[NewVersion],
           kid: str | None, report: RunReport) -> None:
    node, owner, target = ctx.node, ctx.owner, ctx.target
    stored = store_import(
        node, collection=ctx.collection, owner=owner,
        account=sync_account(node, target, owner), channel=CHANNEL,
        request=f"misp:{target.name}:{conversion.event_uuid}:{conversion.timestamp}",
        now=ctx.now, versions=versions, kid=kid)
    for result, version in stored:
        if result.outcome is AddOutcome.ADDED:
            report.counts["revoked" if version.revoked else "imported"] += 1
        elif result.outcome is AddOutcome.EXISTS:
            report.counts["unchanged"] += 1
        else:
            report.skip(version.id, f"store-{result.outcome.value}",
                        f"the collection refused {version.id}: {result.outcome.value}")

