"""The MISP feed of a collection: what a member's MISP reads when it subscribes to the
exchange as a feed of source format "MISP Feed" (no API key of the MISP given out).

A MISP feed is three kinds of file under one URL (MISP's ``Feed`` model fetches them):

* ``manifest.json``: an object keyed by event UUID; each value is the event's summary
  (``info``, ``date``, ``timestamp``, ``Orgc``, ``Tag``, ``threat_level_id``,
  ``analysis``, ``published``, ``uuid``). MISP adds the events it does not hold and
  re-reads those whose ``timestamp`` is newer than its copy's.
* ``<event uuid>.json``: ``{"Event": {...}}``, the whole event with its attributes.
* ``hashes.csv``: one ``<md5 of a value>,<event uuid>`` line per attribute value (each
  part of a composite ``a|b`` value too), for MISP's feed cache and correlation.

The events are those of the MISP push (:func:`exchange.node.mispmap.map_for_target`)
for the reader on channel ``feed``: the read is the flat feeds' (the SQL visibility
filter and the delivery of :class:`~exchange.node.read.Reading`, so derived and redacted
copies are what is mapped), and the mapping judges each object again with the policy
(channel ``feed``) and keeps its RED lock. Distributions follow DESIGN.md decision 7 with
no sharing group (a feed cannot create one on the subscriber's instance): CLEAR 3,
GREEN 1, AMBER, AMBER+STRICT and RED 0. They hold on the subscriber's MISP when the feed
is added with distribution "Inherit from feed" (5); any other setting makes MISP replace
them with the feed's own. Revoked indicators the reader received before come as
attributes with ``deleted`` true, as in the push. An event's ``timestamp`` is the newest
``date_added`` (seconds) of the versions in it, and each attribute's that of its
indicator, so MISP re-reads an event when something in it changed here (MISP compares
whole seconds: a change within the same second as the version a subscriber already
fetched reaches it with the next change to that event).
``Orgc`` is the contributor (or ``cert-exchange <api root>``, for report and grouping
events and where the policy hides contributors), named by a UUIDv5 of its name under
:data:`~exchange.node.mispmap.NAMESPACE`.

The files of one reader and collection are built together and kept (like the flat
feeds) until the policy, the reader's visibility or the collection's newest
``date_added`` changes, or :data:`_MAX_AGE` seconds pass (agreement windows).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from exchange.errors import ConfigError
from exchange.model.objects import Principal, Tlp
from exchange.node.base import ReadResult, now_micros
from exchange.node.feeds import strong_etag
from exchange.node.mispmap import (
    NAMESPACE,
    MispEvent,
    PushOptions,
    SourceObject,
    map_for_target,
)
from exchange.node.read import Reading
from exchange.policy import AnonymiseProducer
from exchange.storage.base import ObjectQuery, Page, StoredVersion

__all__ = ["MISP_FEED_TYPES", "MispFeed", "MispFeedFile", "MispFeeds", "value_hashes"]

#: The channel of the policy and of the ledger the MISP feed is read through.
_CHANNEL: Final = "feed"
#: The STIX types read for the feed (markings for the levels of custom markings).
MISP_FEED_TYPES: Final = ("indicator", "report", "grouping", "marking-definition")
_PAGE: Final = 5000
_CACHE_ENTRIES: Final = 32
#: Seconds a built feed is reused at most (agreement windows and embargoes are timed).
_MAX_AGE: Final = 60


@dataclass(frozen=True, slots=True)
class MispFeedFile:
    """One file of a MISP feed.

    Attributes:
        body: The bytes served (JSON or CSV).
        etag: The strong entity tag (quoted), the digest of ``body``.
        result: The object versions the file discloses (recorded before it is sent).
    """

    body: bytes
    etag: str
    result: ReadResult


@dataclass(frozen=True, slots=True)
class MispFeed:
    """The files of one reader's MISP feed of one collection.

    Attributes:
        manifest: ``manifest.json`` (discloses every version mapped: titles and tags).
        hashes: ``hashes.csv`` (discloses every version mapped: digests of values).
        events: Event UUID -> ``<uuid>.json`` (discloses the versions in that event).
        last_modified: When this process first built this manifest (epoch seconds).
    """

    manifest: MispFeedFile
    hashes: MispFeedFile
    events: Mapping[str, MispFeedFile]
    last_modified: int


@dataclass(slots=True)
class _Cached:
    context: tuple[Any, ...]
    newest: int
    built: float  # time.monotonic()
    feed: MispFeed


def _dumps(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def value_hashes(attribute: Mapping[str, Any]) -> list[str]:
    """The MD5 digests MISP's feed cache keeps of an attribute's value: the whole value,
    or each part of a composite (``ip-dst|port``) one."""
    value = str(attribute.get("value", ""))
    kind = str(attribute.get("type", ""))
    parts = value.split("|") if "|" in kind else [value]
    return [hashlib.md5(part.encode("utf-8"), usedforsecurity=False).hexdigest()
            for part in parts]


def _org(name: str) -> dict[str, str]:
    return {"name": name, "uuid": str(uuid.uuid5(NAMESPACE, f"org/{name}"))}


class MispFeeds(Reading):
    """MISP-format feeds of a collection (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._misp_cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._misp_lock = threading.Lock()

    def misp_feed(self, principal: Principal, api_root: str, collection_ref: str, *,
                  now: int | None = None) -> MispFeed:
        """A reader's MISP feed of a collection, built or cached.

        Nothing is disclosed here: the caller records the served file's
        :attr:`MispFeedFile.result` with :meth:`~exchange.node.read.Reading.disclose`
        (channel ``feed``) before the body leaves.

        Raises:
            NotFound: The collection is not visible to the reader.
            PermissionDenied: The reader may see but not read the collection.
            ConfigError: The node runs without a sharing policy (the MISP feed maps with
                the policy's rules and has no baseline of its own).
            StorageError: The database failed.
        """
        collection = self.readable_collection(principal, api_root, collection_ref,
                                              _CHANNEL)
        if self.policy is None:
            raise ConfigError("the MISP feed needs a sharing policy (policy_dir); this node"
                              " runs without one")
        policy = self.policy.current()
        now = now_micros() if now is None else now
        rule = self.rule_for(principal, collection, _CHANNEL)
        transforms = rule.transforms if rule is not None else ()
        scope = self.visibility(principal, ObjectQuery(
            collection_id=collection.id, types=MISP_FEED_TYPES, limit=_PAGE), rule)
        newest = self.store.newest_date_added(collection.id)
        context = self.reader_context(principal, scope, transforms)
        key = (principal.account_id, collection.id)
        with self._misp_lock:
            cached = self._misp_cache.get(key)
            if (cached is not None and cached.context == context and cached.newest == newest
                    and time.monotonic() - cached.built < _MAX_AGE):
                self._misp_cache.move_to_end(key)
                return cached.feed

        hidden = any(isinstance(t, AnonymiseProducer) for t in transforms)
        alias = collection.alias or collection.id
        try:
            default_tlp = Tlp(collection.default_tlp)
        except ValueError:
            default_tlp = Tlp.AMBER
        rows: dict[str, StoredVersion] = {}
        sources: list[SourceObject] = []
        query = scope
        for _ in range(1_000_000):
            page = self.store.get_objects(query)
            if not page.rows:
                break
            delivery = self.deliver(ReadResult(collection, page, transforms,
                                               principal.org_id, scope))
            result = delivery.result
            for row, delivered in zip(result.page.rows, delivery.bodies, strict=True):
                own = row.producer_org == principal.org_id
                producer = None if hidden and not own else self.org_name(row.producer_org)
                obj = json.loads(delivered)
                rows[str(obj.get("id", row.id))] = row
                # The read already judged revocations by prior receipt (the SQL filter).
                sources.append(SourceObject(obj, producer, alias, default_tlp,
                                            received_earlier=row.revoked))
            if not page.more:
                break
            query = replace(scope, cursor=page.rows[-1].date_added)

        mapping = map_for_target(sources, policy=policy,
                                 recipient=self.recipient(principal, _CHANNEL),
                                 options=PushOptions(), now=now)
        node_org = _org(f"cert-exchange {api_root}")
        stamps: dict[str, int] = {}  # attribute uuid -> seconds
        in_event: dict[str, list[StoredVersion]] = {}
        for item in mapping.mapped:
            row = rows[item.object_id]
            seconds = row.date_added // 1_000_000
            for attribute_uuid in item.attribute_uuids:
                stamps[attribute_uuid] = seconds
            in_event.setdefault(item.event_uuid, []).append(row)
        all_rows = [row for versions in in_event.values() for row in versions]

        def result_of(selected: list[StoredVersion]) -> ReadResult:
            ordered = sorted(selected, key=lambda r: r.date_added)
            return ReadResult(collection, Page([replace(r, body=b"") for r in ordered],
                                               more=False), transforms, principal.org_id,
                              scope)

        manifest: dict[str, Any] = {}
        hash_lines: list[str] = []
        events: dict[str, MispFeedFile] = {}
        for event in mapping.events:
            body = self._event_body(event, stamps, in_event.get(event.uuid, []), node_org)
            manifest[event.uuid] = {k: body[k] for k in (
                "info", "date", "timestamp", "Orgc", "Tag", "threat_level_id", "analysis",
                "published", "uuid")}
            for attribute in body["Attribute"]:
                if not attribute.get("deleted"):
                    hash_lines.extend(f"{h},{event.uuid}" for h in value_hashes(attribute))
            data = _dumps({"Event": body})
            events[event.uuid] = MispFeedFile(data, strong_etag(data),
                                              result_of(in_event.get(event.uuid, [])))
        manifest_body = _dumps(manifest)
        hashes_body = "".join(line + "\n" for line in sorted(hash_lines)).encode("ascii")
        last_modified = int(time.time())
        if cached is not None and cached.feed.manifest.etag == strong_etag(manifest_body):
            last_modified = cached.feed.last_modified
        everything = result_of(all_rows)
        feed = MispFeed(MispFeedFile(manifest_body, strong_etag(manifest_body), everything),
                        MispFeedFile(hashes_body, strong_etag(hashes_body), everything),
                        events, last_modified)
        with self._misp_lock:
            self._misp_cache[key] = _Cached(context, newest, time.monotonic(), feed)
            self._misp_cache.move_to_end(key)
            while len(self._misp_cache) > _CACHE_ENTRIES:
                self._misp_cache.popitem(last=False)
        return feed

    @staticmethod
    def _event_body(event: MispEvent, stamps: Mapping[str, int],
                    versions: list[StoredVersion], node_org: dict[str, str]
                    ) -> dict[str, Any]:
        """The event as a feed file holds it: the push's event, with timestamps, its
        creating organisation and ``published``."""
        body = dict(event.body)
        attributes = []
        for mapped in body.get("Attribute", []):
            attribute = dict(mapped)
            seconds = stamps.get(str(attribute.get("uuid")))
            if seconds is not None:
                attribute["timestamp"] = str(seconds)
            attributes.append(attribute)
        body["Attribute"] = attributes
        newest = max((r.date_added for r in versions), default=0) // 1_000_000
        body["timestamp"] = str(newest)
        body["publish_timestamp"] = str(newest)
        body["published"] = True
        producer = next((t["name"].split('"')[1] for t in body.get("Tag", [])
                         if t.get("name", "").startswith('cert-exchange:contributor="')),
                        None)
        body["Orgc"] = _org(producer) if producer else node_org
        return body
