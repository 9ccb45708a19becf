"""The state every use-case of a node shares, and who may do what with a collection.

:class:`NodeBase` holds the settings, the store, the policy in force, the key registry
cache and the audit trail, and answers the questions every use-case asks first: which
collection a reference names for a principal (:meth:`~NodeBase.collection_for`), what
that principal may do with it, and which stored versions it may receive
(:meth:`~NodeBase.visibility`, the SQL side of the policy engine). A refusal of a
collection is a denial in the ledger. The use-case mixins (:mod:`.members`,
:mod:`.publish`, :mod:`.read`, :mod:`.explain`) build on it, and
:class:`~exchange.node.service.Exchange` combines them.

Also here: the request scope the HTTP adapter opens (a memo of resolved collections and
the request id the audit records carry) and the node's clock.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from exchange.audit.records import Admin, Denial
from exchange.config import Settings
from exchange.errors import NotFound
from exchange.model.limits import Limits
from exchange.model.objects import CollectionId, OrgId, Principal, Role, Tlp
from exchange.node.auditing import AuditTrail, admin_record, os_actor
from exchange.node.derive import Derived
from exchange.node.identity import node_identity_id
from exchange.node.keyring import RegistryCache
from exchange.node.policy_source import PolicySource
from exchange.policy import Channel, Recipient, Transform, VisibilityRule, visible_levels
from exchange.signing.keys import SigningKey
from exchange.storage.base import Collection, ObjectQuery, Page, Store

log = logging.getLogger(__name__)

#: Per-request memo of resolved collections; the HTTP adapter opens one scope per request
#: so that the several lookups medallion's views make cost one database round trip.
_request_memo: contextvars.ContextVar[dict[tuple[str, str, str], tuple[Any, Any]] | None] = (
    contextvars.ContextVar("cx_request_memo", default=None))

#: The id of the HTTP request being served (the TAXII adapter sets it), for audit records.
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cx_request_id", default=None)

#: The policy digest recorded when no sharing policy is configured: the built-in baseline
#: (module docstring) is named by the digest of this description.
BASELINE_POLICY_DIGEST = "sha256:" + hashlib.sha256(
    b"cx-policy-digest v1\nbuilt-in baseline: CLEAR, GREEN, AMBER to readers; AMBER+STRICT"
    b" to members; RED to its producer\n").hexdigest()


def channel_of(principal: Principal, channel: Channel) -> Channel:
    """The channel a principal receives over: a peer node's account (role ``peer``)
    reading over TAXII (or ``pull``) receives on channel ``peer``."""
    if principal.role is Role.PEER and channel in ("taxii", "pull"):
        return "peer"
    return channel


def current_request_id() -> str | None:
    """The id of the HTTP request being served, if any (see :func:`set_request_id`)."""
    return _request_id.get()


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Access:
    """What a principal may do with one collection."""

    can_read: bool
    can_write: bool

    @property
    def visible(self) -> bool:
        """Whether the collection exists for this principal at all."""
        return self.can_read or self.can_write


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A page read for one principal, with the transforms its policy requires."""

    collection: Collection
    page: Page
    transforms: tuple[Transform, ...]
    reader_org: OrgId
    #: The read's query with the reader's visibility applied: references in derived
    #: copies are resolved under the same filter (:meth:`Reading.deliver`).
    scope: ObjectQuery | None = None


class NodeBase:
    """The state the use-cases share, over one store. Constructing it does no I/O."""

    def __init__(self, settings: Settings, store: Store, *,
                 policy: PolicySource | None = None) -> None:
        self.settings = settings
        self.store = store
        self.limits = Limits.from_settings(settings)
        self.policy = policy
        #: The exchange's own identity: producer of derived copies.
        self.node_identity = node_identity_id(settings.title)
        #: Member and node keys trusted for verifying signatures at ingest.
        self.registry_cache = RegistryCache(store, ttl_seconds=settings.cache_seconds,
                                            node_identity=self.node_identity)
        #: The audit ledger: disclosures, publishes, denials, admin changes (issue 5).
        self.audit = AuditTrail(settings, store)
        #: Who makes administrative changes through this instance, for the ledger
        #: (the command line: ``cli:<OS user>``).
        self.actor = os_actor()
        self._org_names: dict[str, str] = {}
        if policy is not None:
            policy.on_change = self._policy_changed

        # Collections a principal may see, for settings.cache_seconds (grant changes
        # take effect within that time, like key revocations).
        self._collection_cache: dict[tuple[str, str, str],
                                     tuple[tuple[Collection, Access], float]] = {}
        self._rule_cache: dict[tuple[str, str, str, str], tuple[VisibilityRule, float]] = {}
        # Successful authentications, for settings.cache_seconds (a revoked key stops
        # working within that time); keyed by the HMAC of the secret, never the secret.
        self._auth_cache: dict[tuple[str, str, bytes], tuple[Principal, float]] = {}
        # Derived copies by (original version, transforms, policy digest, node key,
        # resolved references), and derived ids known to be recorded (exchange.node.read).
        self._copies: dict[tuple[Any, ...], Derived] = {}
        self._recorded_ids: set[str] = set()

    def node_key(self) -> SigningKey:
        """The node's own signing key (registered with purpose ``node``), which signs the
        copies it derives and its checkpoints; loaded on first use.

        Raises:
            ConfigError: The key or its passphrase cannot be read.
            StorageError: The database failed.
        """
        return self.audit.signing_key()

    def _policy_changed(self, old: str | None, new: str) -> None:
        """A new policy is about to take effect: record it first (PolicySource.on_change)."""
        self.audit.record_policy(new, actor="node:policy-files")

    def record_policy_in_force(self) -> bool:
        """Record the policy in force if the ledger does not say so yet (server start: the
        files may have changed while the node was down). False when nothing was new."""
        return self.audit.record_policy(self.policy_digest(), actor="node:policy-files")

    # -- audit records -------------------------------------------------------------------
    def _admin(self, action: str, target: str,
               details: dict[str, str | int | bool | None]) -> Admin:
        """The ledger's record of an administrative change made through this instance."""
        return admin_record(action, target, details, actor=self.actor,
                            request_id=_request_id.get())

    def policy_digest(self) -> str:
        """The digest of the sharing policy in force (the baseline's without one)."""
        return self.policy.current().digest if self.policy is not None else BASELINE_POLICY_DIGEST

    def org_name(self, org_id: str | None) -> str | None:
        """An organisation's name by id (cached: names never change)."""
        if org_id is None:
            return None
        name = self._org_names.get(org_id)
        if name is None:
            name = self.store.get_org(OrgId(org_id)).name
            self._org_names[org_id] = name
        return name

    def access(self, principal: Principal, collection: Collection) -> Access:
        """What ``principal`` may do with ``collection``."""
        grant = self.store.grant_for(collection.id, principal.org_id)
        can_read = principal.role is Role.ADMIN or bool(grant and grant.can_read)
        can_write = bool(grant and grant.can_write) and principal.role in (
            Role.PUBLISHER,
            Role.ADMIN,
        )
        return Access(can_read=can_read, can_write=can_write)

    def collection_for(self, principal: Principal, api_root: str, ref: str, *,
                       channel: str = "taxii") -> tuple[Collection, Access]:
        """A collection the principal can see, by id or alias.

        Every refusal is recorded in the audit ledger as a denial: ``deny-no-grant`` for
        a collection the principal may neither read nor write, ``deny-no-such-collection``
        for a reference that names none. Both answer the same NotFound and do the same
        work (a collection lookup, a grant lookup, one ledger record), so that neither the
        answer nor its timing tells a hidden collection from a missing one.

        Raises:
            NotFound: No such collection, or the principal may neither read nor write it.
            StorageError: The refusal could not be recorded.
        """
        memo = _request_memo.get()
        key = (principal.account_id, api_root, ref)
        if memo is not None and key in memo:
            return memo[key]
        cached = self._collection_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            collection = self.store.get_collection(api_root, ref)
        except NotFound:
            # the grant lookup a hidden collection costs, so both refusals do one each
            self.store.grant_for(CollectionId(ref), principal.org_id)
            shown = printable_ref(ref)
            self._deny(principal, shown, channel, "deny-no-such-collection",
                       f"no collection {shown!r} in API root {printable_ref(api_root)!r}")
            raise NotFound(f"collection {ref!r} not found") from None
        access = self.access(principal, collection)
        if not access.visible:
            self._deny(principal, collection.id, channel, "deny-no-grant",
                       f"{principal.org_name} has no grant on collection {ref!r}")
            raise NotFound(f"collection {ref!r} not found")
        if memo is not None:
            memo[key] = (collection, access)
        if self.settings.cache_seconds > 0:
            if len(self._collection_cache) > 10_000:
                self._collection_cache.clear()
            self._collection_cache[key] = ((collection, access),
                                           time.monotonic() + self.settings.cache_seconds)
        return collection, access

    def visible_collections(self, principal: Principal, api_root: str
                            ) -> list[tuple[Collection, Access]]:
        """The collections of an API root the principal may read or write."""
        out = []
        for collection in self.store.list_collections(api_root):
            access = self.access(principal, collection)
            if access.visible:
                out.append((collection, access))
        return out

    # -- what a reader may receive ----------------------------------------------------
    def recipient(self, principal: Principal, channel: Channel = "taxii") -> Recipient:
        """The policy engine's view of a principal receiving over ``channel``.

        A peer node's account (role ``peer``) reading over TAXII receives on channel
        ``peer``, for the organisation it serves (its account's).
        """
        parent = self.org_name(principal.parent_org_id)
        return Recipient(org_name=principal.org_name, org_identity=principal.identity_id,
                         parent_org_name=parent, account_name=principal.account_name,
                         role=principal.role.value, channel=channel_of(principal, channel))

    def rule_for(self, principal: Principal, collection: Collection,
                 channel: Channel = "taxii") -> VisibilityRule | None:
        """The policy's visibility rule for a reader of a collection (None: no policy)."""
        if self.policy is None:
            return None
        policy = self.policy.current()
        # A rule depends on the time only through agreement windows and embargoes, given
        # to the second in the policy files: reusing it for one second changes nothing.
        channel = channel_of(principal, channel)
        key = (principal.account_id, collection.id, channel, policy.digest)
        cached = self._rule_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        rule = visible_levels(policy, self.recipient(principal, channel),
                              collection.alias or collection.id, now=now_micros())
        if len(self._rule_cache) > 10_000:
            self._rule_cache.clear()
        self._rule_cache[key] = (rule, time.monotonic() + 1.0)
        return rule

    def visibility(self, principal: Principal, query: ObjectQuery,
                   rule: VisibilityRule | None = None) -> ObjectQuery:
        """Apply what the principal may receive to a read query (done in the database).

        With a policy, the rule of :func:`exchange.policy.visible_levels` becomes the SQL
        filter (a property test keeps the two in agreement). Without one, a conservative
        baseline: CLEAR, GREEN and AMBER to readers of the collection, AMBER+STRICT to
        member organisations only, RED to its producer only.

        A peer node (role ``peer``) never receives what its organisation contributed
        (no loop-back, issue 20): objects imported from that peer are contributed by it,
        and so are never served back to it as new versions.
        """
        peer = principal.role is Role.PEER
        own = None if peer else principal.org_id
        excluded = principal.org_id if peer else None
        if rule is not None:
            return replace(query, visible_tlps=frozenset(lvl.value for lvl in rule.levels),
                           own_org=own, red_identity=rule.red_recipient_identity,
                           revoked_needs_prior=rule.revoked_needs_prior_receipt,
                           exclude_producer=excluded)
        if self.policy is not None:
            return replace(query, visible_tlps=frozenset(), own_org=own,
                           exclude_producer=excluded)
        allowed = {Tlp.CLEAR.value, Tlp.GREEN.value, Tlp.AMBER.value}
        if principal.parent_org_id is None and not peer:
            allowed.add(Tlp.AMBER_STRICT.value)
        return replace(query, visible_tlps=frozenset(allowed), own_org=own,
                       exclude_producer=excluded)

    def _deny(self, principal: Principal, collection: Collection | str, channel: str,
              rule: str, reason: str) -> None:
        """Record a refusal of a collection (or of a collection reference that names
        none, given as printable text) in the audit ledger."""
        target = collection.id if isinstance(collection, Collection) else collection
        self.audit.record([Denial(
            time=now_micros(), channel=channel, recipient_account=principal.account_name,
            recipient_org=principal.org_name, collection=target, rule=rule,
            reason=reason[:_MAX_REASON], policy_digest=self.policy_digest(),
            request_id=_request_id.get() or f"local:{uuid.uuid4().hex}")])


#: How much of a collection reference that names nothing the ledger keeps.
MAX_SHOWN_REF = 120
#: What a denial's reason may hold (the ledger's limit on ``reason``).
_MAX_REASON = 1000
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def printable_ref(ref: str) -> str:
    """A client's collection reference as the ledger records it: control characters and
    lone surrogates replaced by ``?``, at most :data:`MAX_SHOWN_REF` characters (marked
    ``...`` when cut), never empty."""
    shown = _UNPRINTABLE.sub("?", ref)
    if len(shown) > MAX_SHOWN_REF:
        shown = shown[:MAX_SHOWN_REF - 3] + "..."
    return shown or "(empty)"


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Name the request being served, for the audit records it causes."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    """Forget the request id set by :func:`set_request_id`."""
    _request_id.reset(token)


def begin_request_scope() -> contextvars.Token[Any]:
    """Start memoising lookups for one request; pass the token to :func:`end_request_scope`."""
    return _request_memo.set({})


def end_request_scope(token: contextvars.Token[Any]) -> None:
    """Forget the request's memo."""
    _request_memo.reset(token)
