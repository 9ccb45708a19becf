"""Explaining: would a recipient receive the newest version of an object, and why.

Judges stored objects with the pure policy engine (:func:`exchange.policy.decide`) for an
account or organisation by name, under the policy in force or one being tried; used by
``exchange policy explain`` and the auditor API.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from exchange.errors import ConfigError, NotFound
from exchange.model.objects import Role, Tlp
from exchange.node.base import NodeBase, now_micros
from exchange.node.derive import transform_key
from exchange.policy import (
    Channel,
    Decision,
    ObjectMeta,
    PolicySet,
    Recipient,
    decide,
    red_recipients_of,
)
from exchange.storage.base import Collection, DerivedIdEntry, ObjectQuery

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Explanation:
    """One policy decision about one stored object in one collection."""

    collection: Collection
    object: ObjectMeta
    recipient: Recipient
    decision: Decision
    #: When asked about a derived copy: its id and the transforms it was made under
    #: (``object`` is then its original).
    copy: DerivedIdEntry | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, for the HTTP explain endpoint and ``--json``."""
        d = self.decision
        out = {"collection": self.collection.alias or self.collection.id,
               "object_id": self.object.id, "recipient": self.recipient.account_name
               or self.recipient.org_name, "channel": self.recipient.channel,
               "allowed": d.allowed, "rule": d.rule, "reason": d.reason,
               "transforms": [str(t) for t in d.transforms],
               "policy_digest": d.policy_digest}
        if self.copy is not None:
            out["derived_id"] = self.copy.derived_id
            out["derived_transforms"] = self.copy.transforms
            out["copy_served"] = self.copy_served
        return out

    @property
    def copy_served(self) -> bool:
        """Whether the recipient receives this very copy (allowed, under its transforms)."""
        return (self.copy is not None and self.decision.allowed
                and transform_key(self.decision.transforms) == self.copy.transforms)

    def describe_copy(self) -> str:
        """One line on the derived copy asked about (empty when none was)."""
        if self.copy is None:
            return ""
        served = ("and the recipient receives this copy" if self.copy_served else
                  "but the recipient does not receive this copy")
        return (f"{self.copy.derived_id} is the exchange's copy of {self.object.id} under"
                f" {self.copy.transforms}, {served}")


class Explaining(NodeBase):
    """Judging stored objects for a named recipient under a policy."""

    def recipient_named(self, name: str, channel: Channel = "taxii") -> Recipient:
        """The policy view of an account, or of an organisation as a whole.

        Raises:
            NotFound: No account or organisation has that name.
        """
        orgs = {o.id: o for o in self.store.list_orgs()}
        account_name: str | None = None
        role = "consumer"
        try:
            account = self.store.find_account(name)
            org = orgs[account.org_id]
            account_name, role = account.name, account.role.value
            if account.role is Role.PEER and channel in ("taxii", "pull"):
                channel = "peer"  # a peer node's account reads on channel peer
        except NotFound:
            try:
                org = self.store.find_org(name)
            except NotFound:
                raise NotFound(f"no account or organisation named {name!r}") from None
        parent = orgs[org.parent_id].name if org.parent_id in orgs else None
        return Recipient(org_name=org.name, org_identity=org.identity_id,
                         parent_org_name=parent, account_name=account_name, role=role,
                         channel=channel)

    def explain(self, object_id: str, recipient_name: str, *,
                collection_ref: str | None = None, channel: Channel = "taxii",
                policy: PolicySet | None = None) -> list[Explanation]:
        """Would a recipient receive the newest stored version of an object, and why.

        Args:
            object_id: The STIX id.
            recipient_name: An account or organisation name.
            collection_ref: Limit to one collection (id or alias); default: all.
            channel: The path out to judge.
            policy: The policy to judge under (default: the one in force).

        A derived copy's id (one the node has served or referenced) is explained as its
        original, with the copy named in :attr:`Explanation.copy`.

        Raises:
            ConfigError: No policy is configured.
            NotFound: The object is not stored (nor a copy of a stored one), or the
                recipient is unknown.
        """
        if policy is None:
            if self.policy is None:
                raise ConfigError("no sharing policy is configured (policy_dir)")
            policy = self.policy.current()
        recipient = self.recipient_named(recipient_name, channel)
        api_root = self.settings.api_root
        collections = ([self.store.get_collection(api_root, collection_ref)]
                       if collection_ref else self.store.list_collections(api_root))
        names = {o.id: o.name for o in self.store.list_orgs()}
        out: list[Explanation] = []
        now = now_micros()
        for collection in collections:
            page = self.store.get_versions(ObjectQuery(
                collection_id=collection.id, ids=(object_id,), limit=10_000))
            if not page.rows:
                continue
            row = page.rows[-1]
            meta = ObjectMeta(
                id=row.id, type=row.type,
                producer_org_name=names.get(row.producer_org) if row.producer_org else None,
                tlp=Tlp(row.effective_tlp), tlp_explicit=row.tlp is not None,
                red_recipients=red_recipients_of(json.loads(row.body)), revoked=row.revoked,
                date_added=row.date_added, collection_alias=collection.alias or collection.id)
            decision = decide(policy, recipient, meta, now=now)
            if recipient.role == Role.PEER.value and meta.producer_org_name == recipient.org_name:
                # the node's read filter, not a policy rule (NodeBase.visibility)
                decision = replace(decision, allowed=False, rule="deny-peer-loop-back",
                                   reason=f"{recipient.org_name} contributed {meta.id}: a peer"
                                          " node never receives back what came from it",
                                   transforms=())
            out.append(Explanation(collection, meta, recipient, decision))
        if not out:
            entry = self.store.original_of(object_id)
            if entry is None:
                raise NotFound(f"object {object_id!r} is not stored, nor a copy the"
                               " exchange has derived")
            found = self.explain(entry.original_id, recipient_name,
                                 collection_ref=collection_ref, channel=channel,
                                 policy=policy)
            return [replace(e, copy=entry) for e in found]
        return out
