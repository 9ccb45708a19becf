"""Publishing: validate a TAXII envelope object by object, verify signatures, store.

Envelope-level problems refuse the request; each object is then judged on its own and
reported in a status resource: a bad object is never partly stored, the good objects of
the same envelope are. The stored versions and the ledger's publish records are written
in one transaction. Also here: deleting versions (TAXII 2.1 section 5.7) and reading a
status resource back.

The publishing organisation is every stored version's *contributor* (``producer_org``,
what policy decides by and whose key must sign); ``created_by_ref`` is the *author*,
which may be the contributor, a non-member or nobody, never another registered
organisation (:func:`check_authorship`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

from exchange.audit.records import Publish, Published
from exchange.errors import ExchangeError, NotFound, PermissionDenied
from exchange.model.envelope import parse_envelope
from exchange.model.objects import Principal, Role, StixObject, Tlp
from exchange.model.stix import is_observable, validate_object
from exchange.model.tlp import is_standard_tlp_definition
from exchange.node.auditing import admin_record, chunks
from exchange.node.base import BASELINE_POLICY_DIGEST, NodeBase, current_request_id, now_micros
from exchange.node.keyring import verify_for_ingest
from exchange.policy import PolicySet, inline_markings, level_of, red_recipients_of
from exchange.policy.tlp import marking_refs_of
from exchange.storage.base import (
    AddOutcome,
    AddResult,
    Collection,
    IdOwnership,
    NewVersion,
    ObjectQuery,
    Status,
    StatusDetail,
    VersionMatch,
)
from exchange.storage.timestamps import from_micros, to_micros

log = logging.getLogger(__name__)

class Publishing(NodeBase):
    # -- publishing ----------------------------------------------------------------------
    def publish(self, principal: Principal, api_root: str, collection_ref: str,
                body: bytes, *, channel: str = "taxii:add_objects") -> Status:
        """Validate and store one TAXII envelope; report per object in a status resource.

        Envelope-level problems (malformed JSON, too many objects, not an envelope)
        refuse the whole request. Each object is then judged on its own: a bad object
        is reported as a failure and never partly stored, and the good objects of the
        same envelope are stored.

        Raises:
            NotFound: The collection does not exist for this principal.
            PermissionDenied: The principal may not write to it.
            MalformedJSON, LimitExceeded, InvalidInput: The envelope as a whole.
            StorageError: The database (or the audit ledger) failed; nothing was stored.
        """
        collection, access = self.collection_for(principal, api_root, collection_ref,
                                                 channel=channel)
        if not access.can_write:
            self._deny(principal, collection, channel, "deny-no-write-grant",
                       f"{principal.account_name} ({principal.role.value}) may not add objects"
                       f" to collection {collection_ref!r}")
            raise PermissionDenied(f"you may not add objects to collection {collection_ref!r}")
        request_time = now_micros()
        candidates = parse_envelope(body, self.limits)
        policy = self.policy.current() if self.policy is not None else None
        inline = inline_markings(c for c in candidates if isinstance(c, dict))
        required = self.signatures_required(collection, policy)
        registry = self.registry_cache.get()
        registered = self.registered_identities()
        failures: list[StatusDetail] = []
        versions: list[NewVersion] = []
        for index, candidate in enumerate(candidates):
            try:
                obj = validate_object(candidate, self.limits)
                check_authorship(principal, obj, registered)
                tlp = (level_of(marking_refs_of(obj.data), policy, inline)
                       if policy is not None else obj.tlp)
                signed_kid = verify_for_ingest(
                    registry, obj.data, contributor_identity=principal.identity_id,
                    recorded_at=request_time,
                    required=required and not is_standard_tlp_definition(obj.type, obj.id))
                versions.append(self._new_version(principal, collection, obj, tlp,
                                                  signed_kid))
            except ExchangeError as e:
                failures.append(StatusDetail(
                    id=_candidate_field(candidate, "id") or f"objects[{index}]",
                    version=(_candidate_field(candidate, "modified")
                             or _candidate_field(candidate, "created") or ""),
                    message=e.reason,
                ))
        status = Status(
            id=str(uuid.uuid4()),
            api_root=api_root,
            collection_id=collection.id,
            account_id=principal.account_id,
            org_id=principal.org_id,
            request_timestamp=request_time,
            status="complete",
            total_count=len(candidates),
            success_count=0,
            failure_count=len(failures),
            pending_count=0,
            failures=tuple(failures),
        )
        policy_digest = policy.digest if policy is not None else BASELINE_POLICY_DIGEST

        def audit(results: Sequence[AddResult], final: Status) -> list[Publish]:
            stored = [
                Published(object_id=r.id, object_version=r.version or r.date_added or 0,
                          date_added=r.date_added or 0, signed_kid=v.signed_kid,
                          signature="verified" if v.signed_kid else "unsigned")
                for r, v in zip(results, versions, strict=True)
                if r.outcome is AddOutcome.ADDED
            ]
            return [
                Publish(time=now_micros(), channel=channel, account=principal.account_name,
                        org=principal.org_name, collection=collection.id,
                        policy_digest=policy_digest,
                        request_id=current_request_id() or f"status:{final.id}",
                        objects=tuple(part))
                for part in chunks(stored)
            ]

        _, final = self.store.add_objects(collection.id, versions, status, audit=audit)
        log.info(
            "publish by %s to %s: %d objects, %d succeeded, %d failed (status %s)",
            principal.account_name, collection.title, final.total_count,
            final.success_count, final.failure_count, final.id,
        )
        return final

    def signatures_required(self, collection: Collection, policy: PolicySet | None) -> bool:
        """Whether objects published to ``collection`` must carry a valid signature.

        The policy's binding of the collection decides when a policy is in force;
        otherwise the collection's own setting (``--require-signatures``).
        """
        if policy is not None:
            binding = policy.collections.get(collection.alias or collection.id)
            if binding is not None:
                return bool(binding.require_signatures)
        return collection.require_signatures

    def registered_identities(self) -> dict[str, str]:
        """Identity id -> name of every registered organisation, and the node's own.

        Read at every publish (one small query), so an organisation's identity is
        reserved from the moment it is registered.

        Raises:
            StorageError: The database failed.
        """
        names: dict[str, str] = {org.identity_id: org.name for org in self.store.list_orgs()}
        names.setdefault(self.node_identity, NODE_IDENTITY_NAME)
        return names

    def _new_version(self, principal: Principal, collection: Collection,
                     obj: StixObject, tlp: Tlp | None, signed_kid: str | None
                     ) -> NewVersion:
        return NewVersion(
            id=obj.id,
            type=obj.type,
            spec_version=obj.spec_version,
            version=to_micros(obj.version) if obj.version else None,
            created=to_micros(obj.created) if obj.created else None,
            modified=to_micros(obj.modified) if obj.modified else None,
            producer_org=principal.org_id,
            tlp=tlp.value if tlp else None,
            effective_tlp=tlp.value if tlp else collection.default_tlp,
            revoked=obj.revoked,
            body=obj.canonical,
            signed_kid=signed_kid,
            red_recipients=red_recipients_of(obj.data),
            ownership=ownership_of(principal, obj),
        )

    def delete_object(self, principal: Principal, api_root: str, collection_ref: str,
                      object_id: str, query: ObjectQuery) -> int:
        """Delete versions of an object (TAXII 2.1 section 5.7).

        Only the producing organisation's publishers, or an admin, may delete; a
        publisher deletes its own organisation's contributions only.

        Raises:
            NotFound: The object is not visible.
            PermissionDenied: The principal may not delete it.
        """
        collection, access = self.collection_for(principal, api_root, collection_ref)
        if not (access.can_read and access.can_write):
            raise PermissionDenied(f"you may not delete from collection {collection_ref!r}")
        page = self.store.get_versions(self.visibility(principal, ObjectQuery(
            collection_id=collection.id, ids=(object_id,), limit=1, include_body=False),
            self.rule_for(principal, collection)))
        if not page.rows:
            raise NotFound(f"object {object_id!r} not found")
        # A publisher deletes its own contributions only: an SCO other members also
        # contributed keeps theirs (docs/adr/0001-sco-contributions.md).
        producer = None if principal.role is Role.ADMIN else principal.org_id
        if producer is not None and not self.store.get_versions(ObjectQuery(
                collection_id=collection.id, ids=(object_id,), limit=1, include_body=False,
                visible_tlps=frozenset(), own_org=producer)).rows:
            raise PermissionDenied("only the organisation that created an object may delete it")
        record = admin_record("object.delete", object_id, {
            "collection": collection.id, "org": principal.org_name,
            "versions": _describe_versions(query.versions),
        }, actor=principal.account_name, request_id=current_request_id())
        with self.store.audited([record]):
            deleted = self.store.delete_object(collection.id, object_id, query.versions,
                                               query.spec_versions, producer_org=producer)
        log.info("%s deleted %d version(s) of %s from %s", principal.account_name, deleted,
                 object_id, collection.title)
        return deleted

    def status(self, principal: Principal, api_root: str, status_id: str) -> Status:
        """A status resource, shown only to the organisation that submitted it.

        Raises:
            NotFound: Unknown id or another organisation's submission.
        """
        try:
            status = self.store.get_status(api_root, status_id)
        except NotFound:
            raise NotFound(f"status {status_id!r} not found") from None
        if status.org_id != principal.org_id and principal.role is not Role.ADMIN:
            raise NotFound(f"status {status_id!r} not found")
        return status


#: How the node's own identity is named in refusals.
NODE_IDENTITY_NAME = "this exchange node"


def check_authorship(principal: Principal, obj: StixObject, registered: Mapping[str, str]
                     ) -> None:
    """Refuse an object that claims another registered organisation's identity.

    The publishing organisation is the object's contributor whatever the object says;
    ``created_by_ref`` is its author and may name the contributor itself, a non-member
    (a vendor whose report is relayed) or nobody (DESIGN.md decision 8). What no
    member may do is name another member, or the node, as author, or publish an
    ``identity`` object under another registered organisation's identity id (issue 18
    item 2): a registered identity belongs to its organisation alone.

    Args:
        principal: The publisher.
        obj: The validated object.
        registered: Identity id -> name of every registered organisation and the node
            (:meth:`Publishing.registered_identities`).

    Raises:
        PermissionDenied: The object claims another registered identity.
    """
    own = principal.identity_id
    author = obj.created_by_ref
    if author is not None and author != own and author in registered:
        raise PermissionDenied(
            f"created_by_ref {author} is the registered identity of {registered[author]};"
            f" you may publish objects authored by your own organisation ({own}), by a"
            " non-member, or with no author, never in another member's name"
        )
    if obj.type == "identity" and obj.id != own and obj.id in registered:
        raise PermissionDenied(
            f"{obj.id} is the registered identity of {registered[obj.id]}; only"
            f" {registered[obj.id]} may publish an identity object under it"
        )


def ownership_of(principal: Principal, obj: StixObject) -> IdOwnership:
    """Who may add versions of the object's id (:class:`IdOwnership`).

    SCOs: every contributor keeps its own versions (docs/adr/0001-sco-contributions.md);
    the standard TLP definitions: anyone may re-post them; an organisation's own
    identity object: earlier contributions under that id by others do not block it;
    everything else: the first contributor only.
    """
    if is_observable(obj.data):
        return IdOwnership.CONTRIBUTOR
    if is_standard_tlp_definition(obj.type, obj.id):
        return IdOwnership.OPEN
    if obj.type == "identity" and obj.id == principal.identity_id:
        return IdOwnership.REGISTERED
    return IdOwnership.CREATOR


def _describe_versions(match: VersionMatch) -> str:
    """``match[version]`` as the ledger shows it: ``all``, ``first,last``, timestamps."""
    if match.all:
        return "all"
    parts = [name for name, on in (("first", match.first), ("last", match.last)) if on]
    parts += [from_micros(v) for v in match.exact]
    return ",".join(parts)[:512] or "last"


def _candidate_field(candidate: object, name: str) -> str | None:
    if isinstance(candidate, dict):
        value = candidate.get(name)
        if isinstance(value, str) and len(value) <= 200:
            return value
    return None
