"""Flat feeds for SOC tools: the values of a collection's indicators a reader may see,
of one kind (``<collection>/<kind>.<format>``) or of the kinds a named feed lists, less
what its filters leave out (:mod:`exchange.node.feeddefs`), as plain text (one value a
line) or CSV.

A feed is a read over the ``feed`` channel of the policy (AMBER+STRICT and RED never
leave through it, except to their producer): the same SQL visibility filter as a TAXII
read (:meth:`~exchange.node.base.NodeBase.visibility`), so the values come from what the
reader would receive. Only the latest version of each indicator counts, and only when it
is not revoked and currently valid (``valid_from <= now < valid_until``). Values are
extracted and normalised as for search (:mod:`exchange.model.observables`, indicators
with ``pattern_type`` ``stix``), de-duplicated and sorted as text.

Where the reader receives the stored bytes (no transform of the policy applies to it),
a feed is built with one query (:meth:`~exchange.storage.base.Store.feed_values`): the
same visibility filter over the latest unrevoked indicator versions, joined to their
values in the observable index (revision 0008) and to the facts a feed lists or filters
by (revision 0013: ``valid_from``, ``valid_until``, ``created_by_ref``, ``labels``,
``confidence``), both written at ingest; no pattern is parsed again and no body is read.
With a policy, the engine (:func:`~exchange.policy.decide`, channel ``feed``) judges
every version the query returns, once per contributor and level (the only properties of
a live, unrevoked row its decision depends on), and a version it refuses stays out
(logged: the SQL filter and the engine disagree).

Where a transform applies (redaction, anonymised contributors) the reader receives
derived copies, and its feed must be what its copies say. When no redaction profile in
force names a property the feed reads (:data:`_FEED_PROPERTIES`), a copy's values,
validity, labels and confidence are its original's, so the index still serves: the lines
name the copy's id (:func:`~exchange.node.derive.derived_id`, recorded as a read records
it), the author as the reader knows it (resolved as
:meth:`~exchange.node.read.Reading.deliver` resolves a copy's references; none when the
contributor is anonymised) and the copy's timestamps in the library's normal form. A
test holds this byte for byte equal to building from the delivered copies. Otherwise
(a profile that drops or replaces the pattern, say) the feed is built from the copies
themselves, as a TAXII read would serve them. A value too long for the index (a digest
key) is read from its indicator's body.

Conditional GET: a feed's ETag is the digest of its body, so it changes exactly when the
body does. Building is the expensive part, so a feed's lines are kept per reader,
collection, kinds and filters (its formats share them, each rendered once) with what they
were built from: the policy digest, the reader's visibility rule and transforms, the
collection's newest ``date_added``, and the next moment an indicator in it expires or one
held back becomes valid. A request that finds all of them unchanged costs one index
lookup (:meth:`~exchange.storage.base.Store.newest_date_added`); one that finds versions
added re-reads only the indicators they belong to (indicators are never deleted, only
revoked by a new version); anything else rebuilds the feed.

Rendering (CSV columns, quoting, spreadsheet formulas neutralised) is
:mod:`exchange.node.feedrender`'s.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from hashlib import sha256
from operator import itemgetter
from typing import Any, Final

from exchange.errors import InvalidInput, NotFound, StorageError
from exchange.model.objects import Principal, Tlp
from exchange.model.observables import observables_of, value_of_key
from exchange.node.base import ReadResult, now_micros
from exchange.node.collector import collector_paused
from exchange.node.derive import derived_id, transform_key
from exchange.node.feeddefs import FEED_FORMATS, FEED_KINDS, FeedFilters, FlatFeed
from exchange.node.feedrender import (
    CSV_COLUMNS,
    LINE_FIELDS,
    FeedEntry,
    FeedLine,
    neutralise,
    render,
    render_lines,
)
from exchange.node.read import Listing, Reading
from exchange.policy import AnonymiseProducer, ObjectMeta, Redact, decide
from exchange.storage.base import (
    Collection,
    DerivedIdEntry,
    FeedValue,
    ObjectQuery,
    Page,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.timestamps import from_micros, to_micros

log = logging.getLogger(__name__)

__all__ = [
    "CSV_COLUMNS",
    "FEED_CHANNEL",
    "FEED_FORMATS",
    "FEED_KINDS",
    "Feed",
    "FeedEntry",
    "FeedFilters",
    "Feeds",
    "neutralise",
    "render",
]

#: The channel of the policy and of the ledger a feed is read through.
FEED_CHANNEL: Final = "feed"

#: Rows read per query while building a feed.
_PAGE: Final = 5000
#: Feeds kept built, and the bytes they may hold together.
_CACHE_ENTRIES: Final = 64
_CACHE_BYTES: Final = 256 << 20
#: Parsed indicators remembered by body digest (a few hundred bytes each).
_PARSED_SIZE: Final = 300_000
_FOREVER: Final = 2**63 - 1
#: Changed indicator ids looked up per query.
_RESOLVE_IDS: Final = 500
#: The properties of an indicator a feed lists or filters by: a redaction profile that
#: names one makes the reader's copies differ from the index (read them instead).
_FEED_PROPERTIES: Final = frozenset({"pattern", "pattern_type", "pattern_version",
                                     "valid_from", "valid_until", "labels", "confidence"})
_TIMESTAMP: Final = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z")
_DATE_ADDED: Final = itemgetter(LINE_FIELDS.index("date_added"))
_MORE: Final = itemgetter(LINE_FIELDS.index("more"))
_VERSION: Final = itemgetter(LINE_FIELDS.index("version"))
_PRODUCER: Final = itemgetter(LINE_FIELDS.index("producer_org"))
_LEVEL: Final = itemgetter(LINE_FIELDS.index("level"))
_SHOWN: Final = itemgetter(LINE_FIELDS.index("shown"))
#: What a cached line costs in memory, roughly.
_LINE_BYTES: Final = 400


@dataclass(frozen=True, slots=True)
class Feed:
    """A built feed.

    Attributes:
        body: The bytes served.
        etag: The strong entity tag (quoted): the digest of ``body``.
        last_modified: When this process first built this body (seconds since the epoch).
        result: The indicator versions whose values are in it, to disclose.
        values: How many lines (values or rows) it has.
    """

    body: bytes
    etag: str
    last_modified: int
    result: Listing
    values: int


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What a feed needs of one indicator body."""

    revoked: bool
    valid_from: int | None
    valid_until: int | None
    valid_from_text: str
    valid_until_text: str
    author: str
    values: tuple[tuple[str, str], ...]  # (kind, value)
    labels: tuple[str, ...]
    confidence: int | None


@dataclass(slots=True)
class _Cached:
    """A feed's built lines, what they were built from, and their rendered formats."""

    context: tuple[Any, ...]  # policy digest, the reader's visibility and transforms
    newest: int  # the collection's newest date_added when built
    expires: int  # microseconds: the next validity transition (at the latest)
    lines: dict[str, FeedLine]  # by indicator id
    ordered: list[FeedLine]  # the lines in date_added order
    result: Listing  # the versions to disclose
    feeds: dict[str, Feed]  # by format, rendered on demand




def _listing(collection: Collection, ordered: list[FeedLine]) -> Listing:
    """The versions of a feed's lines, to disclose (columns, made in C)."""
    def row(index: int) -> StoredVersion:
        (date_added, identifier, version, producer, marked, level) = ordered[index][:6]
        # The store's ids are plain text; StixId and OrgId are NewTypes of it.
        return StoredVersion(collection.id, identifier, "indicator", "2.1",  # type: ignore[arg-type]
                             version, date_added, producer, marked, level,  # type: ignore[arg-type]
                             False, True)

    return Listing.of(collection, shown=list(map(_SHOWN, ordered)),
                      versions=map(_VERSION, ordered), dates_added=map(_DATE_ADDED, ordered),
                      producers=list(map(_PRODUCER, ordered)),
                      levels=list(map(_LEVEL, ordered)), row=row)


def _csv_rows(lines: list[FeedLine]) -> int:
    """The rows of a CSV feed of ``lines``: one per value and indicator."""
    return len(lines) + sum(map(len, map(_MORE, lines)))


def strong_etag(body: bytes) -> str:
    """A strong entity tag (RFC 9110 section 8.8.3) for ``body``: its digest, quoted."""
    return f'"{sha256(body).hexdigest()[:40]}"'


def _text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    return value if isinstance(value, str) else ""


def _copy_timestamp(text: str) -> str:
    """A ``valid_from``/``valid_until`` as a derived copy writes it: copies are signed in
    the STIX library's normal form (:func:`~exchange.signing.canonical.normal_form`),
    which writes these timestamps with the fraction's trailing zeros dropped
    (``...00.500Z`` -> ``...00.5Z``, ``...00.000Z`` -> ``...00Z``)."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return text
    fraction = (match.group(2) or "").rstrip("0")
    return f"{match.group(1)}.{fraction}Z" if fraction else f"{match.group(1)}Z"


def _micros(text: str) -> int | None:
    if not text:
        return None
    try:
        return to_micros(text)
    except (ValueError, InvalidInput):
        return None


def _parse(body: bytes) -> _Parsed:
    obj = json.loads(body)
    valid_from, valid_until = _text(obj, "valid_from"), _text(obj, "valid_until")
    values = tuple(sorted({(o.kind, o.value) for o in observables_of(obj)
                           if o.kind in FEED_KINDS}))
    labels = obj.get("labels")
    confidence = obj.get("confidence")
    return _Parsed(revoked=obj.get("revoked") is True, valid_from=_micros(valid_from),
                   valid_until=_micros(valid_until), valid_from_text=valid_from,
                   valid_until_text=valid_until, author=_text(obj, "created_by_ref"),
                   values=values,
                   labels=tuple(v for v in labels if isinstance(v, str))
                   if isinstance(labels, list) else (),
                   confidence=confidence if isinstance(confidence, int)
                   and not isinstance(confidence, bool) else None)


class Feeds(Reading):
    """Flat feeds of a collection's indicator values (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built feeds (least recently used first) and parsed indicator bodies by digest.
        self._feed_cache: OrderedDict[tuple[str, str, tuple[str, ...], FeedFilters],
                                      _Cached] = OrderedDict()
        self._parsed: dict[bytes, _Parsed] = {}
        self._feed_lock = threading.Lock()

    def feed(self, principal: Principal, api_root: str, collection_ref: str, kind: str,
             fmt: str, *, now: int | None = None) -> Feed:
        """The feed of ``kind`` values of a collection, for one reader, built or cached.

        Nothing is disclosed here: the caller records :attr:`Feed.result` with
        :meth:`~exchange.node.read.Reading.disclose` (channel :data:`FEED_CHANNEL`)
        before it sends the body, and not when it answers 304.

        Args:
            principal: Who reads.
            api_root: The API root name.
            collection_ref: Collection id or alias.
            kind: One of :data:`FEED_KINDS`.
            fmt: One of :data:`FEED_FORMATS`.
            now: The time validity is judged at (microseconds; default: now).

        Raises:
            NotFound: The collection is not visible to the reader, or ``kind`` or
                ``fmt`` names no feed (the message lists those that exist).
            PermissionDenied: The reader may see but not read the collection.
            StorageError: The database failed.
        """
        if kind not in FEED_KINDS or fmt not in FEED_FORMATS:
            raise NotFound(f"no feed {kind}.{fmt}: feeds are <kind>.<format> with kind one of"
                           f" {', '.join(FEED_KINDS)} and format one of"
                           f" {', '.join(FEED_FORMATS)}")
        return self._serve_feed(principal, api_root, collection_ref, (kind,), FeedFilters(),
                           fmt, now)

    def named_feed(self, principal: Principal, api_root: str, definition: FlatFeed,
                   fmt: str, *, now: int | None = None) -> Feed:
        """A named feed (:mod:`exchange.node.feeddefs`) for one reader, built or cached:
        its collection's values of its kinds, as :meth:`feed` reads them, less what its
        filters leave out. Nothing is disclosed here (see :meth:`feed`).

        Raises:
            NotFound: The feed is not served in ``fmt``, or its collection is not
                visible to the reader.
            PermissionDenied: The reader may see but not read the collection.
            StorageError: The database failed.
        """
        if fmt not in definition.formats:
            raise NotFound(f"feed {definition.name!r} is served as"
                           f" {', '.join(definition.formats)}, not {fmt}")
        return self._serve_feed(principal, api_root, definition.collection, definition.kinds,
                           definition.filters, fmt, now)

    def _serve_feed(self, principal: Principal, api_root: str, collection_ref: str,
               kinds: tuple[str, ...], filters: FeedFilters, fmt: str,
               now: int | None) -> Feed:
        """:meth:`feed` and :meth:`named_feed`: one reader's lines of a collection's
        ``kinds`` under ``filters``, built, brought up to date or cached, rendered in
        ``fmt`` (the formats of one feed share its lines)."""
        collection = self.readable_collection(principal, api_root, collection_ref,
                                              FEED_CHANNEL)
        now = now_micros() if now is None else now
        rule = self.rule_for(principal, collection, FEED_CHANNEL)
        transforms = rule.transforms if rule is not None else ()
        scope = self.visibility(principal, ObjectQuery(collection_id=collection.id,
                                                       types=("indicator",), limit=_PAGE),
                                rule)
        if rule is None and scope.visible_tlps is not None:
            # The baseline without a policy: strict levels never leave through a feed.
            scope = replace(scope, visible_tlps=scope.visible_tlps - {Tlp.AMBER_STRICT.value})
        newest = self.store.newest_date_added(collection.id)
        context = self.reader_context(principal, scope, transforms)
        key = (principal.account_id, collection.id, kinds, filters)
        built: _Cached | None = None
        with self._feed_lock:
            stale = self._feed_cache.get(key)
            # Built under the same context and not expired: up to date, or to be brought
            # up to date.
            cached = stale if (stale is not None and stale.context == context
                               and now < stale.expires) else None
            if cached is not None:
                self._feed_cache.move_to_end(key)
                if cached.newest == newest:
                    ready = cached.feeds.get(fmt)
                    if ready is not None:
                        return ready
                    built = cached
        with collector_paused():  # allocation-heavy, no reference cycles
            if built is None:
                built = self._lines(principal, collection, scope, transforms, kinds,
                                    filters, now, newest, context, cached)
            body = render_lines(built.ordered, fmt)
            etag = strong_etag(body)
            last_modified = int(time.time())
            previous = stale.feeds.get(fmt) if stale is not None else None
            if previous is not None and previous.etag == etag:
                last_modified = previous.last_modified
            feed = Feed(body, etag, last_modified, built.result,
                        _csv_rows(built.ordered) if fmt == "csv" else body.count(b"\n"))
        with self._feed_lock:
            cache = self._feed_cache
            built.feeds[fmt] = feed
            cache[key] = built
            cache.move_to_end(key)
            while len(cache) > 1 and (len(cache) > _CACHE_ENTRIES or sum(
                    sum(len(f.body) for f in c.feeds.values()) + _LINE_BYTES * len(c.lines)
                    for c in cache.values()) > _CACHE_BYTES):
                cache.popitem(last=False)
        return feed

    def _lines(self, principal: Principal, collection: Collection, scope: ObjectQuery,
               transforms: tuple[Any, ...], kinds: tuple[str, ...], filters: FeedFilters,
               now: int, newest: int, context: tuple[Any, ...], cached: _Cached | None
               ) -> _Cached:
        """Build a feed's lines, or bring ``cached`` (built under the same context and
        not expired) up to date."""
        if cached is not None:
            # Only what was added since: the indicators with a new version lose their old
            # lines and get those of their newest version the reader may receive, if any
            # (a new version it may not receive leaves nothing; a revocation neither).
            lines = dict(cached.lines)
            changed = self._changed_since(collection, cached.newest)
            for identifier in changed:
                lines.pop(identifier, None)
            expires = cached.expires
            for start in range(0, len(changed), _RESOLVE_IDS):
                chunk = tuple(changed[start:start + _RESOLVE_IDS])
                expires = min(expires, self._build(
                    principal, collection, replace(scope, ids=chunk), transforms, kinds,
                    filters, now, lines))
        else:
            lines = {}
            expires = self._build(principal, collection, scope, transforms, kinds, filters,
                                  now, lines)
        ordered = sorted(lines.values(), key=_DATE_ADDED)
        return _Cached(context, newest, expires, lines, ordered, _listing(collection, ordered),
                       {})

    def record_download(self, principal: Principal, feed_name: str, fmt: str,
                        values: int, etag: str) -> None:
        """Count a full download of a feed (a flat feed, or a MISP feed's file) for
        ``exchange sync status`` (:meth:`~exchange.storage.base.Store.record_feed_download`).

        Bookkeeping only: call it once the download's disclosure is recorded (the
        ledger is the record that counts), so a failure here is logged, never raised.
        """
        try:
            self.store.record_feed_download(
                feed_name, fmt, principal.account_name, principal.org_name,
                at=now_micros(), etag=etag, values=values)
        except StorageError as e:
            log.warning("flat feed %s.%s: the download by %s was served but not counted"
                        " (%s)", feed_name, fmt, principal.account_name, e.reason)

    def _changed_since(self, collection: Collection, since: int) -> list[str]:
        """The ids of the collection's indicators with a version added after ``since``,
        whoever may receive it.

        Indicators are never deleted (a DELETE stores a revoked version:
        :mod:`exchange.node.withdraw`), so every change to them is a version added.
        """
        query = ObjectQuery(collection_id=collection.id, types=("indicator",),
                            added_after=since, versions=VersionMatch(all=True),
                            include_body=False, limit=_PAGE)
        changed: dict[str, None] = {}
        while True:
            page = self.store.get_objects(query)
            changed.update(dict.fromkeys(row.id for row in page.rows))
            if not page.more or not page.rows:
                return list(changed)
            query = replace(query, cursor=page.rows[-1].date_added)

    def _build(self, principal: Principal, collection: Collection, scope: ObjectQuery,
               transforms: tuple[Any, ...], kinds: tuple[str, ...], filters: FeedFilters,
               now: int, lines: dict[str, FeedLine]) -> int:
        """Add to ``lines`` the values of the indicators ``scope`` reads: from the
        observable index where the reader receives stored bytes, from the delivered
        copies where a transform applies (module docstring). Returns when the answer
        next changes by the clock alone."""
        if transforms and not self._copies_keep_feed_facts(transforms):
            return self._collect(principal, collection, scope, transforms, kinds, filters,
                                 now, lines)
        return self._collect_indexed(principal, collection, scope, transforms, kinds,
                                     filters, now, lines)

    def _copies_keep_feed_facts(self, transforms: tuple[Any, ...]) -> bool:
        """Whether a derived copy under ``transforms`` has the same values and facts for
        a feed as its original (:data:`_FEED_PROPERTIES` untouched by every redaction
        profile; anonymising only drops ``created_by_ref``, which the feed resolves as
        :meth:`~exchange.node.read.Reading.deliver` does). Any other transform: no."""
        if self.policy is None:
            return False
        profiles = self.policy.current().redaction_profiles
        for transform in transforms:
            if isinstance(transform, Redact):
                profile = profiles[transform.profile]
                if _FEED_PROPERTIES & (set(profile.drop) | set(profile.replace)):
                    return False
            elif not isinstance(transform, AnonymiseProducer):
                return False
        return True

    def _engine_verdicts(self, principal: Principal, collection: Collection, now: int
                         ) -> Callable[[FeedValue], bool] | None:
        """Whether the policy engine lets the reader receive a row the SQL filter let
        through (channel ``feed``), decided once per contributor and level; None
        without a policy (the baseline is the SQL filter itself)."""
        if self.policy is None:
            return None
        policy = self.policy.current()
        recipient = self.recipient(principal, FEED_CHANNEL)
        alias = collection.alias or collection.id

        def judge(row: FeedValue) -> bool:
            level = Tlp(row.effective_tlp)
            meta = ObjectMeta(
                id=row.id, type="indicator", producer_org_name=self.org_name(row.producer_org),
                tlp=level, tlp_explicit=row.tlp is not None,
                red_recipients=(principal.identity_id,) if level is Tlp.RED else (),
                revoked=False, date_added=row.date_added, collection_alias=alias)
            decision = decide(policy, recipient, meta, now=now)
            if not decision.allowed:
                log.warning("flat feed: the SQL filter let %s %s through to %s, the policy"
                            " engine refuses it (%s); left out", row.effective_tlp, row.id,
                            principal.account_name, decision.rule)
            return decision.allowed

        return judge

    def _resolved_authors(self, principal: Principal, collection: Collection,
                          scope: ObjectQuery, transforms: tuple[Any, ...],
                          authors: set[str]) -> dict[str, str | None]:
        """The id a reader of copies knows each author by (None: dropped), resolved as
        :meth:`~exchange.node.read.Reading.deliver` resolves a copy's references."""
        if not authors or self.policy is None:
            return {}
        result = ReadResult(collection, Page([], more=False), transforms, principal.org_id,
                            scope)
        resolved = self._resolve(result, self.policy.current(), authors)
        for ref in authors & self._providers_hidden(result):
            resolved[ref] = None
        return resolved

    def _collect_indexed(self, principal: Principal, collection: Collection,
                         scope: ObjectQuery, transforms: tuple[Any, ...],
                         kinds: tuple[str, ...], filters: FeedFilters, now: int,
                         lines: dict[str, FeedLine]) -> int:
        """:meth:`_build` from the observable index: for a reader of stored bytes, and
        for a reader of copies that keep the feed's values and facts
        (:meth:`_copies_keep_feed_facts`), whose lines name the copies' ids and its view
        of their authors, the copies' ids recorded as a read records them.

        Validity is judged on the text first: STIX timestamps
        (``YYYY-MM-DDTHH:MM:SS[.s]Z``) order as text to the second, so only a bound in
        the current second (or one that is not such a timestamp) is parsed; the next
        expiry is taken at the start of its second (at worst a rebuild that early).
        """
        rows = self.store.feed_values(scope, kinds, with_labels=filters.reads_labels)
        judge = self._engine_verdicts(principal, collection, now)
        own = principal.org_id
        hidden = any(isinstance(t, AnonymiseProducer) for t in transforms)
        authors = self._resolved_authors(
            principal, collection, scope, transforms,
            {r.author for r in rows if r.author and r.producer_org != own}
        ) if transforms and not hidden else {}
        copies: list[DerivedIdEntry] = []
        key_of_transforms = transform_key(transforms)
        ceiling = filters.tlp_ceiling.rank
        oldest = filters.oldest(now)
        by_labels = filters.reads_labels
        # Per (contributor, level): under the ceiling, the contributor as shown, whether
        # the reader gets copies; and the engine's verdict, judged on the first row of
        # the group that the feed's filters keep.
        groups: dict[tuple[str | None, str], tuple[bool, str, bool]] = {}
        verdicts: dict[tuple[str | None, str], bool] = {}
        second = from_micros(now)[:19]
        expires = _FOREVER
        soonest = "~"  # after every timestamp's text
        unindexed: list[str] = []  # indicators with a value too long for the index
        count = len(rows)
        index = 0
        while index < count:
            row = rows[index]
            (date_added, identifier, version, producer, marked, level, kind, key,
             valid_from, valid_until, author, labels, confidence) = row
            index += 1
            if index < count and rows[index][0] == date_added:  # more values of it
                end = index + 1
                while end < count and rows[end][0] == date_added:
                    end += 1
                values = sorted({(value_of_key(r.kind, r.key) or "", r.kind)
                                 for r in rows[index - 1:end]})
                value: str | None = None if any(not v for v, _ in values) else values[0][0]
                kind = values[0][1]
                more = tuple(values[1:])
                index = end
            else:
                value = (key if kind != "domain" and not key.startswith("#") else
                         value_of_key(kind, key))
                more = ()
            group = (producer, level)
            facts = groups.get(group)
            if facts is None:
                copy = bool(transforms) and producer != own
                contributor = "" if copy and hidden else self.org_name(producer) or ""
                facts = groups[group] = (Tlp(level).rank <= ceiling, contributor, copy)
            under, contributor, copy = facts
            if not under or (oldest is not None and version < oldest) or (
                    by_labels and not filters.admits_labels(labels, confidence)):
                continue
            if judge is not None:
                verdict = verdicts.get(group)
                if verdict is None:
                    verdict = verdicts[group] = judge(row)
                if not verdict:
                    continue
            valid_from = valid_from or ""
            # valid_from >= second is valid_from[:19] >= second: both are decided within
            # the first 19 characters, or by valid_from's being longer.
            if valid_from >= second:  # this second or later (or not a timestamp)
                begins = _micros(valid_from)
                if begins is not None and begins > now:
                    expires = min(expires, begins)
                    continue
            if valid_until:
                if valid_until[:19] <= second:
                    ends = _micros(valid_until)
                    if ends is not None:
                        if ends <= now:
                            continue
                        expires = min(expires, ends)
                elif valid_until[:19] < soonest:
                    soonest = valid_until[:19]
            else:
                valid_until = ""
            if value is None:
                unindexed.append(identifier)
                continue
            shown, author = identifier, author or ""
            if copy:  # the reader gets a copy
                shown = derived_id(identifier, transforms)
                valid_from = _copy_timestamp(valid_from)
                valid_until = _copy_timestamp(valid_until)
                copies.append(DerivedIdEntry(shown, identifier, key_of_transforms))
                if hidden:
                    author = ""
                elif author:
                    author = authors.get(author) or ""
            lines[identifier] = (
                date_added, identifier, version, producer, marked, level, value, kind, more,
                contributor, author, valid_from, valid_until, shown)
        if copies or authors:
            self._record_derived(copies + [
                DerivedIdEntry(seen, original, key_of_transforms)
                for original, seen in authors.items()
                if seen is not None and seen != original])
        if soonest != "~":
            at = _micros(soonest + "Z")
            if at is not None:
                expires = min(expires, at)
        for first in range(0, len(unindexed), _RESOLVE_IDS):
            chunk = tuple(unindexed[first:first + _RESOLVE_IDS])
            expires = min(expires, self._collect(principal, collection,
                                                 replace(scope, ids=chunk), transforms,
                                                 kinds, filters, now, lines))
        return expires

    def _collect(self, principal: Principal, collection: Collection, scope: ObjectQuery,
                 transforms: tuple[Any, ...], kinds: tuple[str, ...], filters: FeedFilters,
                 now: int, lines: dict[str, FeedLine]) -> int:
        """Add to ``lines`` the values of the indicators ``scope`` reads, as the reader
        receives them; return when the answer next changes by the clock alone (an
        indicator expiring or becoming valid)."""
        parsed = self._parsed
        hidden = any(isinstance(t, AnonymiseProducer) for t in transforms)
        oldest = filters.oldest(now)
        expires = _FOREVER
        query = scope
        while True:
            page = self.store.get_objects(query)
            if not page.rows:
                break
            result = ReadResult(collection, page, transforms, principal.org_id, scope)
            delivery = self.deliver(result)
            for row, body in zip(delivery.result.page.rows, delivery.bodies, strict=True):
                if row.revoked or Tlp(row.effective_tlp).rank > filters.tlp_ceiling.rank or (
                        oldest is not None and row.version < oldest):
                    continue
                digest = (row.body_sha256 if body is row.body and row.body_sha256
                          else sha256(body).digest())
                info = parsed.get(digest)
                if info is None:
                    info = _parse(body)
                    if len(parsed) >= _PARSED_SIZE:
                        parsed.clear()
                    parsed[digest] = info
                if info.revoked or not filters.admits_labels(info.labels, info.confidence):
                    continue
                if info.valid_from is not None and info.valid_from > now:
                    expires = min(expires, info.valid_from)
                    continue
                if info.valid_until is not None:
                    if info.valid_until <= now:
                        continue
                    expires = min(expires, info.valid_until)
                named = sorted((value, k) for k, value in info.values if k in kinds)
                if not named:
                    continue
                first, kind = named[0]
                own = row.producer_org == principal.org_id
                contributor = "" if hidden and not own else (
                    self.org_name(row.producer_org) or "")
                shown = self.shown_id(result, row)
                lines[row.id] = (
                    row.date_added, row.id, row.version, row.producer_org, row.tlp,
                    row.effective_tlp, first, kind, tuple(named[1:]), contributor,
                    info.author, info.valid_from_text, info.valid_until_text, shown)
            if not page.more:
                break
            query = replace(scope, cursor=page.rows[-1].date_added)
        return expires
