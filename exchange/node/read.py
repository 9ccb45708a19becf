"""Reading: what a principal may receive from a collection, the bytes it gets, and the
disclosure records written before they leave.

The policy filter runs in the database (:meth:`~exchange.node.base.NodeBase.visibility`);
:meth:`Reading.deliver` serves stored bytes unchanged or the derived copy a transform
calls for; :meth:`Reading.disclose` records every row served, with the rule that let it
through, before the response leaves.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from hashlib import sha256 as _sha256
from operator import attrgetter, is_

from exchange.audit.records import DisclosureBatch
from exchange.audit.spool import already_durable
from exchange.errors import ConfigError, PermissionDenied
from exchange.model.objects import OrgId, Principal, Tlp
from exchange.node.base import NodeBase, ReadResult, current_request_id, now_micros
from exchange.node.derive import derive, derived_id
from exchange.policy import ObjectMeta, decide
from exchange.storage.base import Collection, ObjectQuery, StoredVersion

log = logging.getLogger(__name__)

# The columns of a page's rows that disclose reads, in C (operator.attrgetter).
_PRODUCER_AND_LEVEL = attrgetter("producer_org", "effective_tlp")
_ID = attrgetter("id")
_VERSION = attrgetter("version")
_DATE_ADDED = attrgetter("date_added")

_BODY = attrgetter("body")
_BODY_SHA256 = attrgetter("body_sha256")


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
        collection, access = self.collection_for(principal, api_root, collection_ref)
        if not access.can_read:
            self._deny(principal, collection, "taxii", "deny-no-read-grant",
                       f"{principal.org_name} may write but not read collection"
                       f" {collection_ref!r}")
            raise PermissionDenied(f"you may not read collection {collection_ref!r}")
        rule = self.rule_for(principal, collection)
        q = self.visibility(principal, replace(query, collection_id=collection.id), rule)
        if versions_of is not None:
            page = self.store.get_versions(replace(q, ids=(versions_of,)))
        else:
            page = self.store.get_objects(q)
        transforms = rule.transforms if rule is not None else ()
        return ReadResult(collection, page, transforms, principal.org_id)

    def deliver(self, result: ReadResult) -> list[bytes]:
        """The bytes a reader receives for a page: stored bytes, or derived copies.

        Rows the reader's organisation produced, and rows no transform applies to, are
        served byte for byte. Otherwise the reader gets the derived copy that names its
        original (:func:`exchange.node.derive.derive`); the original is never altered.
        """
        out: list[bytes] = []
        for row in result.page.rows:
            if not result.transforms or row.producer_org == result.reader_org:
                out.append(row.body)
                continue
            if self.policy is None:  # transforms only ever come from a policy
                raise ConfigError("a transform was requested without a policy in force")
            out.append(derive(json.loads(row.body), result.transforms,
                              self.policy.current(), node_identity=self.node_identity))
        return out

    def disclose(self, principal: Principal, result: ReadResult, channel: str,
                 bodies: Sequence[bytes] | None = None, *, wait: bool = True
                 ) -> Callable[[], None]:
        """Record what a response is about to disclose; call before it leaves.

        One :class:`~exchange.audit.records.Disclosure` per :data:`MAX_ENTRIES` rows,
        appended as one batch in one transaction, with per row the digest of the bytes
        served (``bodies``, as :meth:`deliver` made them; None when only versions or
        manifest entries are served), the producer, the effective TLP level and the
        rule that let it through.

        Args:
            principal, result, channel, bodies: What is served, to whom and how.
            wait: Return once the records are durable. With False the caller renders
                the response while they are synced, and must call the returned function
                before the response leaves.

        Returns:
            Waits until the records are durable (returns at once with ``wait``).

        Raises:
            StorageError: The ledger could not be written: do not serve the response
                (without ``wait``, a failed sync is raised by the returned function).
        """
        rows = result.page.rows
        if not rows:
            return already_durable
        rule_of = self._rule_namer(principal, result.collection)
        # A full page is a thousand rows: this is the ledger's cost per object, so it
        # works column by column, mostly in C, and leaves rendering the records to the
        # sequencer (DisclosureBatch). The producer, level and rule of a row depend only
        # on its producer and level: one group per pair, named from its first row.
        keys = list(map(_PRODUCER_AND_LEVEL, rows))
        first = dict(zip(reversed(keys), reversed(rows), strict=True))
        handles: dict[tuple[OrgId | None, str], int] = {}
        groups: list[tuple[str | None, str, str]] = []
        for key, row in first.items():
            handles[key] = len(groups)
            groups.append((self.org_name(key[0]), key[1], rule_of(row)))
        transforms, reader = result.transforms, result.reader_org
        batch = DisclosureBatch(
            time=now_micros(), channel=channel, recipient_account=principal.account_name,
            recipient_org=principal.org_name, collection=result.collection.id,
            policy_digest=self.policy_digest(),
            request_id=current_request_id() or f"local:{uuid.uuid4().hex}",
            groups=groups,
            # The same ids as shown_id.
            object_ids=list(map(_ID, rows)) if not transforms else
            [row.id if row.producer_org == reader else derived_id(row.id, transforms)
             for row in rows],
            object_versions=list(map(_VERSION, rows)),
            dates_added=list(map(_DATE_ADDED, rows)),
            digests=None if bodies is None else _served_digests(rows, bodies),
            group_of=list(map(handles.__getitem__, keys)))
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
        """The id a reader knows a row by (the derived id when a transform applies)."""
        if result.transforms and row.producer_org != result.reader_org:
            return derived_id(row.id, result.transforms)
        return row.id

    def object_visible(self, principal: Principal, collection: Collection,
                       object_id: str) -> bool:
        """Whether any version of the object is visible to the principal."""
        probe = self.visibility(
            principal,
            ObjectQuery(collection_id=collection.id, ids=(object_id,), limit=1,
                        include_body=False),
            self.rule_for(principal, collection),
        )
        return bool(self.store.get_versions(probe).rows)
