"""Publishing: validate a TAXII envelope object by object, verify signatures, store.

Envelope-level problems refuse the request; each object is then judged on its own and
reported in a status resource: a bad object is never partly stored, the good objects of
the same envelope are. The stored versions and the ledger's publish records are written
in one transaction. Also here: reading a status resource back. (Deleting, TAXII 2.1
section 5.7, is a withdrawal by an admin: :mod:`exchange.node.withdraw`.)

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
from exchange.errors import ExchangeError, NotFound, PermissionDenied, PolicyDenied
from exchange.model.envelope import parse_envelope, refuse_stix20
from exchange.model.objects import OrgId, Principal, Role, StixObject, Tlp
from exchange.model.stix import custom_content_of, is_observable, validate_object
from exchange.model.tlp import is_standard_tlp_definition
from exchange.node.auditing import chunks
from exchange.node.base import BASELINE_POLICY_DIGEST, NodeBase, current_request_id, now_micros
from exchange.node.keyring import verify_for_ingest
from exchange.policy import PolicySet, inline_markings, level_of, red_recipients_of
from exchange.policy.tlp import split_marking_refs
from exchange.storage.base import (
    AddOutcome,
    AddResult,
    Collection,
    IdOwnership,
    NewVersion,
    Status,
    StatusDetail,
)
from exchange.storage.timestamps import to_micros

log = logging.getLogger(__name__)


class Publishing(NodeBase):
    """Publishing envelopes, deleting versions, reading status resources back."""

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
        refuse_stix20(candidates)
        policy = self.policy.current() if self.policy is not None else None
        custom_rule = self.custom_content_rule(collection, policy)
        inline = inline_markings(c for c in candidates if isinstance(c, dict))
        required = self.signatures_required(collection, policy)
        registry = self.registry_cache.get()
        registered = self.registered_identities()
        failures: list[StatusDetail] = []
        versions: list[NewVersion] = []
        for index, candidate in enumerate(candidates):
            try:
                obj = validate_object(candidate, self.limits)
                if custom_rule != "accept":
                    _check_custom_content(obj, custom_rule)
                check_authorship(principal, obj, registered)
                if policy is not None:
                    object_level, granular = split_marking_refs(obj.data)
                    tlp = level_of(object_level, policy, inline, granular=granular)
                else:
                    tlp = obj.tlp
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

    def custom_content_rule(self, collection: Collection, policy: PolicySet | None) -> str:
        """The policy's ``custom_content`` for ``collection`` (``accept`` without a binding)."""
        if policy is not None:
            binding = policy.collections.get(collection.alias or collection.id)
            if binding is not None:
                return binding.custom_content
        return "accept"

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
        return version_to_store(
            obj, producer_org=principal.org_id, tlp=tlp.value if tlp else None,
            effective_tlp=tlp.value if tlp else collection.default_tlp,
            signed_kid=signed_kid, ownership=ownership_of(principal, obj))

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


def _check_custom_content(obj: StixObject, rule: str) -> None:
    """Refuse custom content a collection's policy binding does not take."""
    found = custom_content_of(obj.data)
    if found.custom_type:
        raise PolicyDenied(
            f"{obj.id}: objects of type {obj.type!r}, which STIX 2.1 does not define, are"
            f" refused in this collection (policy: custom_content {rule})"
        )
    if rule == "predefined-only" and found.properties:
        names = ", ".join(found.properties[:5]) + (" ..." if len(found.properties) > 5 else "")
        raise PolicyDenied(
            f"{obj.id}: custom properties ({names}) are refused in this collection"
            f" (policy: custom_content {rule})"
        )


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


def version_to_store(obj: StixObject, *, producer_org: OrgId | None, tlp: str | None,
                     effective_tlp: str, signed_kid: str | None,
                     ownership: IdOwnership = IdOwnership.CREATOR) -> NewVersion:
    """The stored version of a validated object: its times as microseconds, its RED
    recipients, the contributor and the levels the caller decided."""
    return NewVersion(
        id=obj.id,
        type=obj.type,
        spec_version=obj.spec_version,
        version=to_micros(obj.version) if obj.version else None,
        created=to_micros(obj.created) if obj.created else None,
        modified=to_micros(obj.modified) if obj.modified else None,
        producer_org=producer_org,
        tlp=tlp,
        effective_tlp=effective_tlp,
        revoked=obj.revoked,
        body=obj.canonical,
        signed_kid=signed_kid,
        red_recipients=red_recipients_of(obj.data),
        ownership=ownership,
        data=obj.data,
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


def _candidate_field(candidate: object, name: str) -> str | None:
    if isinstance(candidate, dict):
        value = candidate.get(name)
        if isinstance(value, str) and len(value) <= 200:
            return value
    return None
