"""Finding things: which objects a principal may receive name a value, and who said so.

A search is a read: it runs over the collections the principal may read, with the same
visibility filter in the same query (:meth:`~exchange.node.base.NodeBase.visibility`), so
a hit never reveals an object the principal may not receive; derived-copy transforms
apply, so a hit names the id the reader knows and shows what the reader's copy says; and
every hit is a disclosure in the audit ledger (channel ``taxii:search``), recorded before
the answer leaves. A hit whose value the reader's copy no longer holds (a redaction
dropped it) is left out, since reporting it would tell what was redacted.

:meth:`Searching.search` looks a value up in the observable index
(:mod:`exchange.model.observables`); :meth:`Searching.lookup` finds one object by id,
for ``exchange show``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from exchange.errors import InvalidInput
from exchange.model.objects import Principal
from exchange.model.observables import SearchTerm, observables_of, search_terms
from exchange.node.base import ReadResult
from exchange.node.read import Reading
from exchange.policy import AnonymiseProducer, Transform
from exchange.storage.base import Collection, ObjectQuery, ObservableSearch, Page, StoredVersion

#: The channel search disclosures are recorded under.
SEARCH_CHANNEL = "taxii:search"
#: The largest page of hits.
MAX_HITS = 1000


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One object a search found, as the reader knows it.

    Attributes:
        id: The id the reader knows (a derived copy's id where a transform applies).
        type: The STIX type.
        collection: The collection's alias, or its id.
        contributor: The organisation that published it; None when the policy hides the
            producer from this reader.
        created_by_ref: The author the reader's copy names (None: none).
        tlp: The effective TLP level.
        version: The version's ``modified`` (or ``created``) timestamp, if it has one.
        valid_from: For indicators, when the indicator starts to be valid.
        valid_until: For indicators, when it stops being valid.
        revoked: Whether this version revokes the object.
        signed_kid: The key of the cx-sig signature the node verified at ingest, when
            the reader gets the signed bytes; None for unsigned objects and copies.
        matched: The values of the object that answer the search (normal form).
        date_added: When the node stored the version (µs since the epoch).
        body: The bytes the reader receives.
    """

    id: str
    type: str
    collection: str
    contributor: str | None
    created_by_ref: str | None
    tlp: str
    version: str | None
    valid_from: str | None
    valid_until: str | None
    revoked: bool
    signed_kid: str | None
    matched: tuple[str, ...]
    date_added: int
    body: bytes = field(repr=False)

    def as_dict(self, *, with_object: bool = False) -> dict[str, Any]:
        """The hit as the search API answers it (``object`` only when asked for)."""
        data: dict[str, Any] = {
            "id": self.id, "type": self.type, "collection": self.collection,
            "contributor": self.contributor, "created_by_ref": self.created_by_ref,
            "tlp": self.tlp, "version": self.version, "revoked": self.revoked,
            "signed_kid": self.signed_kid, "matched": list(self.matched),
        }
        if self.type == "indicator":
            data["valid_from"] = self.valid_from
            data["valid_until"] = self.valid_until
        if with_object:
            data["object"] = json.loads(self.body)
        return data


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of hits; ``next`` is the cursor of the following page (None: no more)."""

    query: str
    hits: list[SearchHit]
    next: int | None


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) else None


class Searching(Reading):
    """Search and lookup over the collections a principal may read."""

    def _scopes(self, principal: Principal, api_root: str
                ) -> dict[str, tuple[Collection, ObjectQuery, tuple[Transform, ...]]]:
        """Per readable collection: the visibility filter and the transforms in force."""
        scopes: dict[str, tuple[Collection, ObjectQuery, tuple[Transform, ...]]] = {}
        for collection, access in self.visible_collections(principal, api_root):
            if not access.can_read:
                continue
            rule = self.rule_for(principal, collection)
            query = self.visibility(principal, ObjectQuery(collection_id=collection.id), rule)
            scopes[collection.id] = (collection, query,
                                     rule.transforms if rule is not None else ())
        return scopes

    def search(self, principal: Principal, api_root: str, value: str, *,
               subdomains: bool = False, limit: int = 100, after: int | None = None,
               with_objects: bool = False) -> SearchResult:
        """The objects the principal may receive that name ``value``, oldest first.

        Args:
            principal: Who asks.
            api_root: The API root searched.
            value: An IP address or network, domain, URL, e-mail address or hash.
            subdomains: For a domain, find its subdomains too.
            limit: Page size, 1 to :data:`MAX_HITS`.
            after: The ``next`` of the previous page.
            with_objects: Whether the caller serves the objects too (the ledger then
                names the digest of each object served).

        Raises:
            InvalidInput: ``value`` is not a searchable value, or ``limit`` is out of range.
            StorageError: The database or the ledger failed; nothing may be answered.
        """
        term = search_terms(value, subdomains=subdomains)
        if not 1 <= limit <= MAX_HITS:
            raise InvalidInput(f"limit must be from 1 to {MAX_HITS}")
        scopes = self._scopes(principal, api_root)
        page = self.store.search_observables(ObservableSearch(
            kinds=term.kinds, keys=term.keys, prefix=term.prefix,
            scopes=tuple(query for _, query, _ in scopes.values()),
            after=after, limit=limit))
        hits = self._serve(principal, scopes, page.rows, term, with_objects=with_objects)
        return SearchResult(term.value, hits,
                            page.rows[-1].date_added if page.more and page.rows else None)

    def lookup(self, principal: Principal, api_root: str, object_id: str) -> list[SearchHit]:
        """The newest version of an object the principal may receive, per collection.

        Recorded in the ledger as a disclosure of the object (channel ``taxii:search``).

        Raises:
            StorageError: The database or the ledger failed.
        """
        scopes = self._scopes(principal, api_root)
        rows: list[StoredVersion] = []
        for _, query, _ in scopes.values():
            rows.extend(self.store.get_objects(replace(query, ids=(object_id,), limit=1)).rows)
        rows.sort(key=lambda row: row.date_added)
        return self._serve(principal, scopes, rows, None, with_objects=True)

    def _serve(self, principal: Principal,
               scopes: Mapping[str, tuple[Collection, ObjectQuery, tuple[Transform, ...]]],
               rows: Sequence[StoredVersion], term: SearchTerm | None, *,
               with_objects: bool) -> list[SearchHit]:
        """The hits of ``rows`` as the reader receives them, disclosed before returned."""
        by_collection: dict[str, list[StoredVersion]] = defaultdict(list)
        for row in rows:
            by_collection[row.collection_id].append(row)
        hits: list[SearchHit] = []
        for collection_id, found in by_collection.items():
            collection, scope, transforms = scopes[collection_id]
            # The read's own visibility: references in derived copies resolve under it.
            delivery = self.deliver(ReadResult(collection, Page(found, more=False),
                                               transforms, principal.org_id, scope))
            result = delivery.result  # without the copies withheld as incoherent
            kept_rows, kept_bodies = [], []
            for row, body in zip(result.page.rows, delivery.bodies, strict=True):
                hit = self._hit(result, row, body, term)
                if hit is not None:
                    hits.append(hit)
                    kept_rows.append(row)
                    kept_bodies.append(body)
            if kept_rows:
                self.disclose(principal, replace(result, page=Page(kept_rows, more=False)),
                              SEARCH_CHANNEL, kept_bodies if with_objects else None)
        hits.sort(key=lambda hit: hit.date_added)
        return hits

    def _hit(self, result: ReadResult, row: StoredVersion, body: bytes,
             term: SearchTerm | None) -> SearchHit | None:
        copy = json.loads(body)
        matched: tuple[str, ...] = ()
        if term is not None:
            matched = tuple(o.value for o in observables_of(copy) if term.matches(o))
            if not matched:
                return None  # the reader's copy no longer names the value
        own = row.producer_org == result.reader_org
        hidden = not own and any(isinstance(t, AnonymiseProducer) for t in result.transforms)
        served_as_stored = body is row.body
        return SearchHit(
            id=self.shown_id(result, row), type=row.type,
            collection=result.collection.alias or result.collection.id,
            contributor=None if hidden else self.org_name(row.producer_org),
            created_by_ref=_text(copy, "created_by_ref"), tlp=row.effective_tlp,
            version=_text(copy, "modified") or _text(copy, "created"),
            valid_from=_text(copy, "valid_from"), valid_until=_text(copy, "valid_until"),
            revoked=bool(copy.get("revoked", row.revoked)),
            signed_kid=row.signed_kid if served_as_stored else None,
            matched=matched, date_added=row.date_added, body=body)
