"""Reading: what a principal may receive from a collection, the bytes it gets, and the
disclosure records written before they leave.

The policy filter runs in the database (:meth:`~exchange.node.base.NodeBase.visibility`);
:meth:`Reading.deliver` serves stored bytes unchanged or the derived copy a transform
calls for; :meth:`Reading.disclose` records every row served, with the rule that let it
through, before the response leaves.

Derived copies (:mod:`exchange.node.derive`) are graph-true and node-signed. A page's
references are resolved with one query under the reader's own visibility filter (the
same decision as the read): a referenced object the reader receives as a copy is named
by the copy's id, one it receives as stored (its own objects, marking-definitions) by its
own id, well-known markings stay, anything else is dropped and the drop recorded in the
copy. A copy that would lose a required reference is withheld from the page (not served,
not disclosed). Copies are signed with the node's key, claiming as signing time the
moment the exchange recorded the original version, so the same original, transforms and
resolved references always give the same bytes; they are cached by exactly that. Every
derived id served or referenced is recorded (``derived_ids``), so a reader can fetch a
copy by its own id and an operator can explain it.
"""

from __future__ import annotations

import json
import logging
import uuid
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from hashlib import sha256 as _sha256
from operator import attrgetter, is_
from typing import Any

from exchange.audit.records import DisclosureBatch
from exchange.audit.spool import already_durable
from exchange.errors import ConfigError, PermissionDenied
from exchange.model.objects import OrgId, Principal, Role, Tlp
from exchange.model.stixkinds import SCO_TYPES
from exchange.model.tlp import TLP_MARKING_IDS
from exchange.node.base import NodeBase, ReadResult, current_request_id, now_micros
from exchange.node.derive import derive, derived_id, references, transform_key
from exchange.policy import (
    AnonymiseProducer,
    Channel,
    ObjectMeta,
    PolicySet,
    Redact,
    Transform,
    decide,
)
from exchange.storage.base import (
    Collection,
    DerivedIdEntry,
    ObjectQuery,
    Page,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.timestamps import from_micros

log = logging.getLogger(__name__)

# The columns of a page's rows that disclose reads, in C (operator.attrgetter).
_PRODUCER_AND_LEVEL = attrgetter("producer_org", "effective_tlp")
_ID = attrgetter("id")
_VERSION = attrgetter("version")
_DATE_ADDED = attrgetter("date_added")

_BODY = attrgetter("body")

_BODY_SHA256 = attrgetter("body_sha256")

#: The types served as stored under every transform. A marking-definition's id is what
#: it means (objects and tools recognise a marking by it; STIX 2.1 section 7.2). A
#: cyber-observable is a fact about a value, not anyone's analysis: it names no author,
#: carries no narrative and may not carry external references (section 6), and its id
#: is derived from its value, which every tool dedupes by; a copy under a new id would
#: break that. One a redaction profile would change is withheld instead (deliver).
_NEVER_COPIED = frozenset({"marking-definition", *SCO_TYPES})
#: Referenced ids looked up per query when resolving a page's references.
_RESOLVE_BATCH = 500
#: Derived copies kept per process (about 2 KB each), and derived ids remembered as
#: recorded, before the memo starts over.
_COPY_CACHE_SIZE = 20_000
_RECORDED_IDS_SIZE = 200_000


def copied(result: ReadResult, row: StoredVersion) -> bool:
    """Whether a reader receives a derived copy of ``row`` (not the stored bytes)."""
    return (bool(result.transforms) and row.producer_org != result.reader_org
            and row.type not in _NEVER_COPIED)


def _redacted_names(result: ReadResult, policy: PolicySet) -> dict[str, frozenset[str]]:
    """Redaction profile -> the properties it drops or replaces, for the reader's Redact
    transforms (empty without one)."""
    out: dict[str, frozenset[str]] = {}
    for transform in result.transforms:
        if isinstance(transform, Redact):
            profile = policy.redaction_profiles[transform.profile]
            out[transform.profile] = frozenset(profile.drop) | frozenset(profile.replace)
    return out


def _redacted_observable(result: ReadResult, row: StoredVersion,
                         redacted: Mapping[str, frozenset[str]]) -> str:
    """Why a cyber-observable served as stored must be withheld from this reader: a
    redaction profile in force names a property it has (empty when it may be served)."""
    if not redacted or row.type not in SCO_TYPES or row.producer_org == result.reader_org:
        return ""
    properties = set(json.loads(row.body))
    for profile, names in redacted.items():
        named = properties & names
        if named:
            return (f"redaction profile {profile} names its {', '.join(sorted(named))},"
                    " and a cyber-observable is never copied")
    return ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a reader receives of a page.

    Attributes:
        result: The read, with only the rows actually served (a copy that would lose a
            required reference is withheld); disclose this one.
        bodies: The bytes served, one per row of ``result``.
        withheld: Original id -> why its copy was withheld.
    """

    result: ReadResult
    bodies: list[bytes]
    withheld: dict[str, str]


@dataclass(frozen=True, slots=True)
class Listing:
    """Versions a response lists without their bodies, for :meth:`Reading.disclose`, as
    compact columns: a flat feed of 100,000 indicators discloses them without a
    :class:`~exchange.storage.base.StoredVersion` each, grouped once for all its
    downloads, and holds little for the garbage collector to walk while it is cached
    (the numbers in arrays). Entry ``i`` of every column is one version, in the order
    served. Made by :meth:`of`.

    Attributes:
        collection: Where they are.
        shown: Their ids as the reader knows them (a copy's derived id).
        versions, dates_added: As stored.
        groups: Per (producer, level), the first version of the group, as stored
            (without its body): what the group's rule is decided on.
        group_of: Each entry's index in ``groups``.
    """

    collection: Collection
    shown: Sequence[str]
    versions: Sequence[int]
    dates_added: Sequence[int]
    groups: tuple[StoredVersion, ...]
    group_of: Sequence[int]

    @classmethod
    def of(cls, collection: Collection, *, shown: list[str], versions: Iterable[int],
           dates_added: Iterable[int], producers: Sequence[OrgId | None],
           levels: Sequence[str], row: Callable[[int], StoredVersion]) -> Listing:
        """The listing of these columns (``levels``: the level each version is shared
        at; ``row``: entry ``i`` as stored, without its body), grouped by producer and
        level in the order :meth:`Reading.disclose` groups a page's rows.

        Raises:
            ValueError: Columns of different lengths.
        """
        count = len(shown)
        numbers = array("q", versions), array("q", dates_added)
        if not (len(numbers[0]) == len(numbers[1]) == len(producers) == len(levels)
                == count):
            raise ValueError("a listing's columns must all have one value per entry")
        if count and len(set(producers)) == 1 and len(set(levels)) == 1:  # one group
            firsts: tuple[int, ...] = (0,)
            group_of = array("I", [0]) * count
        else:
            keys = list(zip(producers, levels, strict=True))
            first = dict(zip(reversed(keys), range(count - 1, -1, -1), strict=True))
            handles = {key: handle for handle, key in enumerate(first)}
            firsts = tuple(first.values())
            group_of = array("I", map(handles.__getitem__, keys))
        return cls(collection, shown, *numbers, tuple(map(row, firsts)), group_of)

    def __len__(self) -> int:
        return len(self.shown)


def _served_digests(rows: Sequence[StoredVersion], bodies: Sequence[bytes]) -> list[bytes]:
    """The SHA-256 of each body served: kept from ingest for a version served as stored
    (the very bytes object the row holds), computed for a derived copy."""
    if len(rows) != len(bodies):
        raise ValueError("one body per row")
    kept = list(map(_BODY_SHA256, rows))
    # The common page: every body served as stored, every digest kept (checked in C).
    if all(map(is_, bodies, map(_BODY, rows))) and None not in kept:
        return kept
    return [digest if body is row.body and digest is not None else _sha256(body).digest()
            for row, body, digest in zip(rows, bodies, kept, strict=True)]


class Reading(NodeBase):
    """Reading pages, delivering their bytes, recording what they disclose."""

    def read(self, principal: Principal, api_root: str, collection_ref: str,
             query: ObjectQuery, *, versions_of: str | None = None) -> ReadResult:
        """Read objects (or the versions of one object) the principal may receive.

        Args:
            principal: Who is reading.
            api_root: The API root name.
            collection_ref: Collection id or alias.
            query: Filters; ``collection_id`` is replaced by the resolved collection.
            versions_of: When set, list the versions of this object id.

        Raises:
            NotFound: The collection, or (with ``versions_of``) the object, is not
                visible to the principal.
            PermissionDenied: The principal may see but not read the collection.
        """
        collection = self.readable_collection(principal, api_root, collection_ref)
        rule = self.rule_for(principal, collection)
        transforms = rule.transforms if rule is not None else ()
        q = self.visibility(principal, replace(query, collection_id=collection.id), rule)
        if transforms:
            # A copy may be asked for by its own id; whether a copy can be served
            # coherently needs its body (Reading.deliver), manifests included.
            q = replace(q, ids=self.original_ids(q.ids, transforms), include_body=True)
        if versions_of is not None:
            [target] = self.original_ids((versions_of,), transforms) if transforms \
                else (versions_of,)
            page = self.store.get_versions(replace(q, ids=(target,)))
        else:
            page = self.store.get_objects(q)
        return ReadResult(collection, page, transforms, principal.org_id, q)

    def readable_collection(self, principal: Principal, api_root: str, collection_ref: str,
                            channel: Channel = "taxii") -> Collection:
        """A collection the principal may read, by id or alias (TAXII reads and feeds).

        Raises:
            NotFound: The collection is not visible to the principal
                (:meth:`~exchange.node.base.NodeBase.collection_for`).
            PermissionDenied: The principal may see but not read it; recorded in the
                ledger as ``deny-no-read-grant`` on ``channel``.
        """
        collection, access = self.collection_for(principal, api_root, collection_ref,
                                                 channel=channel)
        if not access.can_read:
            self._deny(principal, collection, channel, "deny-no-read-grant",
                       f"{principal.org_name} may write but not read collection"
                       f" {collection_ref!r}")
            raise PermissionDenied(f"you may not read collection {collection_ref!r}")
        return collection

    def reader_context(self, principal: Principal, scope: ObjectQuery,
                       transforms: Sequence[Transform]) -> tuple[Any, ...]:
        """What a reader's view of a collection depends on besides its content: the
        policy in force, the reader's organisation and the visibility and transforms the
        policy gives it (a feed built under another context must be built again)."""
        return (self.policy_digest(), principal.org_id, principal.parent_org_id,
                None if scope.visible_tlps is None else tuple(sorted(scope.visible_tlps)),
                scope.own_org, scope.red_identity, scope.revoked_needs_prior,
                scope.exclude_producer, repr(transforms))

    def original_ids(self, ids: Iterable[str], transforms: Sequence[Transform]
                     ) -> tuple[str, ...]:
        """``ids`` with each id of a copy under ``transforms`` replaced by its original's.

        Ids of copies under other transforms (another recipient's copies) stay as they
        are, and so match nothing.

        Raises:
            StorageError: The database failed.
        """
        key = transform_key(transforms)
        out = []
        for identifier in ids:
            entry = self.store.original_of(identifier)
            out.append(entry.original_id if entry is not None and entry.transforms == key
                       else identifier)
        return tuple(out)

    def deliver(self, result: ReadResult) -> Delivery:
        """What a reader receives for a page: stored bytes, or derived copies.

        Rows the reader's organisation produced, marking-definitions, and rows no
        transform applies to are served byte for byte. Otherwise the reader gets the
        graph-true, node-signed copy that names its original (module docstring); the
        original is never altered. A copy that would lose a required reference is
        withheld.

        Raises:
            ConfigError: A transform is in effect without a policy.
            StorageError: The database failed (resolving references, recording ids).
            InvalidObject: A copy could not be signed.
        """
        rows = result.page.rows
        if not any(copied(result, row) for row in rows) and not (
                any(isinstance(t, Redact) for t in result.transforms)
                and any(row.type in SCO_TYPES for row in rows)):
            return Delivery(result, [row.body for row in rows], {})
        if self.policy is None:  # transforms only ever come from a policy
            raise ConfigError("a transform was requested without a policy in force")
        policy = self.policy.current()
        redacted = _redacted_names(result, policy)
        parsed = {row.date_added: json.loads(row.body) for row in rows if copied(result, row)}
        wanted: set[str] = set()
        for obj in parsed.values():
            wanted |= references(obj)
        resolved = self._resolve(result, policy, wanted)
        providers = self._providers_hidden(result)
        for ref in wanted & providers:
            resolved[ref] = None  # a reference naming a provider is dropped, not rewritten
        key = self.node_key()
        cache_base = (transform_key(result.transforms), policy.digest, key.kid)
        served: list[StoredVersion] = []
        bodies: list[bytes] = []
        withheld: dict[str, str] = {}
        recorded: list[DerivedIdEntry] = []
        for row in rows:
            if not copied(result, row):
                why = _redacted_observable(result, row, redacted)
                if why:
                    withheld[row.id] = why
                    continue
                served.append(row)
                bodies.append(row.body)
                continue
            if row.type == "identity" and row.id in providers:
                withheld[row.id] = ("a providing organisation's own identity, under"
                                    " provider_attribution must-not")
                continue
            obj = parsed[row.date_added]
            refs = tuple(sorted((ref, resolved.get(ref)) for ref in references(obj)))
            cache_key = (row.id, row.version, row.date_added, *cache_base, refs)
            copy = self._copies.get(cache_key)
            if copy is None:
                copy = derive(obj, result.transforms, policy, resolved.get, key=key,
                              signed_at=from_micros(row.date_added))
                if len(self._copies) >= _COPY_CACHE_SIZE:
                    self._copies.clear()
                self._copies[cache_key] = copy
            if copy.body is None:
                withheld[row.id] = copy.withheld
                log.info("withheld the copy of %s from %s: %s", row.id,
                         result.reader_org, copy.withheld)
                continue
            served.append(row)
            bodies.append(copy.body)
            recorded.append(DerivedIdEntry(copy.id, row.id, cache_base[0]))
        self._record_derived(recorded + [
            DerivedIdEntry(shown, original, cache_base[0])
            for original, shown in resolved.items() if shown is not None and shown != original])
        if len(served) != len(rows):
            result = replace(result, page=Page(served, result.page.more))
        return Delivery(result, bodies, withheld)

    def _providers_hidden(self, result: ReadResult) -> frozenset[str]:
        """The identities a reader under ``provider_attribution: must-not`` may not see:
        every registered organisation's but its own. Their identity objects are withheld
        and references to them dropped, as they would name the provider that an
        anonymised copy leaves out (FIRST IEP 2.0 PROVIDER_ATTRIBUTION)."""
        if not any(isinstance(t, AnonymiseProducer) for t in result.transforms):
            return frozenset()
        return frozenset(org.identity_id for org in self.store.list_orgs()
                         if org.id != result.reader_org)

    def _resolve(self, result: ReadResult, policy: PolicySet, wanted: set[str]
                 ) -> dict[str, str | None]:
        """The id the reader knows each referenced id by, or None (module docstring).

        One query per :data:`_RESOLVE_BATCH` ids, under the read's own visibility filter
        (``result.scope``): the latest version visible, as GET object would serve it.
        """
        out: dict[str, str | None] = {}
        on_page: dict[str, StoredVersion] = {row.id: row for row in result.page.rows}
        lookup: list[str] = []
        for ref in wanted:
            if ref in TLP_MARKING_IDS or ref in policy.markings:
                out[ref] = ref  # well-known markings: their id is what they mean
            elif ref in on_page:
                out[ref] = self._shown(result, on_page[ref])
            else:
                lookup.append(ref)
        scope = result.scope or ObjectQuery(collection_id=result.collection.id)
        lookup.sort()
        for start in range(0, len(lookup), _RESOLVE_BATCH):
            chunk = tuple(lookup[start:start + _RESOLVE_BATCH])
            probe = replace(scope, ids=chunk, types=(), spec_versions=(), added_after=None,
                            cursor=None, versions=VersionMatch.latest(), limit=len(chunk),
                            include_body=False)
            for row in self.store.get_objects(probe).rows:
                out[row.id] = self._shown(result, row)
        for ref in lookup:
            out.setdefault(ref, None)
        return out

    @staticmethod
    def _shown(result: ReadResult, row: StoredVersion) -> str:
        return derived_id(row.id, result.transforms) if copied(result, row) else row.id

    def _record_derived(self, entries: list[DerivedIdEntry]) -> None:
        """Record derived ids not yet known to be recorded (by this process)."""
        fresh = [e for e in entries if e.derived_id not in self._recorded_ids]
        if not fresh:
            return
        self.store.record_derived_ids(fresh)
        if len(self._recorded_ids) >= _RECORDED_IDS_SIZE:
            self._recorded_ids.clear()
        self._recorded_ids.update(e.derived_id for e in fresh)

    def disclose(self, principal: Principal, result: ReadResult | Listing, channel: str,
                 bodies: Sequence[bytes] | None = None, *, wait: bool = True
                 ) -> Callable[[], None]:
        """Record what a response is about to disclose; call before it leaves.

        One :class:`~exchange.audit.records.Disclosure` per :data:`MAX_ENTRIES` rows,
        appended as one batch in one transaction, with per row the digest of the bytes
        served (``bodies``, as :meth:`deliver` made them; None when only versions or
        manifest entries are served), the producer, the effective TLP level and the
        rule that let it through.

        Args:
            principal, result, channel, bodies: What is served, to whom and how (a
                :class:`Listing` serves versions, not bodies: no ``bodies``).
            wait: Return once the records are durable. With False the caller renders
                the response while they are synced, and must call the returned function
                before the response leaves.

        Returns:
            Waits until the records are durable (returns at once with ``wait``).

        Raises:
            StorageError: The ledger could not be written: do not serve the response
                (without ``wait``, a failed sync is raised by the returned function).
        """
        if principal.role is Role.PEER and channel.startswith("taxii"):
            # a peer node's read: recorded as a disclosure to that peer (issue 20)
            channel = "peer" + channel.removeprefix("taxii")
        # A full page is a thousand rows, a flat feed 100,000: this is the ledger's cost
        # per object, so it works column by column, mostly in C, and leaves rendering the
        # records to the sequencer (DisclosureBatch). The producer, level and rule of a
        # row depend only on its producer and level: one group per pair, named from its
        # first row.
        if isinstance(result, Listing):
            if bodies is not None:
                raise ValueError("a listing discloses versions, not bodies")
            if not len(result):
                return already_durable
            rule_of = self._rule_namer(principal, result.collection)
            groups = [(self.org_name(row.producer_org), row.effective_tlp, rule_of(row))
                      for row in result.groups]
            ids: Sequence[str] = result.shown
            versions: Sequence[int] = result.versions
            dates: Sequence[int] = result.dates_added
            digests = None
            group_of: Sequence[int] = result.group_of
        else:
            rows = result.page.rows
            if not rows:
                return already_durable
            rule_of = self._rule_namer(principal, result.collection)
            keys = list(map(_PRODUCER_AND_LEVEL, rows))
            first = dict(zip(reversed(keys), reversed(rows), strict=True))
            handles: dict[tuple[OrgId | None, str], int] = {}
            groups = []
            for key, row in first.items():
                handles[key] = len(groups)
                groups.append((self.org_name(key[0]), key[1], rule_of(row)))
            # The same ids as shown_id.
            ids = list(map(_ID, rows)) if not result.transforms else [
                self._shown(result, row) for row in rows]
            versions, dates = list(map(_VERSION, rows)), list(map(_DATE_ADDED, rows))
            digests = None if bodies is None else _served_digests(rows, bodies)
            group_of = list(map(handles.__getitem__, keys))
        batch = DisclosureBatch(
            time=now_micros(), channel=channel, recipient_account=principal.account_name,
            recipient_org=principal.org_name, collection=result.collection.id,
            policy_digest=self.policy_digest(),
            request_id=current_request_id() or f"local:{uuid.uuid4().hex}",
            groups=groups, object_ids=ids, object_versions=versions, dates_added=dates,
            digests=digests, group_of=group_of)
        return self.audit.record(batch, wait=wait)

    def _rule_namer(self, principal: Principal, collection: Collection
                    ) -> Callable[[StoredVersion], str]:
        """The id of the rule that lets ``principal`` receive a row.

        Within one response a rule depends only on whether the reader's organisation
        produced the row and on the row's effective level; the engine's own
        :func:`~exchange.policy.decide` names it. :meth:`disclose` asks once per
        producer and level.
        """
        policy = self.policy.current() if self.policy is not None else None
        recipient = self.recipient(principal) if policy is not None else None
        alias = collection.alias or collection.id
        now = now_micros()

        def name(row: StoredVersion) -> str:
            if row.producer_org == principal.org_id:
                return "producer"
            if policy is None or recipient is None:
                return f"baseline-tlp-{row.effective_tlp}"
            level = Tlp(row.effective_tlp)
            meta = ObjectMeta(
                id=row.id, type=row.type, producer_org_name=self.org_name(row.producer_org),
                tlp=level, tlp_explicit=row.tlp is not None,
                red_recipients=(principal.identity_id,) if level is Tlp.RED else (),
                revoked=False, date_added=row.date_added, collection_alias=alias)
            decision = decide(policy, recipient, meta, now=now)
            # The SQL filter let the row through; a disagreement is a defect to see.
            return decision.rule if decision.allowed else f"sql-filter:{decision.rule}"

        return name

    def shown_id(self, result: ReadResult, row: StoredVersion) -> str:
        """The id a reader knows a row by (the derived id when it gets a copy)."""
        return self._shown(result, row)

    def object_visible(self, principal: Principal, collection: Collection,
                       object_id: str) -> bool:
        """Whether any version of the object (or of the original of a copy the principal
        receives by that id) is visible to the principal."""
        rule = self.rule_for(principal, collection)
        if rule is not None and rule.transforms:
            [object_id] = self.original_ids((object_id,), rule.transforms)
        probe = self.visibility(
            principal,
            ObjectQuery(collection_id=collection.id, ids=(object_id,), limit=1,
                        include_body=False),
            rule,
        )
        return bool(self.store.get_versions(probe).rows)
