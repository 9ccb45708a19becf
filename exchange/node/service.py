"""Use-cases of the exchange: set up members, authenticate, publish, read.

This module orchestrates the pure model (validation, TLP), the store and the API-key
scheme. It knows nothing about HTTP or the command line: the TAXII adapter
(:mod:`exchange.taxii`) and the CLI (:mod:`exchange.cli.main`) call it and translate its
:class:`~exchange.errors.ExchangeError` into their own answers.

Access rules applied here (the sharing-policy engine refines the read side):

* An organisation's grant on a collection says whether its accounts may read and write.
  Publishers and admins may write where their organisation may; consumers and auditors
  only read. Admins may read every collection.
* A collection an account can neither read nor write does not exist for it (404), so
  names of other members' collections do not leak.
* An account may publish only objects whose ``created_by_ref`` is its own organisation's
  identity (objects without ``created_by_ref``, such as SCOs and marking definitions,
  are attributed to the publishing organisation).
* Reads are filtered by TLP in the query. Until agreements are configured the baseline
  is conservative: CLEAR, GREEN and AMBER to any reader of the collection; AMBER+STRICT
  to member organisations only, never to constituents; RED only to its producer.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from hashlib import sha256 as _sha256
from operator import attrgetter, is_
from typing import Any

import rfc8785

from exchange.audit.records import (
    Admin,
    Denial,
    DisclosureBatch,
    Publish,
    Published,
)
from exchange.audit.spool import already_durable
from exchange.config import SECRET_FILE, Settings
from exchange.errors import (
    AuthError,
    ConfigError,
    ExchangeError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from exchange.model.envelope import parse_envelope
from exchange.model.limits import Limits
from exchange.model.objects import (
    AccountId,
    CollectionId,
    OrgId,
    Principal,
    Role,
    StixId,
    StixObject,
    Tlp,
)
from exchange.model.stix import validate_object
from exchange.model.tlp import is_standard_tlp_definition, parse_level
from exchange.node import apikeys
from exchange.node.auditing import AuditTrail, admin_record, chunks, os_actor
from exchange.node.derive import derive, derived_id
from exchange.node.keyring import RegistryCache, verify_for_ingest
from exchange.node.policy_source import PolicySource
from exchange.policy import (
    Channel,
    Decision,
    ObjectMeta,
    PolicySet,
    Recipient,
    Transform,
    VisibilityRule,
    decide,
    inline_markings,
    level_of,
    red_recipients_of,
    visible_levels,
)
from exchange.policy.tlp import marking_refs_of
from exchange.storage.base import (
    Account,
    AddOutcome,
    AddResult,
    ApiKey,
    Collection,
    Grant,
    NewVersion,
    ObjectQuery,
    Organisation,
    Page,
    Status,
    StatusDetail,
    Store,
    StoredVersion,
    VersionMatch,
)
from exchange.storage.timestamps import from_micros, to_micros

log = logging.getLogger(__name__)

#: Namespace for the deterministic identity ids the exchange gives organisations.
IDENTITY_NAMESPACE = uuid.UUID("6f2a4f0e-3c4b-5d8e-9a71-0c3e8b5d2f10")

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


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def stix_now() -> str:
    """The current time as a STIX timestamp with millisecond precision."""
    t = time.gmtime()
    ms = (time.time_ns() // 1_000_000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z"


@dataclass(frozen=True, slots=True)
class Access:
    """What a principal may do with one collection."""

    can_read: bool
    can_write: bool

    @property
    def visible(self) -> bool:
        """Whether the collection exists for this principal at all."""
        return self.can_read or self.can_write


def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{kind} name {name!r} is invalid: use 1-64 letters, digits, spaces, '.', '_',"
            " '@' or '-', starting with a letter or digit"
        )
    return name


def make_identity(name: str, *, identity_id: str | None = None, sector: str | None = None
                  ) -> dict[str, Any]:
    """The STIX 2.1 identity object the exchange records for an organisation.

    Args:
        name: The organisation's name.
        identity_id: An existing identity id to reuse (e.g. the one the member already
            signs with); by default a deterministic id derived from the name.
        sector: An optional STIX industry-sector-ov value.

    Raises:
        InvalidInput: ``identity_id`` is not an ``identity--<uuid>``.
    """
    if identity_id is None:
        identity_id = f"identity--{uuid.uuid5(IDENTITY_NAMESPACE, name)}"
    elif not re.fullmatch(r"identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                          r"[0-9a-f]{12}", identity_id):
        raise InvalidInput(f"{identity_id!r} is not a STIX identity id (identity--<uuid>)")
    ts = stix_now()
    identity: dict[str, Any] = {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": ts,
        "modified": ts,
        "name": name,
        "identity_class": "organization",
    }
    if sector:
        identity["sectors"] = [sector]
    return identity


def init_home(settings: Settings) -> bool:
    """Create the exchange home: directory, server secret, database schema.

    Safe to run again: an existing secret is kept and the schema is only upgraded.

    Returns:
        True when a new server secret was written.

    Raises:
        ConfigError: The home cannot be written.
        StorageError: The database cannot be reached or migrated.
    """
    created = False
    try:
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret_path = settings.home / SECRET_FILE
        if settings.server_secret is None and not secret_path.exists():
            secret_path.touch(mode=0o600)
            secret_path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
            created = True
    except OSError as e:
        raise ConfigError(f"cannot write the exchange home {settings.home}: {e.strerror}") from e
    from exchange.storage import open_store  # noqa: PLC0415 - avoid a cycle at import

    store = open_store(settings, create=True)
    try:
        store.upgrade()
        from exchange.node.nodekey import ensure_node_key  # noqa: PLC0415 - imported like open_store

        ensure_node_key(settings, store)
    finally:
        store.close()
    return created


@dataclass(frozen=True, slots=True)
class Explanation:
    """One policy decision about one stored object in one collection."""

    collection: Collection
    object: ObjectMeta
    recipient: Recipient
    decision: Decision

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, for the HTTP explain endpoint and ``--json``."""
        d = self.decision
        return {"collection": self.collection.alias or self.collection.id,
                "object_id": self.object.id, "recipient": self.recipient.account_name
                or self.recipient.org_name, "channel": self.recipient.channel,
                "allowed": d.allowed, "rule": d.rule, "reason": d.reason,
                "transforms": [str(t) for t in d.transforms],
                "policy_digest": d.policy_digest}


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A page read for one principal, with the transforms its policy requires."""

    collection: Collection
    page: Page
    transforms: tuple[Transform, ...]
    reader_org: OrgId


class Exchange:
    """The exchange's use-cases over one store. Constructing it does no I/O."""

    def __init__(self, settings: Settings, store: Store, *,
                 policy: PolicySource | None = None) -> None:
        self.settings = settings
        self.store = store
        self.limits = Limits.from_settings(settings)
        self.policy = policy
        #: The exchange's own identity: producer of derived copies.
        self.node_identity = make_identity(settings.title)["id"]
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

    # -- organisations, accounts, API keys --------------------------------------------
    def add_org(
        self,
        name: str,
        *,
        identity_id: str | None = None,
        parent: str | None = None,
        sector: str | None = None,
    ) -> Organisation:
        """Register an organisation and its STIX identity.

        Args:
            name: Unique organisation name (e.g. ``UZ-CERT``).
            identity_id: Reuse this identity id instead of deriving one from the name.
            parent: Name of the member organisation this one is a constituent of.
            sector: Optional STIX industry sector for the identity object.

        Raises:
            InvalidInput: The name or identity id is malformed.
            Conflict: The name or identity is already registered.
            NotFound: The parent organisation does not exist.
        """
        _check_name("organisation", name)
        parent_id = self.store.find_org(parent).id if parent else None
        identity = make_identity(name, identity_id=identity_id, sector=sector)
        org = Organisation(
            id=OrgId(str(uuid.uuid4())),
            name=name,
            identity_id=StixId(identity["id"]),
            identity_json=rfc8785.dumps(identity),
            created_at=now_micros(),
            parent_id=parent_id,
        )
        with self.store.audited([self._admin("org.create", org.id, {
                "name": name, "identity": org.identity_id,
                "parent": parent, "sector": sector})]):
            self.store.add_org(org)
        log.info("organisation %s added (%s)", name, org.identity_id)
        return org

    def add_account(self, name: str, *, org: str, role: str) -> Account:
        """Create an account of an organisation with one role.

        Raises:
            InvalidInput: Bad name or unknown role.
            NotFound: The organisation does not exist.
            Conflict: The account name is taken.
        """
        _check_name("account", name)
        try:
            role_value = Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidInput(f"unknown role {role!r}; use one of {roles}") from None
        organisation = self.store.find_org(org)
        account = Account(
            id=AccountId(str(uuid.uuid4())),
            name=name,
            org_id=organisation.id,
            role=role_value,
            created_at=now_micros(),
        )
        with self.store.audited([self._admin("account.create", account.id, {
                "name": name, "org": organisation.name, "role": role_value.value})]):
            self.store.add_account(account)
        log.info("account %s (%s) added to %s", name, role_value.value, organisation.name)
        return account

    def create_api_key(self, account: str, *, label: str = "") -> tuple[ApiKey, str]:
        """Mint an API key for an account. The token is returned once and never stored.

        Raises:
            NotFound: No such account.
            ConfigError: The server secret is missing.
        """
        acct = self.store.find_account(account)
        new = apikeys.mint(self.settings.secret_bytes())
        key = ApiKey(key_id=new.key_id, account_id=acct.id, created_at=now_micros(),
                     label=label)
        with self.store.audited([self._admin("apikey.create", new.key_id, {
                "account": acct.name, "label": label or None})]):
            self.store.add_api_key(key, new.digest)
        log.info("API key %s created for account %s", new.key_id, acct.name)
        return key, new.token

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key at once. Raises NotFound."""
        with self.store.audited([self._admin("apikey.revoke", key_id, {})]):
            key = self.store.revoke_api_key(key_id, now_micros())
        log.info("API key %s revoked", key_id)
        return key

    # -- authentication ------------------------------------------------------------------
    def authenticate(self, username: str | None, token: str) -> Principal:
        """Establish who presents ``token`` (and, when given, check the account name).

        Raises:
            AuthError: Unknown, revoked or wrong key, disabled account, name mismatch.
                The reason never says which of these it was.
        """
        failure = AuthError("invalid credentials")
        try:
            key_id, secret_part = apikeys.split(token)
        except AuthError:
            raise failure from None
        check = apikeys.digest(self.settings.secret_bytes(), secret_part)
        cached = self._auth_cache.get((username or "", key_id, check))
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        found = self.store.lookup_api_key(key_id)
        if found is None:
            raise failure
        key, stored, account, org = found
        if not apikeys.matches(self.settings.secret_bytes(), secret_part, stored):
            raise failure
        if key.revoked_at is not None or account.disabled:
            raise failure
        if username and username not in (account.name, key_id):
            raise failure
        principal = Principal(
            account_id=account.id,
            account_name=account.name,
            org_id=org.id,
            org_name=org.name,
            identity_id=org.identity_id,
            role=account.role,
            parent_org_id=org.parent_id,
        )
        if self.settings.cache_seconds > 0:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[(username or "", key_id, check)] = (
                principal, time.monotonic() + self.settings.cache_seconds)
        return principal

    # -- collections ---------------------------------------------------------------------
    def add_collection(
        self,
        title: str,
        *,
        readers: Sequence[str] = (),
        writers: Sequence[str] = (),
        description: str = "",
        alias: str | None = None,
        default_tlp: str | None = None,
        api_root: str | None = None,
        require_signatures: bool = False,
    ) -> tuple[Collection, list[Grant]]:
        """Create a collection and grant organisations read and/or write.

        Raises:
            InvalidInput: Empty title, bad alias or TLP level.
            NotFound: A named organisation does not exist.
            Conflict: The alias is taken.
        """
        if not title.strip():
            raise InvalidInput("a collection needs a title")
        if alias is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", alias):
            raise InvalidInput(f"alias {alias!r} is invalid: use lower-case letters, digits, '-'")
        tlp = parse_level(default_tlp or self.settings.default_tlp)
        collection = Collection(
            id=CollectionId(str(uuid.uuid4())),
            api_root=api_root or self.settings.api_root,
            title=title.strip(),
            description=description,
            alias=alias,
            default_tlp=tlp.value,
            require_signatures=require_signatures,
        )
        rights: dict[OrgId, list[bool]] = {}
        for name in readers:
            rights.setdefault(self.store.find_org(name).id, [False, False])[0] = True
        for name in writers:
            rights.setdefault(self.store.find_org(name).id, [False, False])[1] = True
        grants = [
            Grant(collection_id=collection.id, org_id=org_id, can_read=r, can_write=w)
            for org_id, (r, w) in rights.items()
        ]
        details: dict[str, str | int | bool | None] = {
            "title": collection.title[:512], "alias": alias, "default_tlp": tlp.value,
            "require_signatures": require_signatures,
            "readers": ",".join(sorted(readers))[:1024] or None,
            "writers": ",".join(sorted(writers))[:1024] or None,
        }
        with self.store.audited([self._admin("collection.create", collection.id, details)]):
            self.store.add_collection(collection, grants)
        log.info("collection %s added (%s)", collection.title, collection.id)
        return collection, grants

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

        A refusal of an existing collection is recorded in the audit ledger (a denial).

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
            raise NotFound(f"collection {ref!r} not found") from None
        access = self.access(principal, collection)
        if not access.visible:
            self._deny(principal, collection, channel, "deny-no-grant",
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
        failures: list[StatusDetail] = []
        versions: list[NewVersion] = []
        for index, candidate in enumerate(candidates):
            try:
                obj = validate_object(candidate, self.limits)
                self._check_authorship(principal, obj)
                tlp = (level_of(marking_refs_of(obj.data), policy, inline)
                       if policy is not None else obj.tlp)
                signed_kid = verify_for_ingest(
                    registry, obj.data, producer_identity=principal.identity_id,
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
                        request_id=_request_id.get() or f"status:{final.id}",
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

    def _check_authorship(self, principal: Principal, obj: StixObject) -> None:
        if obj.created_by_ref is not None and obj.created_by_ref != principal.identity_id:
            raise PermissionDenied(
                f"created_by_ref {obj.created_by_ref} is not your organisation's identity "
                f"({principal.identity_id}); you may only publish your own objects"
            )

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
        )

    # -- reading -------------------------------------------------------------------------
    def recipient(self, principal: Principal, channel: Channel = "taxii") -> Recipient:
        """The policy engine's view of a principal receiving over ``channel``."""
        parent = self.org_name(principal.parent_org_id)
        return Recipient(org_name=principal.org_name, org_identity=principal.identity_id,
                         parent_org_name=parent, account_name=principal.account_name,
                         role=principal.role.value, channel=channel)

    def rule_for(self, principal: Principal, collection: Collection,
                 channel: Channel = "taxii") -> VisibilityRule | None:
        """The policy's visibility rule for a reader of a collection (None: no policy)."""
        if self.policy is None:
            return None
        policy = self.policy.current()
        # A rule depends on the time only through agreement windows and embargoes, given
        # to the second in the policy files: reusing it for one second changes nothing.
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
        """
        if rule is not None:
            return replace(query, visible_tlps=frozenset(lvl.value for lvl in rule.levels),
                           own_org=principal.org_id, red_identity=rule.red_recipient_identity,
                           revoked_needs_prior=rule.revoked_needs_prior_receipt)
        if self.policy is not None:
            return replace(query, visible_tlps=frozenset(), own_org=principal.org_id)
        allowed = {Tlp.CLEAR.value, Tlp.GREEN.value, Tlp.AMBER.value}
        if principal.parent_org_id is None:
            allowed.add(Tlp.AMBER_STRICT.value)
        return replace(query, visible_tlps=frozenset(allowed), own_org=principal.org_id)

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
            request_id=_request_id.get() or f"local:{uuid.uuid4().hex}",
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

    def _deny(self, principal: Principal, collection: Collection, channel: str, rule: str,
              reason: str) -> None:
        """Record a refusal of a collection in the audit ledger."""
        self.audit.record([Denial(
            time=now_micros(), channel=channel, recipient_account=principal.account_name,
            recipient_org=principal.org_name, collection=collection.id, rule=rule,
            reason=reason, policy_digest=self.policy_digest(),
            request_id=_request_id.get() or f"local:{uuid.uuid4().hex}")])

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

    def delete_object(self, principal: Principal, api_root: str, collection_ref: str,
                      object_id: str, query: ObjectQuery) -> int:
        """Delete versions of an object (TAXII 2.1 section 5.7).

        Only the producing organisation's publishers, or an admin, may delete.

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
        if principal.role is not Role.ADMIN and page.rows[0].producer_org != principal.org_id:
            raise PermissionDenied("only the organisation that created an object may delete it")
        record = admin_record("object.delete", object_id, {
            "collection": collection.id, "org": principal.org_name,
            "versions": _describe_versions(query.versions),
        }, actor=principal.account_name, request_id=_request_id.get())
        with self.store.audited([record]):
            deleted = self.store.delete_object(collection.id, object_id, query.versions,
                                               query.spec_versions)
        log.info("%s deleted %d version(s) of %s from %s", principal.account_name, deleted,
                 object_id, collection.title)
        return deleted

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

        Raises:
            ConfigError: No policy is configured.
            NotFound: The object is not stored, or the recipient is unknown.
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
            out.append(Explanation(collection, meta, recipient, decision))
        if not out:
            raise NotFound(f"object {object_id!r} is not stored")
        return out

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


def _describe_versions(match: VersionMatch) -> str:
    """``match[version]`` as the ledger shows it: ``all``, ``first,last``, timestamps."""
    if match.all:
        return "all"
    parts = [name for name, on in (("first", match.first), ("last", match.last)) if on]
    parts += [from_micros(v) for v in match.exact]
    return ",".join(parts)[:512] or "last"


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


def _candidate_field(candidate: object, name: str) -> str | None:
    if isinstance(candidate, dict):
        value = candidate.get(name)
        if isinstance(value, str) and len(value) <= 200:
            return value
    return None
