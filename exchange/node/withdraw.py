"""Withdrawing an object from a collection: TAXII DELETE (TAXII 2.1 section 5.7), for admins.

A DELETE on this node is an operator's act, and recipients that already hold the object
must hear of it. So it is for admin accounts only (a member withdraws its own objects by
publishing a revoked version, ``exchange revoke``), and it does not erase: the node
stores a revoked version of the newest version
(:func:`exchange.signing.revocation.revoked_version`), signed with the node's own key,
with the same contributor, marking and RED recipients. Every reader that could receive
the object therefore receives the revocation: a SOC polling with ``added_after`` gets it
as a new version on its next poll, and a default read (latest version) serves only the
revoked one. The earlier versions stay stored, as
the ledger's disclosure records refer to them and the versions endpoint lists them.

Objects STIX 2.1 cannot revoke (no ``modified``: cyber-observables, marking
definitions) are removed outright; nothing can tell their recipients. A publisher may
DELETE its own organisation's contribution of a cyber-observable (several members may
contribute the same one, docs/adr/0001-sco-contributions.md): that removes its
contribution only, as an admin record; the others' stay.

The revoked version, its publish record and the admin record commit in one transaction.
Every refused DELETE is a denial in the ledger with its rule: ``deny-delete-not-admin``,
``deny-delete-not-found`` (and ``deny-no-grant`` from the collection lookup).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exchange.audit.records import Publish, Published
from exchange.errors import Conflict, InvalidInput, InvalidObject, NotFound, PermissionDenied
from exchange.model.objects import OrgId, Principal, Role
from exchange.model.stix import validate_object
from exchange.node.auditing import admin_record
from exchange.node.base import NodeBase, current_request_id, now_micros
from exchange.node.publish import version_to_store
from exchange.signing.canonical import normal_form
from exchange.signing.cxsig import sign_object
from exchange.signing.revocation import revoked_version
from exchange.storage.base import (
    AddOutcome,
    AddResult,
    Collection,
    ObjectQuery,
    Status,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.timestamps import from_micros

__all__ = ["CHANNEL", "Withdrawal", "Withdrawing"]

log = logging.getLogger(__name__)

#: The channel DELETE requests are recorded under.
CHANNEL = "taxii:delete_object"


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """What a DELETE did.

    Attributes:
        object_id: The object.
        outcome: ``revoked`` (a node-signed revoked version was stored),
            ``already-revoked`` (nothing new) or ``deleted`` (a type without versions,
            removed outright).
        version: The revoked version's ``modified`` (``revoked``), else None.
        signed_kid: The node key that signed it, or None.
        removed: Versions removed (``deleted`` only).
    """

    object_id: str
    outcome: Literal["revoked", "already-revoked", "deleted"]
    version: str | None = None
    signed_kid: str | None = None
    removed: int = 0


class Withdrawing(NodeBase):
    def delete_object(self, principal: Principal, api_root: str, collection_ref: str,
                      object_id: str, query: ObjectQuery) -> Withdrawal:
        """Withdraw an object from a collection (TAXII DELETE; module docstring).

        Args:
            principal: Who asks; only admin accounts may.
            api_root, collection_ref: The collection.
            object_id: The object.
            query: ``match[version]`` and ``match[spec_version]``; this node withdraws
                whole objects, so only ``all`` (or nothing) is accepted.

        Raises:
            NotFound: No such collection for this principal, or no such object in it.
            PermissionDenied: The principal is not an admin.
            InvalidInput: A version or spec-version filter was given.
            StorageError: The database or the ledger failed; nothing changed.
        """
        collection, access = self.collection_for(principal, api_root, collection_ref,
                                                 channel=CHANNEL)
        if principal.role is not Role.ADMIN:
            own = self._own_unversioned(principal, collection, object_id, access.can_write)
            if own is not None:
                if query.spec_versions or not query.versions.all:
                    raise InvalidInput(
                        "a cyber-observable has no versions to choose: leave out"
                        " match[version] and match[spec_version]")
                return self._remove(principal, collection, object_id, {
                    "collection": collection.id, "org": principal.org_name,
                    "versions": "all", "producer": principal.org_name}, producer=own)
            self._deny(principal, collection, CHANNEL, "deny-delete-not-admin",
                       f"{principal.account_name} ({principal.role.value}) asked to delete"
                       f" {object_id[:120]}; only admin accounts may")
            raise PermissionDenied(
                "only admin accounts may delete objects; a publisher withdraws its own"
                " objects with 'exchange revoke', and its own cyber-observables (which"
                " have no versions to revoke) with DELETE"
            )
        if query.spec_versions or not query.versions.all:
            raise InvalidInput(
                "this node withdraws whole objects: leave out match[version] and"
                " match[spec_version] (or give match[version]=all)"
            )
        page = self.store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=(object_id,), limit=1,
            versions=VersionMatch.latest(), include_body=True))
        if not page.rows:
            self._deny(principal, collection, CHANNEL, "deny-delete-not-found",
                       f"{object_id[:120]} is not in collection {collection.id}")
            raise NotFound(f"object {object_id!r} not found")
        newest = page.rows[0]
        details: dict[str, str | int | bool | None] = {
            "collection": collection.id, "org": principal.org_name, "versions": "all",
            "producer": self.org_name(newest.producer_org)}
        if newest.revoked:
            record = admin_record("object.delete", object_id,
                                  {**details, "outcome": "already-revoked"},
                                  actor=principal.account_name, request_id=current_request_id())
            self.store.append_audit([record])
            return Withdrawal(object_id, "already-revoked")
        data = json.loads(newest.body)
        if "modified" not in data:
            return self._remove(principal, collection, object_id, details)
        return self._revoke(principal, collection, newest, data, details)

    def _own_unversioned(self, principal: Principal, collection: Collection,
                         object_id: str, can_write: bool) -> OrgId | None:
        """The publisher's organisation, when ``object_id`` is a type without versions
        (a cyber-observable, which STIX 2.1 cannot revoke) that this organisation
        contributed to the collection: it may withdraw its own contribution with DELETE,
        and only its own (docs/adr/0001-sco-contributions.md)."""
        if principal.role is not Role.PUBLISHER or not can_write:
            return None
        page = self.store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=(object_id,), limit=1,
            versions=VersionMatch.latest(), include_body=True,
            visible_tlps=frozenset(), own_org=principal.org_id))
        mine = [row for row in page.rows if row.producer_org == principal.org_id]
        if not mine or "modified" in json.loads(mine[0].body):
            return None
        return principal.org_id

    def _remove(self, principal: Principal, collection: Collection, object_id: str,
                details: dict[str, str | int | bool | None], *,
                producer: OrgId | None = None) -> Withdrawal:
        outcome = "deleted-unversioned" if producer is None else "deleted-own-contribution"
        record = admin_record("object.delete", object_id, {**details, "outcome": outcome},
                              actor=principal.account_name, request_id=current_request_id())
        with self.store.audited([record]):
            removed = self.store.delete_object(collection.id, object_id,
                                               VersionMatch(all=True), producer_org=producer)
        log.info("%s deleted %s (%d versions; its type has no versions to revoke)",
                 principal.account_name, object_id, removed)
        return Withdrawal(object_id, "deleted", removed=removed)

    def _revoke(self, principal: Principal, collection: Collection,
                newest: StoredVersion, data: dict[str, Any],
                details: dict[str, str | int | bool | None]) -> Withdrawal:
        request = current_request_id()
        title = collection.title
        reason = (f"withdrawn from collection {title!r} by the exchange operator"
                  f" (admin account {principal.account_name}, TAXII DELETE"
                  + (f", request {request})" if request else ")"))
        revoked = revoked_version(data, reason)
        key = self.node_key()
        signed_kid: str | None = key.kid
        try:
            revoked = sign_object(normal_form(revoked), key)
        except InvalidObject as e:
            # The revocation must reach the recipients even when it cannot be signed
            # (an object without created_by_ref); it goes out unsigned and says so.
            log.warning("the revocation of %s is stored unsigned: %s", newest.id, e.reason)
            signed_kid = None
        obj = validate_object(revoked, self.limits)
        version = version_to_store(obj, producer_org=newest.producer_org, tlp=newest.tlp,
                                   effective_tlp=newest.effective_tlp, signed_kid=signed_kid)
        status = Status(
            id=str(uuid.uuid4()), api_root=self.settings.api_root,
            collection_id=collection.id, account_id=principal.account_id,
            org_id=principal.org_id, request_timestamp=now_micros(), status="complete",
            total_count=1, success_count=0, failure_count=0, pending_count=0)

        def publish_records(results: Sequence[AddResult], final: Status) -> list[Publish]:
            added = [r for r in results if r.outcome is AddOutcome.ADDED]
            return [Publish(
                time=now_micros(), channel=CHANNEL, account=principal.account_name,
                org=principal.org_name, collection=collection.id,
                policy_digest=self.policy_digest(), request_id=request or f"status:{final.id}",
                objects=tuple(Published(
                    object_id=r.id, object_version=r.version or r.date_added or 0,
                    date_added=r.date_added or 0, signed_kid=signed_kid,
                    signature="verified" if signed_kid else "unsigned") for r in added))
            ] if added else []

        record = admin_record("object.delete", newest.id, {
            **details, "outcome": "revoked", "revoked_version": obj.modified,
            "signed_kid": signed_kid}, actor=principal.account_name, request_id=request)
        with self.store.audited([record]):
            results, _ = self.store.add_objects(collection.id, [version], status,
                                                audit=publish_records)
        outcome: AddResult = results[0]
        if outcome.outcome is not AddOutcome.ADDED:
            raise Conflict(f"the revoked version of {newest.id} could not be stored"
                           f" ({outcome.outcome.value})")
        log.info("%s withdrew %s from %s: revoked version %s, signed by %s",
                 principal.account_name, newest.id, title, obj.modified, signed_kid)
        return Withdrawal(newest.id, "revoked", version=obj.modified or from_micros(0),
                          signed_kid=signed_kid)
